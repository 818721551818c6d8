#!/usr/bin/env bash
# The one-command GPU check, for a lent GPU machine with no Rust toolchain and no network (x86-64,
# CUDA driver, python3 with PyTorch + cuDNN). It unpacks the bundle that scripts/gpu-bundle.sh built
# and runs, each part under its own time limit (about 8 minutes in all):
#   1. the GPU tests (the ignored-without-a-GPU tests of the cuda, kernels, conv_dense_kernels, steady_state
#      test executables);
#   2. the kernels benchmark: the cost model, then each conv/dense kernel validated and timed
#      (GFLOP/s, % of peak, ratio to cuBLAS), then `paper` training steps at 512x512, batch 50;
#   3. the PyTorch peer (torch_peer.py): the same network's step with cuDNN, FP32 with TF32 off and
#      PyTorch's defaults;
#   4. a short `rescnn-train --device cuda` run checked against `--device cpu` (see compare below).
# It ends with one markdown table on stdout, also written with every log to $OUT when that is set.
#
#   bash scripts/gpu-check.sh [BUNDLE]             on the GPU machine (default target/gpu-bundle.tar.xz)
#   bash scripts/gpu-check.sh --dry-run [BUNDLE]   here: everything but the GPU parts
set -uo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
bundle="${1:-target/gpu-bundle.tar.xz}"
[ -f "$bundle" ] || { echo "gpu-check: bundle '$bundle' not found (build it with: bash scripts/gpu-bundle.sh)" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$work" \
    || { echo "gpu-check: cannot unpack '$bundle'" >&2; exit 2; }
b="$work/gpu-bundle"
logs="$work/logs"
mkdir -p "$logs"
export RESCNN_CACHE="$work/cache"

rows=()   # markdown table rows
failed=0
row() { rows+=("| $1 | $2 | $3 |"); }

# run NAME LIMIT_S CMD...: runs CMD with a time limit, its output in $logs/NAME.log; returns its status.
run() {
    local name="$1" limit="$2"; shift 2
    echo "gpu-check: $name (limit ${limit}s)" >&2
    local t0=$SECONDS
    timeout --kill-after=5 "$limit" "$@" > "$logs/$name.log" 2>&1
    local rc=$?
    echo "gpu-check: $name: exit $rc after $((SECONDS - t0))s" >&2
    [ $rc = 0 ] || { failed=1; tail -20 "$logs/$name.log" >&2; }
    return $rc
}
verdict() { if [ "$1" = 0 ]; then echo ok; elif [ "$1" = 124 ] || [ "$1" = 137 ]; then echo "TIMED OUT"; else echo "FAILED (exit $1)"; fi; }

tests=(cuda kernels conv_dense_kernels steady_state)
for f in "${tests[@]/#/test-}" bench-kernels rescnn-train; do
    [ -x "$b/bin/$f" ] || { echo "gpu-check: the bundle lacks bin/$f" >&2; exit 2; }
done
[ -f "$b/torch_peer.py" ] || { echo "gpu-check: the bundle lacks torch_peer.py" >&2; exit 2; }

if [ "$dry_run" = 1 ]; then
    # Every executable starts and lists its GPU tests; the peer compiles; the compare step works.
    for t in "${tests[@]}"; do
        run "list-$t" 60 "$b/bin/test-$t" --list --ignored
        rc=$?
        n=$(grep -c ': test$' "$logs/list-$t.log")
        [ "$n" -gt 0 ] || { echo "gpu-check: test-$t lists no GPU test" >&2; failed=1; rc=1; }
        row "GPU tests: $t" "(dry run) $(verdict $rc)" "$n GPU tests listed"
    done
    run bench-no-gpu 120 "$b/bin/bench-kernels" --bench
    rc=$?
    grep -q "roofline step time on GTX 1080" "$logs/bench-no-gpu.log" \
        || { echo "gpu-check: the bench printed no cost model" >&2; failed=1; rc=1; }
    row "kernels bench" "(dry run) $(verdict $rc)" "$(grep -m1 '^total:' "$logs/bench-no-gpu.log")"
    run train-help 30 "$b/bin/rescnn-train" --help
    row "rescnn-train --help" "(dry run) $(verdict $?)" ""
    run peer-compile 30 python3 -m py_compile "$b/torch_peer.py"
    row "PyTorch peer (py_compile)" "(dry run) $(verdict $?)" ""
    # The comparer itself, on two CPU runs of the same seed (identical by construction).
    train=(--iters 2 --eval-every 1 --no-progress --arch "c8k3 p2 c8k3 p2 fc16" --height 32 --width 32)
    run train-cpu-a 120 "$b/bin/rescnn-train" "${train[@]}" --device cpu --out "$work/run-a" \
        && run train-cpu-b 120 "$b/bin/rescnn-train" "${train[@]}" --device cpu --out "$work/run-b" \
        && run compare 30 python3 "$b/torch_peer.py" compare "$work/run-b/metrics.jsonl" "$work/run-a/metrics.jsonl"
    row "rescnn-train cuda vs cpu" "(dry run) $(verdict $?)" "comparer on two CPU runs: $(tail -1 "$logs/compare.log" 2>/dev/null)"
else
    # 1. GPU tests: exactly the tests ignored without a GPU (the bundle is built on a machine
    #    without one), minus the one that checks NVRTC's absence.
    for t in "${tests[@]}"; do
        filter=()
        [ "$t" = cuda ] || filter=(cuda::)
        run "test-$t" 90 "$b/bin/test-$t" --ignored --skip without_nvrtc "${filter[@]}"
        rc=$?
        row "GPU tests: $t" "$(verdict $rc)" "$(grep -h '^test result' "$logs/test-$t.log" | tail -1)"
    done
    # 2. Kernel microbenchmarks and paper steps.
    run bench 180 "$b/bin/bench-kernels" --bench
    rc=$?
    row "kernels bench" "$(verdict $rc)" "full output: bench.log"
    while IFS= read -r line; do row "bench" "" "$(echo "$line" | tr -s ' ' | tr '|' '/')"; done \
        < <(grep -E 'GFLOP/s|GB/s|cuBLAS|ms/step' "$logs/bench.log")
    # 3. PyTorch peer, both precisions, same run.
    run peer 90 python3 "$b/torch_peer.py" bench --batch 50 --size 512
    rc=$?
    row "PyTorch peer" "$(verdict $rc)" ""
    while IFS= read -r line; do row "PyTorch" "" "$line"; done < <(grep '^paper' "$logs/peer.log")
    # 4. Short training run, CUDA against the CPU reference, same seed and data.
    train=(--iters 4 --eval-every 2 --no-progress)
    run train-cuda 60 "$b/bin/rescnn-train" "${train[@]}" --device cuda --out "$work/run-cuda" \
        && run train-cpu 120 "$b/bin/rescnn-train" "${train[@]}" --device cpu --out "$work/run-cpu" \
        && run compare 30 python3 "$b/torch_peer.py" compare "$work/run-cuda/metrics.jsonl" "$work/run-cpu/metrics.jsonl"
    rc=$?
    row "rescnn-train cuda vs cpu" "$(verdict $rc)" "$(tail -1 "$logs/compare.log" 2>/dev/null)"
fi

{
    echo "## GPU check ($([ $dry_run = 1 ] && echo "dry run, no GPU" || nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)), commit $(cat "$b/COMMIT")"
    echo
    echo "| part | result | figures |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
} > "$work/table.md"
cat "$work/table.md"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT" && cp "$work/table.md" "$OUT/gpu-check.md" && cp -r "$logs" "$OUT/gpu-check-logs"
fi
if [ "$failed" != 0 ]; then echo "gpu-check: some part FAILED (logs above and in \$OUT)" >&2; exit 1; fi
