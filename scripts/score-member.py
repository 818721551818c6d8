#!/usr/bin/env python3
"""Score one member of an `--ensemble K` run alone: pool the last-weight confusion matrices that
each fold's `seed-N/fold.json` holds, for the network alone and for its fusion with the branch.

    python3 scripts/score-member.py runs/RUN seed-1

Prints WA (accuracy over all test utterances) and UAR (mean per-class recall), in %, as
`rescnn score` computes them for a whole run.
"""
import glob
import json
import sys


def pooled(run, member, part):
    total = None
    for path in sorted(glob.glob(f"{run}/fold-*/{member}/fold.json")):
        fold = json.load(open(path))
        m = fold["parts"]["network"]["confusion"] if part == "network" else fold["last"]["confusion"]
        k = m["classes"]
        rows = [m["counts"][i * k:(i + 1) * k] for i in range(k)]
        total = rows if total is None else [[a + b for a, b in zip(r, s)] for r, s in zip(total, rows)]
    if total is None:
        sys.exit(f"no {run}/fold-*/{member}/fold.json")
    return total


def main():
    run, member = sys.argv[1], sys.argv[2]
    for part, label in [("network", "network alone"), ("fused", "fused with the branch")]:
        conf = pooled(run, member, part)
        n = sum(map(sum, conf))
        wa = 100 * sum(conf[i][i] for i in range(len(conf))) / n
        uar = 100 * sum(conf[i][i] / sum(conf[i]) for i in range(len(conf)) if sum(conf[i])) / len(conf)
        print(f"{member}, {label}: WA {wa:.2f} % UAR {uar:.2f} % over {n} utterances")


if __name__ == "__main__":
    main()
