//! The fully connected layer with optional fused ReLU: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`DenseOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/dense.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::{shape_err, Result};

/// A fully connected layer: x (N, IN) · wᵀ, with w (OUT, IN) row-major, + b (OUT) -> y (N, OUT),
/// optionally followed by ReLU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DenseGeom {
    pub n: i32,
    pub in_features: i32,
    pub out_features: i32,
    pub relu: i32,
}

impl DenseGeom {
    pub fn new(n: usize, in_features: usize, out_features: usize, relu: bool) -> Result<Self> {
        if n == 0 || in_features == 0 || out_features == 0 {
            return Err(shape_err!(
                "dense layer needs a non-empty batch and features; got batch {n}, {in_features} -> {out_features}"
            ));
        }
        Ok(DenseGeom {
            n: to_i32("batch", n)?,
            in_features: to_i32("input features", in_features)?,
            out_features: to_i32("output features", out_features)?,
            relu: relu as i32,
        })
    }
    pub fn with_batch(self, n: usize) -> Self {
        DenseGeom {
            n: n as i32,
            ..self
        }
    }
    /// Every size at least 1 (see [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let sizes = [self.n, self.in_features, self.out_features];
        super::check_geometry("dense geometry", self, &sizes, true)
    }
    /// OUT·IN, computed in `usize` (the i32 product wraps for large layers).
    pub fn weight_len(&self) -> usize {
        self.in_features as usize * self.out_features as usize
    }
}

/// The buffers of [`DenseOp::dense_forward`], named, so that no call can pass two of them in
/// each other's place.
pub struct DenseForwardIo<'a, B> {
    pub x: &'a B,
    pub w: &'a B,
    pub b: &'a B,
    pub y: &'a mut B,
}

/// The buffers of [`DenseOp::dense_backward`], named, so that no call can pass two of them in
/// each other's place.
pub struct DenseBackwardIo<'a, B> {
    pub x: &'a B,
    pub w: &'a B,
    pub y: &'a B,
    pub dy: &'a mut B,
    pub dx: Option<&'a mut B>,
    pub dw: &'a mut B,
    pub db: &'a mut B,
}

/// The fully connected layer with optional fused ReLU, forward and backward (see
/// [`crate::backends`] for which outputs are written and which are accumulated).
pub trait DenseOp: Buffers {
    /// y (N, OUT) = \[ReLU\](x (N, IN) · wᵀ + b), w (OUT, IN), b (OUT). Writes y.
    fn dense_forward(&self, g: &DenseGeom, io: DenseForwardIo<'_, Self::Buf>) -> Result<()>;

    /// Backward of [`DenseOp::dense_forward`]. With `g.relu`, first masks `dy` in place by `y > 0`.
    /// ACCUMULATES dx (N, IN) when given; WRITES dw (OUT, IN) and db (OUT).
    fn dense_backward(&self, g: &DenseGeom, io: DenseBackwardIo<'_, Self::Buf>) -> Result<()>;
}

op_folder! {
    kernel_file: "dense";
    /// Dense layers (forward, backward), for the SGEMM kernels.
    TOLERANCE = "dense", atol 1e-5, rtol 1e-4,
        because "f32 dot products of IN (or N, for dw) terms summed in tile order: error grows with √terms·ε";
}
