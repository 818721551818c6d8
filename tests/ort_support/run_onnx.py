"""Run ONNX models with ONNX Runtime for the rescnn tests (tests/ort_support/mod.rs).

argv[1]: a JSON file holding a list of jobs {"model": path, "inputs": {name: npy path}, "output": npy path}.
Writes each job's first graph output as float32 .npy and prints one JSON line per job with the
model's metadata_props, so the tests also see what ONNX Runtime reads from the metadata.
"""
import json
import sys

import numpy as np
import onnxruntime as ort

options = ort.SessionOptions()
options.intra_op_num_threads = 1  # a shared 2-core machine; speed is not what is tested here
options.inter_op_num_threads = 1
for job in json.load(open(sys.argv[1])):
    session = ort.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
    feeds = {name: np.load(path) for name, path in job["inputs"].items()}
    (result,) = session.run(None, feeds)[:1]
    np.save(job["output"], np.ascontiguousarray(result, dtype=np.float32))
    meta = session.get_modelmeta().custom_metadata_map
    print(json.dumps({"output": job["output"], "metadata": meta, "ort": ort.__version__}))
