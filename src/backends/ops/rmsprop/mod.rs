//! One RMSProp update of a parameter tensor: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`RmsPropOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/rmsprop.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::Result;

/// The RMSProp update of the paper's formulas (3) and (4), for one parameter tensor of `len` values:
///
/// ```text
/// g' = g + weight_decay · w
/// r  ← rho · r + (1 − rho) · g'²
/// w  ← w − lr_t · g' / sqrt(r + eps),   lr_t = lr / (1 + decay · step)
/// ```
///
/// `step` is the number of updates applied before this one (0 for the first), as in Keras.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RmsPropParams {
    pub len: i32,
    /// lr_t, already time-decayed (computed once on the host by [`RmsPropStep::params`]).
    pub lr: f32,
    pub rho: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// One RMSProp update's host-side values: the time-decayed learning rate of this update and the
/// settings (made by `RmsPropConfig::step` in [`crate::model::optimizer`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropStep {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl RmsPropStep {
    /// Kernel parameters for a tensor of `len` values.
    pub fn params(&self, len: usize) -> Result<RmsPropParams> {
        Ok(RmsPropParams {
            len: to_i32("parameter count", len)?,
            lr: self.lr as f32,
            rho: self.rho as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
        })
    }
}

/// The buffers of [`RmsPropOp::rmsprop_update`], named, so that no call can pass two of them in
/// each other's place.
pub struct RmsPropIo<'a, B> {
    pub w: &'a mut B,
    pub g: &'a B,
    pub r: &'a mut B,
}

/// One RMSProp update of a parameter tensor, in place.
pub trait RmsPropOp: Buffers {
    /// One RMSProp update (see [`RmsPropParams`] for the formulas) of w from gradient g with running
    /// mean square r, all of the same length. Updates w and r in place.
    fn rmsprop_update(&self, step: &RmsPropStep, io: RmsPropIo<'_, Self::Buf>) -> Result<()>;
}

op_folder! {
    kernel_file: "rmsprop";
    /// RMSProp: updated weights and mean squares after several steps.
    TOLERANCE = "rmsprop", atol 1e-7, rtol 1e-5,
        because "one sqrt and one divide per step in f32 (a GPU may fuse the multiply-adds); rounding compounds over steps";
}
