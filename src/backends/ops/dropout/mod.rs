//! The inverted dropout with a recomputed mask: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`DropoutOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/dropout.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::{shape_err, Result};

/// Inverted dropout over `len` values: y = x / (1 − p) where the element is kept, 0 where dropped.
/// Element i is kept iff `dropout_hash(i / group, key_lo, key_hi) ≥ threshold`, threshold = ⌊p · 2³²⌋
/// (`group` consecutive elements share one draw: 1 drops elements, a sample's length whole samples): the
/// mask is a pure function of the key (itself a function of seed, step and layer, see
/// [`DropoutParams::new`]) and the element index, so every backend draws the same bits, nothing is
/// stored between forward and backward, and a resumed run draws the masks it would have drawn.
/// With p = 0 (evaluation) every element is kept with scale 1: y = x exactly.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    pub len: i32,
    pub threshold: u32,
    /// 1 / (1 − p).
    pub scale: f32,
    pub key_lo: u32,
    pub key_hi: u32,
    /// Consecutive elements that share one draw, dividing `len`.
    pub group: i32,
}

/// SplitMix64's finaliser: a bijective 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 32-bit integer mix (xor-shift-multiply, the "lowbias32" constants), used twice per element.
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The dropout hash of element `index` (mirrored by `dropout_hash` in kernels/dropout.cu).
pub fn dropout_hash(index: u32, key_lo: u32, key_hi: u32) -> u32 {
    mix32(mix32(index.wrapping_mul(0x9e37_79b1) ^ key_lo) ^ key_hi)
}

impl DropoutParams {
    /// The mask of layer `layer` at training step `step` of a run seeded with `seed`, over `len`
    /// values, dropping each with probability `p` (0 ≤ p < 1).
    pub fn new(len: usize, p: f64, seed: u64, step: u64, layer: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(shape_err!("dropout rate {p} must be in [0, 1)"));
        }
        let key = mix64(mix64(mix64(seed ^ 0x0d70_9a0d) ^ step) ^ layer);
        Ok(DropoutParams {
            len: to_i32("dropout length", len)?,
            threshold: (p * 4294967296.0).floor().min(u32::MAX as f64) as u32,
            scale: (1.0 / (1.0 - p)) as f32,
            key_lo: key as u32,
            key_hi: (key >> 32) as u32,
            group: 1,
        })
    }
    /// The same draws shared by each run of `group` consecutive elements (`group` dividing the
    /// length): whole samples of `group` values dropped together.
    pub fn in_groups(self, group: usize) -> Result<Self> {
        let group = to_i32("dropout group", group)?;
        let p = DropoutParams { group, ..self };
        p.validate()?;
        Ok(p)
    }
    /// The identity (evaluation mode): every element kept, scale 1.
    pub fn identity(len: usize) -> Result<Self> {
        Self::new(len, 0.0, 0, 0, 0)
    }
    /// The same mask with the kept values passed through unscaled (y = x where kept).
    pub fn without_rescaling(self) -> Self {
        DropoutParams { scale: 1.0, ..self }
    }
    /// At least one value, a scale of at least 1, and groups that divide the length (see
    /// [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let whole_groups = self.group >= 1 && self.len % self.group == 0;
        let consistent = self.scale >= 1.0 && whole_groups;
        super::check_geometry(
            "dropout parameters",
            self,
            &[self.len, self.group],
            consistent,
        )
    }
    /// Whether element `index` is kept.
    pub fn keeps(&self, index: u32) -> bool {
        dropout_hash(index / self.group as u32, self.key_lo, self.key_hi) >= self.threshold
    }
}

/// The inverted dropout with a recomputed mask, forward and backward (see [`crate::backends`] for
/// which outputs are written and which are accumulated).
pub trait DropoutOp: Buffers {
    /// Inverted dropout of `p.len` values (see [`DropoutParams`]). Writes y.
    fn dropout_forward(&self, p: &DropoutParams, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;

    /// Backward of [`DropoutOp::dropout_forward`] with the same parameters (the mask is recomputed):
    /// ACCUMULATES dx.
    fn dropout_backward(&self, p: &DropoutParams, dy: &Self::Buf, dx: &mut Self::Buf)
        -> Result<()>;
}

op_folder! {
    kernel_file: "dropout";
    /// Dropout (forward, backward): the mask is bit-identical; only the scaling multiply remains.
    TOLERANCE = "dropout", atol 0.0, rtol 1e-6,
        because "the same mask on every backend and one f32 multiply per value; a GPU may fuse dx += dy·scale into one rounding";
}
