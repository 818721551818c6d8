//! One AdamW update of a parameter tensor: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`AdamWOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/adamw.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::Tolerance;
use crate::backends::Buffers;
use crate::model::optimizer::AdamWStep;
use crate::Result;

/// The kernel file of this op: `kernels/adamw.cu`.
pub const KERNEL_MODULE: &str = "adamw";

/// AdamW: updated weights and both moments after several steps.
pub const TOLERANCE: Tolerance = Tolerance {
    name: "adamw",
    atol: 1e-7,
    rtol: 1e-5,
    reason: "one sqrt and one divide per step in f32 like RMSProp (a GPU may fuse the multiply-adds, the emulator's sqrtf may round differently); m̂/(sqrt(v̂)+eps) is O(1) per step so lr bounds the per-step error, and rounding compounds over steps",
};

/// The AdamW update (Loshchilov & Hutter's decoupled weight decay) for one parameter tensor of `len`
/// values, at update number t (1-based):
///
/// ```text
/// m ← β1 · m + (1 − β1) · g;        v ← β2 · v + (1 − β2) · g²
/// m̂ = m / (1 − β1^t);               v̂ = v / (1 − β2^t)
/// w ← w − lr_t · wd · w;            w ← w − lr_t · m̂ / (sqrt(v̂) + eps)
/// ```
///
/// lr_t comes from the schedule ([`AdamWConfig::lr_at`]); it and the two bias-correction factors are
/// computed once on the host in f64 ([`AdamWStep::params`]), not per element.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamWParams {
    pub len: i32,
    /// lr_t, already scheduled.
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 / (1 − β1^t).
    pub bias1: f32,
    /// 1 / (1 − β2^t).
    pub bias2: f32,
}

/// One AdamW update of a parameter tensor, in place.
pub trait AdamWOp: Buffers {
    /// One AdamW update (see [`AdamWParams`]) of w from gradient g with first and second moments m
    /// and v, all of the same length; `step` holds the scheduled lr and the 1-based update number.
    /// Updates w, m and v in place.
    fn adamw_update(
        &self,
        step: &AdamWStep,
        w: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    ) -> Result<()>;
}
