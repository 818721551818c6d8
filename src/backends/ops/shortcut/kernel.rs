//! Wrapper of kernels/shortcut.cu: the multi-level residual identity map, forward and backward.

use super::{ShortcutGeom, ShortcutOp, KERNEL_MODULE};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, KernelArgs};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, grid_stride, need};
use crate::Result;

pub const FORWARD: Kernel = Kernel::new(KERNEL_MODULE, "shortcut_forward");
pub const BACKWARD: Kernel = Kernel::new(KERNEL_MODULE, "shortcut_backward");

fn check(g: &ShortcutGeom) -> Result<()> {
    g.validate()?;
    check_index_range("shortcut source", g.source().len())?;
    check_index_range("shortcut target", g.target().len())
}

impl<D: Device> ShortcutOp for KernelBackend<D> {
    /// ACCUMULATES into dst (N, C_dst, H_dst, W_dst) the r×r means of src (N, C_src, H_src, W_src).
    fn shortcut_forward(
        &self,
        g: &ShortcutGeom,
        src: &D::Buffer<f32>,
        dst: &mut D::Buffer<f32>,
    ) -> Result<()> {
        let dev = &self.dev;
        check(g)?;
        let target = g.target().len();
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, src, g.source().len(), "shortcut src")?)
            .push(need(dev, dst, target, "shortcut dst")?);
        // The source windows that feed some target channel, each read once; dst read and written.
        let c_used = g.c_src.min(g.c_dst) as usize;
        let windows = g.n as usize * c_used * (g.h_dst * g.w_dst) as usize;
        dev.note_cost(FORWARD, || {
            Cost::memory(4 * (windows * (g.ratio * g.ratio) as usize + 2 * target))
        });
        // SAFETY: shortcut_forward(ShortcutGeom, const float* src, float* dst), pushed in that order; the
        // lengths are checked above and the geometry is consistent (H_src = r·H_dst, W_src = r·W_dst), so
        // every window the kernel reads lies inside src; a thread adds into channels c < C_dst at its own
        // (h, w) only, inside dst, and no two threads share a dst element.
        unsafe { dev.launch(FORWARD, &grid_stride(windows), &mut args) }
    }

    /// ACCUMULATES into d_src (N, C_src, H_src, W_src) the adjoint of the forward map applied to d_dst.
    fn shortcut_backward(
        &self,
        g: &ShortcutGeom,
        d_dst: &D::Buffer<f32>,
        d_src: &mut D::Buffer<f32>,
    ) -> Result<()> {
        let dev = &self.dev;
        check(g)?;
        let source = g.source().len();
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, d_dst, g.target().len(), "shortcut d_dst")?)
            .push(need(dev, d_src, source, "shortcut d_src")?);
        // d_dst read once (the r×r threads of a window share it through L1), d_src read and written.
        dev.note_cost(BACKWARD, || {
            Cost::memory(4 * (g.target().len() + 2 * source))
        });
        // SAFETY: shortcut_backward(ShortcutGeom, const float* d_dst, float* d_src), pushed in that order;
        // lengths and geometry checked above, so (h_s / r, w_s / r) and every channel read lie inside d_dst.
        unsafe { dev.launch(BACKWARD, &grid_stride(source), &mut args) }
    }
}
