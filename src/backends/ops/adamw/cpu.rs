//! AdamW on the CPU, elementwise in parallel chunks. The host values are converted to `T` first and
//! the arithmetic done in `T`, in the kernel's order, as a device does with
//! [`super::AdamWParams`].

use rayon::prelude::*;

use super::{AdamWIo, AdamWOp, AdamWStep};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::Result;

impl<T: Real> AdamWOp for CpuBackend<T> {
    /// Updates w, m and v in place (see [`super::AdamWParams`] for the formulas).
    fn adamw_update(&self, step: &AdamWStep, io: AdamWIo<'_, Self::Buf>) -> Result<()> {
        let AdamWIo { w, g, m, v } = io;
        let len = w.len();
        check_len("adamw g", g.len(), len)?;
        check_len("adamw m", m.len(), len)?;
        check_len("adamw v", v.len(), len)?;
        // Validates t ≥ 1 and the length, as the kernel wrapper does.
        step.params(len)?;
        let (bias1, bias2) = step.bias_corrections();
        let (bias1, bias2) = (T::from_f64(bias1), T::from_f64(bias2));
        let lr = T::from_f64(step.lr);
        let beta1 = T::from_f64(step.beta1);
        let beta2 = T::from_f64(step.beta2);
        let eps = T::from_f64(step.eps);
        let wd = T::from_f64(step.weight_decay);
        const CHUNK: usize = 1 << 14;
        w.par_chunks_mut(CHUNK)
            .zip(m[..len].par_chunks_mut(CHUNK))
            .zip(v[..len].par_chunks_mut(CHUNK))
            .zip(g[..len].par_chunks(CHUNK))
            .for_each(|(((w, m), v), g)| {
                for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
                    *m = beta1 * *m + (T::ONE - beta1) * g;
                    *v = beta2 * *v + (T::ONE - beta2) * g * g;
                    let m_hat = *m * bias1;
                    let v_hat = *v * bias2;
                    *w -= lr * wd * *w;
                    *w -= lr * m_hat / (v_hat.sqrt() + eps);
                }
            });
        Ok(())
    }
}
