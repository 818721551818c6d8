//! What the kernel wrappers of the op folders ([`super::ops`]) share: buffer checks, the
//! grid-stride launch of element-wise kernels, and the tiled GEMM machinery ([`gemm`]) of the
//! convolution and dense kernels.

pub mod gather_tables;
pub mod gemm;

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
