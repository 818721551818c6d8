//! Train / validation / test splits, made BEFORE any augmentation (augmented copies are made on the
//! fly from training utterances only, so no copy of a test utterance is ever trained on).
//!
//! Protocols:
//! - [`random`]: stratified random split by utterance, the paper's protocol (kept for comparison;
//!   speakers appear on both sides). Validation: a stratified share of the training utterances.
//! - [`held_out_speakers`]: the given test speakers (e.g. EMO-DB's 15 and 16) are never trained on.
//!   Validation: whole speakers drawn from the training speakers (`val_speakers`, default 1), so
//!   model selection is speaker-independent too; `val_speakers = 0` falls back to a share of the
//!   training utterances.
//! - [`leave_one_speaker_out`]: one fold per speaker, each a held-out-speaker split.
//!
//! Everything is seeded. A split is written to a JSON file by utterance id ([`Split::save`]) and read
//! back against the same corpus ([`Split::load`]), so a run can be reproduced exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Corpus;
use crate::{config_err, Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Protocol {
    Random {
        test_fraction: f64,
        val_fraction: f64,
    },
    Speakers {
        test_speakers: Vec<String>,
        val_speakers: Vec<String>,
    },
    LeaveOneSpeakerOut {
        fold: usize,
        folds: usize,
        test_speaker: String,
        val_speakers: Vec<String>,
    },
}

/// Options common to every protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitOptions {
    /// Share of each class's training utterances used for validation (random protocol, or speaker
    /// protocols with `val_speakers = 0`).
    pub val_fraction: f64,
    /// Speakers held out of training for validation in the speaker protocols.
    pub val_speakers: usize,
    pub seed: u64,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            val_fraction: 0.1,
            val_speakers: 1,
            seed: 0,
        }
    }
}

/// Indices into [`Corpus::utterances`], each list sorted.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub protocol: Protocol,
    pub seed: u64,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// The file form of a split: utterance ids instead of indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitFile {
    pub corpus: String,
    pub protocol: Protocol,
    pub seed: u64,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

/// Classes that have at least one utterance among `indices`.
fn classes_present(corpus: &Corpus, indices: impl IntoIterator<Item = usize>) -> BTreeSet<usize> {
    indices
        .into_iter()
        .map(|i| corpus.utterances[i].label)
        .collect()
}

fn check_classes(corpus: &Corpus) -> Result<BTreeSet<usize>> {
    let present = classes_present(corpus, 0..corpus.len());
    if present.len() < 2 {
        return Err(config_err!(
            "{} has utterances of {} class(es); a classifier needs at least two",
            corpus.name,
            present.len()
        ));
    }
    Ok(present)
}

/// Stratified draw of about `fraction` of each class from `pool` (shuffled with `rng`); returns
/// (drawn, rest). Each class keeps at least one utterance in `rest`.
fn stratified_draw(
    corpus: &Corpus,
    pool: &[usize],
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in pool {
        by_class
            .entry(corpus.utterances[i].label)
            .or_default()
            .push(i);
    }
    let (mut drawn, mut rest) = (Vec::new(), Vec::new());
    for (_, mut members) in by_class {
        members.shuffle(rng);
        let n = ((members.len() as f64 * fraction).round() as usize)
            .min(members.len().saturating_sub(1));
        drawn.extend_from_slice(&members[..n]);
        rest.extend_from_slice(&members[n..]);
    }
    drawn.sort_unstable();
    rest.sort_unstable();
    (drawn, rest)
}

fn check_fraction(name: &str, f: f64) -> Result<()> {
    if !(0.0..1.0).contains(&f) {
        return Err(config_err!("{name} must be in [0, 1), got {f}"));
    }
    Ok(())
}

/// Stratified random split by utterance: about `test_fraction` of every class is test, about
/// `opts.val_fraction` of every class's remaining utterances is validation.
pub fn random(corpus: &Corpus, test_fraction: f64, opts: &SplitOptions) -> Result<Split> {
    check_classes(corpus)?;
    check_fraction("test fraction", test_fraction)?;
    check_fraction("validation fraction", opts.val_fraction)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let all: Vec<usize> = (0..corpus.len()).collect();
    let (test, rest) = stratified_draw(corpus, &all, test_fraction, &mut rng);
    // The validation share is of the whole class, drawn from what the test draw left.
    let val_share = opts.val_fraction / (1.0 - test_fraction);
    let (val, train) = stratified_draw(corpus, &rest, val_share.min(0.99), &mut rng);
    Ok(Split {
        protocol: Protocol::Random {
            test_fraction,
            val_fraction: opts.val_fraction,
        },
        seed: opts.seed,
        train,
        val,
        test,
    })
}

/// Validation speakers from `candidates` (in a seeded order) such that every class in `needed` keeps
/// a training speaker.
fn pick_val_speakers(
    corpus: &Corpus,
    candidates: &[String],
    needed: &BTreeSet<usize>,
    count: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<String>> {
    let mut order = candidates.to_vec();
    order.shuffle(rng);
    let mut chosen: Vec<String> = Vec::new();
    for s in order {
        if chosen.len() == count {
            break;
        }
        let remaining = corpus
            .utterances
            .iter()
            .filter(|u| {
                candidates.contains(&u.speaker) && u.speaker != s && !chosen.contains(&u.speaker)
            })
            .map(|u| u.label)
            .collect::<BTreeSet<_>>();
        if needed.is_subset(&remaining) {
            chosen.push(s);
        }
    }
    if chosen.len() < count {
        return Err(config_err!(
            "cannot hold out {count} validation speaker(s) from training speakers [{}] without leaving a class \
             with no training speaker; use fewer validation speakers (0 validates on a share of training utterances)",
            candidates.join(", ")
        ));
    }
    chosen.sort();
    Ok(chosen)
}

fn speaker_split_inner(
    corpus: &Corpus,
    test_speakers: &[String],
    opts: &SplitOptions,
) -> Result<(Split, Vec<String>)> {
    let present = check_classes(corpus)?;
    let speakers = corpus.speakers();
    for s in test_speakers {
        if !speakers.contains(s) {
            return Err(config_err!(
                "unknown test speaker '{s}'; {} has speakers: {}",
                corpus.name,
                speakers.join(", ")
            ));
        }
    }
    let train_speakers: Vec<String> = speakers
        .iter()
        .filter(|s| !test_speakers.contains(s))
        .cloned()
        .collect();
    if train_speakers.is_empty() {
        return Err(config_err!(
            "every speaker is a test speaker; nothing is left to train on"
        ));
    }
    let in_training = classes_present(
        corpus,
        (0..corpus.len()).filter(|&i| train_speakers.contains(&corpus.utterances[i].speaker)),
    );
    if let Some(&missing) = present.difference(&in_training).next() {
        return Err(config_err!(
            "class '{}' has no training speaker when speakers [{}] are held out for testing",
            corpus.classes[missing],
            test_speakers.join(", ")
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let val_speakers = if opts.val_speakers > 0 {
        pick_val_speakers(
            corpus,
            &train_speakers,
            &in_training,
            opts.val_speakers,
            &mut rng,
        )?
    } else {
        Vec::new()
    };
    let test: Vec<usize> = (0..corpus.len())
        .filter(|&i| test_speakers.contains(&corpus.utterances[i].speaker))
        .collect();
    let pool: Vec<usize> = (0..corpus.len())
        .filter(|&i| train_speakers.contains(&corpus.utterances[i].speaker))
        .collect();
    let (val, train) = if val_speakers.is_empty() {
        check_fraction("validation fraction", opts.val_fraction)?;
        stratified_draw(corpus, &pool, opts.val_fraction, &mut rng)
    } else {
        pool.iter()
            .partition(|&&i| val_speakers.contains(&corpus.utterances[i].speaker))
    };
    let split = Split {
        protocol: Protocol::Speakers {
            test_speakers: test_speakers.to_vec(),
            val_speakers: val_speakers.clone(),
        },
        seed: opts.seed,
        train,
        val,
        test,
    };
    Ok((split, val_speakers))
}

/// Hold out `test_speakers` entirely for testing.
pub fn held_out_speakers(
    corpus: &Corpus,
    test_speakers: &[String],
    opts: &SplitOptions,
) -> Result<Split> {
    if test_speakers.is_empty() {
        return Err(config_err!("no test speakers given"));
    }
    let mut sorted = test_speakers.to_vec();
    sorted.sort();
    sorted.dedup();
    Ok(speaker_split_inner(corpus, &sorted, opts)?.0)
}

/// One fold per speaker (sorted): fold k tests on speaker k. Fold seeds are `seed + k`.
pub fn leave_one_speaker_out(corpus: &Corpus, opts: &SplitOptions) -> Result<Vec<Split>> {
    let speakers = corpus.speakers();
    if speakers.len() < 2 {
        return Err(config_err!(
            "leave-one-speaker-out needs at least two speakers; {} has {}",
            corpus.name,
            speakers.len()
        ));
    }
    let folds = speakers.len();
    speakers
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let fold_opts = SplitOptions {
                seed: opts.seed.wrapping_add(k as u64),
                ..opts.clone()
            };
            let (mut split, val_speakers) =
                speaker_split_inner(corpus, std::slice::from_ref(s), &fold_opts)?;
            split.protocol = Protocol::LeaveOneSpeakerOut {
                fold: k,
                folds,
                test_speaker: s.clone(),
                val_speakers,
            };
            Ok(split)
        })
        .collect()
}

impl Split {
    /// A short name: "random 20 %", "speakers 15,16", "loso 3/10 (speaker 11)".
    pub fn name(&self) -> String {
        match &self.protocol {
            Protocol::Random { test_fraction, .. } => {
                format!("random {:.0} %", test_fraction * 100.0)
            }
            Protocol::Speakers { test_speakers, .. } => {
                format!("speakers {}", test_speakers.join(","))
            }
            Protocol::LeaveOneSpeakerOut {
                fold,
                folds,
                test_speaker,
                ..
            } => {
                format!("loso {}/{folds} (speaker {test_speaker})", fold + 1)
            }
        }
    }

    pub fn to_file(&self, corpus: &Corpus) -> SplitFile {
        let ids = |v: &[usize]| v.iter().map(|&i| corpus.utterances[i].id.clone()).collect();
        SplitFile {
            corpus: corpus.name.clone(),
            protocol: self.protocol.clone(),
            seed: self.seed,
            train: ids(&self.train),
            val: ids(&self.val),
            test: ids(&self.test),
        }
    }

    /// Resolve a split file's ids against `corpus`; every unknown id is an error.
    pub fn from_file(file: &SplitFile, corpus: &Corpus, path: &Path) -> Result<Split> {
        let index: std::collections::HashMap<&str, usize> = corpus
            .utterances
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.as_str(), i))
            .collect();
        let mut unknown = Vec::new();
        let mut resolve = |ids: &[String]| -> Vec<usize> {
            let mut v: Vec<usize> = ids
                .iter()
                .filter_map(|id| {
                    let i = index.get(id.as_str()).copied();
                    if i.is_none() {
                        unknown.push(id.clone());
                    }
                    i
                })
                .collect();
            v.sort_unstable();
            v
        };
        let split = Split {
            protocol: file.protocol.clone(),
            seed: file.seed,
            train: resolve(&file.train),
            val: resolve(&file.val),
            test: resolve(&file.test),
        };
        if !unknown.is_empty() {
            let shown: Vec<&str> = unknown.iter().take(5).map(String::as_str).collect();
            return Err(Error::data(
                path,
                format!(
                    "{} utterance(s) of the split are not in {}: {}",
                    unknown.len(),
                    corpus.name,
                    shown.join(", ")
                ),
            ));
        }
        Ok(split)
    }

    /// Write the split as JSON, atomically.
    pub fn save(&self, corpus: &Corpus, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_string_pretty(&self.to_file(corpus))
            .map_err(|e| Error::data(path, format!("cannot serialise split: {e}")))?;
        crate::fsutil::write_atomic(path, json.as_bytes())
    }

    pub fn load(corpus: &Corpus, path: impl AsRef<Path>) -> Result<Split> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: SplitFile = serde_json::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a split file: {e}")))?;
        Split::from_file(&file, corpus, path)
    }

    /// Utterances per class in each part, for logs: "train 300 (anger 70, …) / val … / test …".
    pub fn describe(&self, corpus: &Corpus) -> String {
        let part = |name: &str, v: &[usize]| {
            let mut counts = vec![0; corpus.classes.len()];
            for &i in v {
                counts[corpus.utterances[i].label] += 1;
            }
            let per: Vec<String> = corpus
                .classes
                .iter()
                .zip(&counts)
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            format!("{name} {} ({})", v.len(), per.join(", "))
        };
        format!(
            "{}: {}; {}; {}",
            self.name(),
            part("train", &self.train),
            part("val", &self.val),
            part("test", &self.test)
        )
    }
}
