//! One wrapper module per `kernels/*.cu`. A wrapper is the only code that knows its kernels' names,
//! parameter order and launch configuration; it checks every buffer against the op's geometry (which
//! is what makes the unsafe launch sound) and hands `(kernel, config, arguments)` to any [`Device`].
//!
//! # Adding a wrapper for `kernels/foo.cu`
//! 1. Write `kernels/foo.cu`: `#include "common.cuh"` first, a header comment listing the kernels and
//!    their strategy, `extern "C" __global__` entry points with a shape comment on every pointer. The
//!    build registers the entry points with the emulated device by itself (build/emu.rs) and NVRTC
//!    compiles the file for the CUDA device.
//! 2. Write `src/backends/kernels/foo.rs`: a `const` [`Kernel`](super::device::Kernel) per entry point, one function per op that
//!    checks lengths with [`need`], packs [`KernelArgs`](super::device::KernelArgs) in the kernel's parameter order, computes the
//!    [`LaunchConfig`] (here, never at call sites; `large_shared` here too if it needs > 48 KiB) and calls
//!    [`Device::launch`] in an `unsafe` block whose `SAFETY:` comment says why the arguments match.
//!    A new by-value parameter struct is `#[repr(C)]` + `Pod`, mirrored in kernels/geometry.cuh and
//!    added to the layout test below.
//! 3. Call it from [`super::kernel_backend::KernelBackend`], and add its test body to tests/kernels.rs.

pub mod batchnorm;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod gemm;
pub mod maxpool;
pub mod rmsprop;
pub mod shortcut;
pub mod softmax_xent;
pub mod statspool;

use super::device::{Device, DevicePtr, LaunchConfig};
use crate::{shape_err, Result};

/// Threads per block of the element-wise kernels: a multiple of the warp, small enough to keep many
/// blocks per SM.
pub const ELEMENTWISE_THREADS: u32 = 256;
/// Most blocks an element-wise (grid-stride) launch uses: 2048 blocks of 256 are about two full waves
/// on an H100 (132 SMs × 2048 threads), so larger tensors loop instead of launching more blocks.
pub const ELEMENTWISE_MAX_BLOCKS: u32 = 2048;

/// The launch for a grid-stride kernel over `items` independent items.
pub fn grid_stride(items: usize) -> LaunchConfig {
    let blocks = items
        .div_ceil(ELEMENTWISE_THREADS as usize)
        .clamp(1, ELEMENTWISE_MAX_BLOCKS as usize);
    LaunchConfig::linear(blocks as u32, ELEMENTWISE_THREADS)
}

/// Check that `buf` holds at least `len` values for the op's `what` operand.
pub fn need<D: Device, T: bytemuck::Pod + Send + Sync>(
    dev: &D,
    buf: &D::Buffer<T>,
    len: usize,
    what: &str,
) -> Result<DevicePtr> {
    let have = dev.buffer_len(buf);
    if have < len {
        return Err(shape_err!(
            "{what} needs {len} values but its buffer holds {have}"
        ));
    }
    Ok(dev.device_ptr(buf))
}

/// The kernels index with 32-bit unsigned arithmetic: refuse tensors that would overflow it.
pub fn check_index_range(what: &str, len: usize) -> Result<()> {
    if len > i32::MAX as usize {
        return Err(shape_err!(
            "{what} has {len} elements; the kernels index at most {} per tensor",
            i32::MAX
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::backends::geometry::*;
    use std::mem::{offset_of, size_of};

    // Sizes and offsets of the C mirrors in kernels/geometry.cuh, as the host C++ compiler lays them
    // out (exported by src/backends/emu/runtime.cpp in the field order of the Rust structs).
    extern "C" {
        static rescnn_emu_layout_conv: [usize; 14];
        static rescnn_emu_layout_pool: [usize; 9];
        static rescnn_emu_layout_shortcut: [usize; 9];
        static rescnn_emu_layout_dense: [usize; 5];
        static rescnn_emu_layout_xent: [usize; 3];
        static rescnn_emu_layout_rmsprop: [usize; 6];
        static rescnn_emu_layout_batchnorm: [usize; 8];
        static rescnn_emu_layout_statspool: [usize; 6];
        static rescnn_emu_layout_dropout: [usize; 6];
    }

    #[test]
    fn geometry_mirrors_match_the_rust_structs() {
        let rust: [(&str, Vec<usize>); 9] = [
            (
                "ConvGeom",
                vec![
                    size_of::<ConvGeom>(),
                    offset_of!(ConvGeom, n),
                    offset_of!(ConvGeom, c_in),
                    offset_of!(ConvGeom, h_in),
                    offset_of!(ConvGeom, w_in),
                    offset_of!(ConvGeom, c_out),
                    offset_of!(ConvGeom, k_h),
                    offset_of!(ConvGeom, k_w),
                    offset_of!(ConvGeom, stride),
                    offset_of!(ConvGeom, pad_top),
                    offset_of!(ConvGeom, pad_left),
                    offset_of!(ConvGeom, h_out),
                    offset_of!(ConvGeom, w_out),
                    offset_of!(ConvGeom, relu),
                ],
            ),
            (
                "PoolGeom",
                vec![
                    size_of::<PoolGeom>(),
                    offset_of!(PoolGeom, n),
                    offset_of!(PoolGeom, c),
                    offset_of!(PoolGeom, h_in),
                    offset_of!(PoolGeom, w_in),
                    offset_of!(PoolGeom, k),
                    offset_of!(PoolGeom, stride),
                    offset_of!(PoolGeom, h_out),
                    offset_of!(PoolGeom, w_out),
                ],
            ),
            (
                "ShortcutGeom",
                vec![
                    size_of::<ShortcutGeom>(),
                    offset_of!(ShortcutGeom, n),
                    offset_of!(ShortcutGeom, c_src),
                    offset_of!(ShortcutGeom, h_src),
                    offset_of!(ShortcutGeom, w_src),
                    offset_of!(ShortcutGeom, c_dst),
                    offset_of!(ShortcutGeom, h_dst),
                    offset_of!(ShortcutGeom, w_dst),
                    offset_of!(ShortcutGeom, ratio),
                ],
            ),
            (
                "DenseGeom",
                vec![
                    size_of::<DenseGeom>(),
                    offset_of!(DenseGeom, n),
                    offset_of!(DenseGeom, in_features),
                    offset_of!(DenseGeom, out_features),
                    offset_of!(DenseGeom, relu),
                ],
            ),
            (
                "XentGeom",
                vec![
                    size_of::<XentGeom>(),
                    offset_of!(XentGeom, n),
                    offset_of!(XentGeom, classes),
                ],
            ),
            (
                "RmsPropParams",
                vec![
                    size_of::<RmsPropParams>(),
                    offset_of!(RmsPropParams, len),
                    offset_of!(RmsPropParams, lr),
                    offset_of!(RmsPropParams, rho),
                    offset_of!(RmsPropParams, eps),
                    offset_of!(RmsPropParams, weight_decay),
                ],
            ),
            (
                "BatchNormGeom",
                vec![
                    size_of::<BatchNormGeom>(),
                    offset_of!(BatchNormGeom, n),
                    offset_of!(BatchNormGeom, c),
                    offset_of!(BatchNormGeom, h),
                    offset_of!(BatchNormGeom, w),
                    offset_of!(BatchNormGeom, relu),
                    offset_of!(BatchNormGeom, eps),
                    offset_of!(BatchNormGeom, momentum),
                ],
            ),
            (
                "StatsPoolGeom",
                vec![
                    size_of::<StatsPoolGeom>(),
                    offset_of!(StatsPoolGeom, n),
                    offset_of!(StatsPoolGeom, c),
                    offset_of!(StatsPoolGeom, h),
                    offset_of!(StatsPoolGeom, w),
                    offset_of!(StatsPoolGeom, eps),
                ],
            ),
            (
                "DropoutParams",
                vec![
                    size_of::<DropoutParams>(),
                    offset_of!(DropoutParams, len),
                    offset_of!(DropoutParams, threshold),
                    offset_of!(DropoutParams, scale),
                    offset_of!(DropoutParams, key_lo),
                    offset_of!(DropoutParams, key_hi),
                ],
            ),
        ];
        // SAFETY: plain constant arrays defined in runtime.cpp with exactly these lengths.
        let c: [&[usize]; 9] = unsafe {
            [
                &rescnn_emu_layout_conv,
                &rescnn_emu_layout_pool,
                &rescnn_emu_layout_shortcut,
                &rescnn_emu_layout_dense,
                &rescnn_emu_layout_xent,
                &rescnn_emu_layout_rmsprop,
                &rescnn_emu_layout_batchnorm,
                &rescnn_emu_layout_statspool,
                &rescnn_emu_layout_dropout,
            ]
        };
        for ((name, rust), c) in rust.iter().zip(c) {
            assert_eq!(
                rust.as_slice(),
                c,
                "{name}: [size, field offsets…] differ between geometry.rs and geometry.cuh"
            );
        }
    }

    #[test]
    fn grid_stride_covers_small_and_caps_large() {
        assert_eq!(super::grid_stride(1).grid.0, 1);
        assert_eq!(super::grid_stride(257).grid.0, 2);
        assert_eq!(
            super::grid_stride(1 << 30).grid.0,
            super::ELEMENTWISE_MAX_BLOCKS
        );
    }
}
