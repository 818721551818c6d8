//! `rescnn score RUN_DIR`: re-score a finished run from the test probabilities its folds saved
//! (`test-predictions.json`: the network's last weights and, with `--prosody`, the prosody branch
//! alone), without retraining. One run then gives the network alone, the prosody branch alone and
//! their fusion at the run's own weight, pooled over folds and as per-fold mean ± std: the prosody
//! ablation rows. Extra `--weight` values are marked "post hoc" in the output, because a weight
//! picked by looking at these numbers has been selected on the test speakers. A fold of an
//! `--ensemble K` run is scored as the mean of its members' (`seed-N/`) network probabilities.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::evaluation::metrics::{mean_std, EvalReport, Evaluator};
use crate::evaluation::predict::argmax;
use crate::training::report::{eval_tables, pool};
use crate::training::run_dir::{files, member_dirs, TestPredictions};
use crate::{config_err, Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run directory of rescnn-train: its fold folders (or the run itself, for one split) hold
    /// test-predictions.json.
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Also score the fusion at these prosody weights in [0, 1] (reported as post hoc).
    #[arg(long = "weight", value_name = "W")]
    pub weights: Vec<f64>,
    /// Print per-class recall and the pooled confusion matrix of the run's own fusion (or of the
    /// network alone, for a run without a prosody branch).
    #[arg(long)]
    pub confusion: bool,
}

#[derive(Debug)]
struct Fold {
    name: String,
    p: TestPredictions,
}

const PREDICTIONS: &str = files::TEST_PREDICTIONS;

/// The folds of `run`, in name order: its sub-folders holding predictions, or `run` itself.
fn load_folds(run: &Path) -> Result<Vec<Fold>> {
    let read = |dir: &Path, name: String| -> Result<Fold> {
        let path = dir.join(PREDICTIONS);
        let p = TestPredictions::load(dir)?;
        let rows_ok = |rows: &[Vec<f64>]| {
            rows.len() == p.labels.len() && rows.iter().all(|r| r.len() == p.classes.len())
        };
        let labels_ok = p.labels.iter().all(|&l| l < p.classes.len());
        if !rows_ok(&p.network_last) || !p.prosody.as_deref().is_none_or(rows_ok) || !labels_ok {
            return Err(config_err!(
                "{}: every utterance needs one probability per class ({}) and a label below it",
                path.display(),
                p.classes.len()
            ));
        }
        Ok(Fold { name, p })
    };
    // A fold of `--ensemble K` keeps its members' predictions in `seed-N/`: the fold's
    // network probabilities are their mean (what the trainer reports for the ensemble), and the
    // prosody branch, a function of the fold alone, is the same in every member.
    let read_fold = |dir: &Path, name: String| -> Result<Fold> {
        let members = ensemble_members(dir);
        if dir.join(PREDICTIONS).is_file() || members.is_empty() {
            return read(dir, name);
        }
        let folds: Vec<Fold> = members
            .iter()
            .map(|m| read(m, name.clone()))
            .collect::<Result<_>>()?;
        let first = &folds[0].p;
        if folds.iter().any(|f| {
            f.p.labels != first.labels
                || f.p.classes != first.classes
                || f.p.prosody != first.prosody
        }) {
            return Err(config_err!(
                "{}: its ensemble members (seed-*/) disagree on the test labels, classes or prosody \
                 branch",
                dir.display()
            ));
        }
        let k = folds.len() as f64;
        let mut mean = vec![vec![0.0; first.classes.len()]; first.labels.len()];
        for f in &folds {
            for (m, row) in mean.iter_mut().zip(&f.p.network_last) {
                for (a, b) in m.iter_mut().zip(row) {
                    *a += b / k;
                }
            }
        }
        let mut fold = folds.into_iter().next().expect("at least one member");
        fold.p.network_last = mean;
        Ok(fold)
    };
    if run.join(PREDICTIONS).is_file() || !ensemble_members(run).is_empty() {
        return Ok(vec![read_fold(run, run.display().to_string())?]);
    }
    let entries = std::fs::read_dir(run).map_err(|e| Error::io(run, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(PREDICTIONS).is_file() || !ensemble_members(p).is_empty())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(config_err!(
            "{}: no {PREDICTIONS} in it or in its sub-folders (is it a finished rescnn-train run?)",
            run.display()
        ));
    }
    let folds: Vec<Fold> = dirs
        .iter()
        .map(|d| {
            read_fold(
                d,
                d.file_name().unwrap_or_default().to_string_lossy().into(),
            )
        })
        .collect::<Result<_>>()?;
    if folds.iter().any(|f| f.p.classes != folds[0].p.classes) {
        return Err(config_err!(
            "{}: the folds do not share one class list",
            run.display()
        ));
    }
    Ok(folds)
}

/// The `seed-N/` sub-folders of `dir` holding predictions, in seed order.
fn ensemble_members(dir: &Path) -> Vec<PathBuf> {
    member_dirs(dir, |p| p.join(PREDICTIONS).is_file())
}

/// What to score: the network alone, the prosody branch alone, or their fusion at weight w.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    Network,
    Prosody,
    Fusion(f64),
}

/// One fold's evaluation of `source`; None when the fold has no prosody branch and it is needed.
fn evaluate(fold: &Fold, source: Source) -> Option<EvalReport> {
    let p = &fold.p;
    let mut ev = Evaluator::new(p.classes.len());
    for (u, &truth) in p.labels.iter().enumerate() {
        let net = &p.network_last[u];
        let probs: Vec<f64> = match source {
            Source::Network => net.clone(),
            Source::Prosody => p.prosody.as_ref()?[u].clone(),
            Source::Fusion(w) => {
                let pro = &p.prosody.as_ref()?[u];
                net.iter()
                    .zip(pro)
                    .map(|(a, b)| (1.0 - w) * a + w * b)
                    .collect()
            }
        };
        let loss = -probs[truth].max(1e-300).ln();
        ev.add(truth, argmax(&probs), &fold.name, loss);
    }
    Some(ev.finish())
}

/// A scored source: pooled over folds, and per-fold WA and UAR.
struct Scored {
    pooled: EvalReport,
    wa: (f64, f64),
    uar: (f64, f64),
}

fn score(folds: &[Fold], source: Source) -> Option<Scored> {
    let reports: Vec<EvalReport> = folds
        .iter()
        .map(|f| evaluate(f, source))
        .collect::<Option<_>>()?;
    let pct = |v: Vec<f64>| {
        let (m, s) = mean_std(&v);
        (100.0 * m, 100.0 * s)
    };
    Some(Scored {
        pooled: pool(&reports.iter().collect::<Vec<_>>()),
        wa: pct(reports.iter().map(|r| r.wa).collect()),
        uar: pct(reports.iter().map(|r| r.uar).collect()),
    })
}

/// The markdown report `rescnn score` prints.
fn render(run: &Path, folds: &[Fold], extra: &[f64], confusion: bool) -> Result<String> {
    if let Some(w) = extra.iter().find(|w| !(0.0..=1.0).contains(*w)) {
        return Err(config_err!(
            "--weight {w}: a prosody weight must be in [0, 1]"
        ));
    }
    let run_weight = folds[0].p.prosody_weight;
    let has_prosody = folds.iter().all(|f| f.p.prosody.is_some());
    let mut rows: Vec<(String, Source)> = vec![("network alone".into(), Source::Network)];
    if has_prosody {
        rows.push(("prosody branch alone".into(), Source::Prosody));
        rows.push((
            format!("fusion at the run's weight {run_weight}"),
            Source::Fusion(run_weight),
        ));
        for &w in extra {
            rows.push((
                format!("fusion at weight {w} (post hoc)"),
                Source::Fusion(w),
            ));
        }
    } else if !extra.is_empty() {
        return Err(config_err!(
            "--weight: {} has no prosody branch predictions (train with --prosody W)",
            run.display()
        ));
    }
    let utterances: usize = folds.iter().map(|f| f.p.labels.len()).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} folds, {utterances} test utterances (last weights)\n",
        run.display(),
        folds.len()
    );
    let _ = writeln!(
        out,
        "| scored | WA (%) | UAR (%) | macro-F1 (%) | per fold WA (%) | per fold UAR (%) |\n|---|---|---|---|---|---|"
    );
    let mut shown = None;
    for (label, source) in &rows {
        let s = score(folds, *source).expect("prosody rows only when every fold has them");
        let _ = writeln!(
            out,
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} ± {:.2} | {:.2} ± {:.2} |",
            100.0 * s.pooled.wa,
            100.0 * s.pooled.uar,
            100.0 * s.pooled.macro_f1,
            s.wa.0,
            s.wa.1,
            s.uar.0,
            s.uar.1
        );
        let is_runs_own = *source == Source::Fusion(run_weight) || !has_prosody;
        if is_runs_own && shown.is_none() {
            shown = Some((label.clone(), s.pooled));
        }
    }
    if confusion {
        let (label, report) = shown.expect("the network row is always there");
        let _ = writeln!(out, "\nPooled over folds, {label}:\n");
        eval_tables(&mut out, &report, &folds[0].p.classes);
    }
    Ok(out)
}

pub fn run(args: &Args) -> Result<()> {
    let folds = load_folds(&args.run)?;
    print!(
        "{}",
        render(&args.run, &folds, &args.weights, args.confusion)?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_fold(dir: &Path, labels: &[usize], net: &[[f64; 2]], pro: &[[f64; 2]], w: f64) {
        std::fs::create_dir_all(dir).unwrap();
        let rows = |r: &[[f64; 2]]| r.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
        TestPredictions {
            classes: vec!["a".into(), "b".into()],
            ids: (0..labels.len()).map(|i| format!("u{i}")).collect(),
            labels: labels.to_vec(),
            last: rows(net),
            network_last: rows(net),
            network_selected: rows(net),
            prosody: Some(rows(pro)),
            prosody_l2: Some(1.0),
            prosody_weight: w,
            selected: rows(net),
        }
        .save(dir)
        .unwrap();
    }

    /// Two folds worked by hand. Fold 1: truth a, a; the network says b, a (1 of 2), prosody
    /// a, a (2 of 2); fused at 0.5 the first is (0.65, 0.35) → a. Fold 2: truth b; the network
    /// says b, prosody a; fused (0.45, 0.55) → b. So pooled WA: network 2/3, prosody 2/3, fusion 3/3.
    #[test]
    fn pools_network_prosody_and_fusion_over_folds() {
        let run = tempfile::tempdir().unwrap();
        write_fold(
            &run.path().join("fold1"),
            &[0, 0],
            &[[0.4, 0.6], [0.9, 0.1]],
            &[[0.9, 0.1], [0.8, 0.2]],
            0.5,
        );
        write_fold(
            &run.path().join("fold2"),
            &[1],
            &[[0.2, 0.8]],
            &[[0.7, 0.3]],
            0.5,
        );
        let folds = load_folds(run.path()).unwrap();
        assert_eq!(folds.len(), 2);
        let wa = |s: Source| score(&folds, s).unwrap().pooled.wa;
        assert!((wa(Source::Network) - 2.0 / 3.0).abs() < 1e-12);
        assert!((wa(Source::Prosody) - 2.0 / 3.0).abs() < 1e-12);
        assert!((wa(Source::Fusion(0.5)) - 1.0).abs() < 1e-12);
        // UAR of the network: class a recall 1/2, class b 1/1.
        assert!((score(&folds, Source::Network).unwrap().pooled.uar - 0.75).abs() < 1e-12);
        // Per fold WA of the network: 50 % and 100 % → mean 75, sample std √0.125·100.
        let s = score(&folds, Source::Network).unwrap();
        assert!((s.wa.0 - 75.0).abs() < 1e-9 && (s.wa.1 - 100.0 * 0.125f64.sqrt()).abs() < 1e-9);
        // At w = 0.9 the fusion gives the true class 0.1·0.4 + 0.9·0.9, 0.1·0.9 + 0.9·0.8 and
        // 0.1·0.8 + 0.9·0.3: the mean loss tells the weights' sides apart where argmax ties.
        let loss = score(&folds, Source::Fusion(0.9)).unwrap().pooled.loss;
        let expected = -(0.85f64.ln() + 0.81f64.ln() + 0.35f64.ln()) / 3.0;
        assert!((loss - expected).abs() < 1e-12, "{loss} vs {expected}");
        let text = render(run.path(), &folds, &[0.9], true).unwrap();
        assert!(text.contains("fusion at weight 0.9 (post hoc)"), "{text}");
        assert!(
            text.contains("Pooled over folds, fusion at the run's weight 0.5"),
            "{text}"
        );
    }

    /// An ensemble fold (`seed-N/` members, no fold-level file) scores the mean of its members'
    /// network probabilities: here two members that are each wrong on one utterance and right
    /// on average on both; members that disagree on the labels are refused.
    #[test]
    fn ensemble_folds_score_their_members_mean() {
        let run = tempfile::tempdir().unwrap();
        let fold = run.path().join("fold-01-03");
        write_fold(
            &fold.join("seed-0"),
            &[0, 1],
            &[[0.9, 0.1], [0.6, 0.4]],
            &[[0.5, 0.5]; 2],
            0.5,
        );
        write_fold(
            &fold.join("seed-1"),
            &[0, 1],
            &[[0.4, 0.6], [0.1, 0.9]],
            &[[0.5, 0.5]; 2],
            0.5,
        );
        let folds = load_folds(run.path()).unwrap();
        assert_eq!(folds.len(), 1);
        let want = [[0.65, 0.35], [0.35, 0.65]];
        for (row, w) in folds[0].p.network_last.iter().zip(want) {
            for (a, b) in row.iter().zip(w) {
                // f64 mean of two values: exact to rounding.
                assert!((a - b).abs() < 1e-12, "{row:?} vs {w:?}");
            }
        }
        assert!((score(&folds, Source::Network).unwrap().pooled.wa - 1.0).abs() < 1e-12);
        write_fold(
            &fold.join("seed-2"),
            &[1, 1],
            &[[0.5, 0.5]; 2],
            &[[0.5, 0.5]; 2],
            0.5,
        );
        let e = load_folds(run.path()).unwrap_err().to_string();
        assert!(e.contains("ensemble members"), "{e}");
    }

    #[test]
    fn bad_runs_and_weights_are_refused_by_name() {
        let run = tempfile::tempdir().unwrap();
        let e = load_folds(run.path()).unwrap_err().to_string();
        assert!(e.contains("no test-predictions.json"), "{e}");
        write_fold(
            &run.path().join("f"),
            &[0, 5],
            &[[0.5, 0.5]; 2],
            &[[0.5, 0.5]; 2],
            0.5,
        );
        let e = load_folds(run.path()).unwrap_err().to_string();
        assert!(
            e.contains("test-predictions.json") && e.contains("label"),
            "{e}"
        );
        let run = tempfile::tempdir().unwrap();
        write_fold(
            &run.path().join("f"),
            &[0],
            &[[0.5, 0.5]],
            &[[0.5, 0.5]],
            0.5,
        );
        let folds = load_folds(run.path()).unwrap();
        let e = render(run.path(), &folds, &[1.5], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--weight 1.5"), "{e}");
    }
}
