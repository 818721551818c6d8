//! The markdown of the run report: each `summary.md` and the tables in it.

use std::fmt::Write as _;

use super::result::{Provenance, RunResult};
use crate::data::Corpus;
use crate::evaluation::ensemble::EnsembleResult;
use crate::evaluation::metrics::{mean_std, EvalReport};
use crate::training::config::TrainConfig;
use crate::training::run_dir::{FoldResult, Parts};

pub fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

/// Markdown tables of one evaluation: per-class recall, confusion (counts and row %), per speaker.
pub fn eval_tables(out: &mut String, report: &EvalReport, classes: &[String]) {
    let c = &report.confusion;
    let _ = writeln!(
        out,
        "| class | recall (%) | F1 (%) | utterances |\n|---|---|---|---|"
    );
    for (k, name) in classes.iter().enumerate() {
        let recall = report.per_class_recall[k].map_or("–".to_string(), pct);
        let _ = writeln!(
            out,
            "| {name} | {recall} | {} | {} |",
            pct(c.f1(k)),
            c.support(k)
        );
    }
    let _ = writeln!(
        out,
        "\nConfusion matrix (rows: true class, columns: predicted; count and row %):\n"
    );
    let _ = write!(out, "| true \\ predicted |");
    for name in classes {
        let _ = write!(out, " {name} |");
    }
    let _ = write!(out, "\n|---|");
    for _ in classes {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    let rows = c.row_percentages();
    for (t, name) in classes.iter().enumerate() {
        let _ = write!(out, "| **{name}** |");
        for (p, row_pct) in rows[t].iter().enumerate() {
            let _ = write!(out, " {} ({row_pct:.1} %) |", c.count(t, p));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\n| speaker | correct / total | accuracy (%) |\n|---|---|---|"
    );
    for (s, (ok, total)) in &report.per_speaker {
        let _ = writeln!(
            out,
            "| {s} | {ok} / {total} | {} |",
            pct(*ok as f64 / (*total).max(1) as f64)
        );
    }
}

fn metrics_row(out: &mut String, what: &str, step: u64, r: &EvalReport) {
    let _ = writeln!(
        out,
        "| {what} | {step} | {} | {} | {} | {:.4} |",
        pct(r.wa),
        pct(r.uar),
        pct(r.macro_f1),
        r.loss
    );
}

fn header(out: &mut String, title: &str, cfg: &TrainConfig, corpus: &Corpus) {
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(out, "```text\n{}\n```\n", corpus.summary());
    let (c, h, w) = cfg.spectrogram.input_shape();
    let spec = crate::model::ArchSpec::from_name_or_spec(&cfg.arch)
        .map(|s| s.text().to_string())
        .unwrap_or_else(|_| cfg.arch.clone());
    let length = match (cfg.iterations, cfg.epochs) {
        (Some(n), _) => format!("{n} iterations"),
        (None, Some(e)) => format!("{e} epochs"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "- network: `{}` = `{spec}`\n- input: {c}×{h}×{w} ({} spectrogram, {} time axis)\n\
         - protocol: {}; seed {}\n- training: {length}, batch {}, {}, augmentation {}, \
         class-balanced sampling {}\n- model selection: best validation {:?} (never the test set)",
        cfg.arch,
        cfg.spectrogram.image.colormap.name(),
        match cfg.spectrogram.image.time_axis {
            crate::features::TimeAxis::Whole => "whole-utterance",
            crate::features::TimeAxis::Fixed => "fixed-resolution",
        },
        cfg.protocol,
        cfg.seed,
        cfg.batch,
        cfg.optimizer.describe(),
        if cfg.augment == crate::data::AugmentConfig::none() {
            "off"
        } else {
            "on"
        },
        if cfg.balanced { "on" } else { "off" },
        cfg.select_by
    );
    let delta = match cfg.spectrogram.image.delta_window {
        0 => String::new(),
        n => format!(" with Δ and ΔΔ channels (±{n} frames)"),
    };
    let evaluation = match cfg.eval_time {
        crate::data::EvalTime::First => "the image as training draws it (no averaging)".to_string(),
        crate::data::EvalTime::Whole => "each whole utterance in one image".to_string(),
        crate::data::EvalTime::Crops => format!(
            "mean class probabilities over crops of {} frames every {} frames",
            cfg.spectrogram.image.width,
            if cfg.eval_hop == 0 {
                (cfg.spectrogram.image.width / 2).max(1)
            } else {
                cfg.eval_hop
            }
        ),
    };
    let prosody = if cfg.prosody_weight > 0.0 {
        format!(
            "; late fusion with the prosody branch at weight {} (logistic regression on the {} prosody vector, {} normalisation)",
            cfg.prosody_weight, cfg.prosody_set, cfg.input_norm
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "- input normalisation: {}{delta}
- evaluation: {evaluation}{prosody}",
        cfg.input_norm
    );
}

fn provenance_lines(out: &mut String, p: &Provenance) {
    let _ = writeln!(
        out,
        "- device: {}\n- {}\n- wall time: {:.1} s; {:.1} training images/s",
        p.device, p.rescnn, p.wall_s, p.images_per_s
    );
}

/// The opening of a fold's `summary.md` (one network's or an ensemble's): title, settings,
/// provenance and the split's sizes.
fn fold_header(cfg: &TrainConfig, corpus: &Corpus, r: &FoldResult) -> String {
    let mut out = String::new();
    header(
        &mut out,
        &format!("rescnn: {} ({})", cfg.label(), r.name),
        cfg,
        corpus,
    );
    provenance_lines(
        &mut out,
        &Provenance {
            rescnn: crate::training::checkpoint::version_string(),
            device: r.device.clone(),
            wall_s: r.wall_s,
            images_per_s: r.images_per_s,
        },
    );
    let _ = writeln!(
        out,
        "- utterances: train {}, validation {}, test {} (test speakers: {})\n",
        r.train_utterances,
        r.val_utterances,
        r.test_utterances,
        r.test_speakers.join(", ")
    );
    out
}

/// A fold's `summary.md`.
pub(super) fn fold_summary(cfg: &TrainConfig, corpus: &Corpus, r: &FoldResult) -> String {
    let mut out = fold_header(cfg, corpus, r);
    fold_results(&mut out, r, &corpus.classes);
    let _ = writeln!(
        out,
        "\nFigures: `confusion.svg` (selected), `confusion-last.svg`, `accuracy.svg`, `loss.svg`. \
         Data: `metrics.jsonl` (one line per validation), `split.json`, `result.json`; \
         checkpoints in `checkpoints/` (`best` = selected, `last` = resumable)."
    );
    out
}

fn fold_results(out: &mut String, r: &FoldResult, classes: &[String]) {
    let _ = writeln!(out, "## Test results\n");
    if let Some(b) = &r.selected_val {
        let _ = writeln!(
            out,
            "Selected: step {} (validation WA {} %, UAR {} %, loss {:.4}).\n",
            b.step,
            pct(b.val_wa),
            pct(b.val_uar),
            b.val_loss
        );
    } else {
        let _ = writeln!(
            out,
            "No validation set: the selected weights are the last.\n"
        );
    }
    let _ = writeln!(
        out,
        "| weights | step | WA (%) | UAR (%) | macro-F1 (%) | loss |\n|---|---|---|---|---|---|"
    );
    metrics_row(
        out,
        "selected (best validation)",
        r.selected_step,
        &r.selected,
    );
    metrics_row(out, "last", r.last_step, &r.last);
    if let Some(parts) = &r.parts {
        parts_table(out, parts, &r.last, None);
    }
    let _ = writeln!(out, "\n### Selected weights\n");
    eval_tables(out, &r.selected, classes);
    let _ = writeln!(out, "\n### Last weights\n");
    eval_tables(out, &r.last, classes);
}

/// The rows of a fused model's parts beside their fusion (`fused`, the last weights): WA, UAR and
/// macro-F1 of each, and with `per_fold` their mean ± std over the folds.
fn parts_table(out: &mut String, parts: &Parts, fused: &EvalReport, per_fold: Option<&[&Parts]>) {
    let _ = writeln!(
        out,
        "
## The fused model's parts (last weights)

| model | WA (%) | UAR (%) | macro-F1 (%) |          per fold WA / UAR (%) |
|---|---|---|---|---|"
    );
    let spread = |pick: &dyn Fn(&Parts) -> &EvalReport| -> String {
        match per_fold {
            Some(folds) if folds.len() > 1 => {
                let (wm, ws) = mean_std(&folds.iter().map(|p| pick(p).wa).collect::<Vec<_>>());
                let (um, us) = mean_std(&folds.iter().map(|p| pick(p).uar).collect::<Vec<_>>());
                format!("{} ± {} / {} ± {}", pct(wm), pct(ws), pct(um), pct(us))
            }
            _ => "–".into(),
        }
    };
    let rows: [(String, &EvalReport, String); 3] = [
        (
            format!("fusion at prosody weight {}", parts.prosody_weight),
            fused,
            "–".into(),
        ),
        (
            "network alone".into(),
            &parts.network,
            spread(&|p| &p.network),
        ),
        (
            "prosody branch alone".into(),
            &parts.branch,
            spread(&|p| &p.branch),
        ),
    ];
    for (what, r, folds) in rows {
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {folds} |",
            pct(r.wa),
            pct(r.uar),
            pct(r.macro_f1)
        );
    }
}

/// The ensemble's, each member's and the members' mean ± std test results, selected and last
/// weights, as one table.
fn ensemble_table(out: &mut String, e: &EnsembleResult, member_steps: Option<&[u64]>) {
    let _ = writeln!(
        out,
        "| weights | model | WA (%) | UAR (%) | macro-F1 (%) | loss |\n|---|---|---|---|---|---|"
    );
    for (what, r) in [
        ("selected (each member's best validation)", &e.selected),
        ("last", &e.last),
    ] {
        let x = &r.ensemble;
        let _ = writeln!(
            out,
            "| {what} | **ensemble of {}** | **{}** | **{}** | {} | {:.4} |",
            e.seeds.len(),
            pct(x.wa),
            pct(x.uar),
            pct(x.macro_f1),
            x.loss
        );
        for (k, (m, seed)) in r.members.iter().zip(&e.seeds).enumerate() {
            let step = match (what, member_steps) {
                ("last", _) | (_, None) => String::new(),
                (_, Some(steps)) => format!(" (step {})", steps[k]),
            };
            let _ = writeln!(
                out,
                "| | seed {seed}{step} | {} | {} | {} | {:.4} |",
                pct(m.wa),
                pct(m.uar),
                pct(m.macro_f1),
                m.loss
            );
        }
        let _ = writeln!(
            out,
            "| | members' mean ± std | {} ± {} | {} ± {} | | |",
            pct(r.member_wa.0),
            pct(r.member_wa.1),
            pct(r.member_uar.0),
            pct(r.member_uar.1)
        );
    }
}

/// The `summary.md` of a fold trained as an ensemble (`members`: the members' own results).
pub(super) fn ensemble_fold_summary(
    cfg: &TrainConfig,
    corpus: &Corpus,
    r: &FoldResult,
    members: &[FoldResult],
) -> String {
    let e = r
        .ensemble
        .as_ref()
        .expect("an ensemble fold's result has its ensemble");
    let mut out = fold_header(cfg, corpus, r);
    let _ = writeln!(
        out,
        "## Test results: ensemble of {} networks\n\nEach member trains on this split from its own \
         seed (weights, data order, augmentation) in its own folder (`seed-N/`, with its own report, \
         curves and checkpoints) and selects its own weights on the validation set; the ensemble \
         averages the members' class probabilities per test utterance.\n",
        e.seeds.len()
    );
    let steps: Vec<u64> = members.iter().map(|m| m.selected_step).collect();
    ensemble_table(&mut out, e, Some(&steps));
    if let Some(parts) = &r.parts {
        parts_table(&mut out, parts, &r.last, None);
    }
    let _ = writeln!(out, "\n### Ensemble, selected weights\n");
    eval_tables(&mut out, &r.selected, &corpus.classes);
    let _ = writeln!(out, "\n### Ensemble, last weights\n");
    eval_tables(&mut out, &r.last, &corpus.classes);
    let _ = writeln!(
        out,
        "\nFigures: `confusion.svg` (ensemble, selected), `confusion-last.svg`. Data: `split.json`, \
         `fold.json`; each member's folder has its `test-probabilities.json`."
    );
    out
}

/// The top-level `summary.md` of a multi-fold (leave-one-speaker-out) run.
pub(super) fn multi_fold_summary(cfg: &TrainConfig, corpus: &Corpus, r: &RunResult) -> String {
    let mut out = String::new();
    header(
        &mut out,
        &format!("rescnn: {} ({})", cfg.label(), cfg.protocol),
        cfg,
        corpus,
    );
    provenance_lines(&mut out, &r.provenance);
    let _ = writeln!(
        out,
        "\n## Per fold (test speaker never trained on; selected on validation speakers)\n"
    );
    let _ = writeln!(
        out,
        "| fold | test speakers | test utt. | selected step | WA (%) | UAR (%) | macro-F1 (%) | last WA (%) | last UAR (%) |\n|---|---|---|---|---|---|---|---|---|"
    );
    for f in &r.folds {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f.name,
            f.test_speakers.join(","),
            f.test_utterances,
            if f.ensemble.is_some() {
                "per member".to_string()
            } else {
                f.selected_step.to_string()
            },
            pct(f.selected.wa),
            pct(f.selected.uar),
            pct(f.selected.macro_f1),
            pct(f.last.wa),
            pct(f.last.uar)
        );
    }
    let last_wa: Vec<f64> = r.folds.iter().map(|f| f.last.wa).collect();
    let last_uar: Vec<f64> = r.folds.iter().map(|f| f.last.uar).collect();
    let (lwm, lws) = mean_std(&last_wa);
    let (lum, lus) = mean_std(&last_uar);
    let _ = writeln!(
        out,
        "| **mean ± std** | | | | **{} ± {}** | **{} ± {}** | | {} ± {} | {} ± {} |",
        pct(r.wa_mean_std.0),
        pct(r.wa_mean_std.1),
        pct(r.uar_mean_std.0),
        pct(r.uar_mean_std.1),
        pct(lwm),
        pct(lws),
        pct(lum),
        pct(lus)
    );
    let _ = writeln!(
        out,
        "| **pooled** | all | {} | | **{}** | **{}** | {} | {} | {} |",
        r.selected.confusion.total(),
        pct(r.selected.wa),
        pct(r.selected.uar),
        pct(r.selected.macro_f1),
        pct(r.last.wa),
        pct(r.last.uar)
    );
    if let Some(parts) = &r.parts {
        let per_fold: Vec<&Parts> = r.folds.iter().filter_map(|f| f.parts.as_ref()).collect();
        parts_table(&mut out, parts, &r.last, Some(&per_fold));
    }
    if let Some(e) = &r.ensemble {
        let _ = writeln!(
            out,
            "\n## Ensemble of {} networks per fold (seeds {})\n\nThe rows above are the ensemble's. \
             Pooled over folds: the ensemble, each member (member k of every fold), and the \
             members' mean ± std.\n",
            e.seeds.len(),
            e.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        ensemble_table(&mut out, e, None);
    }
    let _ = writeln!(out, "\n## Pooled over folds, selected weights\n");
    eval_tables(&mut out, &r.selected, &corpus.classes);
    let _ = writeln!(
        out,
        "\nFigures: `confusion.svg` (pooled, selected), `confusion-last.svg`; each fold's folder has \
         its own curves, confusion matrices, metrics, split and checkpoints."
    );
    out
}
