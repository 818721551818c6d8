//! Batch normalisation on the CPU. Per-channel statistics are reduced one channel per rayon task, in
//! a fixed order (image by image, each plane left to right), so results are bit-reproducible whatever
//! the number of threads; outputs are written one (image, channel) plane per task.

use rayon::prelude::*;

use super::{BatchNormBackwardIo, BatchNormEvalIo, BatchNormGeom, BatchNormOp, BatchNormTrainIo};
use crate::backends::cpu::{check_len, relu_mask, CpuBackend};
use crate::tensor::Real;
use crate::Result;

struct Dims {
    n: usize,
    c: usize,
    hw: usize,
}

impl Dims {
    fn new(g: &BatchNormGeom) -> Result<Self> {
        g.validate()?;
        Ok(Dims {
            n: g.n as usize,
            c: g.c as usize,
            hw: g.h as usize * g.w as usize,
        })
    }
    fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    fn m(&self) -> usize {
        self.n * self.hw
    }
    /// Σ over channel c of f(a[o], b[o]), image by image. Each plane is summed in `LANES`
    /// interleaved partial sums (offset o in lane o mod LANES), combined in lane order: a fixed
    /// order, so the result does not depend on the thread count, and independent adds over
    /// fixed-size chunks, which vectorise, where one chain of dependent additions ran at the
    /// adder's latency.
    fn channel_sum<T: Real>(&self, c: usize, a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
        const LANES: usize = 8;
        let mut total = T::ZERO;
        for img in 0..self.n {
            let base = (img * self.c + c) * self.hw;
            let (a, b) = (&a[base..][..self.hw], &b[base..][..self.hw]);
            let mut lanes = [T::ZERO; LANES];
            let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
            let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
            for (ca, cb) in a_chunks.zip(b_chunks) {
                for l in 0..LANES {
                    lanes[l] += f(ca[l], cb[l]);
                }
            }
            for (l, (&va, &vb)) in a_tail.iter().zip(b_tail).enumerate() {
                lanes[l] += f(va, vb);
            }
            total += lanes.iter().fold(T::ZERO, |s, &v| s + v);
        }
        total
    }
}

/// (μ, 1/σ, biased σ²) of every channel of x.
fn batch_statistics<T: Real>(d: &Dims, eps: T, x: &[T]) -> Vec<(T, T, T)> {
    let m = T::from_f64(d.m() as f64);
    (0..d.c)
        .into_par_iter()
        .map(|c| {
            let mean = d.channel_sum(c, x, x, |v, _| v) / m;
            let var = d.channel_sum(c, x, x, |v, _| (v - mean) * (v - mean)) / m;
            (mean, T::ONE / (var + eps).sqrt(), var)
        })
        .collect()
}

/// y = [ReLU](γ · (x − shift[c]) · scale[c] + β) plane by plane.
#[allow(clippy::too_many_arguments)]
fn normalise<T: Real>(
    d: &Dims,
    relu: bool,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    shift: &[T],
    scale: &[T],
    y: &mut [T],
) {
    y[..d.len()]
        .par_chunks_mut(d.hw)
        .enumerate()
        .for_each(|(p, y)| {
            let c = p % d.c;
            let x = &x[p * d.hw..][..d.hw];
            for (y, &x) in y.iter_mut().zip(x) {
                let v = gamma[c] * ((x - shift[c]) * scale[c]) + beta[c];
                *y = if relu && v < T::ZERO { T::ZERO } else { v };
            }
        });
}

impl<T: Real> BatchNormOp for CpuBackend<T> {
    fn batchnorm_forward_train(
        &self,
        g: &BatchNormGeom,
        io: BatchNormTrainIo<'_, Self::Buf>,
    ) -> Result<()> {
        let BatchNormTrainIo {
            x,
            gamma,
            beta,
            y,
            saved,
            running_mean,
            running_var,
        } = io;
        let d = Dims::new(g)?;
        check_len("batch norm x", x.len(), d.len())?;
        check_len("batch norm y", y.len(), d.len())?;
        check_len("batch norm gamma", gamma.len(), d.c)?;
        check_len("batch norm beta", beta.len(), d.c)?;
        check_len("batch norm saved statistics", saved.len(), 2 * d.c)?;
        check_len("batch norm running mean", running_mean.len(), d.c)?;
        check_len("batch norm running variance", running_var.len(), d.c)?;
        let stats = batch_statistics(&d, T::from_f64(g.eps as f64), x);
        let mean: Vec<T> = stats.iter().map(|s| s.0).collect();
        let inv_std: Vec<T> = stats.iter().map(|s| s.1).collect();
        normalise(&d, g.relu != 0, x, gamma, beta, &mean, &inv_std, y);
        let momentum = T::from_f64(g.momentum as f64);
        let m = d.m();
        let unbias = if m > 1 {
            T::from_f64(m as f64) / T::from_f64((m - 1) as f64)
        } else {
            T::ONE
        };
        for (c, &(mean, inv_std, var)) in stats.iter().enumerate() {
            saved[c] = mean;
            saved[d.c + c] = inv_std;
            running_mean[c] = (T::ONE - momentum) * running_mean[c] + momentum * mean;
            running_var[c] = (T::ONE - momentum) * running_var[c] + momentum * (var * unbias);
        }
        Ok(())
    }

    fn batchnorm_forward_eval(
        &self,
        g: &BatchNormGeom,
        io: BatchNormEvalIo<'_, Self::Buf>,
    ) -> Result<()> {
        let BatchNormEvalIo {
            x,
            gamma,
            beta,
            running_mean,
            running_var,
            y,
        } = io;
        let d = Dims::new(g)?;
        check_len("batch norm x", x.len(), d.len())?;
        check_len("batch norm y", y.len(), d.len())?;
        for (what, v) in [
            ("batch norm gamma", gamma),
            ("batch norm beta", beta),
            ("batch norm running mean", running_mean),
            ("batch norm running variance", running_var),
        ] {
            check_len(what, v.len(), d.c)?;
        }
        let eps = T::from_f64(g.eps as f64);
        let inv_std: Vec<T> = running_var[..d.c]
            .iter()
            .map(|&v| T::ONE / (v + eps).sqrt())
            .collect();
        normalise(&d, g.relu != 0, x, gamma, beta, running_mean, &inv_std, y);
        Ok(())
    }

    fn batchnorm_backward(
        &self,
        g: &BatchNormGeom,
        io: BatchNormBackwardIo<'_, Self::Buf>,
    ) -> Result<()> {
        let BatchNormBackwardIo {
            x,
            gamma,
            y,
            saved,
            dy,
            dx,
            dgamma,
            dbeta,
        } = io;
        let dx = dx.map(|v| v.as_mut_slice());
        let d = Dims::new(g)?;
        check_len("batch norm x", x.len(), d.len())?;
        check_len("batch norm y", y.len(), d.len())?;
        check_len("batch norm dy", dy.len(), d.len())?;
        check_len("batch norm gamma", gamma.len(), d.c)?;
        check_len("batch norm saved statistics", saved.len(), 2 * d.c)?;
        check_len("batch norm dgamma", dgamma.len(), d.c)?;
        check_len("batch norm dbeta", dbeta.len(), d.c)?;
        if g.relu != 0 {
            relu_mask(&mut dy[..d.len()], &y[..d.len()]);
        }
        let (mean, inv_std) = (&saved[..d.c], &saved[d.c..2 * d.c]);
        let dy = &dy[..d.len()];
        let sums: Vec<(T, T)> = (0..d.c)
            .into_par_iter()
            .map(|c| {
                let (mean, inv_std) = (mean[c], inv_std[c]);
                (
                    d.channel_sum(c, dy, dy, |g, _| g),
                    d.channel_sum(c, dy, x, |g, v| g * ((v - mean) * inv_std)),
                )
            })
            .collect();
        for (c, &(sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
            dbeta[c] = sum_dy;
            dgamma[c] = sum_dy_xhat;
        }
        let Some(dx) = dx else {
            return Ok(());
        };
        check_len("batch norm dx", dx.len(), d.len())?;
        let m = T::from_f64(d.m() as f64);
        dx[..d.len()]
            .par_chunks_mut(d.hw)
            .enumerate()
            .for_each(|(p, dx)| {
                let c = p % d.c;
                let k = gamma[c] * inv_std[c];
                let (mean_dy, mean_dy_xhat) = (sums[c].0 / m, sums[c].1 / m);
                let (x, dy) = (&x[p * d.hw..][..d.hw], &dy[p * d.hw..][..d.hw]);
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    let xhat = (x - mean[c]) * inv_std[c];
                    *dx += k * (dy - mean_dy - xhat * mean_dy_xhat);
                }
            });
        Ok(())
    }
}
