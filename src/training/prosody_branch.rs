//! The prosody branch of a fold: the utterance prosody vectors ([`crate::data::prosody`]),
//! z-normalised like the network's input (training or per-speaker statistics), classified by a
//! class-balanced logistic regression ([`super::linear`]) fitted on the fold's training
//! utterances, its L2 strength chosen by an inner leave-one-speaker-out over the training speakers
//! (or, with a single training speaker, the middle of the grid). Its class probabilities are fused
//! late with the network's (a weighted mean, [`crate::evaluation::ensemble::average`]).

use super::linear::{select_l2, SoftmaxRegression, L2_GRID};
use crate::data::prosody::vector_stats;
use crate::data::{Corpus, InputNormMode, ProsodyNorm, ProsodyStore};
use crate::evaluation::ensemble::average;
use crate::evaluation::model_file::{BranchClassifier, Stats, UtteranceModel};
use crate::evaluation::predict::Predictions;
use crate::Result;

/// A fitted prosody classifier for one fold.
pub struct ProsodyBranch {
    norm: ProsodyNorm,
    model: SoftmaxRegression,
    /// The chosen L2 strength.
    pub l2: f64,
    /// The training utterances' vector statistics (the normaliser's in `training` mode).
    training: Stats<f64>,
    mode: InputNormMode,
}

/// The branch's class probabilities of `indices` (corpus indices of `store`), in that order:
/// `model` on each vector normalised by `norm`.
pub fn branch_predictions(
    model: &SoftmaxRegression,
    norm: &ProsodyNorm,
    store: &ProsodyStore,
    indices: &[usize],
) -> Predictions {
    indices
        .iter()
        .map(|&i| (i, model.predict(&norm.normalised(store, i))))
        .collect()
}

/// The late fusion: (1 − w) · network + w · branch, per utterance.
pub fn fuse(network: Predictions, branch: Predictions, w: f64) -> Result<Predictions> {
    average(&[network, branch], Some(&[1.0 - w, w]))
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
            training: Stats { mean, std },
            mode,
        })
    }

    /// Class probabilities of `indices` (corpus indices), in that order.
    pub fn predict(&self, store: &ProsodyStore, indices: &[usize]) -> Predictions {
        branch_predictions(&self.model, &self.norm, store, indices)
    }

    /// The branch as the model folder keeps it, fused at `fusion_weight`, for vectors computed
    /// at `sample_rate`.
    pub fn saved(
        &self,
        store: &ProsodyStore,
        sample_rate: u32,
        fusion_weight: f64,
    ) -> UtteranceModel {
        UtteranceModel {
            features: store.config().clone(),
            sample_rate,
            norm: self.mode,
            training: self.training.clone(),
            classifier: Some(BranchClassifier {
                rows: self.model.rows(),
                l2: self.l2,
                fusion_weight,
            }),
        }
    }
}
