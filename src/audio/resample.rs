//! Band-limited rational resampling: a polyphase Kaiser-windowed sinc.
//!
//! The rate change `from → to` is reduced to `up/down` (e.g. 22 050 → 16 000 is 320/441). Output
//! sample `n` sits at input time `n·down/up`; its value is the input convolved with a low-pass sinc
//! centred there. Because that position's fractional part takes only `up` distinct values, the filter
//! is tabulated once per phase (`up` rows of `taps` coefficients) and each output sample is one dot
//! product. Rates whose ratio needs an enormous table compute the coefficients on the fly instead.
//!
//! Design: the pass band ends at 90 % and the stop band begins at 100 % of the lower Nyquist
//! frequency (of input and output), with at least 90 dB of stop-band attenuation, so nothing above
//! the new Nyquist frequency aliases back audibly, and speech (below ~7 kHz at 16 kHz) passes flat.

use std::f64::consts::PI;

use crate::{config_err, Result};

/// Stop-band attenuation the Kaiser window is designed for, in dB.
const ATTENUATION_DB: f64 = 90.0;
/// Pass-band edge as a fraction of the lower Nyquist frequency.
const PASS_EDGE: f64 = 0.90;
/// Larger polyphase tables than this (in coefficients) are computed on the fly instead.
const MAX_TABLE: usize = 1 << 22;

/// A resampler for one rate pair; reusable across signals.
#[derive(Clone, Debug)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// Half the filter length, in input samples.
    half: usize,
    /// Cut-off in cycles per input sample.
    cutoff: f64,
    beta: f64,
    /// `up` rows of `2·half` coefficients, or empty when computed on the fly.
    table: Vec<f32>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Modified Bessel function of the first kind, order 0 (power series; converges fast for β ≤ 20).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..200 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Result<Self> {
        if from == 0 || to == 0 {
            return Err(config_err!(
                "sample rates must be positive, got {from} Hz → {to} Hz"
            ));
        }
        let g = gcd(from as u64, to as u64);
        let up = (to as u64 / g) as usize;
        let down = (from as u64 / g) as usize;
        // Frequencies relative to the input rate (cycles per input sample).
        let nyquist = 0.5 * (to as f64 / from as f64).min(1.0);
        let pass = PASS_EDGE * nyquist;
        let cutoff = 0.5 * (pass + nyquist);
        let transition = nyquist - pass;
        // Kaiser's formulas: β for the attenuation, length for the transition width.
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let length = (ATTENUATION_DB - 7.95) / (2.285 * 2.0 * PI * transition) + 1.0;
        let half = (length / 2.0).ceil() as usize;
        let mut r = Resampler {
            up,
            down,
            half,
            cutoff,
            beta,
            table: Vec::new(),
        };
        if up != down && up * 2 * half <= MAX_TABLE {
            let taps = 2 * half;
            let mut table = vec![0f32; up * taps];
            for (phase, row) in table.chunks_exact_mut(taps).enumerate() {
                r.fill_phase(phase, row);
            }
            r.table = table;
        }
        Ok(r)
    }

    /// The reduced rate ratio (up, down): output sample n sits at input time n·down/up.
    pub fn ratio(&self) -> (usize, usize) {
        (self.up, self.down)
    }
    /// Filter length in input samples (the cost of one output sample, in multiply-adds).
    pub fn taps(&self) -> usize {
        2 * self.half
    }

    /// Coefficients for output phase `phase` (input position `i + phase/up`), applied to inputs
    /// `i - half + 1 ..= i + half`, normalised to unit DC gain.
    fn fill_phase(&self, phase: usize, row: &mut [f32]) {
        let frac = phase as f64 / self.up as f64;
        let mut sum = 0.0;
        let mut tmp = vec![0f64; row.len()];
        for (j, t) in tmp.iter_mut().enumerate() {
            // Distance from the output position to input sample i - half + 1 + j.
            let tau = frac + self.half as f64 - 1.0 - j as f64;
            let x = tau / self.half as f64;
            if x.abs() >= 1.0 {
                continue;
            }
            let arg = 2.0 * self.cutoff * tau;
            let sinc = if arg == 0.0 {
                1.0
            } else {
                (PI * arg).sin() / (PI * arg)
            };
            let window = bessel_i0(self.beta * (1.0 - x * x).sqrt()) / bessel_i0(self.beta);
            *t = 2.0 * self.cutoff * sinc * window;
            sum += *t;
        }
        for (r, t) in row.iter_mut().zip(&tmp) {
            *r = (t / sum) as f32;
        }
    }

    /// Number of output samples for `n` input samples: `ceil(n·up/down)`.
    pub fn output_len(&self, n: usize) -> usize {
        (n * self.up).div_ceil(self.down)
    }

    /// Resample one signal. Samples before the start and after the end count as silence.
    pub fn process(&self, input: &[f32]) -> Vec<f32> {
        if self.up == self.down {
            return input.to_vec();
        }
        let taps = 2 * self.half;
        // Zero padding on both sides keeps the inner loop free of bounds checks on the signal edges.
        let mut padded = vec![0f32; input.len() + 2 * self.half + 1];
        padded[self.half..self.half + input.len()].copy_from_slice(input);
        let out_len = self.output_len(input.len());
        let mut out = Vec::with_capacity(out_len);
        let mut row_buf = vec![0f32; if self.table.is_empty() { taps } else { 0 }];
        for n in 0..out_len {
            let pos = n * self.down;
            let i = pos / self.up;
            let phase = pos % self.up;
            let row: &[f32] = if self.table.is_empty() {
                self.fill_phase(phase, &mut row_buf);
                &row_buf
            } else {
                &self.table[phase * taps..(phase + 1) * taps]
            };
            // Input i - half + 1 + j lives at padded index i + 1 + j.
            let window = &padded[i + 1..i + 1 + taps];
            out.push(dot(window, row));
        }
        out
    }
}

/// Dot product in eight independent lanes so the compiler can vectorise it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for k in chunks * 8..a.len() {
        s += a[k] * b[k];
    }
    s
}

/// Resample `input` from `from` Hz to `to` Hz (a copy when the rates agree).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(input.to_vec());
    }
    Ok(Resampler::new(from, to)?.process(input))
}
