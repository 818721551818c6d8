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
//!    A new by-value parameter struct is `#[repr(C)]` + `Pod` in geometry.rs and mirrored in
//!    kernels/geometry.cuh; the layout test below picks it up from the header by itself.
//! 3. Call it from [`super::kernel_backend::KernelBackend`], and add its test body to tests/kernels.rs.

pub mod adamw;
pub mod batchnorm;
pub mod concat;
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

    // The struct list, field order and C offsets come from kernels/geometry.cuh (build/geometry.rs
    // generates both halves), so a struct is checked as soon as it is in the header.
    include!(concat!(env!("OUT_DIR"), "/geometry_layout.rs"));

    #[test]
    fn geometry_mirrors_match_the_rust_structs() {
        let layouts = geometry_layouts();
        assert!(
            layouts.len() >= 6,
            "geometry.cuh's structs were not all read"
        );
        for (name, rust, c) in layouts {
            assert_eq!(
                rust.as_slice(),
                c,
                "{name}: [size, field offsets…] in geometry.cuh's field order differ between \
                 geometry.rs and geometry.cuh"
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
