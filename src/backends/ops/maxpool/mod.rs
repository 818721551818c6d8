//! The max-pooling (floor mode) with argmax: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`MaxPoolOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/maxpool.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::tensor::Shape;
use crate::{shape_err, Result};

/// The top bit of a max-pool argmax: set when the window's maximum is > 0, the ReLU mask of the
/// winner (mirrored in kernels/maxpool.cu). The fused ReLU backward reads the mask here, so the
/// pool's input need not outlive the forward pass.
pub const ARGMAX_POSITIVE: u32 = 1 << 31;
/// The index bits of a max-pool argmax.
pub const ARGMAX_INDEX: u32 = !ARGMAX_POSITIVE;

/// Max-pooling with a k×k window and stride s, floor mode (windows that would run past the edge are
/// dropped): x (N, C, H_in, W_in) -> y (N, C, H_out, W_out) and argmax (N, C, H_out, W_out), the
/// index h·W_in + w of the maximum inside its input plane (first maximum in row-major window order),
/// with [`ARGMAX_POSITIVE`] set when that maximum is > 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PoolGeom {
    pub n: i32,
    pub c: i32,
    pub h_in: i32,
    pub w_in: i32,
    pub k: i32,
    pub stride: i32,
    pub h_out: i32,
    pub w_out: i32,
}

impl PoolGeom {
    pub fn new(input: Shape, k: usize, stride: usize) -> Result<Self> {
        if k == 0 || stride == 0 {
            return Err(shape_err!(
                "max-pool needs window and stride ≥ 1, got {k} and {stride}"
            ));
        }
        if input.is_empty() || input.h < k || input.w < k {
            return Err(shape_err!(
                "max-pool window {k}×{k} does not fit input {input}"
            ));
        }
        Ok(PoolGeom {
            n: to_i32("batch", input.n)?,
            c: to_i32("channels", input.c)?,
            h_in: to_i32("input height", input.h)?,
            w_in: to_i32("input width", input.w)?,
            k: k as i32,
            stride: stride as i32,
            h_out: ((input.h - k) / stride + 1) as i32,
            w_out: ((input.w - k) / stride + 1) as i32,
        })
    }
    /// The kernels trust the output size and window to lie inside the input (floor mode), so this
    /// refuses any geometry that [`PoolGeom::new`] would not have built from the same input, window
    /// and stride (see [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let sizes = [self.n, self.c, self.h_in, self.w_in, self.k, self.stride];
        super::check_geometry("max-pool geometry", self, &sizes, true)?;
        let built = PoolGeom::new(self.input(), self.k as usize, self.stride as usize);
        let floor_mode = built.ok() == Some(*self);
        super::check_geometry("max-pool geometry (not floor mode)", self, &[], floor_mode)
    }
    pub fn input(&self) -> Shape {
        super::nchw(self.n, self.c, self.h_in, self.w_in)
    }
    pub fn output(&self) -> Shape {
        super::nchw(self.n, self.c, self.h_out, self.w_out)
    }
    pub fn with_batch(self, n: usize) -> Self {
        PoolGeom {
            n: n as i32,
            ..self
        }
    }
}

/// The buffers of [`MaxPoolOp::maxpool_relu_backward`], named, so that no call can pass two of them
/// in each other's place.
pub struct MaxPoolReluBackwardIo<'a, B, I> {
    pub dy: &'a B,
    pub argmax: &'a I,
    pub dx: &'a mut B,
    pub db: &'a mut B,
}

/// The max-pooling (floor mode) with argmax, forward and backward (see [`crate::backends`] for
/// which outputs are written and which are accumulated).
pub trait MaxPoolOp: Buffers {
    /// y (N, C, H_out, W_out) = max over each window of x (N, C, H_in, W_in); argmax (N, C, H_out, W_out)
    /// records the winner's index h·W_in + w in its input plane (first maximum in row-major window order).
    /// Writes y and argmax.
    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &Self::Buf,
        y: &mut Self::Buf,
        argmax: &mut Self::Idx,
    ) -> Result<()>;

    /// Routes each dy (N, C, H_out, W_out) to its argmax; ACCUMULATES dx (N, C, H_in, W_in).
    fn maxpool_backward(
        &self,
        g: &PoolGeom,
        dy: &Self::Buf,
        argmax: &Self::Idx,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of a max-pool whose input x (N, C, H_in, W_in) is the output of a fused ReLU
    /// convolution with no other consumer: WRITES dx (N, C, H_in, W_in) = [x > 0] · (the dy (N, C,
    /// H_out, W_out) routed to their argmax), the gradient of the ReLU's PRE-activation, and WRITES
    /// db (C) = Σ over (n, h, w) of dx, the convolution's bias gradient. The convolution's backward
    /// then runs without its ReLU and without db (it must not mask again, and need not read its y,
    /// rewrite dy or re-read dy for the bias). The mask [x > 0] comes from the argmax's
    /// [`ARGMAX_POSITIVE`] bit, not from x (the pool's own output cannot give it: shortcuts
    /// add into it after pooling), so x is dead after the forward pass and dx may take its buffer.
    fn maxpool_relu_backward(
        &self,
        g: &PoolGeom,
        io: MaxPoolReluBackwardIo<'_, Self::Buf, Self::Idx>,
    ) -> Result<()>;
}

op_folder! {
    kernel_file: "maxpool";
    /// Max-pool forward: the output is one of the inputs.
    FORWARD_TOLERANCE = "maxpool_forward", atol 0.0, rtol 0.0,
        because "max selects one input value: no arithmetic, so the result must be bit-exact";
    /// Max-pool backward.
    BACKWARD_TOLERANCE = "maxpool_backward", atol 1e-7, rtol 1e-6,
        because "at most ⌈k/s⌉² routed gradients are added into dx; only the order of those few f32 additions may differ";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_floor_mode() {
        let g = PoolGeom::new(Shape::new(1, 2, 7, 6), 2, 2).unwrap();
        assert_eq!((g.h_out, g.w_out), (3, 3));
        let g = PoolGeom::new(Shape::new(1, 2, 7, 6), 3, 2).unwrap();
        assert_eq!((g.h_out, g.w_out), (3, 2));
        assert!(PoolGeom::new(Shape::new(1, 1, 1, 5), 2, 2).is_err());
    }
}
