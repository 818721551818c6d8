//! Triangular mel filter bank on the HTK mel scale, mel(f) = 2595·log10(1 + f/700).
//!
//! Band k's triangle rises from centre k−1 to centre k and falls to centre k+1, with peak 1; the
//! `n + 2` edges are equally spaced in mel between `fmin` and `fmax`. Each band is stored sparsely
//! (first bin and its weights), since a band covers only a few FFT bins.

/// Hz → HTK mel.
pub fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

/// HTK mel → Hz.
pub fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

#[derive(Clone, Debug)]
pub struct MelBank {
    /// Per band: index of its first FFT bin and its weights.
    bands: Vec<(usize, Vec<f32>)>,
}

impl MelBank {
    pub fn new(n_bands: usize, n_fft: usize, sample_rate: u32, fmin: f32, fmax: f32) -> Self {
        let bins = n_fft / 2 + 1;
        let (lo, hi) = (hz_to_mel(fmin as f64), hz_to_mel(fmax as f64));
        let edges: Vec<f64> = (0..n_bands + 2)
            .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_bands + 1) as f64))
            .collect();
        let bin_hz = sample_rate as f64 / n_fft as f64;
        let bands = (0..n_bands)
            .map(|k| {
                let (left, centre, right) = (edges[k], edges[k + 1], edges[k + 2]);
                let weight = |b: usize| {
                    let f = b as f64 * bin_hz;
                    if f <= left || f >= right {
                        0.0
                    } else if f <= centre {
                        (f - left) / (centre - left)
                    } else {
                        (right - f) / (right - centre)
                    }
                };
                let first = (0..bins).find(|&b| weight(b) > 0.0);
                match first {
                    // A band narrower than one bin spacing: take the nearest bin whole, so no band is
                    // identically empty (that would be a constant -100 dB row).
                    None => (
                        (centre / bin_hz).round().min((bins - 1) as f64) as usize,
                        vec![1.0],
                    ),
                    Some(first) => {
                        let last = (first..bins)
                            .take_while(|&b| weight(b) > 0.0)
                            .last()
                            .unwrap_or(first);
                        (first, (first..=last).map(|b| weight(b) as f32).collect())
                    }
                }
            })
            .collect();
        MelBank { bands }
    }

    pub fn bands(&self) -> usize {
        self.bands.len()
    }

    /// Dense weights (bands × bins), for tests and inspection.
    pub fn dense(&self, bins: usize) -> Vec<Vec<f32>> {
        self.bands
            .iter()
            .map(|(first, w)| {
                let mut row = vec![0.0; bins];
                row[*first..first + w.len()].copy_from_slice(w);
                row
            })
            .collect()
    }

    /// `out[k] = Σ_b weight[k][b]·power[b]`.
    pub fn apply(&self, power: &[f32], out: &mut [f32]) {
        for (o, (first, w)) in out.iter_mut().zip(&self.bands) {
            *o = power[*first..first + w.len()]
                .iter()
                .zip(w)
                .map(|(p, w)| p * w)
                .sum();
        }
    }
}
