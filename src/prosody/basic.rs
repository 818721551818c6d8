//! The basic utterance set: 29 prosody and voice-quality statistics, eGeMAPS-like ([`FEATURES`]).
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
//! training utterances' or each speaker's statistics ([`super::store`]).

use super::pitch::{self, PitchConfig, PitchFrame};
use super::stats::{mean_std, quantile, runs, semitones, slope};
use crate::features::{Spectrogram, StftConfig, StftPlan};
use crate::Result;

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

/// The [`FEATURES`] of `samples` at `sample_rate`.
pub fn vector(samples: &[f32], sample_rate: u32, cfg: &PitchConfig) -> Result<Vec<f32>> {
    let track = pitch::track(samples, sample_rate, cfg)?;
    let window = (cfg.window_ms as f64 * 1e-3 * sample_rate as f64).round() as usize;
    let stft = StftConfig {
        sample_rate,
        window_ms: cfg.window_ms,
        hop_ms: cfg.hop_ms,
        n_fft: window.max(4).next_power_of_two(),
        ..StftConfig::default()
    };
    let spec = StftPlan::new(&stft)?.compute(samples);
    Ok(from_track(
        &track.frames,
        track.hop_s,
        &spec,
        sample_rate,
        cfg,
    ))
}

fn from_track(
    frames: &[PitchFrame],
    hop_s: f64,
    spec: &Spectrogram,
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
