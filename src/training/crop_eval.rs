//! Evaluation over time crops ([`crate::data::crops`]): a network trained on fixed-width crops
//! classifies a whole utterance by the mean of its class probabilities over overlapping crops of
//! the training width.

use super::ensemble::Predictions;
use super::inference::{predict_all_with_side, side_rows, softmax, SideInput};
use crate::backends::Backend;
use crate::data::crops::{average_over_crops, plan_crops, render_crops, whole_width};
use crate::data::{BatchConfig, Batcher, EvalTime, FeatureStore, Normalization};
use crate::features::ImageConfig;
use crate::model::Network;
use crate::{config_err, Result};

/// Class probabilities of every utterance of `indices` (in that order), each the mean over its
/// crops of `image.width` frames every `hop` frames, run through `net` in batches of at most its
/// maximum batch.
pub fn predict_over_crops<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    store: &FeatureStore,
    image: &ImageConfig,
    norm: &Normalization,
    indices: &[usize],
    hop: usize,
) -> Result<Predictions> {
    predict_over_crops_with_side(backend, net, store, image, norm, indices, hop, None)
}

/// [`predict_over_crops`] for a network with a side input: every crop gets its utterance's row.
#[allow(clippy::too_many_arguments)]
pub fn predict_over_crops_with_side<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    store: &FeatureStore,
    image: &ImageConfig,
    norm: &Normalization,
    indices: &[usize],
    hop: usize,
    side: Option<SideInput<'_>>,
) -> Result<Predictions> {
    let crops = plan_crops(store, image, indices, hop)?;
    let classes = net.classes();
    let mut probs = Vec::with_capacity(crops.len());
    for chunk in crops.chunks(net.max_batch()) {
        let x = render_crops(store, image, norm, chunk)?;
        let owners: Vec<usize> = chunk.iter().map(|c| c.utterance).collect();
        let rows = side_rows(side, &owners);
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
#[allow(clippy::too_many_arguments)]
pub fn predict_with<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    store: &FeatureStore,
    image: &ImageConfig,
    norm: &Normalization,
    indices: &[usize],
    mode: &EvalMode,
    side: Option<SideInput<'_>>,
) -> Result<Predictions> {
    match mode.time {
        EvalTime::First => {
            let batcher = Batcher::new(
                store,
                image,
                indices,
                BatchConfig::evaluation(mode.batch),
                norm.clone(),
            )?;
            predict_all_with_side(backend, net, &batcher, side)
        }
        EvalTime::Crops => predict_over_crops_with_side(
            backend,
            net,
            store,
            image,
            norm,
            indices,
            mode.hop_for(image),
            side,
        ),
        EvalTime::Whole => {
            predict_whole(backend, net, store, image, norm, indices, mode.batch, side)
        }
    }
}

/// Class probabilities of `indices` with each whole utterance in one image: the network is laid
/// out for the longest utterance's width, rounded up to the first width its shortcuts accept
/// (a shortcut into pool level k needs a width divisible by its pooling factor; the extra
/// columns are padding), and back to its training width afterwards. Needs statistics pooling.
#[allow(clippy::too_many_arguments)]
pub fn predict_whole<B: Backend<Elem = f32>>(
    backend: &B,
    net: &mut Network<B>,
    store: &FeatureStore,
    image: &ImageConfig,
    norm: &Normalization,
    indices: &[usize],
    batch: usize,
    side: Option<SideInput<'_>>,
) -> Result<Predictions> {
    if image.time_axis != crate::features::TimeAxis::Fixed {
        return Err(config_err!(
            "eval_time = \"whole\" needs time_axis = \"fixed\" (with \"whole\" the utterance is \
             already stretched into one image: use eval_time = \"first\")"
        ));
    }
    let train_width = net.input_shape().width;
    let longest = whole_width(store, image, indices);
    let mut width = longest;
    loop {
        match net.set_input_width(backend, width) {
            Ok(()) => break,
            // Widths the shortcuts refuse; 64 more columns cover any pooling factor up to 64.
            Err(_) if width < longest + 64 => width += 1,
            Err(e) => return Err(e),
        }
    }
    let wide = ImageConfig {
        width,
        ..image.clone()
    };
    let batcher = Batcher::new(
        store,
        &wide,
        indices,
        BatchConfig::evaluation(batch),
        norm.clone(),
    )?;
    let out = predict_all_with_side(backend, net, &batcher, side);
    net.set_input_width(backend, train_width)?;
    out
}
