//! Evaluation over time crops ([`crate::data::crops`]): a network trained on fixed-width crops
//! classifies a whole utterance by the mean of its class probabilities over overlapping crops of
//! the training width.

use super::ensemble::Predictions;
use super::trainer::softmax;
use crate::backends::Backend;
use crate::data::crops::{average_over_crops, plan_crops, render_crops};
use crate::data::{FeatureStore, Normalization};
use crate::features::ImageConfig;
use crate::model::Network;
use crate::Result;

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
    let crops = plan_crops(store, image, indices, hop)?;
    let classes = net.classes();
    let mut probs = Vec::with_capacity(crops.len());
    for chunk in crops.chunks(net.max_batch()) {
        let x = render_crops(store, image, norm, chunk)?;
        let logits = net.forward_logits(backend, &x.data, chunk.len())?;
        probs.extend(logits.chunks_exact(classes).map(softmax));
    }
    Ok(average_over_crops(&crops, &probs))
}
