//! Max-pool on the CPU: one rayon task per (image, channel) plane, so the backward pass can add into
//! overlapping windows (stride < k) without races.

use rayon::prelude::*;

use super::{MaxPoolOp, MaxPoolReluBackwardIo, PoolGeom, ARGMAX_INDEX, ARGMAX_POSITIVE};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::{shape_err, Result};

struct Dims {
    planes: usize,
    h_in: usize,
    w_in: usize,
    k: usize,
    stride: usize,
    h_out: usize,
    w_out: usize,
}

impl Dims {
    fn new(g: &PoolGeom) -> Result<Self> {
        g.validate()?;
        let u = |v: i32| v as usize;
        Ok(Dims {
            planes: u(g.n) * u(g.c),
            h_in: u(g.h_in),
            w_in: u(g.w_in),
            k: u(g.k),
            stride: u(g.stride),
            h_out: u(g.h_out),
            w_out: u(g.w_out),
        })
    }
    fn in_plane(&self) -> usize {
        self.h_in * self.w_in
    }
    fn out_plane(&self) -> usize {
        self.h_out * self.w_out
    }
}

/// The argmax of a window whose first maximum `best` sits at `at`: the index, and the ReLU mask of
/// the winner in the top bit (see [`ARGMAX_POSITIVE`]).
fn argmax_of<T: Real>(best: T, at: usize) -> u32 {
    at as u32 | if best > T::ZERO { ARGMAX_POSITIVE } else { 0 }
}

/// The forward pass of one plane for the common 2×2 window, stride 2: the same comparisons in the
/// same order as the general loop (so the same results), over row pairs the compiler can see whole.
fn pool_2x2<T: Real>(d: &Dims, x: &[T], y: &mut [T], am: &mut [u32]) {
    let rows = y
        .chunks_exact_mut(d.w_out)
        .zip(am.chunks_exact_mut(d.w_out));
    for (oh, (y, am)) in rows.enumerate() {
        let top = 2 * oh * d.w_in;
        let (upper, lower) = (&x[top..][..d.w_in], &x[top + d.w_in..][..d.w_in]);
        let windows = upper.chunks_exact(2).zip(lower.chunks_exact(2));
        for (ow, ((y, am), (u, l))) in y.iter_mut().zip(am.iter_mut()).zip(windows).enumerate() {
            let first = top + 2 * ow;
            let (mut best, mut at) = (u[0], first);
            for (v, idx) in [
                (u[1], first + 1),
                (l[0], first + d.w_in),
                (l[1], first + d.w_in + 1),
            ] {
                let take = v > best;
                best = if take { v } else { best };
                at = if take { idx } else { at };
            }
            *y = best;
            *am = argmax_of(best, at);
        }
    }
}

impl<T: Real> MaxPoolOp for CpuBackend<T> {
    /// WRITES y and argmax (the first maximum in row-major window order, as h·W_in + w, with
    /// [`ARGMAX_POSITIVE`] where that maximum is > 0).
    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &Vec<T>,
        y: &mut Vec<T>,
        argmax: &mut Vec<u32>,
    ) -> Result<()> {
        let d = Dims::new(g)?;
        let (ip, op) = (d.in_plane(), d.out_plane());
        check_len("max-pool x", x.len(), d.planes * ip)?;
        check_len("max-pool y", y.len(), d.planes * op)?;
        check_len("max-pool argmax", argmax.len(), d.planes * op)?;
        y[..d.planes * op]
            .par_chunks_mut(op)
            .zip(argmax[..d.planes * op].par_chunks_mut(op))
            .enumerate()
            .for_each(|(p, (y, am))| {
                let x = &x[p * ip..][..ip];
                if d.k == 2 && d.stride == 2 {
                    pool_2x2(&d, x, y, am);
                    return;
                }
                for (oh, (y, am)) in y
                    .chunks_exact_mut(d.w_out)
                    .zip(am.chunks_exact_mut(d.w_out))
                    .enumerate()
                {
                    for (ow, (y, am)) in y.iter_mut().zip(am.iter_mut()).enumerate() {
                        let first = oh * d.stride * d.w_in + ow * d.stride;
                        let (mut best, mut at) = (x[first], first);
                        for i in 0..d.k {
                            let row = first + i * d.w_in;
                            for (j, &v) in x[row..row + d.k].iter().enumerate() {
                                // Selects, not a branch: which element wins is data the branch
                                // predictor cannot learn. `>` keeps the first maximum (and never
                                // takes a NaN), as the kernel does.
                                let take = v > best;
                                best = if take { v } else { best };
                                at = if take { row + j } else { at };
                            }
                        }
                        *y = best;
                        *am = argmax_of(best, at);
                    }
                }
            });
        Ok(())
    }

    /// ACCUMULATES dx[argmax] += dy.
    fn maxpool_backward(
        &self,
        g: &PoolGeom,
        dy: &Vec<T>,
        argmax: &Vec<u32>,
        dx: &mut Vec<T>,
    ) -> Result<()> {
        let d = Dims::new(g)?;
        let (ip, op) = (d.in_plane(), d.out_plane());
        check_len("max-pool dy", dy.len(), d.planes * op)?;
        check_len("max-pool argmax", argmax.len(), d.planes * op)?;
        check_len("max-pool dx", dx.len(), d.planes * ip)?;
        if argmax[..d.planes * op]
            .iter()
            .any(|&a| (a & ARGMAX_INDEX) as usize >= ip)
        {
            return Err(shape_err!(
                "max-pool argmax holds an index outside the {ip}-element input plane"
            ));
        }
        dx[..d.planes * ip]
            .par_chunks_mut(ip)
            .enumerate()
            .for_each(|(p, dx)| {
                for (&a, &g) in argmax[p * op..][..op].iter().zip(&dy[p * op..][..op]) {
                    dx[(a & ARGMAX_INDEX) as usize] += g;
                }
            });
        Ok(())
    }

    /// WRITES dx = [x > 0] · (dy routed to its argmax), the ReLU mask of the pooled input x applied
    /// (read from the argmax's [`ARGMAX_POSITIVE`] bit: every element a window routes to is that
    /// window's maximum), and db (C) = Σ over (n, h, w) of dx, the producing convolution's bias gradient
    /// (see `Backend::maxpool_relu_backward`): [`backward`] into zeros, then the mask, then the
    /// convolution's own channel sums — the same sums, in the same order, as the unfused path.
    fn maxpool_relu_backward(
        &self,
        g: &PoolGeom,
        io: MaxPoolReluBackwardIo<'_, Self::Buf, Self::Idx>,
    ) -> Result<()> {
        let MaxPoolReluBackwardIo { dy, argmax, dx, db } = io;
        let d = Dims::new(g)?;
        let (ip, op) = (d.in_plane(), d.out_plane());
        check_len("max-pool dx", dx.len(), d.planes * ip)?;
        check_len("max-pool db", db.len(), g.c as usize)?;
        dx[..d.planes * ip].fill(T::ZERO);
        self.maxpool_backward(g, dy, argmax, dx)?;
        for (p, dx) in dx[..d.planes * ip].chunks_mut(ip).enumerate() {
            for &a in &argmax[p * op..][..op] {
                if a & ARGMAX_POSITIVE == 0 {
                    dx[(a & ARGMAX_INDEX) as usize] = T::ZERO;
                }
            }
        }
        let c = g.c as usize;
        crate::backends::ops::conv2d::cpu::channel_sums(
            &dx[..d.planes * ip],
            d.planes / c,
            c,
            ip,
            db,
        );
        Ok(())
    }
}
