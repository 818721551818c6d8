//! Shared pieces of the trainer tests: a tiny configuration on the synthetic corpus (CPU backend, no
//! disk cache), temporary run directories, and comparisons of checkpoints and metrics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rescnn::data::{synth, Corpus, SynthConfig};
use rescnn::data::{AugmentConfig, EvalTime, InputNormMode};
use rescnn::prosody::ProsodySet;
use rescnn::training::checkpoint::Checkpoint;
use rescnn::training::config::{small_spectrogram, DeviceChoice, OptimizerConfig, TrainConfig};
use rescnn::training::run::{self, RunOutcome};
use rescnn::training::run_dir::{read_metrics, MetricsLine};
use rescnn::training::trainer::RunControl;

/// A network and input small enough that a test run takes seconds: 32 mel bands × 128 frames gray,
/// two convs with a shortcut, batch 16; RMSProp, the paper's augmentation, training-set
/// normalisation, hard targets, first-frames evaluation and no prosody branch, which the tests below switch on and
/// off one at a time.
pub fn tiny_config() -> TrainConfig {
    TrainConfig {
        corpus: "synthetic".into(),
        arch: "c8k3 p2 +0 c16k3 p2 fc32".into(),
        device: DeviceChoice::Cpu,
        protocol: "random".into(),
        spectrogram: small_spectrogram(32, 128),
        batch: 16,
        iterations: Some(30),
        epochs: None,
        eval_every: 10,
        feature_cache: false,
        optimizer: OptimizerConfig::default(),
        augment: AugmentConfig::paper(),
        balanced: false,
        input_norm: InputNormMode::Training,
        eval_time: EvalTime::First,
        mixup_alpha: 0.0,
        label_smoothing: 0.0,
        prosody_weight: 0.0,
        prosody_set: ProsodySet::Basic,
        ..TrainConfig::default()
    }
}

/// A fresh, empty temporary folder (removed when dropped).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rescnn-train-test")
        .tempdir()
        .expect("temporary folder")
}

/// New audio for predict/eval: a small synthetic corpus (another seed than training's; 2 speakers,
/// one utterance per class each) written as a folder-per-class tree of WAV files in a temporary
/// folder, `<class>/<speaker>/<class>_00.wav`.
pub fn exported_small_corpus() -> (tempfile::TempDir, Corpus) {
    let data = temp_dir();
    let corpus = synth::generate(&SynthConfig {
        seed: 99,
        speakers: 2,
        per_class_per_speaker: 1,
        ..SynthConfig::default()
    })
    .expect("synthetic corpus");
    synth::export(&corpus, data.path()).expect("export as WAV files");
    (data, corpus)
}

/// Run the `rescnn` binary with `args`; panics with its stderr unless it exits successfully.
pub fn rescnn_ok<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rescnn"))
        .args(args)
        .output()
        .expect("the rescnn binary runs");
    assert!(
        out.status.success(),
        "rescnn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `rescnn export --model RUN -o ONNX`.
pub fn rescnn_export(run: &Path, onnx: &Path) -> std::process::Output {
    rescnn_ok([
        "export".as_ref(),
        "--model".as_ref(),
        run.as_os_str(),
        "-o".as_ref(),
        onnx.as_os_str(),
    ])
}

/// Utterances counted by a `rescnn eval --json` report: the sum of its per-speaker totals.
pub fn utterances_evaluated(report: &serde_json::Value) -> u64 {
    report["per_speaker"]
        .as_object()
        .expect("per_speaker is a table")
        .values()
        .map(|v| v[1].as_u64().expect("[correct, total]"))
        .sum()
}

pub fn quiet() -> RunControl {
    RunControl::default()
}

/// Train `cfg` in `dir` to the end.
pub fn train(cfg: &TrainConfig, dir: &Path) -> RunOutcome {
    run::start(cfg, dir, &quiet()).unwrap_or_else(|e| panic!("training failed: {e}"))
}

pub fn last_checkpoint(dir: &Path) -> Checkpoint {
    Checkpoint::load(&dir.join("checkpoints/last.safetensors")).expect("last checkpoint")
}

/// Metrics lines without the wall-clock fields (which differ between runs).
pub fn metrics_without_time(dir: &Path) -> Vec<MetricsLine> {
    read_metrics(&dir.join("metrics.jsonl"))
        .expect("metrics")
        .into_iter()
        .map(|mut m| {
            m.elapsed_s = 0.0;
            m.images_per_s = 0.0;
            m
        })
        .collect()
}

/// Bit patterns of every weight and optimizer moment (RMSProp's mean square; AdamW's two moments).
pub fn tensor_bits(ck: &Checkpoint) -> Vec<(String, Vec<u32>)> {
    let mut out: Vec<(String, Vec<u32>)> = ck
        .params
        .iter()
        .map(|t| {
            (
                format!("param.{}", t.name),
                t.data.iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect();
    if let Some(o) = &ck.optimizer {
        let moments = [
            ("mean_square", &o.mean_square),
            ("first_moment", &o.first_moment),
        ];
        for (what, tensors) in moments {
            out.extend(tensors.iter().map(|t| {
                (
                    format!("{what}.{}", t.name),
                    t.data.iter().map(|v| v.to_bits()).collect(),
                )
            }));
        }
    }
    out
}

pub fn path(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel)
}
