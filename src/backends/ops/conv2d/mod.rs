//! The 2-D convolution with optional fused ReLU: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`Conv2dOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/conv2d.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub use cpu::chunk_rows as cpu_chunk_rows;
pub mod kernel;

use super::to_i32;
use crate::backends::{Buffers, InputGrad};
use crate::tensor::Shape;
use crate::{shape_err, Result};

/// Padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow `SAME`: output = ceil(input / stride); the total padding needed is split with
    /// ⌊total/2⌋ before and the rest after (so even kernels pad one more at the bottom/right).
    Same,
    /// No padding: output = ⌊(input − k) / stride⌋ + 1.
    Valid,
    /// Explicit padding (top, bottom, left, right).
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
}

/// A 2-D convolution: x (N, C_in, H_in, W_in) * w (C_out, C_in, K_h, K_w) + b (C_out) -> y (N, C_out, H_out, W_out),
/// optionally followed by ReLU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvGeom {
    pub n: i32,
    pub c_in: i32,
    pub h_in: i32,
    pub w_in: i32,
    pub c_out: i32,
    pub k_h: i32,
    pub k_w: i32,
    pub stride: i32,
    pub pad_top: i32,
    pub pad_left: i32,
    pub h_out: i32,
    pub w_out: i32,
    /// 1: y = max(0, conv + b); 0: y = conv + b.
    pub relu: i32,
}

fn same_padding(input: usize, k: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(input);
    (out, total / 2, total - total / 2)
}

impl ConvGeom {
    /// Validate and build. `input` is (N, C_in, H_in, W_in); the kernel is `k_h`×`k_w`.
    pub fn new(
        input: Shape,
        c_out: usize,
        (k_h, k_w): (usize, usize),
        stride: usize,
        padding: Padding,
        relu: bool,
    ) -> Result<Self> {
        if input.is_empty() || c_out == 0 || k_h == 0 || k_w == 0 || stride == 0 {
            return Err(shape_err!(
                "conv2d needs non-empty input, filters, kernel and stride ≥ 1; got input {input}, {c_out} filters of {k_h}×{k_w}, stride {stride}"
            ));
        }
        let (h_out, pad_top, w_out, pad_left) = match padding {
            Padding::Same => {
                let (ho, pt, _) = same_padding(input.h, k_h, stride);
                let (wo, pl, _) = same_padding(input.w, k_w, stride);
                (ho, pt, wo, pl)
            }
            Padding::Valid | Padding::Explicit { .. } => {
                let (t, b, l, r) = match padding {
                    Padding::Explicit {
                        top,
                        bottom,
                        left,
                        right,
                    } => (top, bottom, left, right),
                    _ => (0, 0, 0, 0),
                };
                let (hp, wp) = (input.h + t + b, input.w + l + r);
                if hp < k_h || wp < k_w {
                    return Err(shape_err!(
                        "conv2d kernel {k_h}×{k_w} is larger than the padded input {hp}×{wp} (input {input})"
                    ));
                }
                ((hp - k_h) / stride + 1, t, (wp - k_w) / stride + 1, l)
            }
        };
        if pad_top >= k_h || pad_left >= k_w {
            return Err(shape_err!(
                "conv2d padding ({pad_top}, {pad_left}) must be smaller than the kernel {k_h}×{k_w}"
            ));
        }
        Ok(ConvGeom {
            n: to_i32("batch", input.n)?,
            c_in: to_i32("input channels", input.c)?,
            h_in: to_i32("input height", input.h)?,
            w_in: to_i32("input width", input.w)?,
            c_out: to_i32("output channels", c_out)?,
            k_h: to_i32("kernel height", k_h)?,
            k_w: to_i32("kernel width", k_w)?,
            stride: to_i32("stride", stride)?,
            pad_top: to_i32("padding", pad_top)?,
            pad_left: to_i32("padding", pad_left)?,
            h_out: to_i32("output height", h_out)?,
            w_out: to_i32("output width", w_out)?,
            relu: relu as i32,
        })
    }
    /// Every size and the stride at least 1 (the strided backward-data kernel divides by the
    /// stride) and the padding inside the kernel window (see [`super::check_geometry`]). Within
    /// these every load is bounds-tested against the geometry, so the output size need not match
    /// the padding mode.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            self.n,
            self.c_in,
            self.h_in,
            self.w_in,
            self.c_out,
            self.k_h,
            self.k_w,
            self.stride,
            self.h_out,
            self.w_out,
        ];
        let padding =
            (0..self.k_h).contains(&self.pad_top) && (0..self.k_w).contains(&self.pad_left);
        super::check_geometry("conv2d geometry", self, &sizes, padding)
    }
    pub fn input(&self) -> Shape {
        super::nchw(self.n, self.c_in, self.h_in, self.w_in)
    }
    pub fn output(&self) -> Shape {
        super::nchw(self.n, self.c_out, self.h_out, self.w_out)
    }
    /// Number of weights (C_out·C_in·K_h·K_w); the bias adds C_out. Computed in `usize`: the i32
    /// product wraps for large filters (1024 × 1024 × 64 × 64 is 2³²), and the kernel wrappers size
    /// their buffer checks with it.
    pub fn weight_len(&self) -> usize {
        [self.c_in, self.k_h, self.k_w]
            .iter()
            .fold(self.c_out as usize, |acc, &d| acc * d as usize)
    }
    /// The same convolution for another batch size.
    pub fn with_batch(self, n: usize) -> Self {
        ConvGeom {
            n: n as i32,
            ..self
        }
    }
    /// Multiply-adds of the forward pass, ×2 (the usual FLOP count, padding included).
    pub fn forward_flops(&self) -> f64 {
        2.0 * self.output().len() as f64 * (self.weight_len() / self.c_out as usize) as f64
    }
}

/// The buffers of [`Conv2dOp::conv2d_forward`], named, so that no call can pass two of them in
/// each other's place.
pub struct ConvForwardIo<'a, B> {
    pub x: &'a B,
    pub w: &'a B,
    pub b: &'a B,
    pub y: &'a mut B,
}

/// The buffers of [`Conv2dOp::conv2d_backward`], named, so that no call can pass two of them in
/// each other's place.
pub struct ConvBackwardIo<'a, B> {
    pub x: &'a B,
    pub w: &'a B,
    pub y: &'a B,
    pub dy: &'a mut B,
    pub dx: InputGrad<'a, B>,
    pub dw: &'a mut B,
    pub db: Option<&'a mut B>,
}

/// The 2-D convolution with optional fused ReLU, forward and backward (see [`crate::backends`] for
/// which outputs are written and which are accumulated).
pub trait Conv2dOp: Buffers {
    /// y (N, C_out, H_out, W_out) = \[ReLU\](x (N, C_in, H_in, W_in) ⋆ w (C_out, C_in, K_h, K_w) + b (C_out)). Writes y.
    fn conv2d_forward(&self, g: &ConvGeom, io: ConvForwardIo<'_, Self::Buf>) -> Result<()>;

    /// Backward of [`Conv2dOp::conv2d_forward`]. With `g.relu`, first masks `dy` in place by `y > 0`.
    /// ACCUMULATES or WRITES dx (N, C_in, H_in, W_in), as [`InputGrad`] says (`InputGrad::None` for
    /// the first layer, whose input needs no gradient); WRITES dw (C_out, C_in, K_h, K_w), and db (C_out) when given (pass `None`
    /// where [`Conv2dOp::maxpool_relu_backward`] already wrote it; then `g.relu` must be off, since
    /// that pool also applied the mask: an error otherwise). y is read only for the mask (with
    /// `g.relu`, or with db given); otherwise any buffer may stand in for it (the network passes x
    /// when y's buffer holds dy).
    fn conv2d_backward(&self, g: &ConvGeom, io: ConvBackwardIo<'_, Self::Buf>) -> Result<()>;
}

op_folder! {
    kernel_file: "conv2d";
    /// Convolution (forward, backward data, filter and bias gradients), for the conv2d kernels.
    TOLERANCE = "conv2d", atol 1e-5, rtol 1e-4,
        because "f32 dot products of C_in·K_h·K_w (or N·H·W for the filter gradient) terms, summed in tile order: error grows with √terms·ε";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow_for_even_kernels() {
        // TF SAME, stride 1, k = 4: total 3, 1 before, 2 after.
        let g = ConvGeom::new(Shape::new(1, 3, 16, 12), 8, (4, 4), 1, Padding::Same, true).unwrap();
        assert_eq!((g.h_out, g.w_out, g.pad_top, g.pad_left), (16, 12, 1, 1));
        // k = 10: total 9, 4 before.
        let g = ConvGeom::new(
            Shape::new(1, 3, 16, 12),
            8,
            (10, 10),
            1,
            Padding::Same,
            true,
        )
        .unwrap();
        assert_eq!((g.h_out, g.w_out, g.pad_top, g.pad_left), (16, 12, 4, 4));
        // stride 2, in 7, k 3: out 4, total (3*2+3)-7 = 2, 1 before.
        let g = ConvGeom::new(Shape::new(1, 1, 7, 7), 1, (3, 3), 2, Padding::Same, false).unwrap();
        assert_eq!((g.h_out, g.pad_top), (4, 1));
        // stride 2, in 8, k 4: out 4, total (3*2+4)-8 = 2, 1 before.
        let g = ConvGeom::new(Shape::new(1, 1, 8, 8), 1, (4, 4), 2, Padding::Same, false).unwrap();
        assert_eq!((g.h_out, g.pad_top), (4, 1));
    }

    #[test]
    fn valid_and_explicit_padding() {
        let g = ConvGeom::new(Shape::new(2, 1, 9, 8), 4, (3, 2), 2, Padding::Valid, false).unwrap();
        assert_eq!((g.h_out, g.w_out), (4, 4));
        let p = Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 0,
            right: 2,
        };
        let g = ConvGeom::new(Shape::new(2, 1, 5, 5), 4, (3, 3), 1, p, false).unwrap();
        assert_eq!((g.h_out, g.w_out, g.pad_top, g.pad_left), (4, 5, 1, 0));
        assert!(
            ConvGeom::new(Shape::new(1, 1, 2, 2), 1, (3, 3), 1, Padding::Valid, false).is_err()
        );
    }
}
