//! The run report. Each fold's folder gets `fold.json` (its result), `confusion.svg` (selected
//! weights), `confusion-last.svg`, `accuracy.svg` and `loss.svg` (training curves) and
//! `summary.md`; the run's folder gets `result.json` (the run's result, pooled over its folds) and,
//! for more than one fold, a top-level `summary.md` with the per-fold table, mean ± std and the
//! pooled confusion matrix, beside its own `confusion.svg` and `confusion-last.svg`. A single
//! split's run folder is its fold's folder. (A sweep's table is [`super::sweep`]'s.)
//!
//! `summary.md` is always the last file written, atomically: a directory with a summary is a
//! finished run (`STATUS` says where an unfinished one stands).

use std::path::Path;

use serde::Serialize;

use super::config::TrainConfig;
use super::plots::{confusion_svg, curves};
use super::run_dir::{files, FoldResult, MetricsLine};
use crate::data::Corpus;
use crate::evaluation::metrics::EvalReport;
use crate::fsutil::write_atomic;
use crate::Result;

mod markdown;
mod result;

pub use markdown::{eval_tables, pct};
pub use result::{pool, run_result, Provenance, RunResult};

fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).expect("report serialises");
    s.push('\n');
    s.into_bytes()
}

/// `confusion.svg` (the selected weights) and `confusion-last.svg` of a fold's or a run's result,
/// each `(title, evaluation)`.
fn write_confusions(
    dir: &Path,
    corpus: &Corpus,
    selected: (&str, &EvalReport),
    last: (&str, &EvalReport),
) -> Result<()> {
    let names: Vec<&str> = corpus.classes.iter().map(String::as_str).collect();
    for (file, (title, report)) in [("confusion.svg", selected), ("confusion-last.svg", last)] {
        write_atomic(
            &dir.join(file),
            confusion_svg(title, &report.confusion, &names).as_bytes(),
        )?;
    }
    Ok(())
}

/// A fold's report files; `summary.md` last.
pub fn write_fold_report(
    dir: &Path,
    cfg: &TrainConfig,
    corpus: &Corpus,
    r: &FoldResult,
    metrics: &[MetricsLine],
) -> Result<()> {
    write_confusions(
        dir,
        corpus,
        (
            &format!(
                "{}: test, selected weights (step {})",
                r.name, r.selected_step
            ),
            &r.selected,
        ),
        (
            &format!("{}: test, last weights (step {})", r.name, r.last_step),
            &r.last,
        ),
    )?;
    let (acc, loss) = curves(metrics, &r.name);
    write_atomic(&dir.join("accuracy.svg"), acc.as_bytes())?;
    write_atomic(&dir.join("loss.svg"), loss.as_bytes())?;
    write_atomic(&dir.join(files::FOLD_RESULT), &json_bytes(r))?;

    write_atomic(
        &dir.join(files::SUMMARY),
        markdown::fold_summary(cfg, corpus, r).as_bytes(),
    )
}

/// The report of a fold trained as an ensemble (`r.ensemble` set; `members` the members' own
/// results, whose folders hold their curves, checkpoints and reports); `summary.md` last.
pub fn write_ensemble_fold_report(
    dir: &Path,
    cfg: &TrainConfig,
    corpus: &Corpus,
    r: &FoldResult,
    members: &[FoldResult],
) -> Result<()> {
    let e = r
        .ensemble
        .as_ref()
        .expect("an ensemble fold's result has its ensemble");
    let title = |what: &str| {
        format!(
            "{}: test, ensemble of {} ({what} weights)",
            r.name,
            e.seeds.len()
        )
    };
    write_confusions(
        dir,
        corpus,
        (&title("selected"), &r.selected),
        (&title("last"), &r.last),
    )?;
    write_atomic(&dir.join(files::FOLD_RESULT), &json_bytes(r))?;
    write_atomic(
        &dir.join(files::SUMMARY),
        markdown::ensemble_fold_summary(cfg, corpus, r, members).as_bytes(),
    )
}

/// The top-level report of a multi-fold (leave-one-speaker-out) run; `summary.md` last.
pub fn write_multi_fold_report(
    dir: &Path,
    cfg: &TrainConfig,
    corpus: &Corpus,
    r: &RunResult,
) -> Result<()> {
    let folds = r.folds.len();
    write_confusions(
        dir,
        corpus,
        (
            &format!("{folds} folds pooled: test, selected weights"),
            &r.selected,
        ),
        (
            &format!("{folds} folds pooled: test, last weights"),
            &r.last,
        ),
    )?;
    write_run_result(dir, r)?;
    write_atomic(
        &dir.join(files::SUMMARY),
        markdown::multi_fold_summary(cfg, corpus, r).as_bytes(),
    )
}

/// Write the run-level `result.json`.
pub fn write_run_result(dir: &Path, r: &RunResult) -> Result<()> {
    write_atomic(&dir.join(files::RESULT), &json_bytes(r))
}
