#!/usr/bin/env python3
"""Score an ensemble of `rescnn eval --out` folders of the same folds (one per member): the
members' network probabilities averaged per utterance, alone and fused with the prosody branch
at WEIGHT (the branch is the same fit in every member; this is checked), pooled WA and UAR.

    scripts/score-eval-ensemble.py --weight 0.5 EVAL_DIR [EVAL_DIR ...]

With one folder, the fused row must equal that eval's own `fused` probabilities (checked to 1e-12),
which guards the fusion formula used here.
"""
import argparse
import json
import sys


def wa_uar(rows, labels):
    pred = [max(range(len(r)), key=r.__getitem__) for r in rows]
    wa = sum(p == y for p, y in zip(pred, labels)) / len(labels)
    classes = sorted(set(labels))
    uar = sum(
        sum(1 for p, y in zip(pred, labels) if y == c and p == c) / labels.count(c) for c in classes
    ) / len(classes)
    return 100 * wa, 100 * uar


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weight", type=float, required=True, help="the prosody branch's fusion weight")
    ap.add_argument("evals", nargs="+")
    a = ap.parse_args()
    members = [json.load(open(f"{d}/predictions.json"))["folds"] for d in a.evals]
    net, branch, fused, labels = [], [], [], []
    for folds in zip(*members):
        first = folds[0]
        for f in folds:
            if f["ids"] != first["ids"] or f["labels"] != first["labels"] or f["prosody"] != first["prosody"]:
                sys.exit(f"{first['fold']}: the members disagree on utterances, labels or branch")
        k = len(folds)
        mean = [[sum(f["network"][u][c] for f in folds) / k for c in range(len(first["network"][u]))]
                for u in range(len(first["ids"]))]
        net += mean
        labels += first["labels"]
        if first["prosody"] is not None:
            branch += first["prosody"]
            fusion = [[(1 - a.weight) * n + a.weight * p for n, p in zip(nr, pr)]
                      for nr, pr in zip(mean, first["prosody"])]
            if k == 1:
                err = max(abs(x - y) for r, s in zip(fusion, first["fused"]) for x, y in zip(r, s))
                if err > 1e-12:
                    sys.exit(f"{first['fold']}: fusion differs from eval's by {err}")
            fused += fusion
    print(f"{len(members)} member(s), {len(labels)} utterances")
    print("network alone: WA %.2f UAR %.2f" % wa_uar(net, labels))
    if branch:
        print("prosody branch alone: WA %.2f UAR %.2f" % wa_uar(branch, labels))
        print("fusion at %.2f: WA %.2f UAR %.2f" % ((a.weight,) + wa_uar(fused, labels)))


main()
