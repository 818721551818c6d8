//! Statistics pooling on the CPU, one (image, channel) plane at a time, with the kernel's formulas:
//! column means m_w over H, then their mean and sqrt(variance + eps) over W.

use super::{StatsPoolBackwardIo, StatsPoolGeom, StatsPoolOp};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::Result;

fn dims(g: &StatsPoolGeom) -> Result<(usize, usize, usize, usize)> {
    g.validate()?;
    Ok((g.n as usize, g.c as usize, g.h as usize, g.w as usize))
}

/// The column means of one H×W plane.
fn column_means<T: Real>(plane: &[T], h: usize, w: usize) -> Vec<T> {
    let inv_h = T::ONE / T::from_f64(h as f64);
    (0..w)
        .map(|col| {
            let mut s = T::ZERO;
            for r in 0..h {
                s += plane[r * w + col];
            }
            s * inv_h
        })
        .collect()
}

impl<T: Real> StatsPoolOp for CpuBackend<T> {
    /// WRITES y (N, 2C) = [means (C), stds (C)] per image.
    fn statspool_forward(&self, g: &StatsPoolGeom, x: &Vec<T>, y: &mut Vec<T>) -> Result<()> {
        let (n, c, h, w) = dims(g)?;
        check_len("statistics pooling x", x.len(), n * c * h * w)?;
        check_len("statistics pooling y", y.len(), n * 2 * c)?;
        let (wf, eps) = (T::from_f64(w as f64), T::from_f64(g.eps as f64));
        for p in 0..n * c {
            let m = column_means(&x[p * h * w..][..h * w], h, w);
            let mean = m.iter().copied().sum::<T>() / wf;
            let var = m.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / wf;
            let (img, ch) = (p / c, p % c);
            y[img * 2 * c + ch] = mean;
            y[img * 2 * c + c + ch] = (var + eps).sqrt();
        }
        Ok(())
    }

    /// ACCUMULATES dx (N, C, H, W) from dy (N, 2C); y is the forward output.
    fn statspool_backward(
        &self,
        g: &StatsPoolGeom,
        io: StatsPoolBackwardIo<'_, Self::Buf>,
    ) -> Result<()> {
        let StatsPoolBackwardIo { x, y, dy, dx } = io;
        let (n, c, h, w) = dims(g)?;
        check_len("statistics pooling x", x.len(), n * c * h * w)?;
        check_len("statistics pooling y", y.len(), n * 2 * c)?;
        check_len("statistics pooling dy", dy.len(), n * 2 * c)?;
        check_len("statistics pooling dx", dx.len(), n * c * h * w)?;
        let (inv_w, inv_h) = (
            T::ONE / T::from_f64(w as f64),
            T::ONE / T::from_f64(h as f64),
        );
        for p in 0..n * c {
            let (img, ch) = (p / c, p % c);
            let (mean_at, std_at) = (img * 2 * c + ch, img * 2 * c + c + ch);
            let (mean, std) = (y[mean_at], y[std_at]);
            let d_mean = dy[mean_at] * inv_w;
            let d_dev = dy[std_at] * inv_w / std;
            let m = column_means(&x[p * h * w..][..h * w], h, w);
            let out = &mut dx[p * h * w..][..h * w];
            for (col, &mv) in m.iter().enumerate() {
                let d = (d_mean + d_dev * (mv - mean)) * inv_h;
                for r in 0..h {
                    out[r * w + col] += d;
                }
            }
        }
        Ok(())
    }
}
