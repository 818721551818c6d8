//! The row-wise concatenation of two matrices: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`ConcatOp`]), the tolerance a device is held to against
//! the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/concat.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::{shape_err, Result};

/// Concatenation along the row: a (N, A) and b (N, B) -> y (N, A + B), y\[n\] = \[a\[n\], b\[n\]\]. The
/// network appends a side input (the utterance vector) to its pooled features with it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConcatGeom {
    pub n: i32,
    pub a: i32,
    pub b: i32,
}

impl ConcatGeom {
    pub fn new(n: usize, a: usize, b: usize) -> Result<Self> {
        if n == 0 || a == 0 || b == 0 {
            return Err(shape_err!(
                "concatenation needs a non-empty batch and two non-empty parts; got batch {n}, {a} + {b} features"
            ));
        }
        let total = a.checked_add(b).and_then(|row| row.checked_mul(n));
        if !matches!(total, Some(t) if t <= i32::MAX as usize) {
            return Err(shape_err!(
                "concatenation of {n} rows of {a} + {b} features has more than {} values",
                i32::MAX
            ));
        }
        Ok(ConcatGeom {
            n: to_i32("batch", n)?,
            a: to_i32("first part's features", a)?,
            b: to_i32("second part's features", b)?,
        })
    }
    pub fn with_batch(self, n: usize) -> Self {
        ConcatGeom {
            n: n as i32,
            ..self
        }
    }
    /// A + B.
    pub fn row(&self) -> usize {
        self.a as usize + self.b as usize
    }
    /// N·A, N·B and N·(A + B): the lengths of a, b and y.
    pub fn lens(&self) -> (usize, usize, usize) {
        let n = self.n as usize;
        (n * self.a as usize, n * self.b as usize, n * self.row())
    }
    /// Refuses a geometry [`ConcatGeom::new`] would not build (a hand-made or corrupted one), which
    /// also keeps every index within the kernels' 32-bit arithmetic (see [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let sizes = [self.n, self.a, self.b];
        let fits = self.lens().2 <= i32::MAX as usize;
        super::check_geometry("concatenation geometry", self, &sizes, fits)
    }
}

/// The buffers of [`ConcatOp::concat_forward`], named, so that no call can pass two of them in
/// each other's place.
pub struct ConcatForwardIo<'a, B> {
    pub a: &'a B,
    pub b: &'a B,
    pub y: &'a mut B,
}

/// The buffers of [`ConcatOp::concat_backward`], named, so that no call can pass two of them in
/// each other's place.
pub struct ConcatBackwardIo<'a, B> {
    pub dy: &'a B,
    pub da: Option<&'a mut B>,
    pub db: Option<&'a mut B>,
}

/// The row-wise concatenation of two matrices, forward and backward (see [`crate::backends`] for
/// which outputs are written and which are accumulated).
pub trait ConcatOp: Buffers {
    /// y (N, A + B) = \[a (N, A), b (N, B)\] row by row (see [`ConcatGeom`]). Writes y.
    fn concat_forward(&self, g: &ConcatGeom, io: ConcatForwardIo<'_, Self::Buf>) -> Result<()>;

    /// Backward of [`ConcatOp::concat_forward`]: ACCUMULATES da (N, A) += dy\[:, ..A\] and db (N, B)
    /// += dy\[:, A..\] from dy (N, A + B), each only when given (`None`: that part needs no gradient).
    fn concat_backward(&self, g: &ConcatGeom, io: ConcatBackwardIo<'_, Self::Buf>) -> Result<()>;
}

op_folder! {
    kernel_file: "concat";
    /// Concatenation (forward, backward): copies, and one f32 add per gradient value.
    TOLERANCE = "concat", atol 0.0, rtol 0.0,
        because "forward copies values and backward adds one dy value into each gradient value: the same single f32 operation on every backend, so the results must be bit-exact";
}
