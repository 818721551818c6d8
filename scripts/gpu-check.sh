#!/usr/bin/env bash
# The one-command GPU check, for a lent GPU machine with no Rust toolchain and no network (x86-64,
# CUDA driver, python3 with PyTorch + cuDNN from pip wheels). It unpacks the bundle that
# scripts/gpu-bundle.sh built and runs, each part under its own time limit (BUDGET below, 420 s in
# all, under the 600 s one device command may take):
#   0. the facts (nvidia-smi, driver, glibc, the bundle's glibc need, the CUDA libraries in PyTorch's
#      wheels), then one short load of every executable: if they cannot load, one line and exit 3;
#   1. the kernels benchmark first (the cost model, each conv/dense kernel validated and timed, the
#      `paper` training steps at 512x512, batch 50);
#   2. the GPU tests (the ignored-without-a-GPU tests of the cuda, kernels, conv_dense_kernels and
#      steady_state executables), one thread each; a failing part reruns its failed tests once with
#      CUDA_LAUNCH_BLOCKING=1, so the first fault is reported where it happens;
#   3. the PyTorch peer (torch_peer.py): the same step with cuDNN (benchmark mode), FP32 with TF32 off
#      and PyTorch's defaults, batch on the GPU and uploaded from host memory, and torch.matmul on the
#      dense layers' GEMM shapes (the cuBLAS reference when libcublas.so.12 is absent);
#   4. a short `rescnn-train --device cuda` run checked against `--device cpu`.
# Every part writes its log and its table row to $OUT the moment it ends (gpu-check.md and
# gpu-check-logs/), so a run killed half-way still returns what it did. A part that runs 0 tests fails.
#
#   bash scripts/gpu-check.sh [BUNDLE]             on the GPU machine (default target/gpu-bundle.tar.xz)
#   bash scripts/gpu-check.sh --dry-run [BUNDLE]   here: the budget, the filters, everything but the GPU
set -uo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
bundle="${1:-target/gpu-bundle.tar.xz}"
[ -f "$bundle" ] || { echo "gpu-check: bundle '$bundle' not found (build it with: bash scripts/gpu-bundle.sh)" >&2; exit 2; }

# Per-part limits in seconds (a rerun is the budget of a test part's CUDA_LAUNCH_BLOCKING rerun).
declare -A BUDGET=(
    [probe]=15
    [bench]=100
    [test-cuda]=25 [rerun-cuda]=15
    [test-kernels]=45 [rerun-kernels]=15
    [test-conv_dense_kernels]=45 [rerun-conv_dense_kernels]=15
    [test-steady_state]=15 [rerun-steady_state]=10
    [peer]=50
    [train-cuda]=25 [train-cpu]=35 [compare]=10
)
budget_total=0
for k in "${!BUDGET[@]}"; do budget_total=$((budget_total + BUDGET[$k])); done

# The GPU test executables and the filter that selects their GPU tests (with --ignored).
tests=(cuda kernels conv_dense_kernels steady_state)
declare -A FILTER=([cuda]="" [kernels]="cuda::" [conv_dense_kernels]="cuda::" [steady_state]="cuda_steady_state")

work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
out="${OUT:-$work/out}"
logs="$out/gpu-check-logs"
table="$out/gpu-check.md"
mkdir -p "$logs"
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$work" \
    || { echo "gpu-check: cannot unpack '$bundle'" >&2; exit 2; }
b="$work/gpu-bundle"
export RESCNN_CACHE="$work/cache"

failed=0
card="dry run, no GPU"
[ "$dry_run" = 1 ] || card="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
{
    echo "## GPU check ($card), commit $(cat "$b/COMMIT"), budget ${budget_total} s"
    echo
    echo "| part | result | figures |"
    echo "|---|---|---|"
} > "$table"
# row PART RESULT FIGURES: appended to the table in $OUT at once.
row() { echo "| $1 | $2 | $3 |" >> "$table"; }

# run NAME CMD...: CMD under BUDGET[NAME], its output in $logs/NAME.log; returns its status.
run() {
    local name="$1"; shift
    local limit="${BUDGET[$name]:-${LIMIT:-30}}"
    echo "gpu-check: $name (limit ${limit}s)" >&2
    local t0=$SECONDS
    timeout --kill-after=3 "$limit" "$@" > "$logs/$name.log" 2>&1
    local rc=$?
    echo "gpu-check: $name: exit $rc after $((SECONDS - t0))s" >&2
    [ $rc = 0 ] || { failed=1; tail -15 "$logs/$name.log" >&2; }
    return $rc
}
verdict() { if [ "$1" = 0 ]; then echo ok; elif [ "$1" = 124 ] || [ "$1" = 137 ]; then echo "TIMED OUT"; else echo "FAILED (exit $1)"; fi; }
# passed LOG: the number of tests the last `test result` line of LOG counts as passed (0 if none).
passed() { grep -h '^test result' "$1" 2>/dev/null | tail -1 | sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p' | grep . || echo 0; }

for f in "${tests[@]/#/test-}" bench-kernels rescnn-train; do
    [ -x "$b/bin/$f" ] || { echo "gpu-check: the bundle lacks bin/$f" >&2; exit 2; }
done
for f in torch_peer.py gpu-sanitize.sh; do
    [ -f "$b/$f" ] || { echo "gpu-check: the bundle lacks $f" >&2; exit 2; }
done

# ---- 0. facts, and can the executables load here? -------------------------------------------------
glibc_here="$(ldd --version 2>/dev/null | head -1 | grep -o '[0-9]*\.[0-9]*$')"
glibc_need="$(cat "$b/GLIBC_REQUIRED" 2>/dev/null || echo unknown)"
# The CUDA libraries of PyTorch's pip wheels (site-packages/nvidia/*/lib, and nvidia/cu13/lib): on
# the library path, so NVRTC and cuBLAS are found where no toolkit is installed.
wheel_libs="$(python3 - <<'EOF' 2>/dev/null
import glob, importlib.util, os
spec = importlib.util.find_spec("nvidia")
dirs = []
for root in (spec.submodule_search_locations if spec else []):
    dirs += sorted(d for d in glob.glob(os.path.join(root, "*", "lib")) + glob.glob(os.path.join(root, "*", "*", "lib")) if os.path.isdir(d))
print(":".join(dirs))
EOF
)"
[ -n "$wheel_libs" ] && export LD_LIBRARY_PATH="$wheel_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    echo "budget: ${budget_total} s ($(for k in $(printf '%s\n' "${!BUDGET[@]}" | sort); do printf '%s %s, ' "$k" "${BUDGET[$k]}"; done | sed 's/, $//'))"
    echo "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | head -1)"
    echo "glibc here: ${glibc_here:-unknown}; the bundle's executables need GLIBC_${glibc_need}"
    echo "CUDA wheel libraries: $(for d in ${wheel_libs//:/ }; do ls "$d" 2>/dev/null | grep -E '^lib(cublas|nvrtc|cudart)\.so\.[0-9]+$'; done | sort -u | tr '\n' ' ')"
} | tee "$logs/facts.log" >&2
row "facts" "" "$(tr '\n' ';' < "$logs/facts.log" | sed 's/|/\//g')"
if [ "$glibc_need" != unknown ] && [ -n "$glibc_here" ] \
    && [ "$(printf '%s\n%s\n' "$glibc_need" "$glibc_here" | sort -V | tail -1)" != "$glibc_here" ]; then
    row "probe" "STOPPED" "the executables need glibc $glibc_need, this machine has $glibc_here"
    echo "gpu-check: STOP: the executables need glibc $glibc_need, this machine has $glibc_here" >&2
    exit 3
fi
LIMIT="${BUDGET[probe]}" run probe bash -c "for f in \"$b\"/bin/test-*; do \"\$f\" --list > /dev/null || exit 1; done; \"$b/bin/rescnn-train\" --help > /dev/null"
rc=$?
if [ $rc != 0 ]; then
    line="$(grep -m1 -E 'not found|error while loading|cannot' "$logs/probe.log")"
    row "probe" "STOPPED" "the executables do not load: ${line:-exit $rc}"
    echo "gpu-check: STOP: the executables do not load here: ${line:-exit $rc}" >&2
    exit 3
fi
row "probe" "ok" "every executable loads"

if [ "$dry_run" = 1 ]; then
    # The budget, the filters (a part that would run 0 tests fails), the bench's cost model, the
    # peer's syntax, and the comparer on two identical CPU runs.
    [ "$budget_total" -le 440 ] || { echo "gpu-check: the budget is ${budget_total} s, over 440" >&2; failed=1; }
    row "budget" "$([ "$budget_total" -le 440 ] && echo ok || echo FAILED)" "${budget_total} s in all (the device tool allows 600 s a command)"
    for t in "${tests[@]}"; do
        filter=()
        [ -n "${FILTER[$t]}" ] && filter=("${FILTER[$t]}")
        LIMIT=60 run "list-$t" "$b/bin/test-$t" --list --ignored --skip without_nvrtc "${filter[@]}"
        rc=$?
        n=$(grep -c ': test$' "$logs/list-$t.log")
        [ "$n" -gt 0 ] || { echo "gpu-check: the filter '${FILTER[$t]}' selects no GPU test of test-$t" >&2; failed=1; rc=1; }
        row "GPU tests: $t" "(dry run) $(verdict $rc)" "$n GPU tests selected by filter '${FILTER[$t]}'"
    done
    LIMIT=120 run bench-no-gpu "$b/bin/bench-kernels" --bench
    rc=$?
    grep -q "roofline step time on GTX 1080" "$logs/bench-no-gpu.log" \
        || { echo "gpu-check: the bench printed no cost model" >&2; failed=1; rc=1; }
    row "kernels bench" "(dry run) $(verdict $rc)" "$(grep -m1 '^total:' "$logs/bench-no-gpu.log")"
    LIMIT=30 run peer-compile python3 -m py_compile "$b/torch_peer.py"
    row "PyTorch peer (py_compile)" "(dry run) $(verdict $?)" ""
    train=(--iters 2 --eval-every 1 --no-progress --arch "c8k3 p2 c8k3 p2 fc16" --eval-time first --prosody 0 --height 32 --width 32)
    LIMIT=120 run train-cpu-a "$b/bin/rescnn-train" "${train[@]}" --device cpu --out "$work/run-a" \
        && LIMIT=120 run train-cpu-b "$b/bin/rescnn-train" "${train[@]}" --device cpu --out "$work/run-b" \
        && run compare python3 "$b/torch_peer.py" compare "$work/run-b/metrics.jsonl" "$work/run-a/metrics.jsonl"
    row "rescnn-train cuda vs cpu" "(dry run) $(verdict $?)" "comparer on two CPU runs: $(tail -1 "$logs/compare.log" 2>/dev/null)"
    # The sanitizer script's budget and filter (it runs after this check, on the GPU machine).
    LIMIT=90 run sanitize-dry bash "$b/gpu-sanitize.sh" --dry-run "$bundle"
    row "gpu-sanitize.sh" "(dry run) $(verdict $?)" "$(grep -h '^| budget' "$logs/sanitize-dry.log" | cut -d'|' -f4)"
else
    # ---- 1. kernel microbenchmarks and paper steps, before anything long -------------------------
    run bench "$b/bin/bench-kernels" --bench
    rc=$?
    row "kernels bench" "$(verdict $rc)" "full output: gpu-check-logs/bench.log"
    while IFS= read -r line; do row "bench" "" "$(echo "$line" | tr -s ' ' | tr '|' '/')"; done \
        < <(grep -E 'GFLOP/s|GB/s|cuBLAS|ms/step' "$logs/bench.log")

    # ---- 2. GPU tests, one thread; failures rerun with CUDA_LAUNCH_BLOCKING=1 ----------------------
    for t in "${tests[@]}"; do
        filter=()
        [ -n "${FILTER[$t]}" ] && filter=("${FILTER[$t]}")
        run "test-$t" "$b/bin/test-$t" --ignored --skip without_nvrtc --test-threads=1 "${filter[@]}"
        rc=$?
        n=$(passed "$logs/test-$t.log")
        if [ $rc = 0 ] && [ "$n" = 0 ]; then rc=1; failed=1; fi
        figures="$(grep -h '^test result' "$logs/test-$t.log" | tail -1)"
        skipped="$(grep -h '^SKIPPED' "$logs/test-$t.log" | tr '\n' ' ')"
        if [ $rc != 0 ]; then
            mapfile -t bad < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$logs/test-$t.log")
            [ ${#bad[@]} -gt 0 ] || bad=("${filter[@]}")
            CUDA_LAUNCH_BLOCKING=1 run "rerun-$t" "$b/bin/test-$t" --ignored --test-threads=1 --exact "${bad[@]}"
            figures="$figures; rerun with CUDA_LAUNCH_BLOCKING=1 ($(verdict $?)): $(grep -h -m3 -E 'panicked|error' "$logs/rerun-$t.log" | tr '\n' ' ' | cut -c1-300)"
        fi
        row "GPU tests: $t" "$(verdict $rc)" "$n passed; $figures ${skipped}"
    done

    # ---- 3. PyTorch peer --------------------------------------------------------------------------
    ours_ms="$(grep -m1 'ms/step' "$logs/bench.log" | awk '{print $1}')"
    run peer python3 "$b/torch_peer.py" bench --batch 50 --size 512 ${ours_ms:+--ours-ms "$ours_ms"}
    rc=$?
    row "PyTorch peer" "$(verdict $rc)" "$(head -1 "$logs/peer.log")"
    while IFS= read -r line; do row "PyTorch" "" "$line"; done < <(grep -E '^(paper|ratio|matmul)' "$logs/peer.log")

    # ---- 4. short training run, CUDA against the CPU reference, same seed and data ---------------
    train=(--iters 4 --eval-every 2 --prosody 0 --no-progress)
    run train-cuda "$b/bin/rescnn-train" "${train[@]}" --device cuda --out "$work/run-cuda" \
        && run train-cpu "$b/bin/rescnn-train" "${train[@]}" --device cpu --out "$work/run-cpu" \
        && run compare python3 "$b/torch_peer.py" compare "$work/run-cuda/metrics.jsonl" "$work/run-cpu/metrics.jsonl"
    rc=$?
    row "rescnn-train cuda vs cpu" "$(verdict $rc)" "$(tail -1 "$logs/compare.log" 2>/dev/null)"
fi

cat "$table"
if [ "$failed" != 0 ]; then echo "gpu-check: some part FAILED (logs above and in \$OUT/gpu-check-logs)" >&2; exit 1; fi
