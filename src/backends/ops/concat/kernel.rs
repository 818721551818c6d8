//! Wrapper of kernels/concat.cu: row concatenation of two feature matrices and its backward.

use super::{ConcatBackwardIo, ConcatForwardIo, ConcatGeom, ConcatOp, KERNEL_MODULE};
use crate::backends::device::{Device, Kernel, KernelArgs};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{grid_stride, need};
use crate::Result;

pub const FORWARD: Kernel = Kernel::new(KERNEL_MODULE, "concat_forward");
pub const BACKWARD_A: Kernel = Kernel::new(KERNEL_MODULE, "concat_backward_a");
pub const BACKWARD_B: Kernel = Kernel::new(KERNEL_MODULE, "concat_backward_b");

impl<D: Device> ConcatOp for KernelBackend<D> {
    /// WRITES y (N, A + B) = [a (N, A), b (N, B)].
    fn concat_forward(&self, g: &ConcatGeom, io: ConcatForwardIo<'_, Self::Buf>) -> Result<()> {
        let dev = &self.dev;
        g.validate()?;
        let (la, lb, ly) = g.lens();
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, io.a, la, "concat a")?)
            .push(need(dev, io.b, lb, "concat b")?)
            .push(need(dev, io.y, ly, "concat y")?);
        // SAFETY: concat_forward(ConcatGeom, const float* a, const float* b, float* y), pushed in that
        // order; a, b and y hold N·A, N·B and N·(A+B) values (checked above), and the grid-stride loop
        // over N·(A+B) reads a[n·A + j] (j < A) or b[n·B + k] (k < B) only.
        unsafe { dev.launch(FORWARD, &grid_stride(ly), &mut args) }
    }

    /// ACCUMULATES da (N, A) += dy[:, ..A] and db (N, B) += dy[:, A..], each when given.
    fn concat_backward(&self, g: &ConcatGeom, io: ConcatBackwardIo<'_, Self::Buf>) -> Result<()> {
        let ConcatBackwardIo { dy, da, db } = io;
        let dev = &self.dev;
        g.validate()?;
        let (la, lb, ly) = g.lens();
        let dy = need(dev, dy, ly, "concat dy")?;
        if let Some(da) = da {
            let mut args = KernelArgs::new();
            args.push(*g).push(dy).push(need(dev, da, la, "concat da")?);
            // SAFETY: concat_backward_a(ConcatGeom, const float* dy, float* da), pushed in that order;
            // dy holds N·(A+B) and da N·A values (checked above), and the loop stops at N·A.
            unsafe { dev.launch(BACKWARD_A, &grid_stride(la), &mut args)? };
        }
        if let Some(db) = db {
            let mut args = KernelArgs::new();
            args.push(*g).push(dy).push(need(dev, db, lb, "concat db")?);
            // SAFETY: concat_backward_b(ConcatGeom, const float* dy, float* db), pushed in that order;
            // dy holds N·(A+B) and db N·B values (checked above), and the loop stops at N·B.
            unsafe { dev.launch(BACKWARD_B, &grid_stride(lb), &mut args)? };
        }
        Ok(())
    }
}
