//! Sweeps: the networks a sweep trains ([`sweep_members`]) and its table ([`sweep_markdown`]).
//! The runs themselves are started by [`super::run`].

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::config::{SweepKind, TrainConfig};
use super::report::{pct, RunResult};
use crate::model::ArchSpec;
use crate::Result;

/// One network of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepMember {
    pub name: String,
    pub spec: String,
    /// The paper's accuracy for this structure, when it is one of Table IV's rows.
    pub paper_accuracy: Option<f64>,
    pub certainty: Option<String>,
}

/// The networks a sweep trains.
pub fn sweep_members(cfg: &TrainConfig, kind: SweepKind) -> Result<Vec<SweepMember>> {
    Ok(match kind {
        SweepKind::Table4 => crate::model::table4()
            .map(|p| SweepMember {
                name: p.name.to_string(),
                spec: p.spec.to_string(),
                paper_accuracy: Some(p.paper_accuracy),
                certainty: Some(p.certainty.as_str().to_string()),
            })
            .collect(),
        SweepKind::Shortcuts => {
            let base = ArchSpec::from_name_or_spec(&cfg.arch)?;
            crate::model::input_shortcut_sweep(&base)
                .into_iter()
                .map(|(into, spec)| {
                    let text = spec.to_string();
                    let paper = crate::model::table4().find(|p| p.spec == text);
                    let name = if into.is_empty() {
                        "no shortcut".to_string()
                    } else {
                        format!(
                            "input → pools {}",
                            into.iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    };
                    SweepMember {
                        name: paper.map_or(name.clone(), |p| format!("{name} ({})", p.name)),
                        spec: text,
                        paper_accuracy: paper.map(|p| p.paper_accuracy),
                        certainty: paper.map(|p| p.certainty.as_str().to_string()),
                    }
                })
                .collect()
        }
    })
}

/// One row of a sweep table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub name: String,
    pub spec: String,
    pub paper_accuracy: Option<f64>,
    pub certainty: Option<String>,
    pub result: RunResult,
}

/// The sweep's table in the paper's Table IV layout, our numbers beside the paper's.
pub fn sweep_markdown(title: &str, cfg: &TrainConfig, rows: &[SweepRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n");
    let (c, h, w) = cfg.spectrogram.input_shape();
    let _ = writeln!(
        out,
        "Protocol {}, input {c}×{h}×{w}, batch {}, {}, seed {}. The paper's accuracy is EMO-DB with \
         a random split at 512×512 after 1e5 iterations; ours is the test set of this protocol with the \
         weights selected on validation (WA = accuracy; for several folds, pooled over folds and the \
         mean ± std of the folds).\n",
        cfg.protocol,
        cfg.batch,
        match (cfg.iterations, cfg.epochs) {
            (Some(n), _) => format!("{n} iterations"),
            (None, Some(e)) => format!("{e} epochs"),
            _ => String::new(),
        },
        cfg.seed
    );
    let multi = rows.iter().any(|r| r.result.folds.len() > 1);
    if multi {
        let _ = writeln!(out, "| network | structure | shortcuts | paper (%) | certainty | our WA (%) | our UAR (%) | WA mean ± std (%) | UAR mean ± std (%) |\n|---|---|---|---|---|---|---|---|---|");
    } else {
        let _ = writeln!(out, "| network | structure | shortcuts | paper (%) | certainty | our WA (%) | our UAR (%) | our macro-F1 (%) |\n|---|---|---|---|---|---|---|---|");
    }
    for r in rows {
        let shortcuts = r.spec.matches('+').count();
        let paper = r.paper_accuracy.map_or("–".into(), |a| format!("{a:.2}"));
        let cert = r.certainty.clone().unwrap_or_else(|| "–".into());
        let res = &r.result;
        if multi {
            let _ = writeln!(
                out,
                "| {} | `{}` | {shortcuts} | {paper} | {cert} | {} | {} | {} ± {} | {} ± {} |",
                r.name,
                r.spec,
                pct(res.selected.wa),
                pct(res.selected.uar),
                pct(res.wa_mean_std.0),
                pct(res.wa_mean_std.1),
                pct(res.uar_mean_std.0),
                pct(res.uar_mean_std.1)
            );
        } else {
            let _ = writeln!(
                out,
                "| {} | `{}` | {shortcuts} | {paper} | {cert} | {} | {} | {} |",
                r.name,
                r.spec,
                pct(res.selected.wa),
                pct(res.selected.uar),
                pct(res.selected.macro_f1)
            );
        }
    }
    out
}
