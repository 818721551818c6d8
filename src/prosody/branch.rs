//! The prosody branch of a fold: the utterance prosody vectors ([`super::store`]), z-normalised
//! like the network's input (training or per-speaker statistics), classified by a class-balanced
//! logistic regression ([`super::linear`]) fitted on the fold's training utterances, its L2
//! strength chosen by an inner leave-one-speaker-out over the training speakers (or, with a single
//! training speaker, the middle of the grid). Its class probabilities are fused late with the
//! network's ([`fuse`]: a weighted mean).

use std::collections::BTreeMap;

use super::linear::{select_l2, SoftmaxRegression, L2_GRID};
use super::store::{vector_stats, ProsodyNorm, ProsodyStore};
use crate::data::{Corpus, InputNormMode};
use crate::{config_err, Result};

/// Class probabilities per utterance (corpus index).
pub type Probabilities = Vec<(usize, Vec<f64>)>;

/// A fitted prosody classifier for one fold.
pub struct ProsodyBranch {
    norm: ProsodyNorm,
    model: SoftmaxRegression,
    /// The chosen L2 strength.
    pub l2: f64,
    /// The training utterances' vector statistics, mean and standard deviation (the normaliser's
    /// in `training` mode).
    training: (Vec<f64>, Vec<f64>),
    mode: InputNormMode,
}

/// The branch's class probabilities of `indices` (corpus indices of `store`), in that order:
/// `model` on each vector normalised by `norm`.
pub fn branch_predictions(
    model: &SoftmaxRegression,
    norm: &ProsodyNorm,
    store: &ProsodyStore,
    indices: &[usize],
) -> Probabilities {
    indices
        .iter()
        .map(|&i| (i, model.predict(&norm.normalised(store, i))))
        .collect()
}

/// The late fusion: (1 − w) · network + w · branch, per utterance, in the network's order; both
/// must cover the same utterances with the same classes. The weights are normalised by their sum
/// and accumulated from zero, network first, the arithmetic of an ensemble's weighted mean of two
/// members (its messages too), so a fused result is the same bits either way.
pub fn fuse(network: Probabilities, branch: Probabilities, w: f64) -> Result<Probabilities> {
    let weights = [1.0 - w, w];
    if !weights.iter().all(|&x| x >= 0.0) {
        return Err(config_err!(
            "2 ensemble weights (non-negative) for 2 members"
        ));
    }
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return Err(config_err!("ensemble weights sum to zero"));
    }
    let weights = weights.map(|x| x / sum);
    let members: [BTreeMap<usize, &Vec<f64>>; 2] =
        [&network, &branch].map(|m| m.iter().map(|(u, p)| (*u, p)).collect());
    let mut out = Vec::with_capacity(network.len());
    for (u, p0) in &network {
        let mut fused = vec![0.0; p0.len()];
        for (k, (member, weight)) in members.iter().zip(weights).enumerate() {
            let p = member.get(u).ok_or_else(|| {
                config_err!("ensemble member {k} has no prediction for utterance {u}")
            })?;
            if p.len() != fused.len() {
                return Err(config_err!(
                    "ensemble member {k} has {} classes, member 0 has {}",
                    p.len(),
                    fused.len()
                ));
            }
            fused
                .iter_mut()
                .zip(p.iter())
                .for_each(|(s, &v)| *s += weight * v);
        }
        out.push((*u, fused));
    }
    if members.iter().any(|m| m.len() != network.len()) {
        return Err(config_err!(
            "ensemble members were evaluated on different utterances"
        ));
    }
    Ok(out)
}

impl ProsodyBranch {
    /// Fit on `train` (corpus indices); `mode` picks the normalisation statistics.
    pub fn fit(
        store: &ProsodyStore,
        corpus: &Corpus,
        mode: InputNormMode,
        train: &[usize],
    ) -> Result<Self> {
        let speakers: Vec<&str> = corpus
            .utterances
            .iter()
            .map(|u| u.speaker.as_str())
            .collect();
        let labels: Vec<usize> = corpus.utterances.iter().map(|u| u.label).collect();
        let norm = ProsodyNorm::for_training(mode, store, &speakers, train)?;
        let x: Vec<Vec<f32>> = (0..corpus.len())
            .map(|i| norm.normalised(store, i))
            .collect();
        let mut distinct: Vec<&str> = train.iter().map(|&i| speakers[i]).collect();
        distinct.sort();
        distinct.dedup();
        let classes = corpus.classes.len();
        let l2 = if distinct.len() >= 2 {
            select_l2(&x, &labels, &speakers, train, classes, &L2_GRID)?
        } else {
            L2_GRID[L2_GRID.len() / 2]
        };
        let rows: Vec<&[f32]> = train.iter().map(|&i| x[i].as_slice()).collect();
        let y: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let model = SoftmaxRegression::fit(&rows, &y, classes, l2)?;
        let (mean, std) = match mode {
            InputNormMode::Training => {
                let (m, s) = norm.stats(0);
                (m.to_vec(), s.to_vec())
            }
            InputNormMode::Speaker => vector_stats(store, train),
        };
        Ok(ProsodyBranch {
            norm,
            model,
            l2,
            training: (mean, std),
            mode,
        })
    }

    /// Class probabilities of `indices` (corpus indices), in that order.
    pub fn predict(&self, store: &ProsodyStore, indices: &[usize]) -> Probabilities {
        branch_predictions(&self.model, &self.norm, store, indices)
    }

    /// The fitted classifier's rows (one per class: the weights, then the bias).
    pub fn rows(&self) -> Vec<Vec<f64>> {
        self.model.rows()
    }

    /// The training utterances' vector statistics: mean and standard deviation per entry.
    pub fn training_stats(&self) -> (&[f64], &[f64]) {
        (&self.training.0, &self.training.1)
    }

    /// Which statistics normalise the vectors.
    pub fn mode(&self) -> InputNormMode {
        self.mode
    }
}
