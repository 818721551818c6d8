//! The fused softmax cross-entropy (hard labels and soft targets): its parameter struct (mirrored
//! in `kernels/geometry.cuh`), its contract ([`SoftmaxXentOp`]), the tolerance a device is held to
//! against the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of
//! `kernels/softmax_xent.cu` (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::{shape_err, Result};

/// Softmax cross-entropy over `classes` logits per row: logits (N, CLASSES), labels (N).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct XentGeom {
    pub n: i32,
    pub classes: i32,
}

impl XentGeom {
    pub fn new(n: usize, classes: usize) -> Result<Self> {
        if n == 0 || classes < 2 {
            return Err(shape_err!(
                "softmax cross-entropy needs a non-empty batch and at least 2 classes; got {n} rows of {classes}"
            ));
        }
        Ok(XentGeom {
            n: to_i32("batch", n)?,
            classes: to_i32("classes", classes)?,
        })
    }
    /// At least one row and two classes (see [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let classes = self.classes >= 2;
        super::check_geometry("softmax cross-entropy geometry", self, &[self.n], classes)
    }
}

/// What one softmax cross-entropy call reports back to the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct XentStats {
    /// Mean of the per-sample losses.
    pub mean_loss: f64,
    /// Rows whose argmax (first maximum) equals the label.
    pub correct: usize,
}

/// The buffers of [`SoftmaxXentOp::softmax_xent`], named, so that no call can pass two of them in
/// each other's place.
pub struct XentIo<'a, B, I> {
    pub logits: &'a B,
    pub labels: &'a I,
    pub losses: &'a mut B,
    pub d_logits: &'a mut B,
}

/// The buffers of [`SoftmaxXentOp::softmax_xent_soft`], named, so that no call can pass two of them
/// in each other's place.
pub struct SoftXentIo<'a, B> {
    pub logits: &'a B,
    pub targets: &'a B,
    pub class_weights: Option<&'a B>,
    pub losses: &'a mut B,
    pub d_logits: &'a mut B,
}

/// The fused softmax cross-entropy (hard labels and soft targets), forward and backward (see
/// [`crate::backends`] for which outputs are written and which are accumulated).
pub trait SoftmaxXentOp: Buffers {
    /// Fused softmax cross-entropy of logits (N, CLASSES) against labels (N). WRITES losses (N), the
    /// per-sample losses, and d_logits (N, CLASSES), the gradient of the MEAN loss ((softmax − onehot)/N).
    /// Returns the mean loss and the number of rows whose first-maximum argmax equals the label.
    /// Stable for logits of any finite magnitude (±1e4 and beyond): the row maximum is subtracted first.
    fn softmax_xent(&self, g: &XentGeom, io: XentIo<'_, Self::Buf, Self::Idx>)
        -> Result<XentStats>;

    /// Softmax cross-entropy of logits (N, CLASSES) against soft targets (N, CLASSES), rows of
    /// probabilities (label smoothing, mixup), with optional class weights w (CLASSES; `None`: all 1):
    /// WRITES losses (N), loss_i = −Σ_j w_j t_ij log softmax(z_i)_j, and d_logits (N, CLASSES), the
    /// gradient of their MEAN, (softmax · Σ_j w_j t_ij − w ⊙ t_i)/N. Returns the mean loss and the
    /// number of rows whose first-maximum logit is their target's first maximum. The targets are not
    /// validated here (the caller does, on the host). [`SoftmaxXentOp::softmax_xent`] is the hard-label path.
    fn softmax_xent_soft(&self, g: &XentGeom, io: SoftXentIo<'_, Self::Buf>) -> Result<XentStats>;
}

op_folder! {
    kernel_file: "softmax_xent";
    /// Softmax cross-entropy: losses and d_logits.
    TOLERANCE = "softmax_xent", atol 1e-6, rtol 1e-5,
        because "expf/logf of different math libraries (a few ulp) and an f32 sum over the classes in another order";
}
