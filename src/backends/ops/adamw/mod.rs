//! One AdamW update of a parameter tensor: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`AdamWOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/adamw.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::{shape_err, Result};

/// The AdamW update (Loshchilov & Hutter's decoupled weight decay) for one parameter tensor of `len`
/// values, at update number t (1-based):
///
/// ```text
/// m ← β1 · m + (1 − β1) · g;        v ← β2 · v + (1 − β2) · g²
/// m̂ = m / (1 − β1^t);               v̂ = v / (1 − β2^t)
/// w ← w − lr_t · wd · w;            w ← w − lr_t · m̂ / (sqrt(v̂) + eps)
/// ```
///
/// lr_t comes from the schedule (`AdamWConfig::lr_at` in [`crate::model::optimizer`]); it and the two bias-correction factors are
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

/// One AdamW update's host-side values: the scheduled lr, the settings and the 1-based update
/// number t (made by `AdamWConfig::step` in [`crate::model::optimizer`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// 1-based update number (bias correction uses β^t).
    pub t: u64,
}

impl AdamWStep {
    /// 1 / (1 − β1^t) and 1 / (1 − β2^t), in f64.
    pub fn bias_corrections(&self) -> (f64, f64) {
        let t = self.t.min(i32::MAX as u64) as i32;
        (
            1.0 / (1.0 - self.beta1.powi(t)),
            1.0 / (1.0 - self.beta2.powi(t)),
        )
    }
    /// Kernel parameters for a tensor of `len` values.
    pub fn params(&self, len: usize) -> Result<AdamWParams> {
        if self.t == 0 {
            return Err(shape_err!("AdamW update numbers start at 1, got t = 0"));
        }
        let (bias1, bias2) = self.bias_corrections();
        Ok(AdamWParams {
            len: to_i32("parameter count", len)?,
            lr: self.lr as f32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            bias1: bias1 as f32,
            bias2: bias2 as f32,
        })
    }
}

/// The buffers of [`AdamWOp::adamw_update`], named, so that no call can pass two of them in
/// each other's place.
pub struct AdamWIo<'a, B> {
    pub w: &'a mut B,
    pub g: &'a B,
    pub m: &'a mut B,
    pub v: &'a mut B,
}

/// One AdamW update of a parameter tensor, in place.
pub trait AdamWOp: Buffers {
    /// One AdamW update (see [`AdamWParams`]) of w from gradient g with first and second moments m
    /// and v, all of the same length; `step` holds the scheduled lr and the 1-based update number.
    /// Updates w, m and v in place.
    fn adamw_update(&self, step: &AdamWStep, io: AdamWIo<'_, Self::Buf>) -> Result<()>;
}

op_folder! {
    kernel_file: "adamw";
    /// AdamW: updated weights and both moments after several steps.
    TOLERANCE = "adamw", atol 1e-7, rtol 1e-5,
        because "one sqrt and one divide per step in f32 like RMSProp (a GPU may fuse the multiply-adds, the emulator's sqrtf may round differently); m̂/(sqrt(v̂)+eps) is O(1) per step so lr bounds the per-step error, and rounding compounds over steps";
}
