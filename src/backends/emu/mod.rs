//! The emulated device: runs the very `kernels/*.cu` sources the CUDA device runs, compiled for the
//! host against `kernels/emu_shim.h` (see build/emu.rs), so that every kernel is tested without a GPU.
//!
//! Each block's CUDA threads are fibers on one host thread (the private `fiber` module); blocks are spread over a pool
//! of host threads. `__syncthreads()` and the warp intrinsics are checked (divergence, exits while
//! others wait, deadlock, bad masks) and reported as [`Error::Device`] naming threads and source
//! lines; launch limits are checked as on the GPU. What it does not emulate is listed at the top of
//! `kernels/emu_shim.h`.
//!
//! Launches are synchronous: when [`Device::launch`] returns, the kernel has finished.

mod ffi;
mod fiber;
mod registry;

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::device::{
    Device, DevicePtr, Kernel, KernelArgs, LaunchConfig, MemoryMeter, MeteredBytes,
};
use crate::{Error, Result};
use ffi::Dim3;

/// Most threads in one block (CUDA, every architecture since sm_20).
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
/// Largest block z dimension (x and y may be up to 1024).
pub const MAX_BLOCK_Z: u32 = 64;
/// Largest grid x dimension; y and z are limited to [`MAX_GRID_YZ`].
pub const MAX_GRID_X: u32 = i32::MAX as u32;
pub const MAX_GRID_YZ: u32 = 65535;
/// Shared memory (static + dynamic) per block without opting in, on every architecture.
pub const DEFAULT_SHARED_LIMIT: u64 = 48 * 1024;
/// Shared memory per block for a launch that opts in ([`LaunchConfig::large_shared`]): the H100's
/// 227 KiB (sm_90; sm_80 allows 163 KiB, sm_61 cannot opt in at all).
pub const OPT_IN_SHARED_LIMIT: u64 = 227 * 1024;

/// The order in which a block's threads run between two synchronisation points. A kernel with a
/// missing barrier reads values not yet written (or already overwritten) in at least one order, so the
/// tests run every kernel in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadOrder {
    /// Thread 0 first (and block 0 first on one host thread).
    Forward,
    /// The last thread first (and the last block first on one host thread).
    Reverse,
}

/// One kernel entry point compiled for the host, as registered by the build (build/emu.rs).
#[derive(Debug)]
pub struct EmuKernel {
    /// The `.cu` file's stem.
    pub module: &'static str,
    /// The `extern "C"` entry point.
    pub name: &'static str,
    /// The generated trampoline: calls the kernel with parameters read from a `void**` array.
    pub entry: unsafe extern "C" fn(*mut *mut c_void),
    /// The byte size of each parameter (an array of `param_count` values).
    pub param_sizes: unsafe extern "C" fn() -> *const usize,
    pub param_count: usize,
    /// Bytes of `__shared__` variables the kernel declares (from the object file's symbols).
    pub static_shared_bytes: u64,
}

impl EmuKernel {
    fn sizes(&self) -> &'static [usize] {
        // SAFETY: the generated function returns a static array of `param_count` sizes (+ a sentinel).
        unsafe { std::slice::from_raw_parts((self.param_sizes)(), self.param_count) }
    }
}

/// The kernels of `kernels/*.cu`, registered by the build.
pub fn product_kernels() -> &'static [EmuKernel] {
    registry::KERNELS
}

/// A buffer in the emulated device's memory: host memory aligned like a `cudaMalloc` allocation
/// (256 bytes), which kernels read and write through raw pointers.
pub struct EmuBuffer<T> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
    _bytes: MeteredBytes,
}

// SAFETY: an EmuBuffer owns its allocation; the device touches it only inside synchronous calls that
// borrow the buffer, so moving or sharing the handle between threads is as safe as for a Vec<T>.
unsafe impl<T: Send> Send for EmuBuffer<T> {}
// SAFETY: as above; shared references only read (copy_to_host) or pass the address to a launch, which
// the Backend API only does for buffers the op reads or for `&mut` outputs.
unsafe impl<T: Sync> Sync for EmuBuffer<T> {}

impl<T> Drop for EmuBuffer<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc_zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) };
    }
}

impl<T> EmuBuffer<T> {
    fn as_slice(&self) -> &[T] {
        // SAFETY: the allocation holds `len` initialised (zeroed or written) values of a Pod type.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

/// The emulated device. See the module documentation.
pub struct EmuDevice {
    order: ThreadOrder,
    pool: rayon::ThreadPool,
    host_threads: usize,
    kernels: HashMap<(&'static str, &'static str), &'static EmuKernel>,
    /// What has been allocated ([`Device::memory`]).
    memory: Arc<MemoryMeter>,
}

impl EmuDevice {
    /// A device running blocks on every available core, threads in `order`.
    pub fn new(order: ThreadOrder) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_host_threads(order, cores)
    }

    /// A device running blocks on `host_threads` host threads (1: blocks run one after another, in
    /// `order`, which makes every launch deterministic).
    pub fn with_host_threads(order: ThreadOrder, host_threads: usize) -> Result<Self> {
        let host_threads = host_threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(host_threads)
            .thread_name(|i| format!("rescnn-emu-{i}"))
            .build()
            .map_err(|e| {
                Error::Device(format!("emulated device: cannot start host threads: {e}"))
            })?;
        let mut device = EmuDevice {
            order,
            pool,
            host_threads,
            kernels: HashMap::new(),
            memory: MemoryMeter::new(),
        };
        device.register(product_kernels())?;
        Ok(device)
    }

    /// Make more kernels launchable on this device (the emulator's own test kernels).
    pub fn register(&mut self, kernels: &'static [EmuKernel]) -> Result<()> {
        for k in kernels {
            if self.kernels.insert((k.module, k.name), k).is_some() {
                return Err(Error::Device(format!(
                    "emulated device: kernel {}::{} registered twice",
                    k.module, k.name
                )));
            }
        }
        Ok(())
    }

    pub fn order(&self) -> ThreadOrder {
        self.order
    }

    fn kernel(&self, kernel: Kernel) -> Result<&'static EmuKernel> {
        self.kernels.get(&(kernel.module, kernel.name)).copied().ok_or_else(|| {
            Error::Device(format!(
                "emulated device: no kernel {}::{} (is `extern \"C\" __global__ void {}` in kernels/{}.cu?)",
                kernel.module, kernel.name, kernel.name, kernel.module
            ))
        })
    }
}

/// Check a launch against the limits every CUDA device enforces.
fn check_limits(kernel: &EmuKernel, config: &LaunchConfig) -> std::result::Result<(), String> {
    let (bx, by, bz) = config.block;
    let (gx, gy, gz) = config.grid;
    if bx == 0 || by == 0 || bz == 0 || gx == 0 || gy == 0 || gz == 0 {
        return Err("grid and block dimensions must all be at least 1".into());
    }
    if bx > MAX_THREADS_PER_BLOCK || by > MAX_THREADS_PER_BLOCK || bz > MAX_BLOCK_Z {
        return Err(format!(
            "block ({bx}, {by}, {bz}) exceeds the per-dimension limits ({MAX_THREADS_PER_BLOCK}, {MAX_THREADS_PER_BLOCK}, {MAX_BLOCK_Z})"
        ));
    }
    let threads = bx as u64 * by as u64 * bz as u64;
    if threads > MAX_THREADS_PER_BLOCK as u64 {
        return Err(format!(
            "block ({bx}, {by}, {bz}) has {threads} threads; at most {MAX_THREADS_PER_BLOCK} are allowed"
        ));
    }
    if gx > MAX_GRID_X || gy > MAX_GRID_YZ || gz > MAX_GRID_YZ {
        return Err(format!(
            "grid ({gx}, {gy}, {gz}) exceeds the limits ({MAX_GRID_X}, {MAX_GRID_YZ}, {MAX_GRID_YZ})"
        ));
    }
    let shared = kernel.static_shared_bytes + config.dynamic_shared_bytes as u64;
    let limit = if config.large_shared {
        OPT_IN_SHARED_LIMIT
    } else {
        DEFAULT_SHARED_LIMIT
    };
    if shared > limit {
        let hint = if config.large_shared {
            ""
        } else {
            " (a kernel that needs more must opt in with LaunchConfig::large_shared, which needs sm_70 or newer)"
        };
        return Err(format!(
            "{} bytes of static and {} bytes of dynamic shared memory exceed the {limit}-byte limit per block{hint}",
            kernel.static_shared_bytes, config.dynamic_shared_bytes
        ));
    }
    Ok(())
}

impl Device for EmuDevice {
    type Buffer<T: bytemuck::Pod + Send + Sync> = EmuBuffer<T>;

    fn name(&self) -> String {
        format!(
            "emulated ({} host thread{}, {:?} thread order)",
            self.host_threads,
            if self.host_threads == 1 { "" } else { "s" },
            self.order
        )
        .to_lowercase()
    }

    fn alloc_zeroed<T: bytemuck::Pod + Send + Sync>(&self, len: usize) -> Result<EmuBuffer<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| {
                Error::Device(format!(
                    "emulated device: {len} values do not fit in memory"
                ))
            })?
            .max(256);
        let layout =
            Layout::from_size_align(bytes, 256.max(std::mem::align_of::<T>())).map_err(|e| {
                Error::Device(format!("emulated device: allocation of {bytes} bytes: {e}"))
            })?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr.cast::<T>()).ok_or_else(|| {
            Error::Device(format!(
                "emulated device: out of memory allocating {bytes} bytes"
            ))
        })?;
        let _bytes = self.memory.allocate(len * std::mem::size_of::<T>());
        Ok(EmuBuffer {
            ptr,
            len,
            layout,
            _bytes,
        })
    }

    fn copy_to_device<T: bytemuck::Pod + Send + Sync>(
        &self,
        src: &[T],
        dst: &mut EmuBuffer<T>,
    ) -> Result<()> {
        if src.len() > dst.len {
            return Err(Error::Device(format!(
                "emulated device: cannot copy {} values into a buffer of {}",
                src.len(),
                dst.len
            )));
        }
        // SAFETY: dst holds at least src.len() values and does not overlap a host slice.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.ptr.as_ptr(), src.len()) };
        Ok(())
    }

    fn copy_to_host<T: bytemuck::Pod + Send + Sync>(&self, src: &EmuBuffer<T>) -> Result<Vec<T>> {
        Ok(src.as_slice().to_vec())
    }

    fn memset_zero<T: bytemuck::Pod + Send + Sync>(&self, buf: &mut EmuBuffer<T>) -> Result<()> {
        // SAFETY: the buffer holds `len` values; all-zero bytes are a valid Pod value.
        unsafe { std::ptr::write_bytes(buf.ptr.as_ptr(), 0, buf.len) };
        Ok(())
    }

    fn memory(&self) -> &MemoryMeter {
        &self.memory
    }

    fn buffer_len<T: bytemuck::Pod + Send + Sync>(&self, buf: &EmuBuffer<T>) -> usize {
        buf.len
    }

    fn device_ptr<T: bytemuck::Pod + Send + Sync>(&self, buf: &EmuBuffer<T>) -> DevicePtr {
        DevicePtr(buf.ptr.as_ptr() as u64)
    }

    unsafe fn launch(
        &self,
        kernel: Kernel,
        config: &LaunchConfig,
        args: &mut KernelArgs,
    ) -> Result<()> {
        let k = self.kernel(kernel)?;
        let fail = |message: String| {
            Error::Device(format!(
                "emulated device: launch of {}::{}: {message}",
                kernel.module, kernel.name
            ))
        };
        check_limits(k, config).map_err(fail)?;
        let expected = k.sizes();
        let given: Vec<usize> = args.sizes().collect();
        if given != expected {
            return Err(fail(format!(
                "the arguments have byte sizes {given:?} but the kernel's parameters have {expected:?}"
            )));
        }
        let pointers = args.pointers();
        let args_addr = pointers.as_ptr() as usize;
        let grid_dim = Dim3::new(config.grid);
        let block_dim = Dim3::new(config.block);
        let blocks = grid_dim.volume();
        let order = self.order;
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<(usize, String)>> = Mutex::new(None);
        let run_one = |i: usize| {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let block_idx = grid_dim.unlinear(match order {
                ThreadOrder::Forward => i,
                ThreadOrder::Reverse => blocks - 1 - i,
            });
            // SAFETY: the caller guarantees the arguments match the kernel and address live buffers
            // large enough for this launch; `pointers` outlives the parallel loop.
            let result = unsafe {
                fiber::run_block(
                    k,
                    args_addr as *mut *mut c_void,
                    grid_dim,
                    block_dim,
                    block_idx,
                    config.dynamic_shared_bytes as usize,
                    order,
                )
            };
            if let Err(e) = result {
                failed.store(true, Ordering::Relaxed);
                let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if first.as_ref().is_none_or(|(j, _)| i < *j) {
                    *first = Some((i, e));
                }
            }
        };
        if self.host_threads == 1 || blocks == 1 {
            self.pool.install(|| (0..blocks).for_each(run_one));
        } else {
            self.pool
                .install(|| (0..blocks).into_par_iter().for_each(run_one));
        }
        drop(pointers);
        match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some((_, e)) => Err(Error::Device(format!("emulated device: {e}"))),
            None => Ok(()),
        }
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
