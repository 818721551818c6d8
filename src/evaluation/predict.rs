//! Predictions of a trained network: class probabilities (softmax), the predicted class (argmax),
//! and evaluation over a set of utterances. The trainer's validation and test evaluations,
//! `rescnn predict` and `rescnn eval` all go through these, so they agree by construction.

use super::metrics::{EvalReport, Evaluator};
use crate::backends::Backend;
use crate::data::{Batcher, Corpus};
use crate::model::Network;
use crate::prosody::{ProsodyNorm, ProsodyStore};
use crate::Result;

/// Class probabilities per utterance (corpus index), as [`predict_all`] gives.
pub type Predictions = Vec<(usize, Vec<f64>)>;

/// The side input of a network with a `vec` layer: each utterance's utterance vector, normalised
/// as the fold's training normalised it (see [`ProsodyNorm`]), or every vector absent.
#[derive(Clone, Copy)]
pub struct SideInput<'a> {
    pub store: &'a ProsodyStore,
    pub norm: &'a ProsodyNorm,
    /// Every row zero: the value whole-vector dropout (`vec<P>w<Q>`) leaves in place of a dropped
    /// vector in training, so the network answers from its image alone.
    pub absent: bool,
}

impl<'a> SideInput<'a> {
    /// Each utterance's normalised vector.
    pub fn given(store: &'a ProsodyStore, norm: &'a ProsodyNorm) -> Self {
        SideInput {
            store,
            norm,
            absent: false,
        }
    }

    /// The rows of `utterances` (corpus indices; repeated where an utterance is, e.g. once per
    /// crop), N × D.
    pub fn rows(&self, utterances: &[usize]) -> Vec<f32> {
        if self.absent {
            vec![0.0; utterances.len() * self.store.config().vector_len()]
        } else {
            self.norm.batch(self.store, utterances)
        }
    }
}

/// The side input rows of `utterances` when there is a side input.
pub fn side_rows(side: Option<SideInput<'_>>, utterances: &[usize]) -> Option<Vec<f32>> {
    side.map(|s| s.rows(utterances))
}

/// Softmax probabilities of one row of logits, in f64 (stable: the maximum is subtracted first).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Index of the first maximum.
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Class probabilities of every utterance the batcher yields (in its order), with their corpus
/// indices.
pub fn predict_all<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    batcher: &Batcher<'_>,
) -> Result<Predictions> {
    predict_all_with_side(backend, net, batcher, None)
}

/// [`predict_all`] for a network that takes a side input (`None` for one that does not).
pub fn predict_all_with_side<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    batcher: &Batcher<'_>,
    side: Option<SideInput<'_>>,
) -> Result<Predictions> {
    let classes = net.classes();
    let mut out = Vec::with_capacity(batcher.len_utterances());
    for batch in batcher.epoch(0) {
        let n = batch.labels.len();
        let rows = side_rows(side, &batch.utterances);
        let logits =
            net.forward_logits_with_side(backend, &batch.inputs.data, rows.as_deref(), n)?;
        for (k, &u) in batch.utterances.iter().enumerate() {
            out.push((u, softmax(&logits[k * classes..(k + 1) * classes])));
        }
    }
    Ok(out)
}

/// Evaluate on every utterance the batcher yields: metrics, confusion, per-speaker accuracy.
/// `label_map` maps a corpus label to the model's class index (identity when `None`).
pub fn evaluate<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    batcher: &Batcher<'_>,
    corpus: &Corpus,
    label_map: Option<&[usize]>,
) -> Result<EvalReport> {
    let classes = net.classes();
    let probabilities = predict_all(backend, net, batcher)?;
    Ok(score(classes, probabilities, corpus, label_map))
}

/// The evaluation of `probabilities` (from [`predict_all`]) of utterances of `corpus` over
/// `classes` classes (see [`evaluate`]).
pub fn score(
    classes: usize,
    probabilities: Predictions,
    corpus: &Corpus,
    label_map: Option<&[usize]>,
) -> EvalReport {
    let mut ev = Evaluator::new(classes);
    for (u, probs) in probabilities {
        let utt = &corpus.utterances[u];
        let truth = label_map.map_or(utt.label, |m| m[utt.label]);
        let loss = -probs[truth].max(1e-300).ln();
        ev.add(truth, argmax(&probs), &utt.speaker, loss);
    }
    ev.finish()
}
