//! Utterance-level prosody and voice-quality statistics: a fixed-length vector per utterance, the
//! kind of functionals the classic SER baselines (eGeMAPS, ComParE) classify with, for the
//! prosody branch (a linear classifier whose class probabilities are fused late with the
//! network's, [`crate::training::prosody_branch`]).
//!
//! From the [`pitch`](super::pitch) track (YIN, 10 ms frames) and a linear-frequency power
//! spectrum of the same frames:
//! - F0 in semitones above 27.5 Hz over the voiced frames: mean, standard deviation, 10th / 50th /
//!   90th percentiles, their 10–90 range, the linear-regression slope against time (semitones per
//!   second) and the mean absolute change between consecutive voiced frames;
//! - frame energy (RMS, dB) over the active (non-silent) frames: mean, standard deviation,
//!   percentiles, range, slope (dB per second), and voiced minus unvoiced mean energy;
//! - voicing: voiced share of the active frames, voiced segments per active second, mean voiced and
//!   unvoiced segment length, active duration;
//! - aperiodicity (YIN's `d'` minimum) mean over voiced and over all active frames;
//! - spectral balance over voiced frames: alpha ratio (energy below 1 kHz over 1–5 kHz, dB; mean,
//!   std), Hammarberg index (strongest peak below 2 kHz over 2–5 kHz, dB; mean, std), and the
//!   spectral slopes 0–500 Hz and 500–1500 Hz (dB per kHz, regression over the bins).
//!
//! "Active" frames are those within `silence_db` of the loudest frame, so leading or trailing
//! silence (or zero padding) changes neither the energy statistics nor the voiced share. A
//! statistic of an empty set (no voiced frame) is 0. The vector is z-normalised later, with the
//! training utterances' or each speaker's statistics ([`crate::data::prosody`]).

use serde::{Deserialize, Serialize};

use super::pitch::{self, PitchConfig, PitchFrame};
use super::stft::StftPlan;
use super::StftConfig;
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
        let mut v: Vec<String> = FEATURES.iter().map(|s| s.to_string()).collect();
        if self.set == ProsodySet::Full {
            v.extend(super::functionals::names());
        }
        v
    }

    /// Length of the vector.
    pub fn vector_len(&self) -> usize {
        match self.set {
            ProsodySet::Basic => LEN,
            ProsodySet::Full => LEN + super::functionals::len(),
        }
    }
}

/// Names of the vector's entries, in order.
pub const FEATURES: [&str; 29] = [
    "f0_mean_st",
    "f0_std_st",
    "f0_p10_st",
    "f0_p50_st",
    "f0_p90_st",
    "f0_range_st",
    "f0_slope_st_per_s",
    "f0_abs_delta_st",
    "energy_mean_db",
    "energy_std_db",
    "energy_p10_db",
    "energy_p50_db",
    "energy_p90_db",
    "energy_range_db",
    "energy_slope_db_per_s",
    "energy_voiced_minus_unvoiced_db",
    "voiced_share",
    "voiced_segments_per_s",
    "voiced_segment_s",
    "unvoiced_segment_s",
    "active_s",
    "aperiodicity_voiced",
    "aperiodicity_active",
    "alpha_ratio_mean_db",
    "alpha_ratio_std_db",
    "hammarberg_mean_db",
    "hammarberg_std_db",
    "slope_0_500_db_per_khz",
    "slope_500_1500_db_per_khz",
];

/// Length of the prosody vector.
pub const LEN: usize = FEATURES.len();

/// Semitones of `hz` above 27.5 Hz (A0), as eGeMAPS reports F0.
pub fn semitones(hz: f32) -> f64 {
    12.0 * (hz as f64 / 27.5).log2()
}

/// Mean and (population) standard deviation; (0, 0) for an empty slice.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// The `q`-quantile (0 ≤ q ≤ 1) with linear interpolation between order statistics; 0 for an
/// empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    quantile_sorted(&s, q)
}

/// [`quantile`] of an already sorted, non-empty slice (several quantiles of one sort).
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Least-squares slope of `y` against `x`; 0 with fewer than two distinct `x`.
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let (mx, _) = mean_std(x);
    let (my, _) = mean_std(y);
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if sxx <= 0.0 {
        return 0.0;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    sxy / sxx
}

/// Lengths of the runs of `true` and of `false` in `flags`.
fn runs(flags: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < flags.len() {
        let v = flags[i];
        let start = i;
        while i < flags.len() && flags[i] == v {
            i += 1;
        }
        if v { &mut on } else { &mut off }.push(i - start);
    }
    (on, off)
}

/// Spectral balance of one frame's dB spectrum (`db[k]` at `k · bin_hz`): alpha ratio,
/// Hammarberg index, slopes 0–500 and 500–1500 Hz.
fn spectral_balance(db: &[f32], bin_hz: f64) -> [f64; 4] {
    let band = |lo: f64, hi: f64| {
        let a = (lo / bin_hz).ceil() as usize;
        let b = ((hi / bin_hz).floor() as usize).min(db.len() - 1);
        a..=b
    };
    let power = |r: std::ops::RangeInclusive<usize>| -> f64 {
        db[r].iter().map(|&d| 10f64.powf(d as f64 / 10.0)).sum()
    };
    let peak = |r: std::ops::RangeInclusive<usize>| -> f64 {
        db[r]
            .iter()
            .fold(f64::NEG_INFINITY, |m, &d| m.max(d as f64))
    };
    let alpha = 10.0 * (power(band(50.0, 1000.0)) / power(band(1000.0, 5000.0)).max(1e-30)).log10();
    let hammarberg = peak(band(0.0, 2000.0)) - peak(band(2000.0, 5000.0));
    let regression = |r: std::ops::RangeInclusive<usize>| {
        let x: Vec<f64> = r.clone().map(|k| k as f64 * bin_hz / 1000.0).collect();
        let y: Vec<f64> = db[r].iter().map(|&d| d as f64).collect();
        slope(&x, &y)
    };
    [
        alpha,
        hammarberg,
        regression(band(0.0, 500.0)),
        regression(band(500.0, 1500.0)),
    ]
}

/// The utterance vector ([`ProsodyConfig::names`] order) of `samples` at `sample_rate`.
pub fn prosody_vector(samples: &[f32], sample_rate: u32, cfg: &ProsodyConfig) -> Result<Vec<f32>> {
    let mut v = basic_vector(samples, sample_rate, cfg)?;
    if cfg.set == ProsodySet::Full {
        v.extend(super::functionals::vector(
            samples,
            sample_rate,
            &cfg.pitch,
        )?);
    }
    Ok(v)
}

/// The [`FEATURES`] of `samples` at `sample_rate`.
fn basic_vector(samples: &[f32], sample_rate: u32, cfg: &ProsodyConfig) -> Result<Vec<f32>> {
    let track = pitch::track(samples, sample_rate, &cfg.pitch)?;
    let window = (cfg.pitch.window_ms as f64 * 1e-3 * sample_rate as f64).round() as usize;
    let stft = StftConfig {
        sample_rate,
        window_ms: cfg.pitch.window_ms,
        hop_ms: cfg.pitch.hop_ms,
        n_fft: window.max(4).next_power_of_two(),
        ..StftConfig::default()
    };
    let spec = StftPlan::new(&stft)?.compute(samples);
    Ok(from_track(
        &track.frames,
        track.hop_s,
        &spec,
        sample_rate,
        &cfg.pitch,
    ))
}

fn from_track(
    frames: &[PitchFrame],
    hop_s: f64,
    spec: &super::Spectrogram,
    sample_rate: u32,
    cfg: &PitchConfig,
) -> Vec<f32> {
    let loudest = frames
        .iter()
        .map(|f| f.energy_db)
        .fold(f32::NEG_INFINITY, f32::max);
    let active: Vec<bool> = frames
        .iter()
        .map(|f| f.energy_db >= loudest - cfg.silence_db)
        .collect();
    let (mut f0, mut f0_t) = (Vec::new(), Vec::new());
    let (mut energy, mut energy_t) = (Vec::new(), Vec::new());
    let (mut e_voiced, mut e_unvoiced) = (Vec::new(), Vec::new());
    let (mut ap_voiced, mut ap_active) = (Vec::new(), Vec::new());
    let mut balance: [Vec<f64>; 4] = Default::default();
    let bin_hz = sample_rate as f64 / (2 * (spec.bins - 1)) as f64;
    let mut abs_delta = Vec::new();
    let mut previous_voiced: Option<f64> = None;
    for (k, f) in frames.iter().enumerate() {
        let t = k as f64 * hop_s;
        if !active[k] {
            previous_voiced = None;
            continue;
        }
        energy.push(f.energy_db as f64);
        energy_t.push(t);
        ap_active.push(f.aperiodicity as f64);
        if f.voiced {
            let st = semitones(f.f0_hz);
            if let Some(p) = previous_voiced {
                abs_delta.push((st - p).abs());
            }
            previous_voiced = Some(st);
            f0.push(st);
            f0_t.push(t);
            e_voiced.push(f.energy_db as f64);
            ap_voiced.push(f.aperiodicity as f64);
            if k < spec.frames {
                for (b, v) in balance
                    .iter_mut()
                    .zip(spectral_balance(spec.frame(k), bin_hz))
                {
                    b.push(v);
                }
            }
        } else {
            previous_voiced = None;
            e_unvoiced.push(f.energy_db as f64);
        }
    }
    let (f0_mean, f0_std) = mean_std(&f0);
    let (f0_p10, f0_p50, f0_p90) = (quantile(&f0, 0.1), quantile(&f0, 0.5), quantile(&f0, 0.9));
    let (e_mean, e_std) = mean_std(&energy);
    let (e_p10, e_p50, e_p90) = (
        quantile(&energy, 0.1),
        quantile(&energy, 0.5),
        quantile(&energy, 0.9),
    );
    let voiced_minus_unvoiced = if e_voiced.is_empty() || e_unvoiced.is_empty() {
        0.0
    } else {
        mean_std(&e_voiced).0 - mean_std(&e_unvoiced).0
    };
    // Segments over the active frames only, in their order (silence splits nothing it does not
    // already split: it is simply left out).
    let voiced_active: Vec<bool> = frames
        .iter()
        .zip(&active)
        .filter(|(_, &a)| a)
        .map(|(f, _)| f.voiced)
        .collect();
    let (on, off) = runs(&voiced_active);
    let active_s = energy.len() as f64 * hop_s;
    let mean_len = |r: &[usize]| {
        if r.is_empty() {
            0.0
        } else {
            r.iter().sum::<usize>() as f64 * hop_s / r.len() as f64
        }
    };
    let v = [
        f0_mean,
        f0_std,
        f0_p10,
        f0_p50,
        f0_p90,
        f0_p90 - f0_p10,
        slope(&f0_t, &f0),
        mean_std(&abs_delta).0,
        e_mean,
        e_std,
        e_p10,
        e_p50,
        e_p90,
        e_p90 - e_p10,
        slope(&energy_t, &energy),
        voiced_minus_unvoiced,
        if energy.is_empty() {
            0.0
        } else {
            f0.len() as f64 / energy.len() as f64
        },
        if active_s > 0.0 {
            on.len() as f64 / active_s
        } else {
            0.0
        },
        mean_len(&on),
        mean_len(&off),
        active_s,
        mean_std(&ap_voiced).0,
        mean_std(&ap_active).0,
        mean_std(&balance[0]).0,
        mean_std(&balance[0]).1,
        mean_std(&balance[1]).0,
        mean_std(&balance[1]).1,
        mean_std(&balance[2]).0,
        mean_std(&balance[3]).0,
    ];
    v.iter().map(|&x| x as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn statistics_helpers() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.1), 1.4); // position 0.4 between 1 and 2
        assert_eq!(quantile(&[], 0.5), 0.0);
        let (m, s) = mean_std(&[2.0, 4.0]);
        assert_eq!((m, s), (3.0, 1.0));
        assert!((slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]) - 2.0).abs() < 1e-12);
        assert_eq!(
            runs(&[true, true, false, true, false, false]),
            (vec![2, 1], vec![1, 2])
        );
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
