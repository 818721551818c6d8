//! The multi-level residual identity map on the CPU. Forward: one task per target plane, each
//! averaging the r×r windows of its source plane (channel c mod C_src). Backward: one task per
//! SOURCE plane, gathering every target channel that read it, so no two tasks write the same element.

use rayon::prelude::*;

use super::{ShortcutGeom, ShortcutOp};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::Result;

struct Dims {
    n: usize,
    c_src: usize,
    h_src: usize,
    w_src: usize,
    c_dst: usize,
    h_dst: usize,
    w_dst: usize,
    r: usize,
}

impl Dims {
    fn new(g: &ShortcutGeom) -> Result<Self> {
        g.validate()?;
        let u = |v: i32| v as usize;
        Ok(Dims {
            n: u(g.n),
            c_src: u(g.c_src),
            h_src: u(g.h_src),
            w_src: u(g.w_src),
            c_dst: u(g.c_dst),
            h_dst: u(g.h_dst),
            w_dst: u(g.w_dst),
            r: u(g.ratio),
        })
    }
    fn src_plane(&self) -> usize {
        self.h_src * self.w_src
    }
    fn dst_plane(&self) -> usize {
        self.h_dst * self.w_dst
    }
}

impl<T: Real> ShortcutOp for CpuBackend<T> {
    /// ACCUMULATES dst += r×r-mean of src (channel c reads source channel c mod C_src). Each source
    /// plane's window means are computed once per image and added to every target channel that reads
    /// it (C_dst / C_src of them), each mean summed in the same order as a per-target computation would.
    fn shortcut_forward(&self, g: &ShortcutGeom, src: &Vec<T>, dst: &mut Vec<T>) -> Result<()> {
        let d = Dims::new(g)?;
        let (sp, dp) = (d.src_plane(), d.dst_plane());
        check_len("shortcut src", src.len(), d.n * d.c_src * sp)?;
        check_len("shortcut dst", dst.len(), d.n * d.c_dst * dp)?;
        let scale = T::from_f64(1.0 / (d.r * d.r) as f64);
        dst[..d.n * d.c_dst * dp]
            .par_chunks_mut(d.c_dst * dp)
            .enumerate()
            .for_each(|(img, dst)| {
                let mut means = vec![T::ZERO; d.c_src * dp];
                for (cs, means) in means.chunks_exact_mut(dp).enumerate() {
                    let src = &src[(img * d.c_src + cs) * sp..][..sp];
                    for h in 0..d.h_dst {
                        for w in 0..d.w_dst {
                            let mut sum = T::ZERO;
                            for i in 0..d.r {
                                for v in &src[(h * d.r + i) * d.w_src + w * d.r..][..d.r] {
                                    sum += *v;
                                }
                            }
                            means[h * d.w_dst + w] = sum * scale;
                        }
                    }
                }
                for (c, dst) in dst.chunks_exact_mut(dp).enumerate() {
                    let mean = &means[(c % d.c_src) * dp..][..dp];
                    for (o, &m) in dst.iter_mut().zip(mean) {
                        *o += m;
                    }
                }
            });
        Ok(())
    }

    /// ACCUMULATES d_src += the adjoint of the forward map applied to d_dst.
    fn shortcut_backward(
        &self,
        g: &ShortcutGeom,
        d_dst: &Vec<T>,
        d_src: &mut Vec<T>,
    ) -> Result<()> {
        let d = Dims::new(g)?;
        let (sp, dp) = (d.src_plane(), d.dst_plane());
        check_len("shortcut d_dst", d_dst.len(), d.n * d.c_dst * dp)?;
        check_len("shortcut d_src", d_src.len(), d.n * d.c_src * sp)?;
        let scale = T::from_f64(1.0 / (d.r * d.r) as f64);
        d_src[..d.n * d.c_src * sp]
            .par_chunks_mut(sp)
            .enumerate()
            .for_each(|(plane, d_src)| {
                let (img, cs) = (plane / d.c_src, plane % d.c_src);
                for h in 0..d.h_dst {
                    for w in 0..d.w_dst {
                        // Sum over the target channels cs, cs + C_src, cs + 2·C_src, … that read this plane.
                        let mut sum = T::ZERO;
                        for c in (cs..d.c_dst).step_by(d.c_src) {
                            sum += d_dst[(img * d.c_dst + c) * dp + h * d.w_dst + w];
                        }
                        let share = sum * scale;
                        for i in 0..d.r {
                            for v in &mut d_src[(h * d.r + i) * d.w_src + w * d.r..][..d.r] {
                                *v += share;
                            }
                        }
                    }
                }
            });
        Ok(())
    }
}
