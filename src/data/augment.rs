//! On-the-fly augmentation of training images, rendered from the cached spectrograms; seeded, so a
//! (seed, epoch, position) triple always gives the same image.
//!
//! The paper's four: random cropping (a random sub-rectangle of the spectrogram, resized back to the
//! full image; in the fixed-time-resolution mode, a random window of frames), random flipping (time
//! reversal), graying (the coloured image replaced by its luma in every channel) and noise points
//! (a random sprinkling of pixels set to random intensities). Plus SpecAugment's time and frequency
//! masking (bands set to the floor) and a random choice among the waveform-perturbed variants in the
//! feature store (speed / pitch; see [`super::cache`]).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::features::{Renderer, Spectrogram, TimeAxis};
use crate::{config_err, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Smallest share of the time axis a random crop keeps (1 = no time cropping).
    pub crop_time: f32,
    /// Smallest share of the frequency axis a random crop keeps (1 = no frequency cropping).
    pub crop_freq: f32,
    /// Probability of time reversal.
    pub flip: f32,
    /// Probability of graying (colour images only).
    pub gray: f32,
    /// Probability of adding noise points.
    pub noise_points: f32,
    /// Largest share of pixels noise points hit (the share is drawn uniformly up to it).
    pub noise_density: f32,
    /// SpecAugment: number of time masks, and each one's largest width as a share of the image width.
    pub time_masks: usize,
    pub time_mask_width: f32,
    /// SpecAugment: number of frequency masks, and each one's largest height as a share of the height.
    pub freq_masks: usize,
    pub freq_mask_height: f32,
    /// Probability of using a waveform-perturbed variant (when the feature store has any).
    pub waveform: f32,
}

impl Default for AugmentConfig {
    /// The paper's four augmentations plus light SpecAugment masking and perturbed variants.
    fn default() -> Self {
        AugmentConfig {
            crop_time: 0.8,
            crop_freq: 0.9,
            flip: 0.5,
            gray: 0.2,
            noise_points: 0.5,
            noise_density: 0.01,
            time_masks: 1,
            time_mask_width: 0.1,
            freq_masks: 1,
            freq_mask_height: 0.1,
            waveform: 0.5,
        }
    }
}

impl AugmentConfig {
    /// Only the paper's augmentations: random crop, flip, graying, noise points.
    pub fn paper() -> Self {
        AugmentConfig {
            time_masks: 0,
            freq_masks: 0,
            waveform: 0.0,
            ..Self::default()
        }
    }

    /// Nothing changes the image.
    pub fn none() -> Self {
        AugmentConfig {
            crop_time: 1.0,
            crop_freq: 1.0,
            flip: 0.0,
            gray: 0.0,
            noise_points: 0.0,
            noise_density: 0.0,
            time_masks: 0,
            time_mask_width: 0.0,
            freq_masks: 0,
            freq_mask_height: 0.0,
            waveform: 0.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let unit = [
            ("crop_time", self.crop_time),
            ("crop_freq", self.crop_freq),
            ("flip", self.flip),
            ("gray", self.gray),
            ("noise_points", self.noise_points),
            ("noise_density", self.noise_density),
            ("time_mask_width", self.time_mask_width),
            ("freq_mask_height", self.freq_mask_height),
            ("waveform", self.waveform),
        ];
        for (name, v) in unit {
            if !(0.0..=1.0).contains(&v) {
                return Err(config_err!(
                    "augmentation setting {name} = {v} must be in [0, 1]"
                ));
            }
        }
        if self.crop_time <= 0.0 || self.crop_freq <= 0.0 {
            return Err(config_err!("crop shares must be positive"));
        }
        Ok(())
    }

    /// Which variant of an utterance to draw, given `variants` stored (variant 0 is the original).
    pub fn pick_variant(&self, variants: usize, rng: &mut ChaCha8Rng) -> usize {
        if variants > 1 && self.waveform > 0.0 && rng.random_bool(self.waveform as f64) {
            rng.random_range(1..variants)
        } else {
            0
        }
    }

    /// Render one augmented image of `spec` as planar f32 (`channels × height × width`) into `out`.
    pub fn render(
        &self,
        renderer: &mut Renderer,
        spec: &Spectrogram,
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) {
        let cfg = renderer.config().clone();
        let (h, w) = (cfg.height, cfg.width);
        let mut region = renderer.default_region(spec);
        if cfg.time_axis == TimeAxis::Fixed {
            if spec.frames > w {
                region.t0 = rng.random_range(0..=spec.frames - w) as f32;
                region.t1 = region.t0 + w as f32;
            }
        } else if self.crop_time < 1.0 {
            let span = spec.frames as f32 * rng.random_range(self.crop_time..=1.0);
            region.t0 = rng.random_range(0.0..=spec.frames as f32 - span);
            region.t1 = region.t0 + span;
        }
        if self.crop_freq < 1.0 {
            let span = spec.bins as f32 * rng.random_range(self.crop_freq..=1.0);
            region.f0 = rng.random_range(0.0..=spec.bins as f32 - span);
            region.f1 = region.f0 + span;
        }
        let flip = rng.random_bool(self.flip as f64);
        let gray = rng.random_bool(self.gray as f64);
        let noise = rng.random_bool(self.noise_points as f64);
        renderer.intensity_mut(spec, &region);
        if flip {
            renderer.flip_time();
        }
        // Δ and ΔΔ (when configured) come from the cropped, flipped image before anything is
        // masked or sprinkled on it, and the masks cover them too: a masked band is missing
        // information in every channel, not a step edge the deltas would turn into a signal.
        renderer.compute_deltas();
        let mut masks: Vec<Mask> = Vec::new();
        for _ in 0..self.time_masks {
            let width = rng.random_range(0..=(self.time_mask_width * w as f32) as usize);
            let x0 = rng.random_range(0..=w - width);
            masks.push(Mask::Columns(x0..x0 + width));
        }
        for _ in 0..self.freq_masks {
            let height = rng.random_range(0..=(self.freq_mask_height * h as f32) as usize);
            let y0 = rng.random_range(0..=h - height);
            masks.push(Mask::Rows(y0..y0 + height));
        }
        for m in &masks {
            m.apply(renderer.intensity_mut_last(), w);
            let (d, dd) = renderer.deltas_mut();
            if !d.is_empty() {
                m.apply(d, w);
                m.apply(dd, w);
            }
        }
        if noise {
            let image = renderer.intensity_mut_last();
            let count = (rng.random_range(0.0..=self.noise_density) * (h * w) as f32) as usize;
            for _ in 0..count {
                let p = rng.random_range(0..h * w);
                image[p] = rng.random();
            }
        }
        renderer.colorize_chw(gray, out);
    }
}

/// A SpecAugment mask: image columns (time) or rows (frequency) set to 0.
enum Mask {
    Columns(std::ops::Range<usize>),
    Rows(std::ops::Range<usize>),
}

impl Mask {
    fn apply(&self, plane: &mut [f32], width: usize) {
        match self {
            Mask::Columns(c) => plane
                .chunks_exact_mut(width)
                .for_each(|row| row[c.clone()].fill(0.0)),
            Mask::Rows(r) => plane[r.start * width..r.end * width].fill(0.0),
        }
    }
}
