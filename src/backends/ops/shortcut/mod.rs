//! The paper's multi-level residual identity map: its parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract ([`ShortcutOp`]), the tolerance a device is held to
//! against the CPU reference, the CPU reference (`cpu.rs`) and the wrapper of `kernels/shortcut.cu`
//! (`kernel.rs`).

pub(in crate::backends) mod cpu;
pub mod kernel;

use super::to_i32;
use crate::backends::Buffers;
use crate::tensor::Shape;
use crate::{shape_err, Result};

/// The paper's multi-level residual identity map: `dst[n,c,h,w] += mean over the r×r window at
/// (h·r, w·r) of src[n, c mod C_src]`, where r = H_src/H_dst = W_src/W_dst is a whole number.
/// src is (N, C_src, H_src, W_src), dst is (N, C_dst, H_dst, W_dst). Parameter-free.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ShortcutGeom {
    pub n: i32,
    pub c_src: i32,
    pub h_src: i32,
    pub w_src: i32,
    pub c_dst: i32,
    pub h_dst: i32,
    pub w_dst: i32,
    /// r: the side of the averaging window.
    pub ratio: i32,
}

impl ShortcutGeom {
    pub fn new(src: Shape, dst: Shape) -> Result<Self> {
        let fail = || {
            shape_err!(
                "shortcut from {src} into {dst}: the source's height and width must both be the same whole multiple of the target's, and the batches must match"
            )
        };
        if src.n != dst.n || src.is_empty() || dst.is_empty() {
            return Err(fail());
        }
        if src.h % dst.h != 0 || src.w % dst.w != 0 || src.h / dst.h != src.w / dst.w {
            return Err(fail());
        }
        Ok(ShortcutGeom {
            n: to_i32("batch", src.n)?,
            c_src: to_i32("source channels", src.c)?,
            h_src: to_i32("source height", src.h)?,
            w_src: to_i32("source width", src.w)?,
            c_dst: to_i32("target channels", dst.c)?,
            h_dst: to_i32("target height", dst.h)?,
            w_dst: to_i32("target width", dst.w)?,
            ratio: (src.h / dst.h) as i32,
        })
    }
    /// Every size at least 1 and the source's height and width `ratio` times the target's (see
    /// [`super::check_geometry`]).
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            self.n, self.c_src, self.h_src, self.w_src, self.c_dst, self.h_dst, self.w_dst,
            self.ratio,
        ];
        let tiled = self.h_src == self.h_dst * self.ratio && self.w_src == self.w_dst * self.ratio;
        super::check_geometry("shortcut geometry", self, &sizes, tiled)
    }
    pub fn source(&self) -> Shape {
        super::nchw(self.n, self.c_src, self.h_src, self.w_src)
    }
    pub fn target(&self) -> Shape {
        super::nchw(self.n, self.c_dst, self.h_dst, self.w_dst)
    }
    pub fn with_batch(self, n: usize) -> Self {
        ShortcutGeom {
            n: n as i32,
            ..self
        }
    }
}

/// The paper's multi-level residual identity map, forward and backward (see [`crate::backends`] for
/// which outputs are written and which are accumulated).
pub trait ShortcutOp: Buffers {
    /// dst (N, C_dst, H_dst, W_dst) += r×r-mean of src (N, C_src, H_src, W_src), channel c reading
    /// source channel c mod C_src. ACCUMULATES into dst.
    fn shortcut_forward(
        &self,
        g: &ShortcutGeom,
        src: &Self::Buf,
        dst: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`ShortcutOp::shortcut_forward`]: ACCUMULATES d_src (N, C_src, H_src, W_src) from
    /// d_dst (N, C_dst, H_dst, W_dst).
    fn shortcut_backward(
        &self,
        g: &ShortcutGeom,
        d_dst: &Self::Buf,
        d_src: &mut Self::Buf,
    ) -> Result<()>;
}

op_folder! {
    kernel_file: "shortcut";
    /// Shortcut forward and backward.
    TOLERANCE = "shortcut", atol 1e-6, rtol 1e-5,
        because "f32 sums of r² window values (forward) or C_dst/C_src channels (backward), times 1/r²; a GPU may fuse the multiply-add";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcut_rejects_non_dividing_shapes_naming_both() {
        let ok = ShortcutGeom::new(Shape::new(2, 3, 32, 24), Shape::new(2, 64, 8, 6)).unwrap();
        assert_eq!(ok.ratio, 4);
        let err = ShortcutGeom::new(Shape::new(2, 3, 30, 30), Shape::new(2, 64, 8, 8)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("(2, 3, 30, 30)") && msg.contains("(2, 64, 8, 8)"),
            "{msg}"
        );
        assert!(ShortcutGeom::new(Shape::new(2, 3, 32, 16), Shape::new(2, 8, 8, 8)).is_err());
    }
}
