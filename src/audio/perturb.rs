//! Waveform perturbations for augmentation: speed (tempo and pitch together, by resampling, as in
//! Kaldi-style speed perturbation) and pitch shift at constant tempo (resampling followed by a WSOLA
//! time stretch back to the original duration).
//!
//! These work on samples, so they cannot be applied to a cached spectrogram. The feature cache
//! therefore stores a few perturbed variants of every utterance, computed once
//! ([`crate::data::cache`]), and augmentation picks among them.

use serde::{Deserialize, Serialize};

use super::Resampler;
use crate::{config_err, Result};

/// One waveform perturbation. The identity is `speed = 1, pitch_semitones = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perturbation {
    /// Playback-speed factor: 1.1 is 10 % faster and 10 % higher.
    pub speed: f32,
    /// Pitch shift in semitones at unchanged duration.
    pub pitch_semitones: f32,
}

impl Perturbation {
    pub const IDENTITY: Perturbation = Perturbation {
        speed: 1.0,
        pitch_semitones: 0.0,
    };

    pub fn is_identity(&self) -> bool {
        self.speed == 1.0 && self.pitch_semitones == 0.0
    }

    pub fn validate(&self) -> Result<()> {
        if !(0.5..=2.0).contains(&self.speed) {
            return Err(config_err!(
                "speed perturbation {} is outside 0.5 ..= 2.0",
                self.speed
            ));
        }
        if !(-12.0..=12.0).contains(&self.pitch_semitones) {
            return Err(config_err!(
                "pitch shift {} semitones is outside -12 ..= 12",
                self.pitch_semitones
            ));
        }
        Ok(())
    }

    /// Apply to `samples` at `rate` Hz.
    pub fn apply(&self, samples: &[f32], rate: u32) -> Result<Vec<f32>> {
        self.validate()?;
        let mut x = if self.speed != 1.0 {
            change_speed(samples, rate, self.speed)?
        } else {
            samples.to_vec()
        };
        if self.pitch_semitones != 0.0 {
            let factor = 2f32.powf(self.pitch_semitones / 12.0);
            let target = x.len();
            let faster = change_speed(&x, rate, factor)?;
            x = time_stretch(&faster, target, rate);
        }
        Ok(x)
    }
}

/// Play `samples` `factor` times faster: treat them as recorded at `rate·factor` and resample that
/// to `rate` (the rate is rounded to 10 Hz to keep the resampler's polyphase table small).
pub fn change_speed(samples: &[f32], rate: u32, factor: f32) -> Result<Vec<f32>> {
    let from = ((rate as f64 * factor as f64 / 10.0).round() * 10.0) as u32;
    Ok(Resampler::new(from, rate)?.process(samples))
}

/// WSOLA time stretch of `x` to `out_len` samples: Hann-windowed frames (32 ms, 50 % overlap) taken
/// from the input at the stretched analysis positions, each shifted by up to ±8 ms to the position
/// that best continues the previous frame's waveform (maximum cross-correlation), then overlap-added.
pub fn time_stretch(x: &[f32], out_len: usize, rate: u32) -> Vec<f32> {
    let n = ((0.032 * rate as f64) as usize).max(16) & !1;
    let hs = n / 2;
    let tolerance = (0.008 * rate as f64) as usize;
    if x.len() < n || out_len < n {
        // Too short to stretch meaningfully: plain resampling of the length.
        return (0..out_len)
            .map(|i| x[(i * x.len() / out_len.max(1)).min(x.len().saturating_sub(1))])
            .collect();
    }
    let window: Vec<f32> = (0..n)
        .map(|k| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * k as f32 / n as f32).cos())
        .collect();
    let ha = hs as f64 * x.len() as f64 / out_len as f64;
    let mut out = vec![0f32; out_len + n];
    let mut norm = vec![0f32; out_len + n];
    let max_start = x.len() - n;
    let mut prev: Option<usize> = None;
    let mut k = 0;
    while k * hs < out_len {
        let nominal = ((k as f64 * ha) as usize).min(max_start);
        let chosen = match prev {
            None => nominal,
            Some(p) => {
                // The natural continuation of the previous frame starts at p + hs.
                let natural = (p + hs).min(max_start);
                let lo = nominal.saturating_sub(tolerance);
                let hi = (nominal + tolerance).min(max_start);
                let reference = &x[natural..natural + hs];
                let mut best = (f32::NEG_INFINITY, nominal);
                for cand in lo..=hi {
                    let c: f32 = reference
                        .iter()
                        .zip(&x[cand..cand + hs])
                        .map(|(a, b)| a * b)
                        .sum();
                    if c > best.0 {
                        best = (c, cand);
                    }
                }
                best.1
            }
        };
        let o = k * hs;
        for j in 0..n {
            out[o + j] += x[chosen + j] * window[j];
            norm[o + j] += window[j];
        }
        prev = Some(chosen);
        k += 1;
    }
    out.truncate(out_len);
    for (y, w) in out.iter_mut().zip(&norm) {
        if *w > 1e-3 {
            *y /= *w;
        }
    }
    out
}
