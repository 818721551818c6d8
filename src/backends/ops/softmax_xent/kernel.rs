//! Wrapper of kernels/softmax_xent.cu: fused softmax cross-entropy, one warp per row.

use super::{SoftXentIo, SoftmaxXentOp, XentGeom, XentIo, XentStats, KERNEL_MODULE};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, DevicePtr, Kernel, KernelArgs, LaunchConfig};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, need};
use crate::{shape_err, Result};

pub const SOFTMAX_XENT: Kernel = Kernel::new(KERNEL_MODULE, "softmax_xent");

pub const SOFTMAX_XENT_SOFT: Kernel = Kernel::new(KERNEL_MODULE, "softmax_xent_soft");

/// Rows per block: one warp each.
pub const ROWS_PER_BLOCK: u32 = 4;

/// The launch: one warp per row, `ROWS_PER_BLOCK` warps per block.
pub fn launch_config(g: &XentGeom) -> LaunchConfig {
    let blocks = (g.n as u32).div_ceil(ROWS_PER_BLOCK).max(1);
    LaunchConfig::linear(blocks, ROWS_PER_BLOCK * 32)
}

/// What both cross-entropy kernels share around their launch: under the backend's counter lock,
/// zeroes the counters, lets `launch` push its arguments and launch (given the counters, the
/// losses, N and CLASSES), then returns the counters read back.
fn launch_with_counters<D: Device>(
    backend: &KernelBackend<D>,
    g: &XentGeom,
    losses: &mut D::Buffer<f32>,
    launch: impl FnOnce(&mut D::Buffer<u32>, &mut D::Buffer<f32>, usize, usize) -> Result<()>,
) -> Result<Vec<u32>> {
    let dev = &backend.dev;
    let mut counters = backend
        .xent_counters
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let counters = &mut *counters;
    g.validate()?;
    let (n, k) = (g.n as usize, g.classes as usize);
    check_index_range("softmax cross-entropy logits", n * k)?;
    dev.memset_zero(counters)?;
    launch(counters, losses, n, k)?;
    dev.copy_to_host(counters)
}

/// The mean of the first N per-row losses, summed in f64 in row order.
fn mean_loss<D: Device>(dev: &D, losses: &D::Buffer<f32>, n: usize) -> Result<f64> {
    let per_row = dev.copy_to_host(losses)?;
    let total: f64 = per_row[..n].iter().map(|&l| l as f64).sum();
    Ok(total / n as f64)
}

impl<D: Device> SoftmaxXentOp for KernelBackend<D> {
    /// WRITES losses (N) and d_logits (N, CLASSES) from logits (N, CLASSES) and labels (N), and returns
    /// the mean loss and the number of correct rows. The backend's counters (2 values) are zeroed
    /// before the launch.
    fn softmax_xent(
        &self,
        g: &XentGeom,
        io: XentIo<'_, Self::Buf, Self::Idx>,
    ) -> Result<XentStats> {
        let dev = &self.dev;
        let counts = launch_with_counters(self, g, io.losses, |counters, losses, n, k| {
            let mut args = KernelArgs::new();
            args.push(*g)
                .push(need(dev, io.logits, n * k, "softmax_xent logits")?)
                .push(need(dev, io.labels, n, "softmax_xent labels")?)
                .push(need(dev, losses, n, "softmax_xent losses")?)
                .push(need(dev, io.d_logits, n * k, "softmax_xent d_logits")?)
                .push(need(dev, counters, 2, "softmax_xent counters")?);
            dev.note_cost(SOFTMAX_XENT, || Cost::memory(4 * (2 * n * k + 2 * n + 2)));
            // SAFETY: softmax_xent(XentGeom, const float* logits, const unsigned* labels,
            // float* losses, float* d_logits, unsigned* counters), pushed in that order; lengths
            // checked above. Rows beyond N return at once, and a label ≥ CLASSES is never used
            // as an index (it is counted instead).
            unsafe { dev.launch(SOFTMAX_XENT, &launch_config(g), &mut args) }
        })?;
        if counts[1] > 0 {
            return Err(shape_err!(
                "{} of the {} labels are not one of the {} classes",
                counts[1],
                g.n,
                g.classes
            ));
        }
        Ok(XentStats {
            mean_loss: mean_loss(dev, io.losses, g.n as usize)?,
            correct: counts[0] as usize,
        })
    }

    /// Soft-target softmax cross-entropy: WRITES losses (N) = −Σ_j w_j t_j log p_j and d_logits
    /// (N, CLASSES) = (p · Σ_j w_j t_j − w ⊙ t)/N from logits and targets (N, CLASSES), with class weights
    /// w (CLASSES) or all 1; returns the mean loss and the rows whose first-maximum logit is their
    /// target's first maximum. The backend's counters are zeroed before the launch.
    fn softmax_xent_soft(&self, g: &XentGeom, io: SoftXentIo<'_, Self::Buf>) -> Result<XentStats> {
        let dev = &self.dev;
        let counts = launch_with_counters(self, g, io.losses, |counters, losses, n, k| {
            let weights = match io.class_weights {
                Some(w) => need(dev, w, k, "softmax_xent_soft class weights")?,
                None => DevicePtr(0),
            };
            let mut args = KernelArgs::new();
            args.push(*g)
                .push(need(dev, io.logits, n * k, "softmax_xent_soft logits")?)
                .push(need(dev, io.targets, n * k, "softmax_xent_soft targets")?)
                .push(weights)
                .push(need(dev, losses, n, "softmax_xent_soft losses")?)
                .push(need(dev, io.d_logits, n * k, "softmax_xent_soft d_logits")?)
                .push(need(dev, counters, 1, "softmax_xent_soft counters")?);
            // SAFETY: softmax_xent_soft(XentGeom, const float* logits, const float* targets,
            // const float* weights, float* losses, float* d_logits, unsigned* counters), pushed
            // in that order; logits, targets and d_logits hold N·CLASSES values, losses N,
            // weights CLASSES (or null, which the kernel tests before reading), counters ≥ 1
            // (checked above). Rows beyond N return at once.
            unsafe { dev.launch(SOFTMAX_XENT_SOFT, &launch_config(g), &mut args) }
        })?;
        Ok(XentStats {
            mean_loss: mean_loss(dev, io.losses, g.n as usize)?,
            correct: counts[0] as usize,
        })
    }
}
