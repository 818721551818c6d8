//! A large utterance-level feature set in the manner of openSMILE's ComParE: frame-level
//! descriptors (LLDs), their regression deltas, and a fixed list of statistical functionals of
//! every contour. It extends the 29-entry [basic set](super::basic) for the prosody branch's
//! `full` feature set ([`super::vector`]).
//!
//! LLDs, 10 ms frames (25 ms Hamming window, 512-point FFT at the analysis rate):
//! - energy: frame power in dB, loudness (sum over the mel bands of band power^0.3), zero-crossing
//!   rate;
//! - spectrum: [`MEL_BANDS`] log-mel bands (dB), MFCC 1–[`MFCCS`] (DCT-II of the natural-log mel
//!   powers), and the power spectrum's centroid, spread, skewness, kurtosis, entropy, flatness,
//!   flux, slope (dB per kHz), roll-off points at 25/50/75/90 % of the power, and the energy (dB)
//!   of the bands 250–650 Hz and 1–4 kHz;
//! - source (from the YIN [`pitch`](super::pitch) track): F0 in semitones and a harmonics-to-noise
//!   ratio `10·log10((1 − d')/d')` over voiced frames, voicing probability `1 − d'` over active
//!   frames, and a frame-level jitter (|Δ ln F0|) and shimmer (|Δ energy| dB) over consecutive
//!   voiced frames.
//!
//! Every contour keeps only the frames it is defined on (active: within the pitch settings'
//! `silence_db` of the loudest frame; voiced; consecutive voiced pairs), in time order; the delta
//! (±2 frames) of each LLD except jitter and shimmer (already differences) is taken on that
//! subsequence. Each contour gives the [`FUNCTIONALS`]: mean, standard deviation, skewness,
//! kurtosis, percentiles 1/25/50/75/99, the 25–75 and 1–99 ranges, the linear-regression slope
//! (per second) and its residual standard deviation, the quadratic coefficient of a least-squares
//! parabola over time, the share of frames above 75 % of the 1–99 range, and the share of rising
//! steps. A contour with no frame gives zeros; the vector is z-normalised later
//! ([`super::store`]).

use super::pitch::{self, PitchConfig};
use super::stats::{mean_std, quantile_sorted, semitones};
use crate::features::deltas::delta_1d;
use crate::features::mel::MelBank;
use crate::features::{StftConfig, StftPlan};
use crate::Result;

/// Log-mel bands of the spectral LLDs.
pub const MEL_BANDS: usize = 26;
/// Cepstral coefficients 1..=MFCCS (c0 duplicates the energy).
pub const MFCCS: usize = 14;

/// The functionals of every contour, in vector order.
pub const FUNCTIONALS: [&str; 16] = [
    "mean", "std", "skew", "kurt", "p1", "p25", "p50", "p75", "p99", "iqr", "range", "slope",
    "lin_err", "curv", "up75", "rise",
];

const SPECTRAL: [&str; 14] = [
    "centroid",
    "spread",
    "spec_skew",
    "spec_kurt",
    "entropy",
    "flatness_db",
    "flux",
    "slope_db_per_khz",
    "rolloff25",
    "rolloff50",
    "rolloff75",
    "rolloff90",
    "band_250_650_db",
    "band_1k_4k_db",
];

/// Names of the LLDs, in contour order (each followed by its delta where it has one, see
/// [`contour_names`]).
fn lld_names() -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = vec![
        ("energy_db".into(), true),
        ("loudness".into(), true),
        ("zcr".into(), true),
    ];
    v.extend((1..=MEL_BANDS).map(|k| (format!("mel{k}_db"), true)));
    v.extend((1..=MFCCS).map(|k| (format!("mfcc{k}"), true)));
    v.extend(SPECTRAL.iter().map(|s| (s.to_string(), true)));
    v.extend([
        ("f0_st".into(), true),
        ("hnr_db".into(), true),
        ("voicing_prob".into(), true),
        ("jitter".into(), false),
        ("shimmer_db".into(), false),
    ]);
    v
}

/// Names of every contour: each LLD, then its delta (`_de`) where it has one.
pub fn contour_names() -> Vec<String> {
    let mut out = Vec::new();
    for (name, with_delta) in lld_names() {
        if with_delta {
            out.push(format!("{name}_de"));
        }
        out.insert(out.len() - usize::from(with_delta), name);
    }
    out
}

/// Names of the vector's entries: `<contour>__<functional>`.
pub fn names() -> Vec<String> {
    contour_names()
        .iter()
        .flat_map(|c| FUNCTIONALS.iter().map(move |f| format!("{c}__{f}")))
        .collect()
}

/// Length of the vector.
pub fn len() -> usize {
    contour_names().len() * FUNCTIONALS.len()
}

/// The [`FUNCTIONALS`] of `x` (values every `hop_s` seconds, in time order).
pub fn functionals(x: &[f64], hop_s: f64) -> [f64; 16] {
    let n = x.len();
    if n == 0 {
        return [0.0; 16];
    }
    let (mean, std) = mean_std(x);
    let (mut m3, mut m4) = (0.0, 0.0);
    for &v in x {
        let d = v - mean;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    let (skew, kurt) = if std > 1e-12 {
        (
            m3 / n as f64 / std.powi(3),
            m4 / n as f64 / std.powi(4) - 3.0,
        )
    } else {
        (0.0, 0.0)
    };
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| quantile_sorted(&sorted, q);
    let (p1, p25, p50, p75, p99) = (pct(0.01), pct(0.25), pct(0.5), pct(0.75), pct(0.99));
    // Least squares on the orthogonalised basis 1, t, t² over the frames' times: the slope is the
    // linear fit's, the curvature the t² coefficient of the full parabola.
    let t: Vec<f64> = (0..n).map(|i| i as f64 * hop_s).collect();
    let (tm, _) = mean_std(&t);
    let q1: Vec<f64> = t.iter().map(|v| v - tm).collect();
    let q1q1: f64 = q1.iter().map(|v| v * v).sum();
    let slope = if q1q1 > 0.0 {
        q1.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() / q1q1
    } else {
        0.0
    };
    let resid: Vec<f64> = x
        .iter()
        .zip(&q1)
        .map(|(v, a)| v - mean - slope * a)
        .collect();
    let lin_err = (resid.iter().map(|r| r * r).sum::<f64>() / n as f64).sqrt();
    let sq: Vec<f64> = q1.iter().map(|a| a * a).collect();
    let (sqm, _) = mean_std(&sq);
    let proj = if q1q1 > 0.0 {
        sq.iter().zip(&q1).map(|(s, a)| (s - sqm) * a).sum::<f64>() / q1q1
    } else {
        0.0
    };
    let q2: Vec<f64> = sq
        .iter()
        .zip(&q1)
        .map(|(s, a)| s - sqm - proj * a)
        .collect();
    let q2q2: f64 = q2.iter().map(|v| v * v).sum();
    let curv = if q2q2 > 1e-30 {
        q2.iter().zip(&resid).map(|(a, b)| a * b).sum::<f64>() / q2q2
    } else {
        0.0
    };
    let level = p1 + 0.75 * (p99 - p1);
    let up75 = x.iter().filter(|&&v| v > level).count() as f64 / n as f64;
    let rise = if n > 1 {
        x.windows(2).filter(|w| w[1] > w[0]).count() as f64 / (n - 1) as f64
    } else {
        0.0
    };
    [
        mean,
        std,
        skew,
        kurt,
        p1,
        p25,
        p50,
        p75,
        p99,
        p75 - p25,
        p99 - p1,
        slope,
        lin_err,
        curv,
        up75,
        rise,
    ]
}

/// Regression delta (±2 frames, edges repeated) of a contour.
fn delta(x: &[f64]) -> Vec<f64> {
    let c: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let mut d = vec![0f32; c.len()];
    delta_1d(&c, 2, &mut d);
    d.iter().map(|&v| v as f64).collect()
}

/// The spectral LLDs of one frame's power spectrum `p` (bin `k` at `k·bin_hz`), in [`SPECTRAL`]
/// order; `previous` is the last active frame's normalised spectrum (for the flux), updated.
fn spectral(p: &[f64], bin_hz: f64, previous: &mut Option<Vec<f64>>) -> [f64; 14] {
    let total: f64 = p.iter().sum::<f64>().max(1e-30);
    let norm: Vec<f64> = p.iter().map(|v| v / total).collect();
    let f = |k: usize| k as f64 * bin_hz;
    let centroid: f64 = norm.iter().enumerate().map(|(k, w)| w * f(k)).sum();
    let moment = |e: i32| -> f64 {
        norm.iter()
            .enumerate()
            .map(|(k, w)| w * (f(k) - centroid).powi(e))
            .sum()
    };
    let spread = moment(2).sqrt();
    let (skew, kurt) = if spread > 1e-9 {
        (moment(3) / spread.powi(3), moment(4) / spread.powi(4))
    } else {
        (0.0, 0.0)
    };
    let entropy = -norm
        .iter()
        .filter(|&&w| w > 0.0)
        .map(|w| w * w.log2())
        .sum::<f64>()
        / (p.len() as f64).log2();
    let log_mean = p.iter().map(|v| v.max(1e-30).ln()).sum::<f64>() / p.len() as f64;
    let flatness_db = 10.0 * (log_mean.exp() / (total / p.len() as f64)).log10();
    let flux = previous.as_ref().map_or(0.0, |q| {
        q.iter()
            .zip(&norm)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    });
    let xs: Vec<f64> = (0..p.len()).map(|k| f(k) / 1000.0).collect();
    let ys: Vec<f64> = p.iter().map(|v| 10.0 * v.max(1e-30).log10()).collect();
    let slope = super::stats::slope(&xs, &ys);
    let mut rolloff = [0.0; 4];
    let mut acc = 0.0;
    let mut next = 0;
    for (k, w) in norm.iter().enumerate() {
        acc += w;
        while next < 4 && acc >= [0.25, 0.5, 0.75, 0.9][next] {
            rolloff[next] = f(k);
            next += 1;
        }
    }
    let band = |lo: f64, hi: f64| {
        let e: f64 = (0..p.len())
            .filter(|&k| f(k) >= lo && f(k) <= hi)
            .map(|k| p[k])
            .sum();
        10.0 * e.max(1e-30).log10()
    };
    *previous = Some(norm);
    [
        centroid,
        spread,
        skew,
        kurt,
        entropy,
        flatness_db,
        flux,
        slope,
        rolloff[0],
        rolloff[1],
        rolloff[2],
        rolloff[3],
        band(250.0, 650.0),
        band(1000.0, 4000.0),
    ]
}

/// Every contour ([`contour_names`] order) of `samples` at `sample_rate`, each restricted to the
/// frames it is defined on; and the frame step in seconds.
pub fn contours(
    samples: &[f32],
    sample_rate: u32,
    cfg: &PitchConfig,
) -> Result<(Vec<Vec<f64>>, f64)> {
    let stft = StftConfig {
        sample_rate,
        window_ms: 25.0,
        hop_ms: cfg.hop_ms,
        n_fft: 512,
        ..StftConfig::default()
    };
    stft.validate()?;
    let spec = StftPlan::new(&stft)?.compute(samples);
    let hop = stft.hop_len();
    let win = stft.window_len();
    let hop_s = hop as f64 / sample_rate as f64;
    let bin_hz = sample_rate as f64 / stft.n_fft as f64;
    let mel = MelBank::new(
        MEL_BANDS,
        stft.n_fft,
        sample_rate,
        20.0,
        sample_rate as f32 / 2.0,
    );
    let track = pitch::track(samples, sample_rate, cfg)?;

    let power: Vec<Vec<f64>> = (0..spec.frames)
        .map(|t| {
            spec.frame(t)
                .iter()
                .map(|&d| 10f64.powf(d as f64 / 10.0))
                .collect()
        })
        .collect();
    let energy: Vec<f64> = power
        .iter()
        .map(|p| 10.0 * p.iter().sum::<f64>().max(1e-30).log10())
        .collect();
    let loudest = energy.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let active: Vec<usize> = (0..spec.frames)
        .filter(|&t| energy[t] >= loudest - cfg.silence_db as f64)
        .collect();

    let n_spectral = 3 + MEL_BANDS + MFCCS + SPECTRAL.len();
    let mut llds: Vec<Vec<f64>> = vec![Vec::with_capacity(active.len()); n_spectral];
    let mut previous = None;
    let mut band_power = vec![0f32; MEL_BANDS];
    for &t in &active {
        let p = &power[t];
        let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        mel.apply(&p32, &mut band_power);
        let loudness: f64 = band_power
            .iter()
            .map(|&b| (b as f64).max(0.0).powf(0.3))
            .sum();
        let start = t * hop;
        let frame = &samples[start.min(samples.len())..(start + win).min(samples.len())];
        let zcr = if frame.len() > 1 {
            frame
                .windows(2)
                .filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0))
                .count() as f64
                / (frame.len() - 1) as f64
        } else {
            0.0
        };
        let mut row = vec![energy[t], loudness, zcr];
        let log_mel: Vec<f64> = band_power
            .iter()
            .map(|&b| (b as f64).max(1e-30).ln())
            .collect();
        row.extend(log_mel.iter().map(|l| 10.0 * l / std::f64::consts::LN_10));
        let m = MEL_BANDS as f64;
        row.extend((1..=MFCCS).map(|k| {
            log_mel
                .iter()
                .enumerate()
                .map(|(j, l)| l * (std::f64::consts::PI * k as f64 * (j as f64 + 0.5) / m).cos())
                .sum::<f64>()
        }));
        row.extend(spectral(p, bin_hz, &mut previous));
        for (c, v) in llds.iter_mut().zip(row) {
            c.push(v);
        }
    }

    let yin_loudest = track
        .frames
        .iter()
        .map(|f| f.energy_db)
        .fold(f32::NEG_INFINITY, f32::max);
    let (mut f0, mut hnr, mut voicing, mut jitter, mut shimmer) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last_voiced: Option<(f64, f64)> = None;
    for f in &track.frames {
        if f.energy_db < yin_loudest - cfg.silence_db {
            last_voiced = None;
            continue;
        }
        voicing.push(1.0 - f.aperiodicity as f64);
        if f.voiced {
            let ap = (f.aperiodicity as f64).clamp(1e-4, 1.0 - 1e-4);
            f0.push(semitones(f.f0_hz));
            hnr.push(10.0 * ((1.0 - ap) / ap).log10());
            let (ln_f0, e) = ((f.f0_hz as f64).ln(), f.energy_db as f64);
            if let Some((lp, le)) = last_voiced {
                jitter.push((ln_f0 - lp).abs());
                shimmer.push((e - le).abs());
            }
            last_voiced = Some((ln_f0, e));
        } else {
            last_voiced = None;
        }
    }
    llds.extend([f0, hnr, voicing, jitter, shimmer]);

    let mut out = Vec::new();
    for (c, (_, with_delta)) in llds.into_iter().zip(lld_names()) {
        let d = with_delta.then(|| delta(&c));
        out.push(c);
        out.extend(d);
    }
    Ok((out, hop_s))
}

/// The feature vector ([`names`] order) of `samples` at `sample_rate`.
pub fn vector(samples: &[f32], sample_rate: u32, cfg: &PitchConfig) -> Result<Vec<f32>> {
    let (contours, hop_s) = contours(samples, sample_rate, cfg)?;
    Ok(contours
        .iter()
        .flat_map(|c| functionals(c, hop_s))
        .map(|v| v as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 16_000;

    fn get(v: &[f64; 16], name: &str) -> f64 {
        v[FUNCTIONALS.iter().position(|&f| f == name).unwrap()]
    }

    /// Hand-computed functionals of a ramp and a parabola. Tolerance 1e-9: f64 sums of a few
    /// terms.
    #[test]
    fn functionals_of_known_sequences() {
        let ramp = functionals(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5);
        let want = [
            ("mean", 3.0),
            ("std", 2f64.sqrt()),
            ("skew", 0.0),
            // Σd⁴/n / σ⁴ − 3 = (16 + 1 + 0 + 1 + 16)/5 / 4 − 3
            ("kurt", -1.3),
            ("p25", 2.0),
            ("p50", 3.0),
            ("p99", 4.96),
            ("iqr", 2.0),
            ("range", 3.92),
            // one per frame, two frames per second
            ("slope", 2.0),
            ("lin_err", 0.0),
            ("curv", 0.0),
            // above 1.04 + 0.75 · 3.92 = 3.98: the last two of five
            ("up75", 0.4),
            ("rise", 1.0),
        ];
        for (name, v) in want {
            assert!(
                (get(&ramp, name) - v).abs() < 1e-9,
                "{name}: {}",
                get(&ramp, name)
            );
        }
        // Three values at 0 and one at 3: a two-point distribution with p = 1/4, skewness
        // (1 − 2p)/√(p(1 − p)) = 2/√3 and excess kurtosis (1 − 6p(1 − p))/(p(1 − p)) = −2/3.
        let skewed = functionals(&[0.0, 0.0, 0.0, 3.0], 1.0);
        assert!((get(&skewed, "skew") - 2.0 / 3f64.sqrt()).abs() < 1e-9);
        assert!((get(&skewed, "kurt") + 2.0 / 3.0).abs() < 1e-9);
        let t: Vec<f64> = (0..10).map(|i| (i * i) as f64).collect();
        let parabola = functionals(&t, 1.0);
        // t² over t = 0..9: curvature 1; least-squares line slope Σ(t − 4.5)·t² / Σ(t − 4.5)² = 9.
        assert!((get(&parabola, "curv") - 1.0).abs() < 1e-9);
        assert!((get(&parabola, "slope") - 9.0).abs() < 1e-9);
        assert!(get(&parabola, "lin_err") > 1.0);
        assert_eq!(functionals(&[], 0.01), [0.0; 16]);
        let one = functionals(&[7.0], 0.01);
        assert_eq!(
            (get(&one, "mean"), get(&one, "std"), get(&one, "rise")),
            (7.0, 0.0, 0.0)
        );
    }

    fn tone(hz: f64, seconds: f64) -> Vec<f32> {
        (0..(seconds * SR as f64) as usize)
            .map(|i| (0.3 * (2.0 * std::f64::consts::PI * hz * i as f64 / SR as f64).sin()) as f32)
            .collect()
    }

    fn contour_mean(samples: &[f32], name: &str) -> f64 {
        let (c, _) = contours(samples, SR, &PitchConfig::default()).unwrap();
        let k = contour_names().iter().position(|n| n == name).unwrap();
        mean_std(&c[k]).0
    }

    /// Descriptors of pure tones have known values: a 1 kHz sine crosses zero 2000 times a
    /// second (ZCR 2000/16000 per sample step), its power sits at 1 kHz (centroid and 50 %
    /// roll-off within two 31.25 Hz bins: the Hamming window's main lobe), and it puts more
    /// energy in 1–4 kHz than in 250–650 Hz; a 300 Hz tone the other way round.
    #[test]
    fn descriptors_of_pure_tones() {
        let high = tone(1000.0, 0.5);
        assert!((contour_mean(&high, "zcr") - 0.125).abs() < 0.005);
        assert!((contour_mean(&high, "centroid") - 1000.0).abs() < 62.5);
        assert!((contour_mean(&high, "rolloff50") - 1000.0).abs() < 62.5);
        assert!(
            contour_mean(&high, "band_1k_4k_db") > contour_mean(&high, "band_250_650_db") + 20.0
        );
        let low = tone(300.0, 0.5);
        assert!(contour_mean(&low, "band_250_650_db") > contour_mean(&low, "band_1k_4k_db") + 20.0);
        // A steady tone: the energy's delta is ~0, its flux small.
        assert!(contour_mean(&high, "energy_db_de").abs() < 0.1);
    }

    /// A harmonic voice at 200 Hz: the F0 contour sits at 34.36 semitones (0.1 st: YIN on a clean
    /// harmonic signal), voicing near 1, jitter near 0.
    #[test]
    fn source_descriptors_of_a_steady_voice() {
        let n = SR as usize;
        let voice: Vec<f32> = (0..n)
            .map(|i| {
                let p = 2.0 * std::f64::consts::PI * 200.0 * i as f64 / SR as f64;
                (0.2 * (1..=8)
                    .map(|h| (h as f64 * p).sin() / h as f64)
                    .sum::<f64>()) as f32
            })
            .collect();
        let f0 = contour_mean(&voice, "f0_st");
        assert!(
            (f0 - crate::prosody::stats::semitones(200.0)).abs() < 0.1,
            "{f0}"
        );
        assert!(contour_mean(&voice, "voicing_prob") > 0.9);
        assert!(contour_mean(&voice, "jitter") < 0.01);
        assert!(contour_mean(&voice, "hnr_db") > 10.0);
    }

    /// The vector has one entry per name, the names are unique, and each contour contributes
    /// its functionals in order (a contour's mean is where the names say).
    #[test]
    fn vector_layout_follows_the_names() {
        let names = names();
        assert_eq!(names.len(), len());
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let samples = tone(440.0, 0.4);
        let v = vector(&samples, SR, &PitchConfig::default()).unwrap();
        assert_eq!(v.len(), len());
        let k = names.iter().position(|n| n == "zcr__mean").unwrap();
        assert!((v[k] as f64 - contour_mean(&samples, "zcr")).abs() < 1e-6);
        assert!(v.iter().all(|x| x.is_finite()));
    }
}
