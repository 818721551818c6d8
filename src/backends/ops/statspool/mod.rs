//! The global statistics pooling: its parameter struct (mirrored in `kernels/geometry.cuh`), its
//! contract ([`StatsPoolOp`]), the tolerance a device is held to against the CPU reference, the CPU
//! reference (`cpu.rs`) and the wrapper of `kernels/statspool.cu` (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::tensor::Shape;
use crate::{shape_err, Result};

/// Global statistics pooling of x (N, C, H, W) -> y (N, 2C): the mean over frequency (H) gives one
/// value m_w per time step, then
///
/// ```text
/// y[n, c]     = mean_w m_w
/// y[n, C + c] = sqrt(var_w m_w + eps)        (var: the biased variance over the W time steps)
/// ```
///
/// `eps` keeps the standard deviation's derivative, (m_w − mean) / (W · std), finite when a channel is
/// constant over time (var = 0, e.g. a dead ReLU channel or W = 1). Output length 2C whatever H and W
/// are, so a network with statistics pooling takes inputs of any width.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StatsPoolGeom {
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w: i32,
    pub eps: f32,
}

impl StatsPoolGeom {
    pub fn new(input: Shape, eps: f64) -> Result<Self> {
        if input.is_empty() || !(eps > 0.0 && eps.is_finite()) {
            return Err(shape_err!(
                "statistics pooling needs a non-empty input and eps > 0; got {input}, eps {eps}"
            ));
        }
        Ok(StatsPoolGeom {
            n: to_i32("batch", input.n)?,
            c: to_i32("channels", input.c)?,
            h: to_i32("height", input.h)?,
            w: to_i32("width", input.w)?,
            eps: eps as f32,
        })
    }
    /// Every size at least 1 and eps > 0 (see [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let sizes = [self.n, self.c, self.h, self.w];
        super::check_geometry("statistics pooling geometry", self, &sizes, self.eps > 0.0)
    }
    pub fn input(&self) -> Shape {
        super::nchw(self.n, self.c, self.h, self.w)
    }
    /// (N, 2C).
    pub fn output(&self) -> Shape {
        Shape::flat(self.n as usize, 2 * self.c as usize)
    }
    pub fn with_batch(self, n: usize) -> Self {
        StatsPoolGeom {
            n: n as i32,
            ..self
        }
    }
}

/// The buffers of [`StatsPoolOp::statspool_backward`], named, so that no call can pass two of them
/// in each other's place.
pub struct StatsPoolBackwardIo<'a, B> {
    pub x: &'a B,
    pub y: &'a B,
    pub dy: &'a B,
    pub dx: &'a mut B,
}

/// The global statistics pooling, forward and backward (see [`crate::backends`] for which outputs
/// are written and which are accumulated).
pub trait StatsPoolOp: Buffers {
    /// y (N, 2C) = mean and std over W of the H-means of x (N, C, H, W) (see [`StatsPoolGeom`]). Writes y.
    fn statspool_forward(&self, g: &StatsPoolGeom, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;

    /// Backward of [`StatsPoolOp::statspool_forward`] (y is its output): ACCUMULATES dx (N, C, H, W).
    fn statspool_backward(
        &self,
        g: &StatsPoolGeom,
        io: StatsPoolBackwardIo<'_, Self::Buf>,
    ) -> Result<()>;
}

op_folder! {
    kernel_file: "statspool";
    /// Statistics pooling (forward, backward).
    TOLERANCE = "statspool", atol 1e-6, rtol 1e-5,
        because "f32 column sums over H, then a 32-lane butterfly over W instead of a left-to-right sum, and one sqrt";
}
