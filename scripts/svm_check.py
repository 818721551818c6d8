#!/usr/bin/env python3
"""The issue's baseline classifier on rescnn's own utterance vectors.

Reads the CSV that `cargo run --release --example prosody_loso -- --set full --dump F.csv` writes
(id, speaker, label, then the raw vector) and scores it as ../shared/peers/smile_svm.py scores the
openSMILE functionals: leave one speaker out, each speaker's features z-normalised with that
speaker's own statistics, a linear SVM with balanced class weights whose C is chosen by an inner
leave-one-speaker-out (UAR) over the fold's training speakers only; pooled WA and UAR.
So "our features + the same SVM" sits beside "ComParE + SVM" with nothing else changed.

Usage: python3 scripts/svm_check.py F.csv [--first N]   (--first 29: the basic prosody vector only)
Needs: numpy, scikit-learn (a virtualenv of its own, as for the peers).
"""
import argparse
import csv

import numpy as np
from sklearn.metrics import accuracy_score, recall_score
from sklearn.svm import SVC

C_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]  # smile_svm.py's grid


def per_speaker_z(x, spk):
    x = x.copy()
    for s in np.unique(spk):
        m = spk == s
        sd = x[m].std(0)
        x[m] = (x[m] - x[m].mean(0)) / np.where(sd > 1e-9, sd, 1.0)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--first", type=int, default=0, help="use only the first N entries")
    a = ap.parse_args()
    with open(a.csv) as f:
        rows = list(csv.reader(f))[1:]
    spk = np.array([r[1] for r in rows])
    y = np.array([int(r[2]) for r in rows])
    x = np.array([[float(v) for v in r[3:]] for r in rows])
    if a.first:
        x = x[:, : a.first]
    x = per_speaker_z(x, spk)
    pred = np.zeros_like(y)
    print(f"{x.shape[0]} utterances, {x.shape[1]} entries")
    for test in np.unique(spk):
        train = spk != test
        best = None
        for c in C_GRID:
            truth, guess = [], []
            for held in np.unique(spk[train]):
                fit_on, score_on = train & (spk != held), train & (spk == held)
                clf = SVC(kernel="linear", C=c, class_weight="balanced").fit(x[fit_on], y[fit_on])
                guess.append(clf.predict(x[score_on]))
                truth.append(y[score_on])
            uar = recall_score(np.concatenate(truth), np.concatenate(guess), average="macro")
            if best is None or uar > best[0]:
                best = (uar, c)
        clf = SVC(kernel="linear", C=best[1], class_weight="balanced").fit(x[train], y[train])
        pred[~train] = clf.predict(x[~train])
        fold = ~train
        print(f"speaker {test}: C {best[1]:g}, WA {100 * accuracy_score(y[fold], pred[fold]):.2f}")
    print(f"pooled: WA {100 * accuracy_score(y, pred):.2f} UAR {100 * recall_score(y, pred, average='macro'):.2f}")


if __name__ == "__main__":
    main()
