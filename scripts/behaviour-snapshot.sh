#!/usr/bin/env bash
# Record what three runs write, for checking that a refactor changes no behaviour: the no-argument
# run, a short leave-one-speaker-out run of the one-network recipe on EMO-DB (`--ensemble 1`: what
# the preset trained before it became an ensemble), and a short run of the paper's preset on the
# emulated device. Compare two snapshots with scripts/compare-runs.py A B.
#   scripts/behaviour-snapshot.sh OUT_DIR   (uses target/release binaries; build them first)
set -euo pipefail
out=${1:?usage: behaviour-snapshot.sh OUT_DIR}
data=${RESCNN_EMODB_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/emodb-dev}
train=target/release/rescnn-train
mkdir -p "$out"
"$train" --out "$out/no-arguments" > "$out/no-arguments.log" 2>&1
"$train" --preset recipe --ensemble 1 --data "$data" --protocol loso --iters 6 --device cpu \
  --out "$out/recipe-loso" > "$out/recipe-loso.log" 2>&1
"$train" --preset paper --corpus synthetic --device emu --iters 2 --batch 2 --height 32 \
  --width 32 --out "$out/paper-emu" > "$out/paper-emu.log" 2>&1
echo "snapshot in $out"
