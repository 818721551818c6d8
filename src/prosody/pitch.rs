//! F0 and voicing per frame: a YIN pitch tracker (de Cheveigné & Kawahara, "YIN, a fundamental
//! frequency estimator for speech and music", JASA 2002), written here.
//!
//! Why our own: the one Rust crate for the job (`pitch-detection` 0.3) estimates a pitch per
//! buffer with a clarity figure, with no notion of frames, energy gating or a voicing decision,
//! and is no longer released; YIN itself is a page of arithmetic and easy to test against signals
//! of known F0.
//!
//! Per frame of `window + max_lag` samples (every `hop`):
//! 1. difference function `d(τ) = Σ_{j<W} (x[j] − x[j+τ])²` for τ = 0 ..= max_lag;
//! 2. cumulative mean normalised difference `d'(τ) = d(τ) · τ / Σ_{k=1..τ} d(k)`, `d'(0) = 1`;
//! 3. the first τ in [min_lag, max_lag] where `d'` dips below `threshold`, followed down to its
//!    local minimum (the first dip, not the deepest, avoids the octave-too-low errors of plain
//!    autocorrelation); without such a dip, the global minimum;
//! 4. parabolic interpolation of `d'` around that τ for a sub-sample period.
//!
//! A frame is voiced when its `d'` minimum is below `threshold` and its energy is within
//! `silence_db` of the utterance's loudest frame (quiet frames are silence or noise whatever their
//! periodicity). Its "aperiodicity" is that `d'` minimum (0 for a perfectly periodic frame, near 1
//! for noise), a rough voice-quality (breathiness, roughness) measure.

use serde::{Deserialize, Serialize};

use crate::{config_err, Result};

/// YIN's settings. Everything that changes the result lives here (it is part of the prosody
/// cache key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PitchConfig {
    /// Lowest F0 searched (sets the longest lag).
    pub fmin_hz: f32,
    /// Highest F0 searched (sets the shortest lag).
    pub fmax_hz: f32,
    /// Integration window W of the difference function.
    pub window_ms: f32,
    /// Frame step.
    pub hop_ms: f32,
    /// YIN's absolute threshold on `d'`: a dip below it is a period, and a frame whose best `d'`
    /// stays above it is unvoiced. 0.1–0.2 in the paper; we use 0.2 for expressive speech.
    pub threshold: f32,
    /// Frames more than this far below the utterance's loudest frame (in dB of RMS energy) are
    /// silence: unvoiced, and left out of the energy statistics.
    pub silence_db: f32,
}

impl Default for PitchConfig {
    fn default() -> Self {
        PitchConfig {
            fmin_hz: 60.0,
            fmax_hz: 500.0,
            window_ms: 25.0,
            hop_ms: 10.0,
            threshold: 0.2,
            silence_db: 40.0,
        }
    }
}

impl PitchConfig {
    pub fn validate(&self, sample_rate: u32) -> Result<()> {
        let nyquist = sample_rate as f32 / 2.0;
        if !(self.fmin_hz > 0.0 && self.fmin_hz < self.fmax_hz && self.fmax_hz < nyquist) {
            return Err(config_err!(
                "pitch range {} Hz .. {} Hz must satisfy 0 < fmin < fmax < {nyquist} Hz",
                self.fmin_hz,
                self.fmax_hz
            ));
        }
        if !(self.window_ms > 0.0 && self.hop_ms > 0.0) {
            return Err(config_err!(
                "pitch window ({} ms) and hop ({} ms) must be positive",
                self.window_ms,
                self.hop_ms
            ));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(config_err!(
                "pitch threshold must be in (0, 1), got {}",
                self.threshold
            ));
        }
        if self.silence_db.is_nan() || self.silence_db <= 0.0 {
            return Err(config_err!(
                "silence_db must be positive, got {}",
                self.silence_db
            ));
        }
        let lags = self.lags(sample_rate);
        if lags.0 < 2 {
            return Err(config_err!(
                "pitch fmax {} Hz is too close to the sample rate {sample_rate} Hz",
                self.fmax_hz
            ));
        }
        Ok(())
    }

    /// (shortest, longest) lag searched, in samples.
    pub fn lags(&self, sample_rate: u32) -> (usize, usize) {
        let sr = sample_rate as f32;
        (
            (sr / self.fmax_hz).floor() as usize,
            (sr / self.fmin_hz).ceil() as usize,
        )
    }
}

/// One frame's estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PitchFrame {
    /// F0 in Hz (the best period's inverse, also for unvoiced frames, where it means little).
    pub f0_hz: f32,
    pub voiced: bool,
    /// The `d'` minimum: 0 = perfectly periodic, ~1 = noise.
    pub aperiodicity: f32,
    /// RMS energy of the frame's window in dB (full-scale sine ≈ −3 dB; floor −100 dB).
    pub energy_db: f32,
}

/// A whole utterance's track, one entry per frame every `hop_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct PitchTrack {
    pub hop_s: f64,
    pub frames: Vec<PitchFrame>,
}

/// YIN over `samples` at `sample_rate`.
pub fn track(samples: &[f32], sample_rate: u32, cfg: &PitchConfig) -> Result<PitchTrack> {
    cfg.validate(sample_rate)?;
    let sr = sample_rate as f64;
    let (min_lag, max_lag) = cfg.lags(sample_rate);
    let window = ((cfg.window_ms as f64 * 1e-3 * sr).round() as usize).max(max_lag);
    let hop = ((cfg.hop_ms as f64 * 1e-3 * sr).round() as usize).max(1);
    let span = window + max_lag;
    // Short input: one frame over what there is, zero-padded.
    let padded;
    let x: &[f32] = if samples.len() < span {
        let mut p = samples.to_vec();
        p.resize(span, 0.0);
        padded = p;
        &padded
    } else {
        samples
    };
    let n_frames = 1 + (x.len() - span) / hop;
    let mut d = vec![0f64; max_lag + 1];
    let mut frames = Vec::with_capacity(n_frames);
    for t in 0..n_frames {
        let f = &x[t * hop..t * hop + span];
        let energy = f[..window].iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / window as f64;
        let energy_db = (10.0 * energy.max(1e-10).log10()) as f32;
        difference(f, window, &mut d);
        let (period, dmin) = best_period(&mut d, min_lag, max_lag, cfg.threshold as f64);
        frames.push(PitchFrame {
            f0_hz: (sr / period) as f32,
            voiced: dmin < cfg.threshold as f64,
            aperiodicity: dmin.clamp(0.0, 1.0) as f32,
            energy_db,
        });
    }
    let loudest = frames
        .iter()
        .map(|f| f.energy_db)
        .fold(f32::NEG_INFINITY, f32::max);
    for f in &mut frames {
        if f.energy_db < loudest - cfg.silence_db {
            f.voiced = false;
        }
    }
    Ok(PitchTrack {
        hop_s: hop as f64 / sr,
        frames,
    })
}

/// `d[τ] = Σ_{j<W} (f[j] − f[j+τ])²` for τ = 0 ..= d.len() − 1, in f64.
fn difference(f: &[f32], window: usize, d: &mut [f64]) {
    d[0] = 0.0;
    for tau in 1..d.len() {
        let mut acc = 0f64;
        let (a, b) = (&f[..window], &f[tau..tau + window]);
        // f32 products summed in blocks then widened: the frames are short, and the worst
        // relative error of an f32 block sum of 8 is far below YIN's thresholds.
        for (ca, cb) in a.chunks(8).zip(b.chunks(8)) {
            let mut s = 0f32;
            for (&p, &q) in ca.iter().zip(cb) {
                let e = p - q;
                s += e * e;
            }
            acc += s as f64;
        }
        d[tau] = acc;
    }
}

/// Turns `d` into `d'` in place and returns (period in samples, interpolated, and `d'` there).
fn best_period(d: &mut [f64], min_lag: usize, max_lag: usize, threshold: f64) -> (f64, f64) {
    let mut running = 0f64;
    d[0] = 1.0;
    for (tau, v) in d.iter_mut().enumerate().skip(1) {
        running += *v;
        *v = if running > 0.0 {
            *v * tau as f64 / running
        } else {
            1.0
        };
    }
    let range = min_lag..=max_lag.min(d.len() - 1);
    let mut chosen = None;
    let mut tau = *range.start();
    while tau <= *range.end() {
        if d[tau] < threshold {
            while tau < *range.end() && d[tau + 1] < d[tau] {
                tau += 1;
            }
            chosen = Some(tau);
            break;
        }
        tau += 1;
    }
    let tau = chosen.unwrap_or_else(|| {
        range
            .clone()
            .min_by(|&a, &b| d[a].total_cmp(&d[b]))
            .expect("non-empty lag range")
    });
    // Parabolic interpolation through (τ−1, τ, τ+1).
    if tau > 1 && tau + 1 < d.len() {
        let (a, b, c) = (d[tau - 1], d[tau], d[tau + 1]);
        let denom = a - 2.0 * b + c;
        if denom > 0.0 {
            let shift = (0.5 * (a - c) / denom).clamp(-0.5, 0.5);
            let dmin = b - 0.25 * (a - c) * shift;
            return (tau as f64 + shift, dmin.max(0.0));
        }
    }
    (tau as f64, d[tau])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    const SR: u32 = 16_000;

    fn voiced_f0s(t: &PitchTrack) -> Vec<f32> {
        t.frames
            .iter()
            .filter(|f| f.voiced)
            .map(|f| f.f0_hz)
            .collect()
    }

    /// Pure tones across the search range: every frame voiced, F0 within 0.5 % (parabolic
    /// interpolation resolves the period to a small fraction of a sample; 0.5 % is a tenth of a
    /// semitone).
    #[test]
    fn sine_tones_of_known_frequency() {
        for f0 in [80.0f32, 123.4, 220.0, 310.0, 450.0] {
            let x: Vec<f32> = (0..SR as usize)
                .map(|i| 0.5 * (2.0 * std::f32::consts::PI * f0 * i as f32 / SR as f32).sin())
                .collect();
            let t = track(&x, SR, &PitchConfig::default()).unwrap();
            let v = voiced_f0s(&t);
            assert_eq!(v.len(), t.frames.len(), "{f0} Hz: every frame voiced");
            for g in v {
                assert!((g - f0).abs() < 0.005 * f0, "{f0} Hz estimated as {g}");
            }
        }
    }

    /// A harmonic complex whose second and third harmonics are stronger than the fundamental (as
    /// in a vowel near a formant): YIN must report F0, not 2·F0 (the first dip rule).
    #[test]
    fn harmonic_signal_reports_the_fundamental() {
        for f0 in [95.0f32, 180.0, 260.0] {
            let x: Vec<f32> = (0..SR as usize / 2)
                .map(|i| {
                    let p = 2.0 * std::f32::consts::PI * f0 * i as f32 / SR as f32;
                    0.2 * p.sin()
                        + 0.5 * (2.0 * p + 0.3).sin()
                        + 0.4 * (3.0 * p + 1.1).sin()
                        + 0.1 * (5.0 * p).sin()
                })
                .collect();
            let t = track(&x, SR, &PitchConfig::default()).unwrap();
            let v = voiced_f0s(&t);
            assert!(v.len() == t.frames.len(), "{f0} Hz: all voiced");
            let median = {
                let mut s = v.clone();
                s.sort_by(f32::total_cmp);
                s[s.len() / 2]
            };
            assert!((median - f0).abs() < 0.005 * f0, "{f0} Hz: median {median}");
        }
    }

    /// White noise is unvoiced in almost every frame, and so is digital silence; a tone after
    /// silence is voiced only where it sounds.
    #[test]
    fn noise_and_silence_are_unvoiced() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let noise: Vec<f32> = (0..SR as usize)
            .map(|_| rng.random_range(-0.5f32..0.5))
            .collect();
        let t = track(&noise, SR, &PitchConfig::default()).unwrap();
        let voiced = t.frames.iter().filter(|f| f.voiced).count();
        assert!(
            voiced * 20 < t.frames.len(),
            "{voiced} of {} noise frames voiced",
            t.frames.len()
        );
        assert!(t.frames.iter().all(|f| f.aperiodicity > 0.3));

        let mut x = vec![0f32; SR as usize / 2];
        x.extend(
            (0..SR as usize / 2)
                .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 150.0 * i as f32 / SR as f32).sin()),
        );
        let t = track(&x, SR, &PitchConfig::default()).unwrap();
        let hop = 160;
        for (k, f) in t.frames.iter().enumerate() {
            let start = k * hop;
            let end = start + 400 + 267;
            if end <= SR as usize / 2 {
                assert!(!f.voiced, "silent frame {k} voiced");
            } else if start >= SR as usize / 2 {
                assert!(
                    f.voiced && (f.f0_hz - 150.0).abs() < 1.0,
                    "frame {k}: {f:?}"
                );
            }
        }
    }

    /// A glide from 120 to 240 Hz over a second: the track follows it (each voiced frame within
    /// 2 % of the instantaneous frequency at its window's centre; the frequency changes by about
    /// 1 % over one window, hence the wider tolerance).
    #[test]
    fn a_glide_is_followed() {
        let n = SR as usize;
        let mut phase = 0f64;
        let inst = |i: usize| 120.0 * 2f64.powf(i as f64 / n as f64);
        let x: Vec<f32> = (0..n)
            .map(|i| {
                phase += 2.0 * std::f64::consts::PI * inst(i) / SR as f64;
                (0.4 * phase.sin()) as f32
            })
            .collect();
        let t = track(&x, SR, &PitchConfig::default()).unwrap();
        for (k, f) in t.frames.iter().enumerate() {
            let centre = k * 160 + 200;
            let want = inst(centre) as f32;
            assert!(f.voiced, "frame {k}");
            assert!(
                (f.f0_hz - want).abs() < 0.02 * want,
                "frame {k}: {} vs {want}",
                f.f0_hz
            );
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = PitchConfig {
            fmin_hz: 600.0,
            ..PitchConfig::default()
        };
        assert!(track(&[0.0; 1000], SR, &bad).is_err());
        let bad = PitchConfig {
            threshold: 1.5,
            ..PitchConfig::default()
        };
        assert!(track(&[0.0; 1000], SR, &bad).is_err());
    }
}
