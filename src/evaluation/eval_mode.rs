//! Evaluation over time crops ([`crate::data::crops`]): a network trained on fixed-width crops
//! classifies a whole utterance by the mean of its class probabilities over overlapping crops of
//! the training width.

use super::predict::{predict_all_with_side, side_rows, softmax, Predictions, SideInput};
use crate::backends::Backend;
use crate::data::crops::{average_over_crops, plan_crops, render_crops, whole_width};
use crate::data::{BatchConfig, Batcher, EvalTime, FeatureStore, Normalization};
use crate::features::ImageConfig;
use crate::model::Network;
use crate::{config_err, Result};
use std::collections::{BTreeMap, HashMap};

/// What a network is shown of each utterance: its features from `store`, rendered as `image` says
/// and normalised by `norm`, and the side input of a network that takes one.
#[derive(Clone, Copy)]
pub struct NetworkInputs<'a> {
    pub store: &'a FeatureStore,
    pub image: &'a ImageConfig,
    pub norm: &'a Normalization,
    pub side: Option<SideInput<'a>>,
}

/// Class probabilities of every utterance of `indices` (in that order), each the mean over its
/// crops of `inputs.image.width` frames every `hop` frames, run through `net` in batches of at most
/// its maximum batch; a network with a side input gets its utterance's row with every crop.
pub fn predict_over_crops<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    inputs: NetworkInputs<'_>,
    indices: &[usize],
    hop: usize,
) -> Result<Predictions> {
    let crops = plan_crops(inputs.store, inputs.image, indices, hop)?;
    let classes = net.classes();
    let mut probs = Vec::with_capacity(crops.len());
    for chunk in crops.chunks(net.max_batch()) {
        let x = render_crops(inputs.store, inputs.image, inputs.norm, chunk)?;
        let owners: Vec<usize> = chunk.iter().map(|c| c.utterance).collect();
        let rows = side_rows(inputs.side, &owners);
        let logits =
            net.forward_logits_with_side(backend, &x.data, rows.as_deref(), chunk.len())?;
        probs.extend(logits.chunks_exact(classes).map(softmax));
    }
    Ok(average_over_crops(&crops, &probs))
}

/// How a fold's validation and test utterances are evaluated (the `eval_time` setting).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalMode {
    pub time: EvalTime,
    /// Frames between crops for [`EvalTime::Crops`]; 0 = half the crop width.
    pub hop: usize,
    pub batch: usize,
}

impl EvalMode {
    /// The crop hop actually used for `image`.
    pub fn hop_for(&self, image: &ImageConfig) -> usize {
        if self.hop == 0 {
            (image.width / 2).max(1)
        } else {
            self.hop
        }
    }
}

/// Class probabilities of `indices` (in that order) evaluated as `mode` says, with the side input
/// of a network that takes one.
pub fn predict_with<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    inputs: NetworkInputs<'_>,
    indices: &[usize],
    mode: &EvalMode,
) -> Result<Predictions> {
    match mode.time {
        EvalTime::First => {
            let batcher = Batcher::new(
                inputs.store,
                inputs.image,
                indices,
                BatchConfig::evaluation(mode.batch),
                inputs.norm.clone(),
            )?;
            predict_all_with_side(backend, net, &batcher, inputs.side)
        }
        EvalTime::Crops => {
            predict_over_crops(backend, net, inputs, indices, mode.hop_for(inputs.image))
        }
        EvalTime::Whole => predict_whole(backend, net, inputs, indices, mode.batch),
    }
}

/// Class probabilities of `indices` (in that order) with each whole utterance in one image. Every
/// utterance is evaluated at its own width: at least the training width, rounded up to the first
/// width the network's shortcuts accept (a shortcut into pool level k needs a width divisible by
/// its pooling factor; the extra columns are padding). Utterances of equal width share batches.
/// So the statistics pooling sees an utterance's own frames, not padding up to the longest
/// utterance it happened to be batched with, and its probabilities do not depend on which other
/// files are evaluated beside it. The network goes back to its training width afterwards. Needs
/// statistics pooling.
pub fn predict_whole<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    inputs: NetworkInputs<'_>,
    indices: &[usize],
    batch: usize,
) -> Result<Predictions> {
    if inputs.image.time_axis != crate::features::TimeAxis::Fixed {
        return Err(config_err!(
            "eval_time = \"whole\" needs time_axis = \"fixed\" (with \"whole\" the utterance is \
             already stretched into one image: use eval_time = \"first\")"
        ));
    }
    let train_width = net.input_shape().width;
    let mut by_width: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &u in indices {
        by_width
            .entry(whole_width(inputs.store, inputs.image, &[u]))
            .or_default()
            .push(u);
    }
    let mut probs: HashMap<usize, Vec<f64>> = HashMap::with_capacity(indices.len());
    // Widest first, so the network's buffers are allocated once, at their largest.
    let mut run_groups = || -> Result<()> {
        for (&frames, group) in by_width.iter().rev() {
            let width = fit_input_width(backend, net, frames)?;
            let wide = ImageConfig {
                width,
                ..inputs.image.clone()
            };
            let batcher = Batcher::new(
                inputs.store,
                &wide,
                group,
                BatchConfig::evaluation(batch),
                inputs.norm.clone(),
            )?;
            probs.extend(predict_all_with_side(backend, net, &batcher, inputs.side)?);
        }
        Ok(())
    };
    let out = run_groups();
    net.set_input_width(backend, train_width)?;
    out?;
    Ok(indices.iter().map(|&u| (u, probs[&u].clone())).collect())
}

/// Lays `net` out for a whole utterance of `frames` frames (at least the training width).
fn fit_input_width<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    frames: usize,
) -> Result<usize> {
    let width = net.plan().whole_width(frames)?;
    net.set_input_width(backend, width)?;
    Ok(width)
}
