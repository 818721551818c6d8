//! The recipe's options end to end on the synthetic corpus (CPU): Δ channels, statistics pooling
//! with whole-utterance or crop-averaged evaluation, mixup and label smoothing on soft targets, and
//! the late fusion with the prosody branch, whose reported result must be the fusion of the
//! probabilities the fold writes to `test-predictions.json`.

mod train_support;

use rescnn::data::EvalTime;
use rescnn::training::inference::argmax;
use rescnn::training::run::{self, RunOutcome};
use rescnn::training::trainer::RunControl;
use train_support::*;

fn recipe_config(eval_time: EvalTime) -> rescnn::training::TrainConfig {
    let mut cfg = tiny_config();
    cfg.arch = "c8k3 bn p2 +0 c16k3 bn p2 +0 stats drop0.2 fc16".into();
    cfg.spectrogram.image.delta_window = 2;
    cfg.spectrogram.image.width = 64; // crops of 0.64 s of ~1.2 s utterances
    cfg.eval_time = eval_time;
    cfg.mixup_alpha = 0.4;
    cfg.label_smoothing = 0.1;
    cfg.prosody_weight = 0.5;
    cfg.iterations = Some(20);
    cfg
}

#[test]
fn fused_results_are_the_fusion_of_the_written_probabilities() {
    for eval_time in [EvalTime::Whole, EvalTime::Crops] {
        let cfg = recipe_config(eval_time);
        let dir = temp_dir();
        let result = match run::start(&cfg, dir.path(), &RunControl::default()).unwrap() {
            RunOutcome::Complete { result, .. } => *result,
            other => panic!("{eval_time}: expected a complete run, got {other:?}"),
        };
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(
            summary.contains("Δ and ΔΔ") && summary.contains("late fusion with the prosody branch"),
            "{summary}"
        );
        let wanted = match eval_time {
            EvalTime::Whole => "each whole utterance in one image",
            _ => "mean class probabilities over crops of 64 frames every 32 frames",
        };
        assert!(summary.contains(wanted), "{eval_time}: {summary}");
        let p: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("test-predictions.json")).unwrap(),
        )
        .unwrap();
        let rows = |k: &str| -> Vec<Vec<f64>> { serde_json::from_value(p[k].clone()).unwrap() };
        let (net, pros) = (rows("network_last"), rows("prosody"));
        let labels: Vec<usize> = serde_json::from_value(p["labels"].clone()).unwrap();
        assert_eq!(net.len(), result.last.confusion.total() as usize);
        let mut correct = 0;
        for ((a, b), &y) in net.iter().zip(&pros).zip(&labels) {
            // Tolerance 1e-9: probabilities written with f64 round-trip precision.
            assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!((b.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let fused: Vec<f64> = a.iter().zip(b).map(|(x, y)| 0.5 * x + 0.5 * y).collect();
            correct += usize::from(argmax(&fused) == y);
        }
        let wa = correct as f64 / labels.len() as f64;
        assert!(
            (wa - result.last.wa).abs() < 1e-12,
            "{eval_time}: reported last WA {} vs fused predictions {wa}",
            result.last.wa
        );
    }
}

#[test]
fn bad_recipe_settings_are_refused_with_their_names() {
    let mut cfg = recipe_config(EvalTime::Crops);
    cfg.spectrogram.image.time_axis = rescnn::features::TimeAxis::Whole;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("eval_time") && e.contains("fixed"), "{e}");
    let mut cfg = recipe_config(EvalTime::Crops);
    cfg.prosody_weight = 1.5;
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("prosody_weight"));
    let mut cfg = recipe_config(EvalTime::Crops);
    cfg.label_smoothing = 1.0;
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("label_smoothing"));
    let mut cfg = recipe_config(EvalTime::Crops);
    cfg.mixup_alpha = -1.0;
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("mixup_alpha"));
}
