//! On-the-fly augmentation of training images, rendered from the cached spectrograms; seeded, so a
//! (seed, epoch, position) triple always gives the same image.
//!
//! The paper's four: random cropping (a random sub-rectangle of the spectrogram, resized back to the
//! full image; in the fixed-time-resolution mode, a random window of frames), random flipping (time
//! reversal), graying (the coloured image replaced by its luma in every channel) and noise points
//! (a random sprinkling of pixels set to random intensities). Plus SpecAugment's time and frequency
//! masking (bands set to the normalised mean) and a random choice among the waveform-perturbed
//! variants in the feature store (speed / pitch; see [`super::cache`]). The frequency crop and the
//! masks act on the normalised image ([`Normalized`]); everything else on the intensities.

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

    /// SpecAugment alone (Park et al. 2019): two time masks of up to an eighth of the width and two
    /// frequency masks of up to an eighth of the height (20 frames and 8 bands of a 160 × 64 image),
    /// at the normalised mean; nothing that shows the network speech it never hears (time
    /// reversal), colours it never sees (graying, noise points) or shifted bands (the frequency
    /// crop). In the fixed-time mode the training crop still picks a random window.
    pub fn specaugment() -> Self {
        AugmentConfig {
            time_masks: 2,
            time_mask_width: 0.125,
            freq_masks: 2,
            freq_mask_height: 0.125,
            ..Self::none()
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

    /// Render one augmented image of `spec` as planar f32 (`channels × height × width`) into `out`,
    /// and return what is left to do once the image is normalised ([`Normalized::apply`]): the
    /// frequency crop and the SpecAugment masks act on the normalised image, so a crop stretches
    /// rows that were normalised with their own band's statistics, and a masked band holds the
    /// normalised mean (0) instead of the floor colour, which would land several standard
    /// deviations below it.
    pub fn render(
        &self,
        renderer: &mut Renderer,
        spec: &Spectrogram,
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) -> Normalized {
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
        let rows = if self.crop_freq < 1.0 {
            let span = h as f32 * rng.random_range(self.crop_freq..=1.0);
            let y0 = rng.random_range(0.0..=h as f32 - span);
            Some((y0, y0 + span))
        } else {
            None
        };
        let flip = rng.random_bool(self.flip as f64);
        let gray = rng.random_bool(self.gray as f64);
        let noise = rng.random_bool(self.noise_points as f64);
        renderer.intensity_mut(spec, &region);
        if flip {
            renderer.flip_time();
        }
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
        // Δ and ΔΔ (when configured) come from the cropped, flipped image before noise points
        // are sprinkled on it.
        renderer.compute_deltas();
        if noise {
            let image = renderer.intensity_mut_last();
            let count = (rng.random_range(0.0..=self.noise_density) * (h * w) as f32) as usize;
            for _ in 0..count {
                let p = rng.random_range(0..h * w);
                image[p] = rng.random();
            }
        }
        renderer.colorize_chw(gray, out);
        Normalized {
            rows,
            masks,
            height: h,
            width: w,
        }
    }
}

/// What an augmentation does to an image after its normalisation ([`AugmentConfig::render`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Normalized {
    /// The frequency crop: image rows `[y0, y1)` (fractional) stretched to the full height.
    rows: Option<(f32, f32)>,
    /// SpecAugment masks, set to 0 (the normalised mean) in every channel.
    masks: Vec<Mask>,
    height: usize,
    width: usize,
}

impl Normalized {
    /// Apply the frequency crop, then the masks, to a normalised (C, H, W) image. The crop resamples
    /// each column linearly, row position `y0 + (r + ½)·(y1 − y0)/H − ½` for output row `r`, and
    /// so commutes with the Δ channels (linear along time, row by row).
    pub fn apply(&self, chw: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        if h == 0 || w == 0 {
            return;
        }
        if let Some((y0, y1)) = self.rows {
            let scale = (y1 - y0) / h as f32;
            let mut plane = vec![0f32; h * w];
            for channel in chw.chunks_exact_mut(h * w) {
                plane.copy_from_slice(channel);
                for (r, dst) in channel.chunks_exact_mut(w).enumerate() {
                    let y = (y0 + (r as f32 + 0.5) * scale - 0.5).clamp(0.0, (h - 1) as f32);
                    let lo = (y.floor() as usize).min(h - 1);
                    let hi = (lo + 1).min(h - 1);
                    let t = y - lo as f32;
                    let (a, b) = (&plane[lo * w..(lo + 1) * w], &plane[hi * w..(hi + 1) * w]);
                    for ((d, &p), &q) in dst.iter_mut().zip(a).zip(b) {
                        *d = p + t * (q - p);
                    }
                }
            }
        }
        for channel in chw.chunks_exact_mut(h * w) {
            for m in &self.masks {
                m.apply(channel, w);
            }
        }
    }
}

/// A SpecAugment mask: image columns (time) or rows (frequency) set to 0.
#[derive(Clone, Debug, PartialEq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The frequency crop stretches rows `[y0, y1)` of the normalised image to the full height by
    /// linear interpolation between neighbouring rows, in every channel, and the masks then zero
    /// their columns or rows. A plane whose row `k` holds the value `k` makes the interpolation
    /// visible: output row `r` holds `y0 + (r + ½)·(y1 − y0)/H − ½`. Tolerance 1e-5: f32
    /// arithmetic on values below 32.
    #[test]
    fn the_frequency_crop_stretches_normalised_rows_and_masks_zero_every_channel() {
        let (c, h, w) = (2, 32, 5);
        let mut chw: Vec<f32> = (0..c * h * w).map(|i| ((i / w) % h) as f32).collect();
        let after = Normalized {
            rows: Some((8.0, 24.0)),
            masks: vec![Mask::Columns(1..3)],
            height: h,
            width: w,
        };
        after.apply(&mut chw);
        for ch in 0..c {
            for r in 0..h {
                let want = (8.0 + (r as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, (h - 1) as f32);
                for x in 0..w {
                    let v = chw[(ch * h + r) * w + x];
                    if (1..3).contains(&x) {
                        assert_eq!(v, 0.0, "channel {ch} row {r} column {x} is masked");
                    } else {
                        assert!(
                            (v - want).abs() < 1e-5,
                            "channel {ch} row {r} column {x}: {v}, expected {want}"
                        );
                    }
                }
            }
        }
        let mut rows = vec![1f32; c * h * w];
        Normalized {
            rows: None,
            masks: vec![Mask::Rows(4..6)],
            height: h,
            width: w,
        }
        .apply(&mut rows);
        for (i, v) in rows.iter().enumerate() {
            let row = (i / w) % h;
            assert_eq!(*v, if (4..6).contains(&row) { 0.0 } else { 1.0 });
        }
    }
}
