//! The batch normalisation with optional fused ReLU: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`BatchNormOp`]), the tolerance a device is held to
//! against the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of
//! `kernels/batchnorm.cu` (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::tensor::Shape;
use crate::{shape_err, Result};

/// Batch normalisation per channel over (N, H, W) of x (N, C, H, W) -> y (N, C, H, W), with a per-channel
/// scale γ (C) and shift β (C), optionally followed by ReLU:
///
/// ```text
/// training:    μ, σ² = mean and (biased) variance of channel c over the batch;  x̂ = (x − μ) / sqrt(σ² + eps)
///              running_mean ← (1 − momentum) · running_mean + momentum · μ
///              running_var  ← (1 − momentum) · running_var  + momentum · σ² · M/(M − 1)   (M = N·H·W; unbiased)
/// evaluation:  x̂ = (x − running_mean) / sqrt(running_var + eps)
/// both:        y = [ReLU](γ · x̂ + β)
/// ```
///
/// The running variance uses the unbiased estimate (M/(M − 1); plain σ² when M = 1), as PyTorch does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BatchNormGeom {
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w: i32,
    /// 1: y = max(0, γ·x̂ + β).
    pub relu: i32,
    pub eps: f32,
    pub momentum: f32,
}

impl BatchNormGeom {
    pub fn new(input: Shape, relu: bool, eps: f64, momentum: f64) -> Result<Self> {
        if input.is_empty() {
            return Err(shape_err!(
                "batch norm needs a non-empty input, got {input}"
            ));
        }
        if !(eps > 0.0 && eps.is_finite() && (0.0..=1.0).contains(&momentum)) {
            return Err(shape_err!(
                "batch norm needs eps > 0 and momentum in [0, 1]; got eps {eps}, momentum {momentum}"
            ));
        }
        Ok(BatchNormGeom {
            n: to_i32("batch", input.n)?,
            c: to_i32("channels", input.c)?,
            h: to_i32("height", input.h)?,
            w: to_i32("width", input.w)?,
            relu: relu as i32,
            eps: eps as f32,
            momentum: momentum as f32,
        })
    }
    /// Every size at least 1 and eps > 0 (see [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let sizes = [self.n, self.c, self.h, self.w];
        super::check_geometry("batch norm geometry", self, &sizes, self.eps > 0.0)
    }
    pub fn shape(&self) -> Shape {
        super::nchw(self.n, self.c, self.h, self.w)
    }
    /// M = N·H·W: the values each channel's statistics are taken over.
    pub fn per_channel(&self) -> usize {
        self.n as usize * self.h as usize * self.w as usize
    }
    pub fn with_batch(self, n: usize) -> Self {
        BatchNormGeom {
            n: n as i32,
            ..self
        }
    }
}

/// The buffers of [`BatchNormOp::batchnorm_forward_train`], named, so that no call can pass two of
/// them in each other's place.
pub struct BatchNormTrainIo<'a, B> {
    pub x: &'a B,
    pub gamma: &'a B,
    pub beta: &'a B,
    pub y: &'a mut B,
    pub saved: &'a mut B,
    pub running_mean: &'a mut B,
    pub running_var: &'a mut B,
}

/// The buffers of [`BatchNormOp::batchnorm_forward_eval`], named, so that no call can pass two of
/// them in each other's place.
pub struct BatchNormEvalIo<'a, B> {
    pub x: &'a B,
    pub gamma: &'a B,
    pub beta: &'a B,
    pub running_mean: &'a B,
    pub running_var: &'a B,
    pub y: &'a mut B,
}

/// The buffers of [`BatchNormOp::batchnorm_backward`], named, so that no call can pass two of them
/// in each other's place.
pub struct BatchNormBackwardIo<'a, B> {
    pub x: &'a B,
    pub gamma: &'a B,
    pub y: &'a B,
    pub saved: &'a B,
    pub dy: &'a mut B,
    pub dx: Option<&'a mut B>,
    pub dgamma: &'a mut B,
    pub dbeta: &'a mut B,
}

/// The batch normalisation with optional fused ReLU, forward and backward (see [`crate::backends`]
/// for which outputs are written and which are accumulated).
pub trait BatchNormOp: Buffers {
    /// Training forward of [`BatchNormGeom`]: y (N, C, H, W) = \[ReLU\](γ · x̂ + β) with the batch's
    /// per-channel statistics. WRITES y and saved (2, C) = (μ, 1/σ) for the backward pass; updates
    /// running_mean and running_var (C) in place by the momentum rule.
    fn batchnorm_forward_train(
        &self,
        g: &BatchNormGeom,
        io: BatchNormTrainIo<'_, Self::Buf>,
    ) -> Result<()>;

    /// Evaluation forward of [`BatchNormGeom`] with the running statistics. WRITES y.
    fn batchnorm_forward_eval(
        &self,
        g: &BatchNormGeom,
        io: BatchNormEvalIo<'_, Self::Buf>,
    ) -> Result<()>;

    /// Backward of [`BatchNormOp::batchnorm_forward_train`] (y and saved from that call). With `g.relu`,
    /// first masks `dy` in place by `y > 0`. ACCUMULATES dx when given; WRITES dgamma and dbeta (C).
    fn batchnorm_backward(
        &self,
        g: &BatchNormGeom,
        io: BatchNormBackwardIo<'_, Self::Buf>,
    ) -> Result<()>;
}

op_folder! {
    kernel_file: "batchnorm";
    /// Batch normalisation (training and evaluation forward, running statistics, dx, dγ, dβ).
    TOLERANCE = "batchnorm", atol 1e-5, rtol 1e-4,
        because "per-channel f32 sums of N·H·W terms (up to a few thousand here) in tree order against the reference's image-by-image order, through a 1/sqrt; dx subtracts two such means from dy (cancellation), so atol is set at the scale of dy";
}
