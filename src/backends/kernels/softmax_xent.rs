//! Wrapper of kernels/softmax_xent.cu: fused softmax cross-entropy, one warp per row.

use super::{check_index_range, need};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, KernelArgs, LaunchConfig};
use crate::backends::geometry::{XentGeom, XentStats};
use crate::{shape_err, Result};

pub const SOFTMAX_XENT: Kernel = Kernel {
    module: "softmax_xent",
    name: "softmax_xent",
};

/// Rows per block: one warp each.
pub const ROWS_PER_BLOCK: u32 = 4;

/// The launch: one warp per row, `ROWS_PER_BLOCK` warps per block.
pub fn launch_config(g: &XentGeom) -> LaunchConfig {
    let blocks = (g.n as u32).div_ceil(ROWS_PER_BLOCK).max(1);
    LaunchConfig::linear(blocks, ROWS_PER_BLOCK * 32)
}

/// WRITES losses (N) and d_logits (N, CLASSES) from logits (N, CLASSES) and labels (N), and returns
/// the mean loss and the number of correct rows. `counters` is scratch: 2 values, zeroed here.
pub fn softmax_xent<D: Device>(
    dev: &D,
    g: &XentGeom,
    logits: &D::Buffer<f32>,
    labels: &D::Buffer<u32>,
    losses: &mut D::Buffer<f32>,
    d_logits: &mut D::Buffer<f32>,
    counters: &mut D::Buffer<u32>,
) -> Result<XentStats> {
    if g.n < 1 || g.classes < 2 {
        return Err(shape_err!("invalid softmax cross-entropy geometry {g:?}"));
    }
    let (n, k) = (g.n as usize, g.classes as usize);
    check_index_range("softmax cross-entropy logits", n * k)?;
    dev.memset_zero(counters)?;
    let mut args = KernelArgs::new();
    args.push(*g)
        .push(need(dev, logits, n * k, "softmax_xent logits")?)
        .push(need(dev, labels, n, "softmax_xent labels")?)
        .push(need(dev, losses, n, "softmax_xent losses")?)
        .push(need(dev, d_logits, n * k, "softmax_xent d_logits")?)
        .push(need(dev, counters, 2, "softmax_xent counters")?);
    dev.note_cost(SOFTMAX_XENT, || Cost::memory(4 * (2 * n * k + 2 * n + 2)));
    // SAFETY: softmax_xent(XentGeom, const float* logits, const unsigned* labels, float* losses,
    // float* d_logits, unsigned* counters), pushed in that order; lengths checked above. Rows beyond N
    // return at once, and a label ≥ CLASSES is never used as an index (it is counted instead).
    unsafe { dev.launch(SOFTMAX_XENT, &launch_config(g), &mut args)? };
    let counts = dev.copy_to_host(counters)?;
    if counts[1] > 0 {
        return Err(shape_err!(
            "{} of the {n} labels are not one of the {k} classes",
            counts[1]
        ));
    }
    let per_row = dev.copy_to_host(losses)?;
    let total: f64 = per_row[..n].iter().map(|&l| l as f64).sum();
    Ok(XentStats {
        mean_loss: total / n as f64,
        correct: counts[0] as usize,
    })
}
