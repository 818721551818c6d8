//! The op contract: one trait, [`Backend`], the sum of the op traits of [`ops`] and the memory
//! methods, that every compute backend implements — the CPU reference
//! ([`cpu`]), the emulated device and the CUDA device. The network, the trainer and every test body are
//! written once against this trait.
//!
//! # Buffers
//! A backend owns its memory: [`Buffers::Buf`] holds `Elem` values, [`Buffers::Idx`] holds `u32`
//! (max-pool argmax, class labels). Ops take parameter structs (one per op folder in [`ops`]) that say how much of each
//! buffer they use; a buffer may be longer than its geometry needs (a batch buffer sized for the largest
//! batch serves a smaller last batch), and ops read and write only the prefix the geometry describes.
//! An op method that takes two buffers of the same type and access takes all its buffers in one
//! struct with a field per buffer ([`ConvBackwardIo`], …), so that no call can swap two of them.
//!
//! # Write or accumulate
//! - Forward outputs are WRITTEN, except [`ShortcutOp::shortcut_forward`], which adds into its target.
//! - Gradients with respect to an op's DATA inputs (`dx`, `d_src`) are ACCUMULATED (`+=`): a tensor
//!   that feeds two places (a pooled map that feeds the next convolution and a later shortcut) gets the
//!   sum of both contributions, in whatever order the backward pass visits them. The caller zeroes
//!   these buffers once per step.
//! - Exception: [`Conv2dOp::conv2d_backward`] takes its `dx` as an [`InputGrad`], which may also say
//!   WRITE. The network writes where the convolution is the only op that produces that gradient (its
//!   input feeds nothing else), and does not zero that buffer.
//! - Gradients with respect to PARAMETERS (`dw`, `db`) are WRITTEN: every parameter is used exactly once
//!   per step.
//! - With a fused ReLU, the backward pass first multiplies `dy` IN PLACE by `[y > 0]`, turning it into
//!   the gradient of the pre-activation; `y` is the op's forward output.
//! - Exception, for memory passes less: [`MaxPoolOp::maxpool_relu_backward`] WRITES its `dx`, already
//!   ReLU-masked, and WRITES the producing convolution's bias gradient `db` (the channel sums of that
//!   `dx`). The network uses it where a pool is the only consumer of a ReLU convolution's output
//!   (then nothing else adds into that gradient, and it needs no zeroing), and runs that
//!   convolution's backward with `relu` off and without `db` (`None`), so the convolution reads
//!   neither its y nor, for the bias, its dy. Only gradients that are accumulated into are zeroed.

pub mod cost;
pub mod cpu;
pub mod cuda;
pub mod device;
pub mod emu;
pub mod kernel_backend;
pub mod kernels;
pub mod ops;

pub use ops::adamw::{AdamWIo, AdamWParams, AdamWStep};
pub use ops::batchnorm::{BatchNormBackwardIo, BatchNormEvalIo, BatchNormGeom, BatchNormTrainIo};
pub use ops::concat::{ConcatBackwardIo, ConcatForwardIo, ConcatGeom};
pub use ops::conv2d::{ConvBackwardIo, ConvForwardIo, ConvGeom, Padding};
pub use ops::dense::{DenseBackwardIo, DenseForwardIo, DenseGeom};
pub use ops::dropout::DropoutParams;
pub use ops::maxpool::{MaxPoolReluBackwardIo, PoolGeom};
pub use ops::rmsprop::{RmsPropIo, RmsPropParams, RmsPropStep};
pub use ops::shortcut::ShortcutGeom;
pub use ops::softmax_xent::{SoftXentIo, XentGeom, XentIo, XentStats};
pub use ops::statspool::{StatsPoolBackwardIo, StatsPoolGeom};
pub use ops::{
    AdamWOp, BatchNormOp, ConcatOp, Conv2dOp, DenseOp, DropoutOp, MaxPoolOp, RmsPropOp, ShortcutOp,
    SoftmaxXentOp, StatsPoolOp,
};

use crate::tensor::Real;
use crate::Result;

/// Where [`Conv2dOp::conv2d_backward`] puts the gradient with respect to its data input.
#[derive(Debug)]
pub enum InputGrad<'a, B> {
    /// Not needed (the first layer, whose input is the data).
    None,
    /// ACCUMULATED: `dx += ∂L/∂x`, as every data gradient (other ops add into the same tensor).
    Add(&'a mut B),
    /// WRITTEN: `dx = ∂L/∂x`, its old values neither read nor kept. Only for the sole producer of
    /// that gradient, which then needs no zeroing.
    Write(&'a mut B),
}

/// The buffer types of a backend, which every op trait works on.
pub trait Buffers {
    /// The element type this backend computes in (the devices: f32; the CPU reference: f32 or f64).
    type Elem: Real;
    /// A buffer of `Elem` in this backend's memory.
    type Buf;
    /// A buffer of `u32` in this backend's memory.
    type Idx;
}

/// The operations the network is built from, forward and backward (one trait per op folder of
/// [`ops`]), and the memory they work on. See the module documentation for which outputs are written
/// and which are accumulated.
pub trait Backend:
    Buffers
    + Conv2dOp
    + MaxPoolOp
    + ShortcutOp
    + DenseOp
    + BatchNormOp
    + StatsPoolOp
    + DropoutOp
    + ConcatOp
    + SoftmaxXentOp
    + RmsPropOp
    + AdamWOp
{
    /// Human-readable name, e.g. "cpu (f64)", "emulated", "cuda: NVIDIA H100 80GB HBM3".
    fn name(&self) -> String;

    // ---- memory -------------------------------------------------------------------------------
    /// A new buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// A new buffer holding a copy of `host`.
    fn upload(&self, host: &[Self::Elem]) -> Result<Self::Buf>;
    /// Overwrite the first `host.len()` values of `buf` (no allocation; used inside the training loop).
    fn write(&self, buf: &mut Self::Buf, host: &[Self::Elem]) -> Result<()>;
    /// Copy the whole buffer back to the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<Self::Elem>>;
    /// Set every value of `buf` to zero.
    fn fill_zero(&self, buf: &mut Self::Buf) -> Result<()>;
    /// Number of values in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// A new index buffer of `len` zeros.
    fn zeros_idx(&self, len: usize) -> Result<Self::Idx>;
    /// Overwrite the first `host.len()` values of an index buffer.
    fn write_idx(&self, buf: &mut Self::Idx, host: &[u32]) -> Result<()>;
    /// Copy an index buffer back to the host.
    fn download_idx(&self, buf: &Self::Idx) -> Result<Vec<u32>>;
    /// Wait until all queued work has finished (a no-op for synchronous backends).
    fn synchronize(&self) -> Result<()>;
}
