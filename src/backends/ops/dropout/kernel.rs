//! Wrapper of kernels/dropout.cu: inverted dropout with a recomputed (never stored) mask.

use super::{DropoutOp, DropoutParams, KERNEL_MODULE};
use crate::backends::device::{Device, Kernel, KernelArgs};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, grid_stride, need};
use crate::Result;

pub const FORWARD: Kernel = Kernel::new(KERNEL_MODULE, "dropout_forward");
pub const BACKWARD: Kernel = Kernel::new(KERNEL_MODULE, "dropout_backward");

fn check(p: &DropoutParams) -> Result<usize> {
    p.validate()?;
    let len = p.len as usize;
    check_index_range("dropout input", len)?;
    Ok(len)
}

impl<D: Device> DropoutOp for KernelBackend<D> {
    /// WRITES y (len) = masked, scaled x (len).
    fn dropout_forward(
        &self,
        p: &DropoutParams,
        x: &D::Buffer<f32>,
        y: &mut D::Buffer<f32>,
    ) -> Result<()> {
        let dev = &self.dev;
        let len = check(p)?;
        let mut args = KernelArgs::new();
        args.push(*p)
            .push(need(dev, x, len, "dropout x")?)
            .push(need(dev, y, len, "dropout y")?);
        // SAFETY: dropout_forward(DropoutParams, const float* x, float* y), pushed in that order; both hold
        // p.len values (checked above) and the grid-stride loop stops at p.len.
        unsafe { dev.launch(FORWARD, &grid_stride(len), &mut args) }
    }

    /// ACCUMULATES dx (len) += masked, scaled dy (len).
    fn dropout_backward(
        &self,
        p: &DropoutParams,
        dy: &D::Buffer<f32>,
        dx: &mut D::Buffer<f32>,
    ) -> Result<()> {
        let dev = &self.dev;
        let len = check(p)?;
        let mut args = KernelArgs::new();
        args.push(*p)
            .push(need(dev, dy, len, "dropout dy")?)
            .push(need(dev, dx, len, "dropout dx")?);
        // SAFETY: dropout_backward(DropoutParams, const float* dy, float* dx), pushed in that order; both
        // hold p.len values (checked above) and the grid-stride loop stops at p.len.
        unsafe { dev.launch(BACKWARD, &grid_stride(len), &mut args) }
    }
}
