//! The one launch path shared by the two kernel-running devices: the CUDA device (cudarc, driver API)
//! and the emulated device (the same `.cu` sources compiled for the host).
//!
//! A kernel wrapper module (one per `kernels/*.cu`) computes a [`LaunchConfig`] and packs
//! [`KernelArgs`] once, then hands `(kernel, config, arguments)` to a [`Device`]. Neither device knows
//! anything about the ops; the wrappers know nothing about the devices.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::Result;

/// A raw device address: a `CUdeviceptr` on the CUDA device, a host address on the emulated device.
/// This is what a pointer parameter of a kernel receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(transparent)]
pub struct DevicePtr(pub u64);

/// Which kernel to launch: the `.cu` file's stem (the module) and the `extern "C"` entry point's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub module: &'static str,
    pub name: &'static str,
}

impl Kernel {
    /// Entry point `name` of `kernels/<module>.cu`.
    pub const fn new(module: &'static str, name: &'static str) -> Self {
        Kernel { module, name }
    }
}

/// Grid and block dimensions and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub dynamic_shared_bytes: u32,
    /// The kernel opts in to more than 48 KiB of shared memory (static + dynamic) per block. Without
    /// it, both devices refuse a launch over 48 KiB, the limit of every GPU (and the only one on the
    /// paper's GTX 1080, sm_61). With it, the CUDA device sets the function's
    /// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` to `dynamic_shared_bytes` (cuFuncSetAttribute)
    /// before launching, and the emulated device allows up to 227 KiB (the H100's maximum). Set by the
    /// kernel's wrapper module, never at call sites.
    pub large_shared: bool,
}

impl LaunchConfig {
    /// A 1-D launch of `blocks` × `threads`.
    pub fn linear(blocks: u32, threads: u32) -> Self {
        LaunchConfig {
            grid: (blocks, 1, 1),
            block: (threads, 1, 1),
            dynamic_shared_bytes: 0,
            large_shared: false,
        }
    }
    /// The same launch with `bytes` of dynamic shared memory.
    pub fn with_dynamic_shared(self, bytes: u32) -> Self {
        LaunchConfig {
            dynamic_shared_bytes: bytes,
            ..self
        }
    }
    /// The same launch opting in to more than 48 KiB of shared memory (see [`LaunchConfig::large_shared`]).
    pub fn with_large_shared(self) -> Self {
        LaunchConfig {
            large_shared: true,
            ..self
        }
    }
    /// Enough blocks of `threads` threads to cover `n` items with one thread each.
    pub fn cover(n: usize, threads: u32) -> Self {
        let blocks = n.div_ceil(threads as usize).max(1) as u32;
        Self::linear(blocks, threads)
    }
    pub fn threads_per_block(&self) -> u32 {
        self.block.0 * self.block.1 * self.block.2
    }
}

/// Kernel arguments packed the way `cuLaunchKernel` takes them: one pointer per kernel parameter,
/// each pointing at that parameter's value. Values are copied into 8-byte-aligned slots owned by this
/// struct, so the pointer array stays valid for as long as the `KernelArgs` lives and is not modified.
#[derive(Default, Debug)]
pub struct KernelArgs {
    /// Backing storage, in u64 words so every slot is 8-byte aligned (kernel parameters of the
    /// types we pass — pointers, i32, f32, repr(C) structs of those — need at most 8).
    words: Vec<u64>,
    /// (word offset, byte size) of each argument, in parameter order.
    slots: Vec<(usize, usize)>,
}

impl KernelArgs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append one by-value parameter (an `i32`, `f32`, `u32`, a [`DevicePtr`] or a repr(C) geometry struct).
    pub fn push<T: bytemuck::Pod>(&mut self, value: T) -> &mut Self {
        assert!(
            std::mem::align_of::<T>() <= 8,
            "kernel parameter alignment above 8 bytes"
        );
        let bytes = bytemuck::bytes_of(&value);
        let offset = self.words.len();
        self.words
            .resize(offset + bytes.len().div_ceil(8).max(1), 0);
        bytemuck::cast_slice_mut::<u64, u8>(&mut self.words[offset..])[..bytes.len()]
            .copy_from_slice(bytes);
        self.slots.push((offset, bytes.len()));
        self
    }

    /// Number of parameters pushed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Byte size of each parameter, in order (the emulator checks them against the kernel's signature).
    pub fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().map(|&(_, size)| size)
    }

    /// The `void**` array for `cuLaunchKernel` (or the emulator's trampolines). The pointers point
    /// into `self` and are valid until `self` is next modified or dropped.
    pub fn pointers(&mut self) -> Vec<*mut c_void> {
        let base = self.words.as_mut_ptr();
        self.slots
            .iter()
            // SAFETY: every offset was produced by `push` and lies inside `words`.
            .map(|&(offset, _)| unsafe { base.add(offset) } as *mut c_void)
            .collect()
    }
}

/// What a device has allocated: the number of allocations, the bytes alive now and the most bytes
/// alive at once (the peak). Bytes are what was asked for (`len × size_of::<T>()`), before the
/// allocator's rounding. Relaxed atomics, cheap enough to keep on every device: a test proves with
/// them that a steady-state training step allocates nothing, and `rescnn info --memory` reports the
/// peak of a real step.
#[derive(Debug, Default)]
pub struct MemoryMeter {
    allocations: AtomicUsize,
    live: AtomicU64,
    peak: AtomicU64,
}

impl MemoryMeter {
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryMeter::default())
    }
    /// Count an allocation of `bytes`; the returned guard gives them back when the buffer holding it
    /// is dropped.
    pub fn allocate(self: &Arc<Self>, bytes: usize) -> MeteredBytes {
        let bytes = bytes as u64;
        self.allocations.fetch_add(1, Ordering::Relaxed);
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        MeteredBytes {
            meter: Arc::clone(self),
            bytes,
        }
    }
    /// Allocations so far, whatever their size (frees are not subtracted).
    pub fn allocations(&self) -> usize {
        self.allocations.load(Ordering::Relaxed)
    }
    /// Bytes of the buffers alive now.
    pub fn live_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }
    /// The most bytes alive at once since the device was made or [`MemoryMeter::reset_peak`].
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
    /// Start a new peak from what is alive now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live_bytes(), Ordering::Relaxed);
    }
}

/// The bytes of one live buffer, returned to its [`MemoryMeter`] on drop.
#[derive(Debug)]
pub struct MeteredBytes {
    meter: Arc<MemoryMeter>,
    bytes: u64,
}

impl Drop for MeteredBytes {
    fn drop(&mut self) {
        self.meter.live.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A device that runs the kernels in `kernels/*.cu`.
pub trait Device: Send + Sync {
    /// A buffer of `T` in the device's memory.
    type Buffer<T: bytemuck::Pod + Send + Sync>: Send + Sync;

    /// Human-readable description, e.g. "NVIDIA H100 80GB HBM3 (sm_90)" or "emulated (2 host threads)".
    fn name(&self) -> String;

    /// A new buffer of `len` zero values.
    fn alloc_zeroed<T: bytemuck::Pod + Send + Sync>(&self, len: usize) -> Result<Self::Buffer<T>>;
    /// Copy `src` into the first `src.len()` values of `dst` (error if `dst` is shorter).
    fn copy_to_device<T: bytemuck::Pod + Send + Sync>(
        &self,
        src: &[T],
        dst: &mut Self::Buffer<T>,
    ) -> Result<()>;
    /// Copy the whole of `src` back to the host.
    fn copy_to_host<T: bytemuck::Pod + Send + Sync>(&self, src: &Self::Buffer<T>)
        -> Result<Vec<T>>;
    /// Set every byte of `buf` to zero.
    fn memset_zero<T: bytemuck::Pod + Send + Sync>(&self, buf: &mut Self::Buffer<T>) -> Result<()>;
    /// What this device has allocated (see [`MemoryMeter`]).
    fn memory(&self) -> &MemoryMeter;
    /// Buffers allocated on this device since it was made ([`Device::alloc_zeroed`] calls, whatever
    /// their size; frees are not subtracted).
    fn allocations(&self) -> usize {
        self.memory().allocations()
    }
    /// Number of values in `buf`.
    fn buffer_len<T: bytemuck::Pod + Send + Sync>(&self, buf: &Self::Buffer<T>) -> usize;
    /// The address a kernel's pointer parameter receives for `buf`.
    fn device_ptr<T: bytemuck::Pod + Send + Sync>(&self, buf: &Self::Buffer<T>) -> DevicePtr;

    /// Launch `kernel` with `config` and `args`. Both devices check the launch limits (at most 1024
    /// threads per block, block z ≤ 64, grid y and z ≤ 65535, static + dynamic shared memory ≤ 48 KiB
    /// unless `config.large_shared`) and return an error naming the kernel when one is exceeded.
    ///
    /// # Safety
    /// `args` must match the kernel's parameter list in number, order and type, and every pointer in
    /// it must address a live buffer of this device large enough for every access the kernel makes
    /// under `config`. The kernel wrappers establish this; nothing else should call `launch`.
    unsafe fn launch(
        &self,
        kernel: Kernel,
        config: &LaunchConfig,
        args: &mut KernelArgs,
    ) -> Result<()>;

    /// Wait for all launched work to finish, reporting any asynchronous error.
    fn synchronize(&self) -> Result<()>;

    /// The cost-model hook: a wrapper states what the launch of `kernel` it is about to make computes
    /// and moves, from the geometry and configuration it launches with. Devices that run kernels
    /// ignore it (the closure is never called); [`CostDevice`](super::cost::CostDevice) records it.
    fn note_cost(&self, _kernel: Kernel, _cost: impl FnOnce() -> Cost) {}
}

/// What one launch computes and moves.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// FLOPs the op needs (2 per multiply-add of the mathematical GEMM).
    pub useful_flops: f64,
    /// FLOPs the launch executes: the useful ones plus the tile padding's (zeros multiplied).
    pub executed_flops: f64,
    /// Bytes to and from DRAM under the cost model's traffic model (`super::cost`).
    pub bytes: f64,
    /// A tiled GEMM (counted in the GEMM waste figure).
    pub gemm: bool,
}

impl Cost {
    /// A memory-bound launch moving `bytes`.
    pub fn memory(bytes: usize) -> Self {
        Cost {
            bytes: bytes as f64,
            ..Cost::default()
        }
    }

    /// A tiled GEMM launch of `cfg` (tile_rows × tile_cols per block, the grid's x and y the output
    /// tiles) for an m × n × k product whose K splits walk `k_steps` steps of `bk` in all, moving
    /// `bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        cfg: &LaunchConfig,
        tile_rows: usize,
        tile_cols: usize,
        k_steps: usize,
        bk: usize,
        (m, n, k): (usize, usize, usize),
        bytes: usize,
    ) -> Self {
        let tiles = cfg.grid.0 as f64 * cfg.grid.1 as f64;
        Cost {
            useful_flops: 2.0 * m as f64 * n as f64 * k as f64,
            executed_flops: 2.0 * tiles * (tile_rows * tile_cols * k_steps * bk) as f64,
            bytes: bytes as f64,
            gemm: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_packed_one_pointer_per_parameter() {
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct Geo {
            a: i32,
            b: i32,
            c: i32,
        }
        let mut args = KernelArgs::new();
        args.push(DevicePtr(0xdead_beef_0000))
            .push(7i32)
            .push(Geo { a: 1, b: 2, c: 3 })
            .push(2.5f32);
        assert_eq!(args.sizes().collect::<Vec<_>>(), vec![8, 4, 12, 4]);
        let p = args.pointers();
        // SAFETY: each pointer addresses the slot of the value pushed in that position.
        unsafe {
            assert_eq!(*(p[0] as *const u64), 0xdead_beef_0000);
            assert_eq!(*(p[1] as *const i32), 7);
            let g = *(p[2] as *const Geo);
            assert_eq!((g.a, g.b, g.c), (1, 2, 3));
            assert_eq!(*(p[3] as *const f32), 2.5);
        }
        assert!(p.iter().all(|ptr| (*ptr as usize) % 8 == 0));
    }

    #[test]
    fn the_meter_keeps_the_peak_of_live_bytes() {
        let meter = MemoryMeter::new();
        let a = meter.allocate(100);
        let b = meter.allocate(50);
        drop(a);
        let _c = meter.allocate(70);
        assert_eq!((meter.live_bytes(), meter.peak_bytes()), (120, 150));
        drop(b);
        meter.reset_peak();
        assert_eq!((meter.live_bytes(), meter.peak_bytes()), (70, 70));
        assert_eq!(meter.allocations(), 3);
    }

    #[test]
    fn cover_rounds_up() {
        assert_eq!(LaunchConfig::cover(1000, 256).grid.0, 4);
        assert_eq!(LaunchConfig::cover(0, 256).grid.0, 1);
    }
}
