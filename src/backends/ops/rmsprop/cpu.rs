//! RMSProp on the CPU, elementwise in parallel chunks. The settings are converted to `T` first and
//! the arithmetic done in `T`, as a device kernel does with [`crate::backends::RmsPropParams`].

use rayon::prelude::*;

use super::{RmsPropIo, RmsPropOp, RmsPropStep};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::Result;

impl<T: Real> RmsPropOp for CpuBackend<T> {
    /// Updates w and r in place (see [`super::RmsPropParams`] for the formulas).
    fn rmsprop_update(&self, step: &RmsPropStep, io: RmsPropIo<'_, Self::Buf>) -> Result<()> {
        let RmsPropIo { w, g, r } = io;
        let len = w.len();
        check_len("rmsprop g", g.len(), len)?;
        check_len("rmsprop r", r.len(), len)?;
        let lr = T::from_f64(step.lr);
        let rho = T::from_f64(step.rho);
        let eps = T::from_f64(step.eps);
        let wd = T::from_f64(step.weight_decay);
        let one_minus_rho = T::ONE - rho;
        const CHUNK: usize = 1 << 14;
        w.par_chunks_mut(CHUNK)
            .zip(r[..len].par_chunks_mut(CHUNK))
            .zip(g[..len].par_chunks(CHUNK))
            .for_each(|((w, r), g)| {
                for ((w, r), &g) in w.iter_mut().zip(r).zip(g) {
                    let g = g + wd * *w;
                    *r = rho * *r + one_minus_rho * g * g;
                    *w -= lr * g / (*r + eps).sqrt();
                }
            });
        Ok(())
    }
}
