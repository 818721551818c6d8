//! The recipe's options end to end on the synthetic corpus (CPU): Δ channels, statistics pooling
//! with whole-utterance or crop-averaged evaluation, mixup and label smoothing on soft targets, and
//! the late fusion with the prosody branch, whose reported result must be the fusion of the
//! probabilities the fold writes to `test-predictions.json`; ensembles of seeds, whose reported
//! result must be the average of the members' written probabilities.

mod train_support;

use rescnn::data::EvalTime;
use rescnn::evaluation::predict::argmax;
use rescnn::training::run::{self, RunOutcome};
use rescnn::training::run_dir::TestPredictions;
use rescnn::training::trainer::{RunControl, TestProbabilities};
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
        // Runs already on disk are read back (`rescnn score`, the examples) by these keys, in the
        // order the file has them: a renamed or reordered field would change the file.
        let text = std::fs::read_to_string(dir.path().join("test-predictions.json")).unwrap();
        let at: Vec<usize> = [
            "classes",
            "ids",
            "labels",
            "last",
            "network_last",
            "network_selected",
            "prosody",
            "prosody_l2",
            "prosody_weight",
            "selected",
        ]
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("test-predictions.json has no `{k}`"))
        })
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "key order {at:?}");
        let p = TestPredictions::load(dir.path()).unwrap();
        let (net, pros) = (
            p.network_last,
            p.prosody.expect("the branch's probabilities"),
        );
        let labels = p.labels;
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
        // The report's parts are the written probabilities of each part alone.
        let parts = result
            .parts
            .as_ref()
            .expect("a fused run reports its parts");
        let accuracy = |rows: &[Vec<f64>]| {
            rows.iter()
                .zip(&labels)
                .filter(|(r, &y)| argmax(r) == y)
                .count() as f64
                / labels.len() as f64
        };
        assert!((parts.network.wa - accuracy(&net)).abs() < 1e-12);
        assert!((parts.branch.wa - accuracy(&pros)).abs() < 1e-12);
        assert_eq!(parts.prosody_weight, 0.5);
        for row in [
            "| network alone |",
            "| prosody branch alone |",
            "| fusion at prosody weight 0.5 |",
        ] {
            assert!(
                summary.contains(row),
                "{eval_time}: no {row} row in {summary}"
            );
        }
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

/// A member's `test-probabilities.json`: (corpus index, class probabilities) per test utterance.
fn member_probabilities(dir: &std::path::Path, seed: u64) -> TestProbabilities {
    let path = dir.join(format!("seed-{seed}/test-probabilities.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `--ensemble 2` on a tiny run: two members (seeds 0 and 1) trained in their own folders; the
/// reported ensemble (selected and last weights) is the evaluation of the average of the members'
/// written test probabilities, and each member's reported result is that member's own; member 0
/// is exactly the one-network run of the same configuration; the run's result pools member k over
/// the folds with the members' mean ± std; an ensemble interrupted in its second member resumes
/// to the same result.
#[test]
fn an_ensemble_reports_the_average_of_its_members_probabilities() {
    use rescnn::evaluation::metrics::mean_std;
    use rescnn::evaluation::predict::Predictions;
    use rescnn::training::report::RunResult;
    let mut cfg = tiny_config();
    cfg.iterations = Some(20);
    cfg.ensemble = 2;
    let dir = temp_dir();
    let result = match run::start(&cfg, dir.path(), &RunControl::default()).unwrap() {
        RunOutcome::Complete { result, .. } => *result,
        other => panic!("expected a complete run, got {other:?}"),
    };
    let corpus = rescnn::training::prepare::load_corpus(&cfg).unwrap();
    let fold = &result.folds[0];
    let e = fold.ensemble.as_ref().expect("an ensemble fold");
    assert_eq!(e.seeds, [0, 1]);
    assert_eq!(e.selected.members.len(), 2);
    let members: Vec<TestProbabilities> = e
        .seeds
        .iter()
        .map(|&s| member_probabilities(dir.path(), s))
        .collect();
    let pick = [
        |p: &TestProbabilities| p.selected.clone(),
        |p: &TestProbabilities| p.last.clone(),
    ];
    for (what, pick, reported) in [
        ("selected", pick[0], (&e.selected, &fold.selected)),
        ("last", pick[1], (&e.last, &fold.last)),
    ] {
        let each: Vec<Predictions> = members.iter().map(pick).collect();
        assert_eq!(each[0].len(), fold.test_utterances);
        assert_ne!(
            each[0], each[1],
            "{what}: the seeds trained different members"
        );
        // The average, here, by hand; then accuracy and mean loss of its argmax.
        let (mut correct, mut loss) = (0usize, 0.0f64);
        for (k, (u, p0)) in each[0].iter().enumerate() {
            let (v, p1) = &each[1][k];
            assert_eq!(u, v, "{what}: members in the same utterance order");
            let avg: Vec<f64> = p0.iter().zip(p1).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
            let truth = corpus.utterances[*u].label;
            correct += usize::from(argmax(&avg) == truth);
            loss -= avg[truth].ln();
        }
        let n = each[0].len() as f64;
        let (ensemble, fold_report) = reported;
        assert_eq!(
            &ensemble.ensemble, fold_report,
            "{what}: the fold reports the ensemble"
        );
        // Tolerance 1e-12: the same sums in another order (weights 1/2 applied before or after).
        assert!(
            (ensemble.ensemble.wa - correct as f64 / n).abs() < 1e-12,
            "{what}: reported ensemble WA {} vs averaged probabilities {}",
            ensemble.ensemble.wa,
            correct as f64 / n
        );
        assert!(
            (ensemble.ensemble.loss - loss / n).abs() < 1e-12,
            "{what}: reported ensemble loss {} vs averaged probabilities {}",
            ensemble.ensemble.loss,
            loss / n
        );
        // Each member's reported result is its own folder's.
        for (k, &seed) in e.seeds.iter().enumerate() {
            let own: rescnn::training::run_dir::FoldResult = serde_json::from_str(
                &std::fs::read_to_string(dir.path().join(format!("seed-{seed}/fold.json")))
                    .unwrap(),
            )
            .unwrap();
            let own = if what == "selected" {
                own.selected
            } else {
                own.last
            };
            assert_eq!(ensemble.members[k], own, "{what}: member {seed}");
        }
        let wa: Vec<f64> = ensemble.members.iter().map(|m| m.wa).collect();
        assert_eq!(ensemble.member_wa, mean_std(&wa));
    }
    let run_json: RunResult =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("result.json")).unwrap())
            .unwrap();
    assert_eq!(
        run_json.ensemble.as_ref(),
        Some(e),
        "one fold: the run's ensemble is the fold's"
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("ensemble of 2") && summary.contains("members' mean ± std"),
        "{summary}"
    );

    // Member 0 is the one-network run: same seed, same split, same bits.
    let single = temp_dir();
    let one = rescnn::training::TrainConfig {
        ensemble: 1,
        ..cfg.clone()
    };
    let single_result = match run::start(&one, single.path(), &RunControl::default()).unwrap() {
        RunOutcome::Complete { result, .. } => *result,
        other => panic!("expected a complete run, got {other:?}"),
    };
    assert!(single_result.ensemble.is_none() && single_result.folds[0].ensemble.is_none());
    assert_eq!(single_result.selected, e.selected.members[0]);
    assert_eq!(
        tensor_bits(&last_checkpoint(single.path())),
        tensor_bits(&last_checkpoint(&dir.path().join("seed-0")))
    );

    // Interrupted in a member, then resumed: the same result. Then, with the ensemble's own files
    // gone, the members' saved results and probabilities rebuild it without training.
    let resumed = temp_dir();
    let stop = RunControl {
        stop_at: Some(7),
        ..RunControl::default()
    };
    match run::start(&cfg, resumed.path(), &stop).unwrap() {
        RunOutcome::Interrupted { fold, step, .. } => {
            assert!(fold.contains("seed 0"), "{fold}");
            assert_eq!(step, 7);
        }
        other => panic!("expected an interruption, got {other:?}"),
    }
    for pass in ["resumed", "rebuilt from the members' files"] {
        let again = match run::resume(resumed.path(), &RunControl::default()).unwrap() {
            RunOutcome::Complete { result, .. } => *result,
            other => panic!("{pass}: expected a complete run, got {other:?}"),
        };
        assert_eq!(again.ensemble, result.ensemble, "{pass}");
        assert_eq!(again.selected, result.selected, "{pass}");
        assert_eq!(again.last, result.last, "{pass}");
        for file in ["summary.md", "result.json", "fold.json"] {
            std::fs::remove_file(resumed.path().join(file)).unwrap();
        }
    }
}

/// An ensemble with a prosody branch reports its parts like one network does: the network alone is
/// the evaluation of the members' network probabilities (last weights, from their
/// `test-predictions.json`) averaged, the branch alone is the fold's one branch, and the fold's
/// summary has the parts' rows; `rescnn score` of the run gives the same two figures.
#[test]
fn an_ensemble_with_a_branch_reports_its_networks_averaged_and_the_branch() {
    let mut cfg = recipe_config(EvalTime::Whole);
    cfg.ensemble = 2;
    let dir = temp_dir();
    let result = match run::start(&cfg, dir.path(), &RunControl::default()).unwrap() {
        RunOutcome::Complete { result, .. } => *result,
        other => panic!("expected a complete run, got {other:?}"),
    };
    let parts = result.folds[0]
        .parts
        .as_ref()
        .expect("an ensemble with a branch has parts");
    let members: Vec<TestPredictions> = [0, 1]
        .iter()
        .map(|s| TestPredictions::load(&dir.path().join(format!("seed-{s}"))).unwrap())
        .collect();
    assert_eq!(
        members[0].prosody, members[1].prosody,
        "one branch per fold"
    );
    assert_ne!(members[0].network_last, members[1].network_last);
    let accuracy = |rows: &[Vec<f64>]| {
        let correct = rows
            .iter()
            .zip(&members[0].labels)
            .filter(|(r, &l)| argmax(r) == l)
            .count();
        correct as f64 / rows.len() as f64
    };
    let averaged: Vec<Vec<f64>> = members[0]
        .network_last
        .iter()
        .zip(&members[1].network_last)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.5 * x + 0.5 * y).collect())
        .collect();
    // Tolerance 1e-12: the same WA from the same argmaxes (the mean computed in another order).
    assert!((parts.network.wa - accuracy(&averaged)).abs() < 1e-12);
    let branch = members[0].prosody.as_ref().unwrap();
    assert!((parts.branch.wa - accuracy(branch)).abs() < 1e-12);
    assert_eq!(parts.prosody_weight, 0.5);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("| network alone |") && summary.contains("| prosody branch alone |"),
        "{summary}"
    );
    let scored = rescnn_ok(["score".as_ref(), dir.path().as_os_str()]);
    let scored = String::from_utf8_lossy(&scored.stdout);
    // score prints WA to two decimals: compare at that precision.
    for (row, wa) in [
        ("| network alone |", parts.network.wa),
        ("| prosody branch alone |", parts.branch.wa),
    ] {
        let line = scored.lines().find(|l| l.starts_with(row)).unwrap();
        let printed = line.split('|').nth(2).unwrap().trim();
        assert_eq!(printed, format!("{:.2}", 100.0 * wa), "{line}");
    }
}
