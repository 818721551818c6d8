//! The prosody branch of a fold: the utterance prosody vectors ([`crate::data::prosody`]),
//! z-normalised like the network's input (training or per-speaker statistics), classified by a
//! class-balanced logistic regression ([`super::linear`]) fitted on the fold's training
//! utterances, its L2 strength chosen by an inner leave-one-speaker-out over the training speakers
//! (or, with a single training speaker, the middle of the grid). Its class probabilities are fused
//! late with the network's (a weighted mean, [`super::ensemble::average`]).

use super::ensemble::Predictions;
use super::linear::{select_l2, SoftmaxRegression, L2_GRID};
use crate::data::{Corpus, InputNormMode, ProsodyNorm, ProsodyStore};
use crate::Result;

/// A fitted prosody classifier for one fold.
pub struct ProsodyBranch {
    norm: ProsodyNorm,
    model: SoftmaxRegression,
    /// The chosen L2 strength.
    pub l2: f64,
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
        Ok(ProsodyBranch { norm, model, l2 })
    }

    /// Class probabilities of `indices` (corpus indices), in that order.
    pub fn predict(&self, store: &ProsodyStore, indices: &[usize]) -> Predictions {
        indices
            .iter()
            .map(|&i| (i, self.model.predict(&self.norm.normalised(store, i))))
            .collect()
    }
}
