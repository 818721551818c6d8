//! Slow, obviously-correct versions of the feature pipeline in f64, the oracle that tests and the
//! benchmark check the fast path against: a direct DFT per frame (no FFT), `log10` from the standard
//! library, and a per-pixel resize that computes every filter weight from its definition.
//!
//! Test-only code, kept out of the library: `tests/features.rs` and `benches/spectrogram.rs`
//! include it by path.

use std::f64::consts::PI;

use rescnn::features::mel::MelBank;
use rescnn::features::stft::hamming;
use rescnn::features::{ImageConfig, StftConfig, TimeAxis};

/// dB spectrogram by direct DFT, frame-major like [`rescnn::features::Spectrogram`].
pub fn spectrogram_db(samples: &[f32], cfg: &StftConfig) -> (usize, usize, Vec<f64>) {
    let (win, hop, n) = (cfg.window_len(), cfg.hop_len(), cfg.n_fft);
    let window = hamming(win);
    let gain = 2.0 / window.iter().map(|&w| w as f64).sum::<f64>();
    let frames = cfg.frames_for(samples.len());
    let fft_bins = n / 2 + 1;
    let mel = cfg.mel_bands.map(|b| {
        MelBank::new(
            b,
            n,
            cfg.sample_rate,
            cfg.fmin_hz,
            cfg.fmax_hz.unwrap_or(cfg.sample_rate as f32 / 2.0),
        )
        .dense(fft_bins)
    });
    let bins = cfg.bins();
    let mut out = Vec::with_capacity(frames * bins);
    for t in 0..frames {
        let frame: Vec<f64> = (0..win)
            .map(|k| {
                samples
                    .get(t * hop + k)
                    .map_or(0.0, |&x| x as f64 * window[k] as f64 * gain)
            })
            .collect();
        let power: Vec<f64> = (0..fft_bins)
            .map(|f| {
                let (mut re, mut im) = (0.0, 0.0);
                for (k, &x) in frame.iter().enumerate() {
                    let phi = -2.0 * PI * (f * k) as f64 / n as f64;
                    re += x * phi.cos();
                    im += x * phi.sin();
                }
                re * re + im * im
            })
            .collect();
        let row: Vec<f64> = match &mel {
            None => power,
            Some(m) => m
                .iter()
                .map(|w| w.iter().zip(&power).map(|(&w, p)| w as f64 * p).sum())
                .collect(),
        };
        out.extend(
            row.into_iter()
                .map(|p| 10.0 * p.max(cfg.power_floor as f64).log10()),
        );
    }
    (frames, bins, out)
}

/// Image intensities (`height × width`, row 0 = highest frequency) of a whole dB spectrogram, by
/// evaluating the triangle filter for every pixel and every source cell it touches.
pub fn intensity(frames: usize, bins: usize, db: &[f64], cfg: &ImageConfig) -> Vec<f64> {
    let max = db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = db.iter().copied().fold(f64::INFINITY, f64::min);
    let lo = min.max(max - cfg.top_db as f64);
    let norm = |v: f64| {
        if max > lo {
            ((v - lo) / (max - lo)).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let weights = |src: usize, dst: usize, i: usize| -> Vec<(usize, f64)> {
        let scale = src as f64 / dst as f64;
        let support = scale.max(1.0);
        let centre = (i as f64 + 0.5) * scale;
        let w: Vec<(usize, f64)> = (0..src)
            .map(|j| {
                (
                    j,
                    (1.0 - ((j as f64 + 0.5 - centre) / support).abs()).max(0.0),
                )
            })
            .filter(|&(_, w)| w > 0.0)
            .collect();
        let total: f64 = w.iter().map(|p| p.1).sum();
        w.into_iter().map(|(j, x)| (j, x / total)).collect()
    };
    let (h, w) = (cfg.height, cfg.width);
    let mut out = vec![0.0; h * w];
    for x in 0..w {
        let tw: Vec<(usize, f64)> = match cfg.time_axis {
            TimeAxis::Whole => weights(frames, w, x),
            TimeAxis::Fixed => {
                if x < frames {
                    vec![(x, 1.0)]
                } else {
                    vec![]
                }
            }
        };
        for r in 0..h {
            let fw = weights(bins, h, r);
            let mut v = 0.0;
            for &(t, a) in &tw {
                for &(f, b) in &fw {
                    v += a * b * norm(db[t * bins + f]);
                }
            }
            out[(h - 1 - r) * w + x] = v;
        }
    }
    out
}
