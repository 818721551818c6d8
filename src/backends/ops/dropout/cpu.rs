//! Inverted dropout on the CPU, with the kernels' mask ([`DropoutParams::keeps`]): the same bits on
//! every backend.

use super::{DropoutOp, DropoutParams};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::Result;

fn check(p: &DropoutParams) -> Result<usize> {
    p.validate()?;
    Ok(p.len as usize)
}

impl<T: Real> DropoutOp for CpuBackend<T> {
    /// WRITES y = keep ? x · scale : 0.
    fn dropout_forward(&self, p: &DropoutParams, x: &Vec<T>, y: &mut Vec<T>) -> Result<()> {
        let len = check(p)?;
        check_len("dropout x", x.len(), len)?;
        check_len("dropout y", y.len(), len)?;
        let scale = T::from_f64(p.scale as f64);
        for (i, (y, &x)) in y[..len].iter_mut().zip(&x[..len]).enumerate() {
            *y = if p.keeps(i as u32) {
                x * scale
            } else {
                T::ZERO
            };
        }
        Ok(())
    }

    /// ACCUMULATES dx += keep ? dy · scale : 0.
    fn dropout_backward(&self, p: &DropoutParams, dy: &Vec<T>, dx: &mut Vec<T>) -> Result<()> {
        let len = check(p)?;
        check_len("dropout dy", dy.len(), len)?;
        check_len("dropout dx", dx.len(), len)?;
        let scale = T::from_f64(p.scale as f64);
        for (i, (dx, &dy)) in dx[..len].iter_mut().zip(&dy[..len]).enumerate() {
            if p.keeps(i as u32) {
                *dx += dy * scale;
            }
        }
        Ok(())
    }
}
