//! ONNX Runtime for the export tests: the PyPI package `onnxruntime` (with NumPy) in a folder that
//! `pip install --target` filled, run by `python3` on `run_onnx.py` beside this file.
//!
//! Found through `RESCNN_ORT_PYTHONPATH` (set by `.ci/run`, which installs it into
//! `${RESCNN_CACHE:-$HOME/.cache/rescnn}/ort`), else in that default folder. Without it the tests
//! that need it say so loudly on stderr and return; with `CI=true` or `RESCNN_REQUIRE_ORT=1` a
//! missing or broken ONNX Runtime fails them instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rescnn::export::npy;

/// How to reach ONNX Runtime.
pub struct Ort {
    pythonpath: PathBuf,
    python: String,
}

fn required() -> bool {
    std::env::var("RESCNN_REQUIRE_ORT").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

impl Ort {
    /// ONNX Runtime, or `None` (after saying why) when it is not installed and not required.
    pub fn find(test: &str) -> Option<Ort> {
        let dir = std::env::var_os("RESCNN_ORT_PYTHONPATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("RESCNN_CACHE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                            .join(".cache/rescnn")
                    })
                    .join("ort")
            });
        let python = std::env::var("RESCNN_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .env("PYTHONPATH", &dir)
            .args([
                "-c",
                "import numpy, onnxruntime; print(onnxruntime.__version__)",
            ])
            .output();
        let problem = match probe {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Some(format!("cannot run {python}: {e}")),
        };
        match problem {
            None => Some(Ort {
                pythonpath: dir,
                python,
            }),
            Some(why) if required() => panic!(
                "{test}: ONNX Runtime is required (CI=true or RESCNN_REQUIRE_ORT=1) but `import onnxruntime` fails with PYTHONPATH={}: {why}; run .ci/run, or pip install --target that folder onnxruntime numpy",
                dir.display()
            ),
            Some(why) => {
                // Written to the process's stderr directly: the test harness captures eprintln!
                // of a passing test, and a skip must be seen.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED {test}: ONNX Runtime not found (PYTHONPATH={}: {why}).\n*** Install it with: python3 -m pip install --target {} onnxruntime numpy   (or run .ci/run)\n",
                    dir.display(),
                    dir.display()
                );
                None
            }
        }
    }

    /// Run every job; returns each job's output (shape, values) and the metadata ONNX Runtime read.
    pub fn run(&self, work: &Path, jobs: &[Job]) -> Vec<Output> {
        let list: Vec<serde_json::Value> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let inputs: serde_json::Map<String, serde_json::Value> = j
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(k, (name, shape, values))| {
                        let p = work.join(format!("job{i}-in{k}.npy"));
                        npy::write(&p, shape, values).expect("write npy");
                        (name.clone(), serde_json::json!(p))
                    })
                    .collect();
                serde_json::json!({
                    "model": j.model,
                    "inputs": inputs,
                    "output": work.join(format!("job{i}-out.npy")),
                })
            })
            .collect();
        let list_path = work.join("jobs.json");
        std::fs::write(&list_path, serde_json::to_vec(&list).unwrap()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort_support/run_onnx.py");
        let out = Command::new(&self.python)
            .env("PYTHONPATH", &self.pythonpath)
            .arg(&script)
            .arg(&list_path)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "ONNX Runtime failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line per job"))
            .collect();
        assert_eq!(lines.len(), jobs.len());
        lines
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                let (shape, values) = npy::read(&work.join(format!("job{i}-out.npy"))).unwrap();
                let metadata = line["metadata"]
                    .as_object()
                    .expect("metadata map")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                Output {
                    shape,
                    values,
                    metadata,
                }
            })
            .collect()
    }
}

/// One model run: the model file and its named inputs (name, shape, values).
pub struct Job {
    pub model: PathBuf,
    pub inputs: Vec<(String, Vec<usize>, Vec<f32>)>,
}

pub struct Output {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub metadata: std::collections::BTreeMap<String, String>,
}
