//! Wrapper of kernels/batchnorm.cu: batch normalisation (training and evaluation forward, backward).

use super::{
    BatchNormBackwardIo, BatchNormEvalIo, BatchNormGeom, BatchNormOp, BatchNormTrainIo,
    KERNEL_MODULE,
};
use crate::backends::device::{Device, DevicePtr, Kernel, KernelArgs, LaunchConfig};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, grid_stride, need};
use crate::Result;

pub const FORWARD_TRAIN: Kernel = Kernel::new(KERNEL_MODULE, "batchnorm_forward_train");
pub const FORWARD_EVAL: Kernel = Kernel::new(KERNEL_MODULE, "batchnorm_forward_eval");
pub const BACKWARD: Kernel = Kernel::new(KERNEL_MODULE, "batchnorm_backward");

/// Threads of the per-channel blocks. Fixed (not derived from the device), so the reductions'
/// order, and with it every bit of the result, is the same on every GPU.
pub const CHANNEL_THREADS: u32 = 256;

fn check(g: &BatchNormGeom) -> Result<(usize, usize)> {
    g.validate()?;
    let len = g.shape().len();
    check_index_range("batch norm input", len)?;
    Ok((len, g.c as usize))
}

fn per_channel(g: &BatchNormGeom) -> LaunchConfig {
    LaunchConfig::linear(g.c as u32, CHANNEL_THREADS)
}

impl<D: Device> BatchNormOp for KernelBackend<D> {
    /// WRITES y (N, C, H, W) and saved (2, C) = (μ, 1/σ); updates the running averages (C) in place.
    fn batchnorm_forward_train(
        &self,
        g: &BatchNormGeom,
        io: BatchNormTrainIo<'_, Self::Buf>,
    ) -> Result<()> {
        let dev = &self.dev;
        let (len, c) = check(g)?;
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, io.x, len, "batch norm x")?)
            .push(need(dev, io.gamma, c, "batch norm gamma")?)
            .push(need(dev, io.beta, c, "batch norm beta")?)
            .push(need(dev, io.y, len, "batch norm y")?)
            .push(need(dev, io.saved, 2 * c, "batch norm saved statistics")?)
            .push(need(dev, io.running_mean, c, "batch norm running mean")?)
            .push(need(dev, io.running_var, c, "batch norm running variance")?);
        // SAFETY: batchnorm_forward_train(BatchNormGeom, const float* x, const float* gamma, const float*
        // beta, float* y, float* saved, float* running_mean, float* running_var), pushed in that order;
        // x and y hold N·C·H·W values, saved 2·C, the others C (checked above). Block c touches only
        // channel c's values (indices below N·C·H·W) and its own entries of the per-channel buffers.
        unsafe { dev.launch(FORWARD_TRAIN, &per_channel(g), &mut args) }
    }

    /// WRITES y (N, C, H, W) normalised with the running statistics (C).
    fn batchnorm_forward_eval(
        &self,
        g: &BatchNormGeom,
        io: BatchNormEvalIo<'_, Self::Buf>,
    ) -> Result<()> {
        let dev = &self.dev;
        let (len, c) = check(g)?;
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, io.x, len, "batch norm x")?)
            .push(need(dev, io.gamma, c, "batch norm gamma")?)
            .push(need(dev, io.beta, c, "batch norm beta")?)
            .push(need(dev, io.running_mean, c, "batch norm running mean")?)
            .push(need(dev, io.running_var, c, "batch norm running variance")?)
            .push(need(dev, io.y, len, "batch norm y")?);
        // SAFETY: batchnorm_forward_eval(BatchNormGeom, const float* x, const float* gamma, const float*
        // beta, const float* running_mean, const float* running_var, float* y), pushed in that order;
        // lengths checked above; the grid-stride loop stays below N·C·H·W and channel indices below C.
        unsafe { dev.launch(FORWARD_EVAL, &grid_stride(len), &mut args) }
    }

    /// Backward of the training forward pass. With `g.relu`, first masks dy in place by [y > 0].
    /// ACCUMULATES dx when given; WRITES dgamma and dbeta (C).
    fn batchnorm_backward(
        &self,
        g: &BatchNormGeom,
        io: BatchNormBackwardIo<'_, Self::Buf>,
    ) -> Result<()> {
        let dev = &self.dev;
        let (len, c) = check(g)?;
        let dx = match io.dx {
            Some(dx) => need(dev, dx, len, "batch norm dx")?,
            None => DevicePtr(0),
        };
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, io.x, len, "batch norm x")?)
            .push(need(dev, io.gamma, c, "batch norm gamma")?)
            .push(need(dev, io.y, len, "batch norm y")?)
            .push(need(dev, io.saved, 2 * c, "batch norm saved statistics")?)
            .push(need(dev, io.dy, len, "batch norm dy")?)
            .push(dx)
            .push(need(dev, io.dgamma, c, "batch norm dgamma")?)
            .push(need(dev, io.dbeta, c, "batch norm dbeta")?);
        // SAFETY: batchnorm_backward(BatchNormGeom, const float* x, const float* gamma, const float* y,
        // const float* saved, float* dy, float* dx, float* dgamma, float* dbeta), pushed in that order;
        // x, y, dy (and dx unless null, which the kernel tests before any use) hold N·C·H·W values,
        // saved 2·C, the others C (checked above). Block c touches only channel c.
        unsafe { dev.launch(BACKWARD, &per_channel(g), &mut args) }
    }
}
