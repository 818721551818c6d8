//! Named architectures: the paper's networks (its Table IV, one preset per row) and two references.
//!
//! Table IV of Zheng et al. drew the shortcut placements as arrows that the text extraction lost
//! (see `shared/paper/table4.md`), so each preset says how certain its structure is. Rows 8 to 10 are
//! our guesses: their accuracies survive but nothing of their shortcut placement does. A sweep over
//! every subset of shortcut placements ([`input_shortcut_sweep`]) contains whatever the paper really
//! ran.

use super::spec::{ArchSpec, LayerSpec};
use crate::{config_err, Result};

/// How much of a preset's structure the paper states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Certainty {
    /// Spelled out in the paper's text or table.
    Stated,
    /// Inferred from the paper's prose; consistent with everything it says, but not spelled out.
    Reading,
    /// The paper's placement is lost; this one is a plausible pick of ours.
    Guess,
}

impl Certainty {
    pub fn as_str(self) -> &'static str {
        match self {
            Certainty::Stated => "stated",
            Certainty::Reading => "reading",
            Certainty::Guess => "guess",
        }
    }
}

/// A named architecture with what the paper reports for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    /// The architecture spec (see [`super::spec`]).
    pub spec: &'static str,
    /// Where it comes from, e.g. "Table IV row 7".
    pub source: &'static str,
    /// The paper's accuracy on EMO-DB (random split), in percent.
    pub paper_accuracy: f64,
    pub certainty: Certainty,
    /// What is certain and what is read or guessed.
    pub note: &'static str,
}

static PRESETS: &[Preset] = &[
    Preset {
        name: "paper",
        spec: "c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 fc716 fc716",
        source: "Table IV row 7, Table V",
        paper_accuracy: 74.36,
        certainty: Certainty::Reading,
        note: "the best network: four convs, two FC, three shortcuts (count stated); placement into the outputs of pools 1-3 is a reading",
    },
    Preset {
        name: "paper-plain",
        spec: "c32k4 p2 c64k8 p2 c64k10 p2 c64k10 p2 fc716 fc716",
        source: "Table V (without residual)",
        paper_accuracy: 72.15,
        certainty: Certainty::Stated,
        note: "the best network without its shortcuts",
    },
    Preset {
        name: "recipe",
        spec: "c32k3 bn p2 +0 c64k3 bn p2 +0 c128k3 bn p2 +0 c128k3 bn p2 stats drop0.3 fc128 drop0.3",
        source: "ours, not in the paper",
        paper_accuracy: f64::NAN,
        certainty: Certainty::Guess,
        note: "the paper's three input shortcuts into pools 1-3, with 3×3 convs, batch norm, statistics pooling (any number of frames) and dropout; no paper accuracy",
    },
    Preset {
        name: "recipe-joint",
        spec: "c32k3 bn p2 +0 c64k3 bn p2 +0 c128k3 bn p2 +0 c128k3 bn p2 stats drop0.3 vec0.5w0.75 fc128 drop0.3",
        source: "ours, not in the paper",
        paper_accuracy: f64::NAN,
        certainty: Certainty::Guess,
        note: "`recipe` with the utterance vector (--prosody-set) appended to its pooled statistics before the fc layers, with dropout 0.5 on its entries and 0.75 on whole vectors, trained jointly; no paper accuracy",
    },
    Preset {
        name: "recipe-plain",
        spec: "c32k3 bn p2 c64k3 bn p2 c128k3 bn p2 c128k3 bn p2 stats drop0.3 fc128 drop0.3",
        source: "ours, not in the paper",
        paper_accuracy: f64::NAN,
        certainty: Certainty::Guess,
        note: "`recipe` without its input shortcuts (the ablation of the paper's idea); no paper accuracy",
    },
    Preset {
        name: "badshah2017",
        spec: "c16k10 p2 c32k10 p2 fc716 fc716",
        source: "Table IV row 1 (the paper's ref. [7])",
        paper_accuracy: 73.57,
        certainty: Certainty::Stated,
        note: "CNN of Badshah et al. 2017 as the paper reproduced it",
    },
    Preset {
        name: "table4-1",
        spec: "c16k10 p2 c32k10 p2 fc716 fc716",
        source: "Table IV row 1",
        paper_accuracy: 73.57,
        certainty: Certainty::Stated,
        note: "same as badshah2017",
    },
    Preset {
        name: "table4-2",
        spec: "c120k11 p2 c256k5 p2 c384k3 p2 fc1024 fc2048",
        source: "Table IV row 2 (the paper's ref. [8])",
        paper_accuracy: 71.51,
        certainty: Certainty::Stated,
        note: "layers stated; padding and strides of ref. [8] are not, we use SAME and stride 1 like every other row",
    },
    Preset {
        name: "table4-3",
        spec: "c32k4 p2 c64k8 p2 c64k10 p2 fc716 fc716",
        source: "Table IV row 3",
        paper_accuracy: 70.63,
        certainty: Certainty::Stated,
        note: "three convs, no shortcut",
    },
    Preset {
        name: "table4-4",
        spec: "c32k4 p2 +0 c64k8 p2 c64k10 p2 fc716 fc716",
        source: "Table IV row 4",
        paper_accuracy: 72.18,
        certainty: Certainty::Reading,
        note: "three convs, input into pool 1's output (the text: the input is introduced level by level)",
    },
    Preset {
        name: "table4-5",
        spec: "c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 fc716 fc716",
        source: "Table IV row 5",
        paper_accuracy: 73.14,
        certainty: Certainty::Reading,
        note: "three convs, input into the outputs of pools 1 and 2",
    },
    Preset {
        name: "table4-6",
        spec: "c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 +0 fc716 fc716",
        source: "Table IV row 6",
        paper_accuracy: 70.72,
        certainty: Certainty::Reading,
        note: "three convs, input into pools 1-3, i.e. all the way to the FC layers (the text: accuracy then drops)",
    },
    Preset {
        name: "table4-7",
        spec: "c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 fc716 fc716",
        source: "Table IV row 7",
        paper_accuracy: 74.36,
        certainty: Certainty::Reading,
        note: "same as paper: three shortcuts stated, placement into pools 1-3 a reading",
    },
    Preset {
        name: "table4-8",
        spec: "c32k4 p2 +0 c64k8 p2 c64k10 p2 c64k10 p2 fc716 fc716",
        source: "Table IV row 8",
        paper_accuracy: 69.08,
        certainty: Certainty::Guess,
        note: "four convs, placement lost in extraction; our guess: pool 1 only (mirrors row 4)",
    },
    Preset {
        name: "table4-9",
        spec: "c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 c64k10 p2 fc716 fc716",
        source: "Table IV row 9",
        paper_accuracy: 73.29,
        certainty: Certainty::Guess,
        note: "four convs, placement lost in extraction; our guess: pools 1 and 2 (mirrors row 5)",
    },
    Preset {
        name: "table4-10",
        spec: "c32k4 p2 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 +0 fc716 fc716",
        source: "Table IV row 10",
        paper_accuracy: 74.14,
        certainty: Certainty::Guess,
        note: "four convs, placement lost in extraction; our guess: pools 2-4, three shortcuts one level deeper than row 7 (the text: the best four-conv result is not the one bringing the input deepest)",
    },
    Preset {
        name: "table4-11",
        spec: "c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 +0 fc716 fc716",
        source: "Table IV row 11",
        paper_accuracy: 60.37,
        certainty: Certainty::Reading,
        note: "four convs, input into pools 1-4, all the way to the FC layers (the text: accuracy then drops sharply)",
    },
];

/// Every preset, the paper's best first.
pub fn presets() -> &'static [Preset] {
    PRESETS
}

/// The preset called `name`, if any.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

// Here, not in spec.rs, so that the spec parser does not depend on the preset list.
impl ArchSpec {
    /// A preset name (see [`presets()`]) or a spec string.
    pub fn from_name_or_spec(s: &str) -> Result<Self> {
        if let Some(p) = preset(s.trim()) {
            return ArchSpec::parse(p.spec);
        }
        ArchSpec::parse(s).map_err(|e| {
            let looks_like_name = s.trim().contains('-')
                || s.trim().chars().all(|c| c.is_ascii_alphabetic()) && !s.trim().is_empty();
            if looks_like_name {
                config_err!(
                    "`{}` is neither a preset nor a valid spec ({e}); presets: {}",
                    s.trim(),
                    presets()
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                e
            }
        })
    }
}

/// The rows of the paper's Table IV (`table4-1` … `table4-11`), in row order: what a
/// `--sweep table4` runs and compares against the paper.
pub fn table4() -> impl Iterator<Item = &'static Preset> {
    PRESETS.iter().filter(|p| p.name.starts_with("table4-"))
}

/// Every way of adding the network input (tap 0) into the outputs of `base`'s pools: 2^P specs for P
/// pools, each with the 1-based pool numbers that receive it, in order of the bit mask (none first).
/// Shortcuts already in `base` are dropped first. For `table4-3` (3 pools) this yields 8 networks and
/// for `paper-plain` (4 pools) 16, among them every reading of Table IV's lost placements.
pub fn input_shortcut_sweep(base: &ArchSpec) -> Vec<(Vec<usize>, ArchSpec)> {
    let layers: Vec<LayerSpec> = base
        .layers()
        .iter()
        .copied()
        .filter(|l| !matches!(l, LayerSpec::Shortcut { .. }))
        .collect();
    let pools = layers
        .iter()
        .filter(|l| matches!(l, LayerSpec::Pool { .. }))
        .count();
    (0..1usize << pools)
        .map(|mask| {
            let into: Vec<usize> = (1..=pools).filter(|p| mask & (1 << (p - 1)) != 0).collect();
            let mut tokens = Vec::new();
            let mut pool = 0;
            for l in &layers {
                tokens.push(l.to_string());
                if matches!(l, LayerSpec::Pool { .. }) {
                    pool += 1;
                    if into.contains(&pool) {
                        tokens.push("+0".into());
                    }
                }
            }
            let spec = ArchSpec::parse(&tokens.join(" "))
                .expect("a valid spec with +0 after pools stays valid");
            (into, spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchSpec, InputShape, Plan};

    #[test]
    fn every_preset_parses_and_plans_at_the_papers_input_size() {
        for p in presets() {
            let spec = ArchSpec::from_name_or_spec(p.name).unwrap();
            assert_eq!(
                spec.to_string(),
                p.spec,
                "{} is not in canonical form",
                p.name
            );
            // The full utterance vector's length as the side input of presets with `vec`.
            Plan::new(&spec, InputShape::new(3, 512, 512).with_side(1981), 7)
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        assert_eq!(table4().count(), 11);
        let names: Vec<_> = table4().map(|p| p.name).collect();
        assert_eq!(names[0], "table4-1");
        assert_eq!(names[10], "table4-11");
        assert_eq!(
            preset("paper").unwrap().spec,
            preset("table4-7").unwrap().spec
        );
        assert_eq!(
            preset("badshah2017").unwrap().spec,
            preset("table4-1").unwrap().spec
        );
    }

    /// The README's Table IV section lists every table4 preset (and paper-plain) with the same spec,
    /// accuracy and certainty as the code.
    #[test]
    fn readme_table_matches_the_presets() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let mut seen = 0;
        for line in readme
            .lines()
            .filter(|l| l.starts_with("| `table4-") || l.starts_with("| `paper-plain`"))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1].split('`').nth(1).unwrap();
            let spec = cells[2].trim_matches('`');
            let accuracy: f64 = cells[3].split_whitespace().next().unwrap().parse().unwrap();
            let certainty = cells[4].split_whitespace().next().unwrap();
            let p = preset(name).unwrap_or_else(|| panic!("README names unknown preset {name}"));
            assert_eq!(spec, p.spec, "{name}: README spec");
            assert_eq!(accuracy, p.paper_accuracy, "{name}: README accuracy");
            assert_eq!(certainty, p.certainty.as_str(), "{name}: README certainty");
            seen += 1;
        }
        assert_eq!(
            seen, 12,
            "README should list table4-1 … table4-11 and paper-plain"
        );
    }

    #[test]
    fn the_sweep_contains_every_table_row_of_its_depth() {
        let three = input_shortcut_sweep(&ArchSpec::from_name_or_spec("table4-6").unwrap());
        assert_eq!(three.len(), 8);
        assert_eq!(three[0].0, Vec::<usize>::new());
        assert_eq!(three[5].0, vec![1, 3]);
        assert_eq!(
            three[5].1.to_string(),
            "c32k4 p2 +0 c64k8 p2 c64k10 p2 +0 fc716 fc716"
        );
        let four = input_shortcut_sweep(&ArchSpec::from_name_or_spec("paper-plain").unwrap());
        assert_eq!(four.len(), 16);
        for (rows, sweep) in [(3..=6, &three), (7..=11, &four)] {
            for row in rows {
                let p = preset(&format!("table4-{row}")).unwrap();
                assert!(
                    sweep.iter().any(|(_, s)| s.to_string() == p.spec),
                    "row {row} missing from the sweep"
                );
            }
        }
        assert!(four
            .iter()
            .any(|(_, s)| s.to_string() == preset("paper-plain").unwrap().spec));
    }

    #[test]
    fn shortcut_counts_match_the_table() {
        let count = |n: &str| preset(n).unwrap().spec.matches('+').count();
        let want = [0, 0, 0, 1, 2, 3, 3, 1, 2, 3, 4];
        for (row, &w) in want.iter().enumerate() {
            assert_eq!(count(&format!("table4-{}", row + 1)), w, "row {}", row + 1);
        }
        assert_eq!(count("paper-plain"), 0);
    }
}
