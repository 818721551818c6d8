#!/usr/bin/env bash
# The second GPU script, run only after scripts/gpu-check.sh has come back (it is slower and its
# findings matter only once the check's own results are safe): the kernel tests under
# compute-sanitizer's memcheck and racecheck, and Nsight Compute (ncu) figures for the kernels of
# the `paper` step's three largest convolutions (conv2, conv3, conv4 by FLOPs at 512x512, batch 50).
# Per-part limits (BUDGET) sum to 290 s. Logs and the table go to $OUT as each part ends.
#
#   bash scripts/gpu-sanitize.sh [BUNDLE]            on the GPU machine (default target/gpu-bundle.tar.xz)
#   bash scripts/gpu-sanitize.sh --dry-run [BUNDLE]  here: the budget and the filters only
set -uo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
bundle="${1:-target/gpu-bundle.tar.xz}"
[ -f "$bundle" ] || { echo "gpu-sanitize: bundle '$bundle' not found (build it with: bash scripts/gpu-bundle.sh)" >&2; exit 2; }

declare -A BUDGET=([memcheck]=100 [racecheck]=90 [ncu]=100)
budget_total=0
for k in "${!BUDGET[@]}"; do budget_total=$((budget_total + BUDGET[$k])); done
# The kernel tests: every op's kernels against the CPU reference, small shapes (fast under the tools).
filter="cuda::"

work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT
out="${OUT:-$work/out}"
logs="$out/gpu-sanitize-logs"
table="$out/gpu-sanitize.md"
mkdir -p "$logs"
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$work" \
    || { echo "gpu-sanitize: cannot unpack '$bundle'" >&2; exit 2; }
b="$work/gpu-bundle"
export RESCNN_CACHE="$work/cache"
{
    echo "## compute-sanitizer and ncu, commit $(cat "$b/COMMIT"), budget ${budget_total} s"
    echo
    echo "| part | result | figures |"
    echo "|---|---|---|"
} > "$table"
row() { echo "| $1 | $2 | $3 |" >> "$table"; }
failed=0
run() {
    local name="$1"; shift
    echo "gpu-sanitize: $name (limit ${BUDGET[$name]}s)" >&2
    timeout --kill-after=3 "${BUDGET[$name]}" "$@" > "$logs/$name.log" 2>&1
    local rc=$?
    [ $rc = 0 ] || { failed=1; tail -15 "$logs/$name.log" >&2; }
    return $rc
}
verdict() { if [ "$1" = 0 ]; then echo ok; elif [ "$1" = 124 ] || [ "$1" = 137 ]; then echo "TIMED OUT"; else echo "FAILED (exit $1)"; fi; }

n=$(timeout 60 "$b/bin/test-kernels" --list --ignored "$filter" 2>/dev/null | grep -c ': test$')
if [ "$n" = 0 ]; then
    echo "gpu-sanitize: the filter '$filter' selects no GPU test of test-kernels" >&2
    row "filter" "FAILED" "'$filter' selects no test"
    exit 1
fi
if [ "$dry_run" = 1 ]; then
    row "budget" "(dry run) ok" "${budget_total} s; $n kernel tests selected by '$filter'"
    cat "$table"
    exit 0
fi
for tool in compute-sanitizer ncu; do
    command -v "$tool" > /dev/null || { echo "gpu-sanitize: $tool is not on the PATH" >&2; row "$tool" "MISSING" ""; failed=1; }
done

# memcheck and racecheck: one test thread (the tools serialise kernels anyway); a finding exits 1.
for tool in memcheck racecheck; do
    run "$tool" compute-sanitizer --tool "$tool" --error-exitcode 1 --print-limit 20 \
        "$b/bin/test-kernels" --ignored --test-threads=1 "$filter"
    rc=$?
    row "$tool on $n kernel tests" "$(verdict $rc)" "$(grep -h -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$tool.log")"
done

# ncu: the bench times the paper's convolutions one layer after another (conv1..conv4, forward,
# backward data, backward filter, at batch 50 after a batch-4 validation); the profiled launches are
# those of the conv kernels, capped, and the CSV names each with its grid, which tells the layers
# apart (conv2-4 are the three largest).
run ncu ncu --kernel-name regex:'^conv2d_' --launch-skip 0 --launch-count 40 \
    --section SpeedOfLight --section Occupancy --csv "$b/bin/bench-kernels" --bench
rc=$?
row "ncu, conv kernels of the bench" "$(verdict $rc)" "$(grep -c '"conv2d_' "$logs/ncu.log") metric rows in gpu-sanitize-logs/ncu.log"

cat "$table"
[ "$failed" = 0 ] || { echo "gpu-sanitize: some part FAILED (logs in \$OUT/gpu-sanitize-logs)" >&2; exit 1; }
