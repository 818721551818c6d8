//! Every bad input of the trainer gets one clear message naming what was wrong and what to do, and
//! a failed or interrupted run never looks complete.

mod train_support;

use std::path::Path;

use rescnn::inference::model_dir::{TrainedModel, Weights};
use rescnn::training::run::{self, RunOutcome};
use rescnn::training::trainer::RunControl;
use rescnn::training::TrainConfig;
use train_support::*;

fn start_error(cfg: &TrainConfig) -> (String, tempfile::TempDir) {
    let dir = temp_dir();
    let run_dir = dir.path().join("run");
    let e = run::start(cfg, &run_dir, &quiet())
        .map(|_| ())
        .expect_err("the run should fail");
    (e.to_string(), dir)
}

/// A short tone as a 16 kHz WAV.
fn tone(path: &Path, hz: f32) {
    let samples: Vec<f32> = (0..8000)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * hz * i as f32 / 16_000.0).sin())
        .collect();
    rescnn::audio::write_wav_i16(path, &samples, 16_000).unwrap();
}

#[test]
fn a_missing_data_folder_is_named_and_the_run_is_marked_failed() {
    let mut cfg = tiny_config();
    cfg.corpus = "emodb:/nonexistent/rescnn-data".into();
    let (e, dir) = start_error(&cfg);
    assert!(
        e.contains("/nonexistent/rescnn-data")
            && e.contains("does not exist")
            && e.contains("--data"),
        "{e}"
    );
    let run_dir = dir.path().join("run");
    let status = std::fs::read_to_string(run_dir.join("STATUS")).unwrap();
    assert!(
        status.starts_with("failed") && status.contains("does not exist"),
        "{status}"
    );
    assert!(!run_dir.join("summary.md").exists() && !run_dir.join("result.json").exists());
}

#[test]
fn an_empty_data_folder_says_what_files_are_expected() {
    let data = temp_dir();
    let mut cfg = tiny_config();
    cfg.corpus = format!("emodb:{}", data.path().display());
    let (e, _d) = start_error(&cfg);
    assert!(
        e.contains("holds no .wav files") && e.contains("03a01Wa.wav"),
        "{e}"
    );
}

#[test]
fn one_class_is_not_a_classification_task() {
    let data = temp_dir();
    for (i, spk) in ["s1", "s2", "s3"].iter().enumerate() {
        let dir = data.path().join("anger").join(spk);
        std::fs::create_dir_all(&dir).unwrap();
        tone(&dir.join("a.wav"), 200.0 + 50.0 * i as f32);
    }
    let mut cfg = tiny_config();
    cfg.corpus = format!("folders:{}", data.path().display());
    let (e, _d) = start_error(&cfg);
    assert!(e.contains("1 class") && e.contains("at least two"), "{e}");
}

#[test]
fn a_class_without_a_training_speaker_is_named() {
    let data = temp_dir();
    let mut csv = String::from("path,label,speaker\n");
    for (k, (label, speaker)) in [
        ("anger", "s1"),
        ("anger", "s2"),
        ("anger", "s3"),
        ("sadness", "s3"),
    ]
    .iter()
    .enumerate()
    {
        tone(
            &data.path().join(format!("{k}.wav")),
            150.0 + 40.0 * k as f32,
        );
        csv.push_str(&format!("{k}.wav,{label},{speaker}\n"));
    }
    let manifest = data.path().join("corpus.csv");
    std::fs::write(&manifest, csv).unwrap();
    let mut cfg = tiny_config();
    cfg.corpus = manifest.display().to_string();
    cfg.protocol = "speakers:s3".into();
    let (e, _d) = start_error(&cfg);
    assert!(e.contains("class 'sadness' has no training speaker"), "{e}");
}

#[test]
fn unknown_presets_and_malformed_specs_point_at_the_problem() {
    let mut cfg = tiny_config();
    cfg.arch = "paper-deluxe".into();
    let (e, _d) = start_error(&cfg);
    assert!(
        e.contains("paper-deluxe") && e.contains("presets:") && e.contains("paper-plain"),
        "{e}"
    );
    cfg.arch = "c8k3 p2 +4 fc32".into();
    let (e, _d) = start_error(&cfg);
    assert!(
        e.contains("+4") && e.contains("tap 4 does not exist"),
        "{e}"
    );
}

#[test]
fn an_existing_run_directory_is_not_overwritten() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let e = run::start(&tiny_config(), dir.path(), &quiet())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already exists") && e.contains("--resume"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

fn interrupted_run(cfg: &TrainConfig) -> tempfile::TempDir {
    let dir = temp_dir();
    let stop = RunControl {
        stop_at: Some(3),
        ..RunControl::default()
    };
    match run::start(cfg, dir.path(), &stop).unwrap() {
        RunOutcome::Interrupted { .. } => dir,
        other => panic!("expected an interruption, got {other:?}"),
    }
}

#[test]
fn damaged_and_mismatched_checkpoints_are_refused_with_the_file_named() {
    let cfg = tiny_config();
    let a = interrupted_run(&cfg);
    let last = a.path().join("checkpoints/last.safetensors");
    let good = std::fs::read(&last).unwrap();
    std::fs::write(&last, b"not a checkpoint at all").unwrap();
    let e = run::resume(a.path(), &quiet())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("last.safetensors") && e.contains("damaged or not a rescnn checkpoint"),
        "{e}"
    );
    // Cut short: also refused.
    std::fs::write(&last, &good[..good.len() / 2]).unwrap();
    let e = run::resume(a.path(), &quiet())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("last.safetensors"), "{e}");

    // Another run's checkpoint (another network) in this run's folder.
    let mut other_cfg = tiny_config();
    other_cfg.arch = "c4k3 p2 fc16".into();
    let b = interrupted_run(&other_cfg);
    std::fs::write(
        &last,
        std::fs::read(b.path().join("checkpoints/last.safetensors")).unwrap(),
    )
    .unwrap();
    let e = run::resume(a.path(), &quiet())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("different configuration"), "{e}");

    // predict / eval on a damaged model file.
    let bad = a.path().join("bad.safetensors");
    std::fs::write(&bad, [0u8; 64]).unwrap();
    let e = TrainedModel::load(&bad, Weights::Best)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("not a rescnn checkpoint"),
        "{e}"
    );
    let e = TrainedModel::load(&a.path().join("nothing-here"), Weights::Best)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nothing-here") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn resuming_a_folder_that_is_not_a_run_says_so() {
    let dir = temp_dir();
    let e = run::resume(dir.path(), &quiet())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a rescnn run directory"), "{e}");
}
