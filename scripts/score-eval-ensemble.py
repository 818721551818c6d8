#!/usr/bin/env python3
"""Score an ensemble of `rescnn eval --out` folders of the same folds (one per member): the
members' network probabilities averaged per utterance, alone and fused with the prosody branch
at WEIGHT (the branch is the same fit in every member; this is checked), pooled WA and UAR, and their per-fold mean ± standard deviation (n − 1).

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


def mean_std(values):
    m = sum(values) / len(values)
    sd = (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return m, sd


def row(name, rows, labels, spans):
    wa, uar = wa_uar(rows, labels)
    per = [wa_uar(rows[a:b], labels[a:b]) for a, b in spans]
    (mw, sw), (mu, su) = mean_std([p[0] for p in per]), mean_std([p[1] for p in per])
    print(f"{name}: WA {wa:.2f} UAR {uar:.2f} (per fold WA {mw:.2f} ± {sw:.2f}, UAR {mu:.2f} ± {su:.2f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weight", type=float, required=True, help="the prosody branch's fusion weight")
    ap.add_argument("evals", nargs="+")
    a = ap.parse_args()
    members = [json.load(open(f"{d}/predictions.json"))["folds"] for d in a.evals]
    net, branch, fused, labels, spans = [], [], [], [], []
    for folds in zip(*members):
        first = folds[0]
        for f in folds:
            if f["ids"] != first["ids"] or f["labels"] != first["labels"] or f["prosody"] != first["prosody"]:
                sys.exit(f"{first['fold']}: the members disagree on utterances, labels or branch")
        k = len(folds)
        mean = [[sum(f["network"][u][c] for f in folds) / k for c in range(len(first["network"][u]))]
                for u in range(len(first["ids"]))]
        spans.append((len(labels), len(labels) + len(first["labels"])))
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
    row("network alone", net, labels, spans)
    if branch:
        row("prosody branch alone", branch, labels, spans)
        row(f"fusion at {a.weight:.2f}", fused, labels, spans)


main()
