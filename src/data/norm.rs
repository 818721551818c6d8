//! Input normalisation: per-channel statistics of the TRAINING utterances ([`InputNorm`], the
//! default) or each speaker's own per-(channel, row) statistics ([`SpeakerNorm`]); [`Normalization`]
//! is the one a [`super::Batcher`] applies to every image it renders.

use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cache::FeatureStore;
use super::render::{every_frame_image, utterance_moments, RowMoments};
use super::speaker_norm::SpeakerNorm;
use crate::features::ImageConfig;
use crate::{config_err, Result};

/// Per-channel input normalisation: `x ← (x − mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputNorm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputNorm {
    /// Leaves inputs unchanged.
    pub fn identity(channels: usize) -> Self {
        InputNorm {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Mean and standard deviation per channel over the plain (unaugmented) images of `train`
    /// (training utterances only, so nothing about validation or test leaks into the inputs),
    /// every frame of each utterance counted once ([`every_frame_image`]).
    pub fn from_training(
        store: &FeatureStore,
        image: &ImageConfig,
        train: &[usize],
    ) -> Result<Self> {
        if train.is_empty() {
            return Err(config_err!(
                "cannot compute input statistics from an empty training set"
            ));
        }
        let (c, h) = (image.channels(), image.height);
        let wide = every_frame_image(store, image);
        // Per-utterance sums in parallel, combined in a fixed order: rayon's `reduce` may pair
        // partial sums differently from run to run, which would change the last bits of the
        // statistics and break bit-identical runs for a seed.
        let partial: Vec<RowMoments> = train
            .par_iter()
            .map(|&i| utterance_moments(store, &wide, i, 0))
            .collect();
        let (mut sum, mut sumsq, mut n) = (vec![0f64; c], vec![0f64; c], 0f64);
        for m in &partial {
            for ch in 0..c {
                sum[ch] += m.sum[ch * h..(ch + 1) * h].iter().sum::<f64>();
                sumsq[ch] += m.sumsq[ch * h..(ch + 1) * h].iter().sum::<f64>();
            }
            n += (h * m.columns) as f64;
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std: Vec<f32> = sum
            .iter()
            .zip(&sumsq)
            .map(|(s, q)| {
                let m = s / n;
                ((q / n - m * m).max(0.0).sqrt() as f32).max(1e-6)
            })
            .collect();
        Ok(InputNorm { mean, std })
    }

    pub fn apply(&self, chw: &mut [f32]) {
        let plane = chw.len() / self.mean.len();
        for (c, p) in chw.chunks_exact_mut(plane).enumerate() {
            let (m, inv) = (self.mean[c], 1.0 / self.std[c]);
            p.iter_mut().for_each(|v| *v = (*v - m) * inv);
        }
    }
}

/// Which statistics normalise the network's inputs (config key `input_norm`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum InputNormMode {
    /// One mean and standard deviation per channel, from the training utterances.
    #[default]
    Training,
    /// Each speaker's own mean and standard deviation per (channel, image row), from all of that
    /// speaker's utterances; labels are never read.
    Speaker,
}

impl std::fmt::Display for InputNormMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputNormMode::Training => "training",
            InputNormMode::Speaker => "speaker",
        })
    }
}

/// The normalisation a [`Batcher`] applies to every image it renders.
#[derive(Clone, Debug, PartialEq)]
pub enum Normalization {
    /// The same per-channel statistics for every utterance.
    Global(InputNorm),
    /// Each utterance's speaker's statistics.
    PerSpeaker(Arc<SpeakerNorm>),
}

impl From<InputNorm> for Normalization {
    fn from(n: InputNorm) -> Self {
        Normalization::Global(n)
    }
}

impl From<SpeakerNorm> for Normalization {
    fn from(n: SpeakerNorm) -> Self {
        Normalization::PerSpeaker(Arc::new(n))
    }
}

impl Normalization {
    /// The normalisation `mode` asks for when training on `train`: per-channel statistics of the
    /// training utterances, or per-speaker statistics of every utterance of `store` (`speakers[i]`
    /// is utterance `i`'s speaker; the split plays no part).
    pub fn for_training<S: AsRef<str>>(
        mode: InputNormMode,
        store: &FeatureStore,
        image: &ImageConfig,
        speakers: &[S],
        train: &[usize],
    ) -> Result<Self> {
        Ok(match mode {
            InputNormMode::Training => InputNorm::from_training(store, image, train)?.into(),
            InputNormMode::Speaker => SpeakerNorm::from_store(store, image, speakers)?.into(),
        })
    }

    pub fn mode(&self) -> InputNormMode {
        match self {
            Normalization::Global(_) => InputNormMode::Training,
            Normalization::PerSpeaker(_) => InputNormMode::Speaker,
        }
    }

    /// Normalise utterance `utterance`'s (C, H, W) image.
    pub fn apply(&self, utterance: usize, chw: &mut [f32]) {
        self.apply_variant(utterance, 0, chw)
    }

    /// Normalise utterance `utterance`'s (C, H, W) image drawn from its waveform-perturbed variant
    /// `variant` (0 = the original audio). Per-speaker statistics are the speaker's own for that
    /// variant: a pitch-shifted or sped-up utterance normalised with the speaker's unperturbed
    /// statistics would look shifted against its own speaker, which is what the network is
    /// meant to read as emotion. Training-set statistics pool many speakers, whose spread covers
    /// the perturbations, and are the same for every variant.
    pub fn apply_variant(&self, utterance: usize, variant: usize, chw: &mut [f32]) {
        match self {
            Normalization::Global(n) => n.apply(chw),
            Normalization::PerSpeaker(n) => n.apply_variant(utterance, variant, chw),
        }
    }

    /// Whether this normalisation fits images of `image` drawn from `store`'s utterances and
    /// waveform variants.
    pub(crate) fn check(&self, image: &ImageConfig, store: &FeatureStore) -> Result<()> {
        let utterances = store.len();
        match self {
            Normalization::Global(norm) => {
                if norm.mean.len() != image.channels() || norm.std.len() != image.channels() {
                    return Err(config_err!(
                        "input normalisation has {} channel(s), the images have {}",
                        norm.mean.len(),
                        image.channels()
                    ));
                }
            }
            Normalization::PerSpeaker(n) => {
                if (n.channels, n.height) != (image.channels(), image.height) {
                    return Err(config_err!(
                        "speaker normalisation has {} channel(s) of {} rows, the images {} of {}",
                        n.channels,
                        n.height,
                        image.channels(),
                        image.height
                    ));
                }
                if n.len_utterances() != utterances {
                    return Err(config_err!(
                        "speaker normalisation covers {} utterances, the feature store holds {}",
                        n.len_utterances(),
                        utterances
                    ));
                }
                if n.variants() < store.variants().len() {
                    return Err(config_err!(
                        "speaker normalisation covers {} waveform variant(s), the feature store \
                         holds {}",
                        n.variants(),
                        store.variants().len()
                    ));
                }
            }
        }
        Ok(())
    }
}
