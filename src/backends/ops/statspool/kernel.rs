//! Wrapper of kernels/statspool.cu: statistics pooling (mean and std over time of the frequency
//! means), one warp per (image, channel) plane.

use super::{StatsPoolBackwardIo, StatsPoolGeom, StatsPoolOp, KERNEL_MODULE};
use crate::backends::device::{Device, Kernel, KernelArgs, LaunchConfig};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, need};
use crate::Result;

pub const FORWARD: Kernel = Kernel::new(KERNEL_MODULE, "statspool_forward");
pub const BACKWARD: Kernel = Kernel::new(KERNEL_MODULE, "statspool_backward");

/// Planes per block: one warp each.
pub const PLANES_PER_BLOCK: u32 = 4;

fn check(g: &StatsPoolGeom) -> Result<(usize, usize)> {
    g.validate()?;
    check_index_range("statistics pooling input", g.input().len())?;
    Ok((g.input().len(), g.output().len()))
}

/// One warp per plane, `PLANES_PER_BLOCK` warps per block.
pub fn launch_config(g: &StatsPoolGeom) -> LaunchConfig {
    let planes = g.n as u32 * g.c as u32;
    LaunchConfig::linear(
        planes.div_ceil(PLANES_PER_BLOCK).max(1),
        PLANES_PER_BLOCK * 32,
    )
}

impl<D: Device> StatsPoolOp for KernelBackend<D> {
    /// WRITES y (N, 2C) from x (N, C, H, W).
    fn statspool_forward(
        &self,
        g: &StatsPoolGeom,
        x: &D::Buffer<f32>,
        y: &mut D::Buffer<f32>,
    ) -> Result<()> {
        let dev = &self.dev;
        let (input, output) = check(g)?;
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, x, input, "statistics pooling x")?)
            .push(need(dev, y, output, "statistics pooling y")?);
        // SAFETY: statspool_forward(StatsPoolGeom, const float* x, float* y), pushed in that order; x holds
        // N·C·H·W values and y N·2C (checked above); warps past the N·C planes return at once.
        unsafe { dev.launch(FORWARD, &launch_config(g), &mut args) }
    }

    /// ACCUMULATES dx (N, C, H, W) from dy (N, 2C); y is the forward output (mean and std).
    fn statspool_backward(
        &self,
        g: &StatsPoolGeom,
        io: StatsPoolBackwardIo<'_, Self::Buf>,
    ) -> Result<()> {
        let dev = &self.dev;
        let (input, output) = check(g)?;
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, io.x, input, "statistics pooling x")?)
            .push(need(dev, io.y, output, "statistics pooling y")?)
            .push(need(dev, io.dy, output, "statistics pooling dy")?)
            .push(need(dev, io.dx, input, "statistics pooling dx")?);
        // SAFETY: statspool_backward(StatsPoolGeom, const float* x, const float* y, const float* dy,
        // float* dx), pushed in that order; lengths checked above; warps past the planes return at once.
        unsafe { dev.launch(BACKWARD, &launch_config(g), &mut args) }
    }
}
