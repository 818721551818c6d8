//! One RMSProp update of a parameter tensor: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`RmsPropOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/rmsprop.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::Tolerance;
use crate::backends::Buffers;
use crate::model::optimizer::RmsPropConfig;
use crate::Result;

/// The kernel file of this op: `kernels/rmsprop.cu`.
pub const KERNEL_MODULE: &str = "rmsprop";

/// RMSProp: updated weights and mean squares after several steps.
pub const TOLERANCE: Tolerance = Tolerance {
    name: "rmsprop",
    atol: 1e-7,
    rtol: 1e-5,
    reason: "one sqrt and one divide per step in f32 (a GPU may fuse the multiply-adds); rounding compounds over steps",
};

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
    /// lr_t, already time-decayed (computed once on the host by [`RmsPropConfig::params`]).
    pub lr: f32,
    pub rho: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// One RMSProp update of a parameter tensor, in place.
pub trait RmsPropOp: Buffers {
    /// One RMSProp update (see [`RmsPropConfig`]) of w from gradient g with running mean square r, all of
    /// the same length; `step` is the number of updates applied before this one. Updates w and r in place.
    fn rmsprop_update(
        &self,
        cfg: &RmsPropConfig,
        step: u64,
        w: &mut Self::Buf,
        g: &Self::Buf,
        r: &mut Self::Buf,
    ) -> Result<()>;
}
