#!/usr/bin/env python3
"""Compare an exported speaker-normalised model with the prosody branch, run in ONNX Runtime,
against `rescnn predict --json` on the same files.

    rescnn export --model FOLD --weights last -o m.onnx
    rescnn enroll --model FOLD --weights last --speaker S -o s.json FILES...
    rescnn predict --json --model FOLD --weights last --speaker-stats s.json FILES... > pred.json
    rescnn spectrogram --model FOLD F.wav --npy DIR/F.npy --vector-npy DIR/F-v.npy   (each file)
    python3 scripts/onnx-vs-predict.py m.onnx s.json pred.json DIR

Prints the largest |ONNX − rescnn| of the fused, network and branch probabilities.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

onnx, stats, predictions, npy_dir = sys.argv[1:5]
session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
classes = json.loads(session.get_modelmeta().custom_metadata_map["rescnn.classes"])
st = json.load(open(stats))
image, vector = st["image"], st["vector"]
shape = session.get_inputs()[0].shape  # (N, C, H, W)
c, h = shape[1], shape[2]
names = [o.name for o in session.get_outputs()]
worst = {}
for p in json.load(open(predictions)):
    stem = os.path.splitext(os.path.basename(p["file"]))[0]
    feeds = {
        "spectrogram": np.load(f"{npy_dir}/{stem}.npy"),
        "utterance_vector": np.load(f"{npy_dir}/{stem}-v.npy"),
        "speaker_mean": np.array(image["mean"], dtype=np.float32).reshape(c, h, 1),
        "speaker_std": np.array(image["std"], dtype=np.float32).reshape(c, h, 1),
        "speaker_vector_mean": np.array(vector["mean"], dtype=np.float32),
        "speaker_vector_std": np.array(vector["std"], dtype=np.float32),
    }
    out = dict(zip(names, session.run(None, feeds)))
    for key, want in [
        ("probabilities", [p["probabilities"][k] for k in classes]),
        ("network_probabilities", p["network"]),
        ("prosody_probabilities", p["prosody"]),
    ]:
        d = float(np.abs(out[key][0] - np.array(want)).max())
        worst[key] = max(worst.get(key, 0.0), d)
    print(stem, feeds["spectrogram"].shape, classes[int(out["probabilities"][0].argmax())], p["emotion"])
print("max |ONNX - rescnn predict|:", {k: f"{v:.2e}" for k, v in worst.items()})
