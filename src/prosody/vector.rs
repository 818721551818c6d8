//! The utterance vector of the prosody branch and of a network's `vec` layer: its settings
//! ([`ProsodyConfig`]: the pitch tracker and which set) and [`prosody_vector`], the basic
//! statistics ([`super::basic`]) followed, for the full set, by the functionals of the frame-level
//! descriptors ([`super::functionals`]): a fixed-length vector per utterance, the kind the classic
//! SER baselines (eGeMAPS, ComParE) classify with.

use serde::{Deserialize, Serialize};

use super::pitch::PitchConfig;
use super::{basic, functionals};
use crate::Result;

/// Which utterance vector the prosody branch classifies (config key `prosody_set`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ProsodySet {
    /// The 29 prosody and voice-quality statistics alone (eGeMAPS-like).
    #[default]
    Basic,
    /// The basic set followed by the large set of functionals of low-level descriptors
    /// (ComParE-like, about two thousand entries).
    Full,
}

impl std::fmt::Display for ProsodySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProsodySet::Basic => "basic",
            ProsodySet::Full => "full",
        })
    }
}

/// The settings of the prosody vector (part of its cache key).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProsodyConfig {
    pub pitch: PitchConfig,
    pub set: ProsodySet,
}

impl ProsodyConfig {
    /// Names of the vector's entries, in order.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = basic::FEATURES.iter().map(|s| s.to_string()).collect();
        if self.set == ProsodySet::Full {
            v.extend(functionals::names());
        }
        v
    }

    /// Length of the vector.
    pub fn vector_len(&self) -> usize {
        match self.set {
            ProsodySet::Basic => basic::LEN,
            ProsodySet::Full => basic::LEN + functionals::len(),
        }
    }
}

/// The utterance vector ([`ProsodyConfig::names`] order) of `samples` at `sample_rate`.
pub fn prosody_vector(samples: &[f32], sample_rate: u32, cfg: &ProsodyConfig) -> Result<Vec<f32>> {
    let mut v = basic::vector(samples, sample_rate, &cfg.pitch)?;
    if cfg.set == ProsodySet::Full {
        v.extend(functionals::vector(samples, sample_rate, &cfg.pitch)?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosody::basic::{FEATURES, LEN};
    use crate::prosody::stats::semitones;

    const SR: u32 = 16_000;

    fn index(name: &str) -> usize {
        FEATURES.iter().position(|&n| n == name).unwrap()
    }

    /// A harmonic "vowel" at F0(t), amplitude a(t), for `seconds`.
    fn voice(seconds: f64, f0: impl Fn(f64) -> f64, amp: impl Fn(f64) -> f64) -> Vec<f32> {
        let n = (seconds * SR as f64) as usize;
        let mut phase = 0.0;
        (0..n)
            .map(|i| {
                let t = i as f64 / SR as f64;
                phase += 2.0 * std::f64::consts::PI * f0(t) / SR as f64;
                let s: f64 = (1..=8).map(|h| (h as f64 * phase).sin() / h as f64).sum();
                (amp(t) * s * 0.3) as f32
            })
            .collect()
    }

    /// A steady 200 Hz voice: F0 mean at 12·log2(200/27.5) = 34.36 semitones with a spread near
    /// 0 and no slope; a rising one (150 → 300 Hz over 1 s, 12 semitones) has slope 12 st/s.
    /// Tolerances: 0.1 st (YIN's error on clean harmonic signals is far below that), slope within
    /// 0.5 st/s (edge frames see a little less of the glide).
    #[test]
    fn f0_statistics_of_known_contours() {
        let steady =
            prosody_vector(&voice(1.0, |_| 200.0, |_| 1.0), SR, &Default::default()).unwrap();
        assert_eq!(steady.len(), LEN);
        let want = semitones(200.0) as f32;
        assert!(
            (steady[index("f0_mean_st")] - want).abs() < 0.1,
            "{steady:?}"
        );
        assert!(steady[index("f0_std_st")] < 0.1);
        assert!(steady[index("f0_slope_st_per_s")].abs() < 0.2);
        assert!((steady[index("voiced_share")] - 1.0).abs() < 1e-6);

        let rising = prosody_vector(
            &voice(1.0, |t| 150.0 * 2f64.powf(t), |_| 1.0),
            SR,
            &Default::default(),
        )
        .unwrap();
        let s = rising[index("f0_slope_st_per_s")];
        assert!((s - 12.0).abs() < 0.5, "slope {s}");
        let range = rising[index("f0_range_st")];
        assert!((range - 0.8 * 12.0).abs() < 1.0, "10-90 range {range}");
    }

    /// Silence around a voiced stretch changes neither the F0 nor the energy statistics nor the
    /// voiced share (only the active duration would, and it does not either: silence is not
    /// active); a decaying amplitude gives a negative energy slope.
    #[test]
    fn silence_is_left_out_and_energy_slope_has_its_sign() {
        let core = voice(0.8, |_| 180.0, |_| 1.0);
        let mut padded = vec![0f32; 8000];
        padded.extend(&core);
        padded.extend(vec![0f32; 8000]);
        let a = prosody_vector(&core, SR, &Default::default()).unwrap();
        let b = prosody_vector(&padded, SR, &Default::default()).unwrap();
        for name in ["f0_mean_st", "energy_mean_db", "voiced_share", "active_s"] {
            let (x, y) = (a[index(name)], b[index(name)]);
            // Frames straddling the silence boundary are the only difference: a few of ~60.
            assert!((x - y).abs() < 0.1 * x.abs().max(1.0), "{name}: {x} vs {y}");
        }
        let decaying = prosody_vector(
            &voice(1.0, |_| 180.0, |t| 10f64.powf(-t)),
            SR,
            &Default::default(),
        )
        .unwrap();
        // Amplitude falls 20 dB per second.
        let s = decaying[index("energy_slope_db_per_s")];
        assert!((s + 20.0).abs() < 2.0, "energy slope {s}");
    }

    /// Brighter voices (stronger high harmonics) have a lower alpha ratio and Hammarberg index.
    #[test]
    fn spectral_balance_orders_dark_and_bright() {
        let make = |tilt: f64| -> Vec<f32> {
            let n = SR as usize;
            (0..n)
                .map(|i| {
                    let p = 2.0 * std::f64::consts::PI * 150.0 * i as f64 / SR as f64;
                    let s: f64 = (1..=30)
                        .map(|h| (h as f64 * p).sin() * (h as f64).powf(-tilt))
                        .sum();
                    (0.1 * s) as f32
                })
                .collect()
        };
        let dark = prosody_vector(&make(2.0), SR, &Default::default()).unwrap();
        let bright = prosody_vector(&make(0.5), SR, &Default::default()).unwrap();
        for name in ["alpha_ratio_mean_db", "hammarberg_mean_db"] {
            assert!(
                dark[index(name)] > bright[index(name)] + 5.0,
                "{name}: dark {} bright {}",
                dark[index(name)],
                bright[index(name)]
            );
        }
    }
}
