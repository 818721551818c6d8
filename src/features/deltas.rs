//! Regression deltas along time: the Δ and ΔΔ input channels (ACRNN's and HTK's "dynamic
//! features").
//!
//! For a sequence `c[0..T)` and half-width `N`, the delta at `t` is the least-squares slope of `c`
//! over the `2N + 1` samples centred on `t`:
//!
//! ```text
//! d[t] = Σ_{n=1..N} n · (c[t+n] − c[t−n]) / (2 · Σ_{n=1..N} n²)
//! ```
//!
//! with the sequence's first and last samples repeated past its ends (so a constant sequence has
//! zero deltas everywhere, also at the edges). ΔΔ is the same formula applied to the deltas. A
//! slope per sample: a ramp rising by `a` per column has delta `a` away from the edges.
//!
//! Only the columns that hold source frames take part (`valid`): in the fixed-time mode a short
//! utterance is padded with the floor colour past its end, and a delta across the boundary would
//! be a spike that says nothing about the voice. Padding columns get delta 0.

use std::ops::Range;

/// Widest half-width accepted (±10 columns = ±100 ms at a 10 ms hop is already far wider than any
/// SER recipe uses).
pub const MAX_WINDOW: usize = 10;

/// `out[t]` = the regression delta of `c` at `t` over ±`n` samples (edges repeated); `out.len()`
/// must equal `c.len()`; `n` ≥ 1.
pub fn delta_1d(c: &[f32], n: usize, out: &mut [f32]) {
    assert_eq!(c.len(), out.len(), "delta output length");
    assert!(n >= 1, "delta half-width must be at least 1");
    let len = c.len();
    if len == 0 {
        return;
    }
    let denom = 2.0 * (1..=n).map(|k| (k * k) as f32).sum::<f32>();
    let last = len - 1;
    for (t, o) in out.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for k in 1..=n {
            let ahead = c[(t + k).min(last)];
            let behind = c[t.saturating_sub(k)];
            acc += k as f32 * (ahead - behind);
        }
        *o = acc / denom;
    }
}

/// Δ and ΔΔ of every row of the `rows × width` row-major image `image` over the columns `valid`
/// (columns outside it get 0), with half-width `n`. `delta` and `delta2` are resized to the image.
pub fn deltas_rows(
    image: &[f32],
    width: usize,
    valid: Range<usize>,
    n: usize,
    delta: &mut Vec<f32>,
    delta2: &mut Vec<f32>,
) {
    assert!(width > 0 && image.len() % width == 0, "image shape");
    assert!(valid.end <= width, "valid columns inside the image");
    delta.clear();
    delta.resize(image.len(), 0.0);
    delta2.clear();
    delta2.resize(image.len(), 0.0);
    if valid.is_empty() {
        return;
    }
    for ((row, d), dd) in image
        .chunks_exact(width)
        .zip(delta.chunks_exact_mut(width))
        .zip(delta2.chunks_exact_mut(width))
    {
        let v = valid.clone();
        delta_1d(&row[v.clone()], n, &mut d[v.clone()]);
        delta_1d(&d[v.clone()], n, &mut dd[v]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formula written out by hand for N = 2 on five samples, edges repeated:
    /// c = [1, 2, 4, 8, 16], denominator 2·(1 + 4) = 10.
    /// d[0] = (1·(c1 − c0) + 2·(c2 − c0)) / 10 = (1 + 6) / 10 = 0.7
    /// d[1] = (1·(c2 − c0) + 2·(c3 − c0)) / 10 = (3 + 14) / 10 = 1.7
    /// d[2] = (1·(c3 − c1) + 2·(c4 − c0)) / 10 = (6 + 30) / 10 = 3.6
    /// d[3] = (1·(c4 − c2) + 2·(c4 − c1)) / 10 = (12 + 28) / 10 = 4.0
    /// d[4] = (1·(c4 − c3) + 2·(c4 − c2)) / 10 = (8 + 24) / 10 = 3.2
    /// Tolerance 1e-6: sums of a few small integers in f32, exact up to the final division.
    #[test]
    fn delta_matches_a_hand_computation() {
        let c = [1.0, 2.0, 4.0, 8.0, 16.0];
        let mut d = [0.0; 5];
        delta_1d(&c, 2, &mut d);
        let want = [0.7, 1.7, 3.6, 4.0, 3.2];
        for (t, (&g, &w)) in d.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-6, "d[{t}] = {g}, expected {w}");
        }
        // ΔΔ = Δ of Δ: d = [0.7, 1.7, 3.6, 4.0, 3.2]
        // dd[2] = (1·(4.0 − 1.7) + 2·(3.2 − 0.7)) / 10 = (2.3 + 5.0) / 10 = 0.73
        let mut dd = [0.0; 5];
        delta_1d(&d, 2, &mut dd);
        assert!((dd[2] - 0.73).abs() < 1e-6, "dd[2] = {}", dd[2]);
    }

    /// A ramp of slope a has delta a away from the edges (the regression slope is exact on a
    /// line), ΔΔ 0 there; a constant has zero deltas everywhere. Tolerance 1e-5: f32 sums of
    /// values up to 30.
    #[test]
    fn ramp_and_constant() {
        for n in 1..=4 {
            let c: Vec<f32> = (0..30).map(|t| 0.5 * t as f32 + 1.0).collect();
            let mut d = vec![0.0; 30];
            delta_1d(&c, n, &mut d);
            let mut dd = vec![0.0; 30];
            delta_1d(&d, n, &mut dd);
            for t in 2 * n..30 - 2 * n {
                assert!((d[t] - 0.5).abs() < 1e-5, "N={n} d[{t}] = {}", d[t]);
                assert!(dd[t].abs() < 1e-5, "N={n} dd[{t}] = {}", dd[t]);
            }
            delta_1d(&[3.0; 7], n, &mut d[..7]);
            assert!(d[..7].iter().all(|&x| x == 0.0));
        }
    }

    /// Columns outside `valid` are zero in both planes, and the valid part equals the 1-D deltas
    /// of that part alone (padding does not leak into the edge values).
    #[test]
    fn padding_columns_are_left_out() {
        let width = 8;
        let image: Vec<f32> = (0..2 * width)
            .map(|i| if i % width < 5 { (i * i) as f32 } else { 0.0 })
            .collect();
        let (mut d, mut dd) = (Vec::new(), Vec::new());
        deltas_rows(&image, width, 0..5, 2, &mut d, &mut dd);
        for r in 0..2 {
            let row = &image[r * width..r * width + 5];
            let mut want = [0.0; 5];
            delta_1d(row, 2, &mut want);
            assert_eq!(&d[r * width..r * width + 5], &want);
            assert!(d[r * width + 5..(r + 1) * width].iter().all(|&x| x == 0.0));
            assert!(dd[r * width + 5..(r + 1) * width].iter().all(|&x| x == 0.0));
        }
    }
}
