#!/usr/bin/env bash
# Lay out finished one-network runs of the same configuration and protocol, trained with seeds
# 0, 1, ..., K-1, as the folds of one `--ensemble K` run (fold-*/seed-N/ links), so that
# `rescnn score OUT` scores them as that ensemble and `rescnn eval --model OUT` evaluates it.
# Under leave-one-speaker-out (no validation speakers) the split does not depend on the seed, and a
# member's weights and data order depend only on its seed and fold, so each run's fold is what
# `--ensemble K` trains in `seed-N/`.
#   scripts/ensemble-of-runs.sh OUT RUN_SEED0 RUN_SEED1 [...]
set -euo pipefail
out=${1:?usage: ensemble-of-runs.sh OUT RUN_SEED0 RUN_SEED1 [...]}
shift
[ $# -ge 2 ] || { echo "give at least two runs, seed 0 first" >&2; exit 2; }
# The network as built: the last `...` of summary.md's "- network:" line is the spec a preset name
# (such as `recipe-joint`) resolves to, so a run named by preset and one by its spec compare equal.
network_of() {
  local line
  line=$(grep -m1 '^- network: ' "$1/summary.md") || { echo "$1: no summary.md with a network line (has it finished?)" >&2; exit 2; }
  line=${line%\`}
  echo "${line##*\`}"
}
mkdir -p "$out"
seed=0
for run in "$@"; do
  want=$(grep -E '^seed = ' "$run/config.toml" | cut -d' ' -f3)
  [ "$want" = "$seed" ] || { echo "$run: trained with seed $want, expected $seed (give the runs in seed order)" >&2; exit 2; }
  diff <(grep -vE '^(seed|ensemble|arch) = ' "$run/config.toml") \
       <(grep -vE '^(seed|ensemble|arch) = ' "$1/config.toml") > /dev/null \
    || { echo "$run: its config.toml differs from $1's beyond the seed" >&2; exit 2; }
  [ "$(network_of "$run")" = "$(network_of "$1")" ] \
    || { echo "$run: its network differs from $1's ($(network_of "$run"))" >&2; exit 2; }
  for fold in "$run"/fold-*/; do
    name=$(basename "$fold")
    mkdir -p "$out/$name"
    ln -sfn "$(cd "$fold" && pwd)" "$out/$name/seed-$seed"
    # The fold's split, which `rescnn eval` reads to find its test speakers: every member's must be
    # the same but for the seed it records (seed 0's is kept, as `--ensemble K` writes the run's).
    if [ -e "$out/$name/split.json" ]; then
      cmp -s <(grep -v '^  "seed": ' "$fold/split.json") <(grep -v '^  "seed": ' "$out/$name/split.json") \
        || { echo "$fold/split.json: not the split of the other members' $name" >&2; exit 2; }
    else
      cp "$fold/split.json" "$out/$name/split.json"
    fi
  done
  seed=$((seed + 1))
done
echo "$out: $seed members per fold; score it with: rescnn score $out"
