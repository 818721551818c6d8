//! The short-time Fourier transform: Hamming-windowed frames → real FFT → power → (mel) → dB.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::mel::MelBank;
use super::StftConfig;
use crate::Result;

/// A spectrogram in dB: `frames × bins` values, frame-major (`db[t·bins + f]`), bin 0 = 0 Hz.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrogram {
    pub frames: usize,
    pub bins: usize,
    pub db: Vec<f32>,
}

impl Spectrogram {
    pub fn frame(&self, t: usize) -> &[f32] {
        &self.db[t * self.bins..(t + 1) * self.bins]
    }
    pub fn get(&self, t: usize, f: usize) -> f32 {
        self.db[t * self.bins + f]
    }
    /// (min, max) over all values.
    pub fn range(&self) -> (f32, f32) {
        min_max(&self.db)
    }
}

/// (min, max) of a non-empty slice, in lanes so it vectorises.
pub(crate) fn min_max(v: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; 8];
    let mut hi = [f32::NEG_INFINITY; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            lo[k] = lo[k].min(c[k]);
            hi[k] = hi[k].max(c[k]);
        }
    }
    for &x in rest {
        lo[0] = lo[0].min(x);
        hi[0] = hi[0].max(x);
    }
    (
        lo.iter().copied().fold(f32::INFINITY, f32::min),
        hi.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    )
}

/// The periodic-free ("symmetric") Hamming window of length `n`: 0.54 − 0.46·cos(2πk/(n−1)).
pub fn hamming(n: usize) -> Vec<f32> {
    let denom = (n.max(2) - 1) as f64;
    (0..n)
        .map(|k| (0.54 - 0.46 * (2.0 * std::f64::consts::PI * k as f64 / denom).cos()) as f32)
        .collect()
}

/// Everything one STFT needs, prepared once: FFT plan, window, mel weights and scratch buffers.
/// Not `Sync` in use (it owns scratch): give each thread its own (`rayon`'s `map_init`).
pub struct StftPlan {
    cfg: StftConfig,
    win: usize,
    hop: usize,
    fft: Arc<dyn RealToComplex<f32>>,
    /// The Hamming window scaled by 2/Σw, so a full-scale sine's peak bin has power ≈ 1 (0 dB).
    window: Vec<f32>,
    mel: Option<MelBank>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    power: Vec<f32>,
}

impl StftPlan {
    pub fn new(cfg: &StftConfig) -> Result<Self> {
        cfg.validate()?;
        let (win, hop) = (cfg.window_len(), cfg.hop_len());
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
        let mut window = hamming(win);
        let gain = 2.0 / window.iter().map(|&w| w as f64).sum::<f64>();
        window
            .iter_mut()
            .for_each(|w| *w = (*w as f64 * gain) as f32);
        let fmax = cfg.fmax_hz.unwrap_or(cfg.sample_rate as f32 / 2.0);
        let mel = cfg
            .mel_bands
            .map(|n| MelBank::new(n, cfg.n_fft, cfg.sample_rate, cfg.fmin_hz, fmax));
        Ok(StftPlan {
            frame: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            power: vec![0.0; cfg.n_fft / 2 + 1],
            cfg: cfg.clone(),
            win,
            hop,
            fft,
            window,
            mel,
        })
    }

    pub fn config(&self) -> &StftConfig {
        &self.cfg
    }
    pub fn bins(&self) -> usize {
        self.cfg.bins()
    }

    /// The spectrogram of `samples` (at `config().sample_rate`).
    pub fn compute(&mut self, samples: &[f32]) -> Spectrogram {
        let mut s = Spectrogram {
            frames: 0,
            bins: 0,
            db: Vec::new(),
        };
        self.compute_into(samples, &mut s);
        s
    }

    /// [`StftPlan::compute`] into an existing spectrogram, reusing its allocation.
    pub fn compute_into(&mut self, samples: &[f32], out: &mut Spectrogram) {
        let frames = self.cfg.frames_for(samples.len());
        let bins = self.bins();
        out.frames = frames;
        out.bins = bins;
        out.db.resize(frames * bins, 0.0);
        let floor = self.cfg.power_floor;
        for t in 0..frames {
            let start = t * self.hop;
            let avail = samples.len().saturating_sub(start).min(self.win);
            for ((f, &x), &w) in self
                .frame
                .iter_mut()
                .zip(&samples[start..start + avail])
                .zip(&self.window)
            {
                *f = x * w;
            }
            self.frame[avail..].iter_mut().for_each(|f| *f = 0.0);
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .expect("buffers were made by this plan");
            let row = &mut out.db[t * bins..(t + 1) * bins];
            match &self.mel {
                None => {
                    for (r, c) in row.iter_mut().zip(&self.spectrum) {
                        *r = c.re * c.re + c.im * c.im;
                    }
                }
                Some(mel) => {
                    for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                        *p = c.re * c.re + c.im * c.im;
                    }
                    mel.apply(&self.power, row);
                }
            }
            power_to_db(row, floor);
        }
    }
}

/// `v ← 10·log10(max(v, floor))`, in place.
pub fn power_to_db(v: &mut [f32], floor: f32) {
    for x in v.iter_mut() {
        *x = fast_db(x.max(floor));
    }
}

/// 10·log10(x) for positive, finite, normal x; absolute error below 1e-4 dB.
///
/// log2 splits into the exponent and log2 of the mantissa m ∈ [√½, √2), the latter from the series
/// log(m) = 2·atanh(s), s = (m−1)/(m+1), |s| ≤ 0.172, whose s⁹ term is already below 1e-7. Written
/// without branches so loops over rows vectorise; `f32::log10` would not, and the logarithm would
/// otherwise be a large share of the whole spectrogram's cost.
#[inline(always)]
pub fn fast_db(x: f32) -> f32 {
    const SQRT2: u32 = 0x3fb504f3; // bits of √2
    let bits = x.to_bits();
    // Subtracting (bits of √½) re-centres the mantissa: m ∈ [√½, √2) and the matching exponent.
    let offset = bits.wrapping_sub(SQRT2 - 0x0080_0000);
    let exponent = (offset as i32 >> 23) as f32;
    let m = f32::from_bits(bits.wrapping_sub(offset & 0xff80_0000));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let ln_m = 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0))));
    // 10·log10(x) = 10·log10(2)·(e + ln(m)/ln 2)
    const DB_PER_OCTAVE: f32 = 10.0 * std::f32::consts::LOG10_2;
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    DB_PER_OCTAVE * (exponent + ln_m * LOG2_E)
}
