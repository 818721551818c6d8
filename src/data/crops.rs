//! Time crops: how a network trained on fixed-length crops (`time_axis = "fixed"`, one column per
//! STFT frame, `width` frames per crop) sees whole utterances at evaluation.
//!
//! Training takes one random window of `width` frames per draw ([`super::augment`]); an
//! utterance shorter than `width` frames is drawn from its first frame and padded past its end
//! with the floor colour (silence: intensity 0, Δ and ΔΔ 0), which is also what the audio's own
//! trailing silence looks like. Evaluation ([`EvalTime`]) either
//! - shows the first `width` frames (`first`, what a fixed-width network without crops sees), or
//! - shows the network the whole utterance at once (`whole`: the image is as wide as the longest
//!   evaluated utterance, shorter ones padded the same way; needs a network whose output does not
//!   depend on the width, i.e. one with statistics pooling), or
//! - averages the class probabilities of overlapping crops of the training width (`crops`): the
//!   windows start every `hop` frames, and a last window is aligned with the utterance's end so
//!   every frame is seen; an utterance no longer than one crop is one crop.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cache::FeatureStore;
use super::norm::Normalization;
use super::render::with_renderer;
use crate::features::{ImageConfig, Region, TimeAxis};
use crate::{config_err, Result, Shape, Tensor};

/// How validation and test utterances are shown to a network trained on crops (config key
/// `eval_time`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EvalTime {
    /// The image as training draws it without augmentation: the first `width` frames (padded
    /// past a short utterance's end), or with `time_axis = "whole"` the stretched utterance.
    #[default]
    First,
    /// The whole utterance in one image, at its own width (at least the training width).
    Whole,
    /// The mean of the class probabilities over crops of the training width.
    Crops,
}

impl std::fmt::Display for EvalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvalTime::First => "first",
            EvalTime::Whole => "whole",
            EvalTime::Crops => "crops",
        })
    }
}

/// First frames of the evaluation crops of an utterance of `frames` frames: every `hop` frames
/// while a whole crop of `width` fits, plus one ending at the last frame; `[0]` when the utterance
/// fits in one crop.
pub fn crop_starts(frames: usize, width: usize, hop: usize) -> Vec<usize> {
    assert!(width > 0 && hop > 0, "crop width and hop must be positive");
    if frames <= width {
        return vec![0];
    }
    let last = frames - width;
    let mut starts: Vec<usize> = (0..=last).step_by(hop).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    starts
}

/// One evaluation crop: corpus utterance `utterance`, frames `[start, start + width)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub utterance: usize,
    pub start: usize,
}

/// Every crop of every utterance in `indices` (in that order, each utterance's crops in time
/// order), for crops of `image.width` frames every `hop` frames.
pub fn plan_crops(
    store: &FeatureStore,
    image: &ImageConfig,
    indices: &[usize],
    hop: usize,
) -> Result<Vec<Crop>> {
    check_fixed(image)?;
    if hop == 0 {
        return Err(config_err!(
            "the evaluation crop hop must be at least 1 frame"
        ));
    }
    Ok(indices
        .iter()
        .flat_map(|&u| {
            crop_starts(store.stored(u, 0).frames, image.width, hop)
                .into_iter()
                .map(move |start| Crop {
                    utterance: u,
                    start,
                })
        })
        .collect())
}

/// The image width that holds the longest of `indices` whole (at least `image.width`).
pub fn whole_width(store: &FeatureStore, image: &ImageConfig, indices: &[usize]) -> usize {
    indices
        .iter()
        .map(|&u| store.stored(u, 0).frames)
        .max()
        .unwrap_or(0)
        .max(image.width)
}

fn check_fixed(image: &ImageConfig) -> Result<()> {
    image.validate()?;
    if image.time_axis != TimeAxis::Fixed {
        return Err(config_err!(
            "evaluation crops need time_axis = \"fixed\" (one column per frame); with \"whole\" \
             the utterance is already stretched to one image"
        ));
    }
    Ok(())
}

/// The plain (unaugmented) images of `crops`, normalised like the training inputs: (N, C, H, W)
/// with N = `crops.len()`.
pub fn render_crops(
    store: &FeatureStore,
    image: &ImageConfig,
    norm: &Normalization,
    crops: &[Crop],
) -> Result<Tensor<f32>> {
    check_fixed(image)?;
    let (c, h, w) = (image.channels(), image.height, image.width);
    let per = c * h * w;
    let mut data = vec![0f32; crops.len() * per];
    data.par_chunks_mut(per)
        .zip(crops.par_iter())
        .for_each(|(out, crop)| {
            with_renderer(image, |r, spec| {
                store.spectrogram_into(crop.utterance, 0, spec);
                let region = Region {
                    t0: crop.start as f32,
                    t1: (crop.start + w) as f32,
                    ..Region::whole(spec)
                };
                r.render_region_chw(spec, &region, out);
            });
            norm.apply(crop.utterance, out);
        });
    Ok(Tensor {
        shape: Shape::new(crops.len(), c, h, w),
        data,
    })
}

/// Mean class probabilities per utterance from per-crop probabilities (`probs[k]` belongs to
/// `crops[k]`), in the order the utterances first appear in `crops`.
pub fn average_over_crops(crops: &[Crop], probs: &[Vec<f64>]) -> Vec<(usize, Vec<f64>)> {
    assert_eq!(crops.len(), probs.len(), "one probability row per crop");
    let mut out: Vec<(usize, Vec<f64>, usize)> = Vec::new();
    for (crop, p) in crops.iter().zip(probs) {
        match out.last_mut() {
            Some((u, sum, n)) if *u == crop.utterance => {
                sum.iter_mut().zip(p).for_each(|(s, &v)| *s += v);
                *n += 1;
            }
            _ => out.push((crop.utterance, p.clone(), 1)),
        }
    }
    out.into_iter()
        .map(|(u, sum, n)| (u, sum.into_iter().map(|s| s / n as f64).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_starts_cover_every_frame() {
        assert_eq!(crop_starts(50, 100, 50), vec![0]);
        assert_eq!(crop_starts(100, 100, 50), vec![0]);
        assert_eq!(crop_starts(200, 100, 50), vec![0, 50, 100]);
        // 230 frames: 0, 50, 100 fit; the last crop is aligned with the end (130).
        assert_eq!(crop_starts(230, 100, 50), vec![0, 50, 100, 130]);
        for frames in 1..400 {
            for hop in [1, 7, 50, 100] {
                let s = crop_starts(frames, 100, hop);
                let covered = s.last().unwrap() + 100;
                assert!(covered >= frames, "frames {frames} hop {hop}: {s:?}");
                assert!(s.windows(2).all(|p| p[0] < p[1] && p[1] - p[0] <= hop));
                assert!(frames <= 100 || s.last().unwrap() + 100 == frames);
            }
        }
    }

    #[test]
    fn averages_are_per_utterance_means() {
        let crops = [
            Crop {
                utterance: 4,
                start: 0,
            },
            Crop {
                utterance: 4,
                start: 10,
            },
            Crop {
                utterance: 1,
                start: 0,
            },
        ];
        let probs = vec![vec![0.2, 0.8], vec![0.6, 0.4], vec![1.0, 0.0]];
        let avg = average_over_crops(&crops, &probs);
        assert_eq!(avg.len(), 2);
        assert_eq!(avg[0].0, 4);
        assert!((avg[0].1[0] - 0.4).abs() < 1e-12 && (avg[0].1[1] - 0.6).abs() < 1e-12);
        assert_eq!(avg[1], (1, vec![1.0, 0.0]));
    }
}
