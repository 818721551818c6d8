//! The run-level result (`result.json`) and the pooling of fold results into it.

use serde::{Deserialize, Serialize};

use crate::evaluation::ensemble::{EnsembleReport, EnsembleResult};
use crate::evaluation::metrics::{mean_std, ConfusionMatrix, EvalReport};
use crate::training::config::TrainConfig;
use crate::training::run_dir::{FoldResult, Parts};

/// Where and how a run was made: printed in every summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub rescnn: String,
    pub device: String,
    pub wall_s: f64,
    pub images_per_s: f64,
}

/// The run-level result (`result.json` at the top of a run directory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub label: String,
    pub protocol: String,
    pub folds: Vec<FoldResult>,
    /// Pooled over folds (one fold: that fold's).
    pub selected: EvalReport,
    pub last: EvalReport,
    /// Mean and sample standard deviation over folds of WA and UAR (selected weights).
    pub wa_mean_std: (f64, f64),
    pub uar_mean_std: (f64, f64),
    pub provenance: Provenance,
    /// With `ensemble` > 1: the ensemble (pooled over folds, as `selected` and `last`) and each
    /// member pooled over the folds, with the members' mean ± std. (Absent for one network.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleResult>,
    /// With a prosody branch: the network alone and the branch alone, pooled over folds (their
    /// fusion is `last`). (Absent unless every fold has them.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Parts>,
}

/// Merge fold reports into one over all their test utterances.
pub fn pool(reports: &[&EvalReport]) -> EvalReport {
    let classes = reports.first().map_or(0, |r| r.confusion.classes());
    let mut confusion = ConfusionMatrix::new(classes);
    let mut per_speaker = std::collections::BTreeMap::new();
    let (mut loss, mut n) = (0.0, 0u64);
    for r in reports {
        confusion.merge(&r.confusion);
        for (s, (c, t)) in &r.per_speaker {
            let e = per_speaker.entry(s.clone()).or_insert((0, 0));
            e.0 += c;
            e.1 += t;
        }
        loss += r.loss * r.confusion.total() as f64;
        n += r.confusion.total();
    }
    EvalReport {
        wa: confusion.weighted_accuracy(),
        uar: confusion.unweighted_average_recall(),
        macro_f1: confusion.macro_f1(),
        loss: if n > 0 { loss / n as f64 } else { 0.0 },
        per_class_recall: (0..classes).map(|k| confusion.recall(k)).collect(),
        confusion,
        per_speaker,
    }
}

/// The run-level result of `folds`.
pub fn run_result(cfg: &TrainConfig, folds: Vec<FoldResult>) -> RunResult {
    let selected = pool(&folds.iter().map(|f| &f.selected).collect::<Vec<_>>());
    let last = pool(&folds.iter().map(|f| &f.last).collect::<Vec<_>>());
    let was: Vec<f64> = folds.iter().map(|f| f.selected.wa).collect();
    let uars: Vec<f64> = folds.iter().map(|f| f.selected.uar).collect();
    let wall: f64 = folds.iter().map(|f| f.wall_s).sum();
    let images: u64 = folds.iter().map(|f| f.train_images).sum();
    RunResult {
        label: cfg.label(),
        protocol: cfg.protocol.clone(),
        provenance: Provenance {
            rescnn: crate::training::checkpoint::version_string(),
            device: folds.first().map(|f| f.device.clone()).unwrap_or_default(),
            wall_s: wall,
            images_per_s: images as f64 / wall.max(1e-9),
        },
        wa_mean_std: mean_std(&was),
        uar_mean_std: mean_std(&uars),
        ensemble: pooled_ensemble(&folds),
        parts: pooled_parts(&folds),
        selected,
        last,
        folds,
    }
}

/// The folds' parts pooled (`None` unless every fold has them).
fn pooled_parts(folds: &[FoldResult]) -> Option<Parts> {
    let each: Vec<&Parts> = folds
        .iter()
        .map(|f| f.parts.as_ref())
        .collect::<Option<_>>()?;
    Some(Parts {
        network: pool(&each.iter().map(|p| &p.network).collect::<Vec<_>>()),
        branch: pool(&each.iter().map(|p| &p.branch).collect::<Vec<_>>()),
        prosody_weight: each.first()?.prosody_weight,
    })
}

/// The folds' ensembles pooled: the ensemble's evaluations and member k's of every fold, each
/// merged over the folds (`None` unless every fold is an ensemble).
fn pooled_ensemble(folds: &[FoldResult]) -> Option<EnsembleResult> {
    let each: Vec<&EnsembleResult> = folds
        .iter()
        .map(|f| f.ensemble.as_ref())
        .collect::<Option<_>>()?;
    let first = each.first()?;
    let pooled = |pick: fn(&EnsembleResult) -> &EnsembleReport| {
        let members: Vec<EvalReport> = (0..first.seeds.len())
            .map(|k| pool(&each.iter().map(|e| &pick(e).members[k]).collect::<Vec<_>>()))
            .collect();
        let wa: Vec<f64> = members.iter().map(|m| m.wa).collect();
        let uar: Vec<f64> = members.iter().map(|m| m.uar).collect();
        EnsembleReport {
            ensemble: pool(&each.iter().map(|e| &pick(e).ensemble).collect::<Vec<_>>()),
            member_wa: mean_std(&wa),
            member_uar: mean_std(&uar),
            members,
        }
    };
    Some(EnsembleResult {
        seeds: first.seeds.clone(),
        selected: pooled(|e| &e.selected),
        last: pooled(|e| &e.last),
    })
}
