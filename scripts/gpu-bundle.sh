#!/usr/bin/env bash
# Builds, on this machine (Rust toolchain, no GPU needed), the bundle that the GPU check runs on a
# lent GPU machine that has no Rust: the stripped CUDA and kernel test executables, the kernels
# benchmark, rescnn-train, the runners (scripts/gpu-check.sh, then scripts/gpu-sanitize.sh) and the
# PyTorch peer (scripts/torch_peer.py), as one xz-compressed tar (python3's tarfile and GNU tar both read xz;
# zstd may be missing over there).
#
#   bash scripts/gpu-bundle.sh             build target/gpu-bundle.tar.xz and check its size
#   bash scripts/gpu-bundle.sh --dry-run   the same, then unpack it and run the check's dry mode
#
# The device tool sends the working tree plus at most 8 ignored paths, 64 MiB in all, so the size
# check counts the bundle together with the tracked files; it fails (exit 1) printing both sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
case "${1:-}" in
    "") ;;
    --dry-run) dry_run=1 ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

limit=$((64 * 1024 * 1024))
out=target/gpu-bundle.tar.xz
stage=target/gpu-bundle
rm -rf "$stage" && mkdir -p "$stage/bin"

# The test targets whose executables hold GPU tests (ignored without a GPU), and the benchmark.
tests=(cuda kernels conv_dense_kernels steady_state)
bench=kernels

# Executables by target name, as cargo reports them (the hashed names in target/release/deps change
# with every dependency or flag change, so they are never guessed).
executables() {
    python3 -c '
import json, sys
want = set(sys.argv[2:])
kind = sys.argv[1]
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    t = msg["target"]
    if kind in t["kind"] and t["name"] in want:
        print(t["name"], msg["executable"])
' "$@"
}

echo "gpu-bundle: building test executables, the kernels bench and rescnn-train (release)"
cargo build --release --bin rescnn-train
cargo test --release --no-run --message-format=json "${tests[@]/#/--test=}" 2>/dev/null \
    | executables test "${tests[@]}" > "$stage/tests.list"
cargo bench --no-run --message-format=json --bench "$bench" 2>/dev/null \
    | executables bench "$bench" > "$stage/bench.list"

while read -r name path; do
    strip -o "$stage/bin/test-$name" "$path"
done < "$stage/tests.list"
while read -r name path; do
    strip -o "$stage/bin/bench-$name" "$path"
done < "$stage/bench.list"
strip -o "$stage/bin/rescnn-train" target/release/rescnn-train

for name in "${tests[@]}"; do
    [ -x "$stage/bin/test-$name" ] || { echo "gpu-bundle: cargo reported no executable for test '$name'" >&2; exit 1; }
done
[ -x "$stage/bin/bench-$bench" ] || { echo "gpu-bundle: cargo reported no executable for bench '$bench'" >&2; exit 1; }
rm "$stage/tests.list" "$stage/bench.list"

# The newest glibc symbol version the executables need: the GPU machine must have at least that
# (gpu-check stops at once, in one line, when it has not).
glibc=$(for f in "$stage"/bin/*; do objdump -T "$f" 2>/dev/null; done \
    | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -1) || glibc=""
echo "${glibc:-unknown}" > "$stage/GLIBC_REQUIRED"
echo "gpu-bundle: the executables need glibc ${glibc:-unknown (no objdump)} or newer (their newest GLIBC_ symbol version)"

cp scripts/gpu-check.sh scripts/gpu-sanitize.sh scripts/torch_peer.py "$stage/"
git rev-parse HEAD > "$stage/COMMIT" 2>/dev/null || echo unknown > "$stage/COMMIT"

echo "gpu-bundle: compressing"
tar -C target -cf - gpu-bundle | xz -6 -T2 > "$out.tmp"
mv "$out.tmp" "$out"

bundle=$(stat -c %s "$out")
tree=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
total=$((bundle + tree))
awk -v out="$out" -v b="$bundle" -v t="$tree" 'BEGIN {
    m = 1048576
    printf "gpu-bundle: %s is %.1f MiB; with the tracked files (%.1f MiB) %.1f MiB of the 64 MiB the device tool carries\n", out, b / m, t / m, (b + t) / m
}'
if [ "$total" -ge "$limit" ]; then
    echo "gpu-bundle: TOO LARGE: $total bytes >= $limit bytes" >&2
    exit 1
fi

if [ "$dry_run" = 1 ]; then
    bash scripts/gpu-check.sh --dry-run "$out"
fi
