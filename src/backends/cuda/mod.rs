//! The CUDA device: runs the kernels NVRTC compiled at build time ([`embedded::KERNELS`]) on an NVIDIA
//! GPU through the driver API (cudarc, `libcuda` opened at run time, so nothing CUDA is needed to build
//! or to run without a GPU).
//!
//! - **Loading.** [`CudaDevice::new`] loads every module once: the CUBIN built for the GPU's
//!   architecture family when there is one (sm_61 for 6.x, sm_80 for 8.x, sm_90 for 9.0: no JIT, and it
//!   runs on drivers older than the NVRTC that built it), otherwise the newest PTX whose virtual
//!   architecture does not exceed the GPU's compute capability, JIT-compiled by the driver (which
//!   caches the result on disk). [`ImagePolicy::PtxOnly`] forces the PTX path (tests cover both). Every
//!   entry point's function handle is fetched once, at start-up.
//! - **Launching.** One stream. [`Device::launch`] checks the packed arguments against the parameter
//!   sizes the compiler produced and the launch shape and shared memory against the limits of the
//!   [`Device::launch`] contract, opts the kernel in to more than 48 KiB of dynamic shared memory when
//!   the launch says `large_shared`, then calls `cuLaunchKernel` with the `void**` array of
//!   [`KernelArgs`].
//! - **Memory.** [`CudaBuffer`] is a typed view over a `CudaSlice<u8>` (cudarc's own typed slices need
//!   its `DeviceRepr` trait, which our generic `bytemuck::Pod` buffers cannot implement). Copies go
//!   through the same stream; device-to-host copies wait for it.
//! - **Timing.** [`peak`] (peak figures per GPU) serves `benches/`; the event timer and the cuBLAS
//!   reference live with the tests (tests/common/).

pub mod embedded;
pub mod peak;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use cudarc::driver::{
    result as drv, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream,
    DevicePtr as _, DriverError,
};
use cudarc::nvrtc::Ptx;

use self::embedded::{EmbeddedModule, NvrtcBuild, KERNELS};
use super::device::{
    Device, DevicePtr, Kernel, KernelArgs, LaunchConfig, MemoryMeter, MeteredBytes,
};
use crate::{Error, Result};

/// How to install NVRTC (the build tells the same).
pub const NVRTC_INSTALL_HINT: &str = "install NVRTC (no CUDA toolkit needed) with `pip install \
--target \"${RESCNN_CACHE:-$HOME/.cache/rescnn}/nvrtc\" nvidia-cuda-nvrtc-cu12==12.9.86`, then \
rebuild (`cargo build --release`); see the README's \"CUDA\" section";

/// Which embedded image a module is loaded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePolicy {
    /// The CUBIN for the GPU's architecture family if there is one, else the newest usable PTX.
    Auto,
    /// Always the newest usable PTX (JIT-compiled by the driver).
    PtxOnly,
}

/// The image a module was loaded from, e.g. `Cubin(90)` or `Ptx(80)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadedImage {
    Cubin(u32),
    Ptx(u32),
}

impl std::fmt::Display for LoadedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadedImage::Cubin(a) => write!(f, "CUBIN sm_{a}"),
            LoadedImage::Ptx(a) => write!(f, "PTX compute_{a} (JIT)"),
        }
    }
}

/// A GPU as the driver describes it (for `rescnn info` and the benchmarks).
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    /// 10 × major + minor, e.g. 90.
    pub compute_capability: u32,
    pub multiprocessors: u32,
    pub total_memory_bytes: u64,
    pub l2_cache_bytes: u32,
    /// Shared memory one block may use after opting in.
    pub max_shared_per_block_optin: u32,
}

/// One entry point, ready to launch.
struct LoadedFunction {
    function: CudaFunction,
    param_sizes: &'static [u32],
    static_shared_bytes: u32,
    max_threads_per_block: u32,
    /// The dynamic shared memory this function is currently allowed (48 KiB − static until opted in).
    dynamic_shared_allowed: AtomicU32,
}

/// The CUDA device. See the module documentation.
pub struct CudaDevice {
    info: GpuInfo,
    stream: Arc<CudaStream>,
    /// Keeps the modules loaded for as long as the device lives (functions also hold them).
    modules: Vec<(&'static str, Arc<CudaModule>, LoadedImage)>,
    functions: HashMap<(&'static str, &'static str), LoadedFunction>,
    /// What has been allocated ([`Device::memory`]).
    memory: Arc<MemoryMeter>,
    /// Last field: dropped after the stream, modules and functions that belong to it.
    ctx: Arc<CudaContext>,
}

fn driver_err(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| Error::Device(format!("{what}: {e}"))
}

/// Why the driver cannot be used at all: `None` when it can.
fn driver_unavailable() -> Option<String> {
    // SAFETY: only tries to open libcuda; no driver call is made.
    if !unsafe { sys::is_culib_present() } {
        return Some(
            "no NVIDIA driver: libcuda.so.1 could not be loaded (no GPU on this machine, or the \
             driver is not installed / not on the library path)"
                .into(),
        );
    }
    None
}

/// Run `f`, turning a panic inside cudarc (it panics when a driver symbol is missing, e.g. on a very old
/// driver) into an error.
fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::Device(format!(
            "{what}: the CUDA driver library failed: {msg}"
        )))
    })
}

/// The CUDA GPUs the driver sees, or why there are none.
pub fn list_gpus() -> Result<Vec<GpuInfo>> {
    if let Some(why) = driver_unavailable() {
        return Err(Error::Device(why));
    }
    no_panic("listing CUDA GPUs", || {
        let count = CudaContext::device_count().map_err(|e| {
            Error::Device(format!(
                "the NVIDIA driver is installed but reports no usable GPU (cuInit/cuDeviceGetCount: {e})"
            ))
        })?;
        (0..count.max(0) as usize).map(gpu_info).collect()
    })
}

fn gpu_info(ordinal: usize) -> Result<GpuInfo> {
    use sys::CUdevice_attribute as A;
    let what = format!("querying GPU {ordinal}");
    drv::init().map_err(driver_err(&what))?;
    let dev = drv::device::get(ordinal as i32).map_err(driver_err(&what))?;
    // SAFETY: `dev` is a valid device handle returned by cuDeviceGet.
    let attr = |a: A| unsafe { drv::device::get_attribute(dev, a) }.map_err(driver_err(&what));
    Ok(GpuInfo {
        ordinal,
        name: drv::device::get_name(dev).map_err(driver_err(&what))?,
        compute_capability: (attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)? * 10
            + attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?)
            as u32,
        multiprocessors: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
        // SAFETY: as above.
        total_memory_bytes: unsafe { drv::device::total_mem(dev) }.map_err(driver_err(&what))?
            as u64,
        l2_cache_bytes: attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as u32,
        max_shared_per_block_optin: attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
            as u32,
    })
}

/// The driver's CUDA version as (major, minor), e.g. (12, 9).
pub fn driver_version() -> Result<(i32, i32)> {
    if let Some(why) = driver_unavailable() {
        return Err(Error::Device(why));
    }
    no_panic("cuDriverGetVersion", || {
        let mut v = 0;
        // SAFETY: the library is present; `v` is a valid out-pointer.
        unsafe { sys::cuDriverGetVersion(&mut v) }
            .result()
            .map_err(driver_err("cuDriverGetVersion"))?;
        Ok((v / 1000, (v % 1000) / 10))
    })
}

/// Which image [`ImagePolicy`] picks for `module` on a GPU of capability `cc`.
pub fn choose_image(module: &EmbeddedModule, cc: u32, policy: ImagePolicy) -> Option<LoadedImage> {
    let cubin = match policy {
        ImagePolicy::Auto => module.best_cubin(cc).map(|c| LoadedImage::Cubin(c.arch)),
        ImagePolicy::PtxOnly => None,
    };
    cubin.or_else(|| module.best_ptx(cc).map(|p| LoadedImage::Ptx(p.arch)))
}

impl CudaDevice {
    /// Open GPU `ordinal` and load every kernel module (see the module documentation).
    ///
    /// Fails with a message that says what to do when the kernels were not compiled (NVRTC absent at
    /// build time), when there is no driver or GPU, or when the driver cannot load the kernels.
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_policy(ordinal, ImagePolicy::Auto)
    }

    pub fn with_policy(ordinal: usize, policy: ImagePolicy) -> Result<Self> {
        let mut problems = Vec::new();
        if let NvrtcBuild::Absent { reason } = KERNELS.nvrtc {
            problems.push(format!(
                "the CUDA kernels were not compiled because NVRTC was not found when rescnn was \
                 built ({reason})"
            ));
        }
        if let Some(why) = driver_unavailable() {
            problems.push(why);
        }
        if !problems.is_empty() {
            return Err(Error::Device(format!(
                "the CUDA device cannot start: {}",
                problems.join("; and ")
            )));
        }
        no_panic("opening the CUDA device", || Self::open(ordinal, policy)).map_err(|e| match e {
            Error::Device(m) => Error::Device(format!("the CUDA device cannot start: {m}")),
            other => other,
        })
    }

    fn open(ordinal: usize, policy: ImagePolicy) -> Result<Self> {
        let gpus = list_gpus()?;
        let info = gpus.get(ordinal).cloned().ok_or_else(|| {
            Error::Device(format!(
                "CUDA GPU {ordinal} does not exist: the driver reports {} GPU(s)",
                gpus.len()
            ))
        })?;
        let ctx = CudaContext::new(ordinal).map_err(driver_err("creating the CUDA context"))?;
        // SAFETY: this device uses exactly one stream, so cudarc's cross-stream event tracking has
        // nothing to order; we disable it before any buffer exists.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(driver_err("creating the CUDA stream"))?;

        let cc = info.compute_capability;
        let mut modules = Vec::new();
        let mut functions = HashMap::new();
        for m in KERNELS.modules {
            let (module, image) = load_module(&ctx, m, cc, policy, &info)?;
            for entry in m.entries {
                let what = format!("kernel {}::{}", m.module, entry.name);
                let function = module
                    .load_function(entry.name)
                    .map_err(driver_err(&what))?;
                use sys::CUfunction_attribute as F;
                let static_shared_bytes = function
                    .get_attribute(F::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
                    .map_err(driver_err(&what))? as u32;
                let max_threads_per_block = function
                    .get_attribute(F::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)
                    .map_err(driver_err(&what))? as u32;
                let dynamic_allowed = function
                    .get_attribute(F::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)
                    .map_err(driver_err(&what))? as u32;
                functions.insert(
                    (m.module, entry.name),
                    LoadedFunction {
                        function,
                        param_sizes: entry.param_sizes,
                        static_shared_bytes,
                        max_threads_per_block,
                        dynamic_shared_allowed: AtomicU32::new(dynamic_allowed),
                    },
                );
            }
            modules.push((m.module, module, image));
        }
        Ok(CudaDevice {
            info,
            stream,
            modules,
            functions,
            memory: MemoryMeter::new(),
            ctx,
        })
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }
    /// The one stream every operation of this device is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    /// Which image each module was loaded from.
    pub fn loaded_images(&self) -> Vec<(&'static str, LoadedImage)> {
        self.modules.iter().map(|(n, _, i)| (*n, *i)).collect()
    }

    /// Check the launch's shared memory against the device contract and, for a `large_shared` launch,
    /// raise the function's dynamic shared memory limit (cuFuncSetAttribute
    /// MAX_DYNAMIC_SHARED_SIZE_BYTES, needed above 48 KiB per block) if it is below what is asked.
    fn prepare_shared(
        &self,
        kernel: Kernel,
        f: &LoadedFunction,
        config: &LaunchConfig,
    ) -> Result<()> {
        let dynamic = config.dynamic_shared_bytes;
        let total = f.static_shared_bytes + dynamic;
        if !config.large_shared {
            if total > DEFAULT_SHARED_LIMIT {
                return Err(Error::Device(format!(
                    "kernel {}::{} needs {total} bytes of shared memory per block ({} static + \
                     {dynamic} dynamic), over 48 KiB, without opting in (LaunchConfig::large_shared)",
                    kernel.module, kernel.name, f.static_shared_bytes
                )));
            }
            return Ok(());
        }
        let limit = self.info.max_shared_per_block_optin;
        if total > limit {
            return Err(Error::Device(format!(
                "kernel {}::{} needs {total} bytes of shared memory per block ({} static + \
                 {dynamic} dynamic); {} allows at most {limit}",
                kernel.module, kernel.name, f.static_shared_bytes, self.info.name
            )));
        }
        if dynamic > f.dynamic_shared_allowed.load(Ordering::Relaxed) {
            f.function
                .set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    dynamic as i32,
                )
                .map_err(driver_err(&format!(
                    "opting {}::{} in to {dynamic} bytes of dynamic shared memory",
                    kernel.module, kernel.name
                )))?;
            f.dynamic_shared_allowed
                .fetch_max(dynamic, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Shared memory (static + dynamic) a block may use without opting in, on every GPU.
const DEFAULT_SHARED_LIMIT: u32 = 48 * 1024;

fn load_module(
    ctx: &Arc<CudaContext>,
    m: &'static EmbeddedModule,
    cc: u32,
    policy: ImagePolicy,
    info: &GpuInfo,
) -> Result<(Arc<CudaModule>, LoadedImage)> {
    let image = choose_image(m, cc, policy).ok_or_else(|| {
        Error::Device(format!(
            "{} is compute capability {}.{}, older than every architecture the kernels were \
             compiled for (oldest: compute_{})",
            info.name,
            cc / 10,
            cc % 10,
            m.ptx.first().map_or(0, |p| p.arch)
        ))
    })?;
    let load = |image: LoadedImage| {
        let code = match image {
            LoadedImage::Cubin(arch) => {
                let c = m.cubins.iter().find(|c| c.arch == arch).unwrap();
                Ptx::from_binary(c.image.to_vec())
            }
            LoadedImage::Ptx(arch) => {
                let p = m.ptx.iter().find(|p| p.arch == arch).unwrap();
                Ptx::from_src(p.text)
            }
        };
        ctx.load_module(code)
    };
    match load(image) {
        Ok(module) => Ok((module, image)),
        Err(cubin_err) if matches!(image, LoadedImage::Cubin(_)) => {
            // A CUBIN the driver rejects: fall back to PTX before giving up.
            let ptx = m.best_ptx(cc).map(|p| LoadedImage::Ptx(p.arch)).unwrap();
            load(ptx)
                .map(|module| (module, ptx))
                .map_err(|e| module_load_error(m, ptx, e, Some(cubin_err)))
        }
        Err(e) => Err(module_load_error(m, image, e, None)),
    }
}

fn module_load_error(
    m: &EmbeddedModule,
    image: LoadedImage,
    e: DriverError,
    cubin_err: Option<DriverError>,
) -> Error {
    let mut msg = format!("loading {} ({image}) failed: {e}", m.source_file);
    if let Some(c) = cubin_err {
        msg.push_str(&format!(" (after its CUBIN failed: {c})"));
    }
    if e.0 == sys::CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION {
        let nvrtc = match KERNELS.nvrtc {
            NvrtcBuild::Compiled { version, .. } => format!("{}.{}", version.0, version.1),
            NvrtcBuild::Absent { .. } => "?".into(),
        };
        let driver = driver_version()
            .map(|(a, b)| format!("{a}.{b}"))
            .unwrap_or_else(|_| "?".into());
        msg.push_str(&format!(
            ". The PTX comes from NVRTC {nvrtc}, newer than this driver (CUDA {driver}) can JIT: \
             update the NVIDIA driver, or rebuild with the NVRTC wheel of the driver's CUDA version \
             (`pip install --target ... nvidia-cuda-nvrtc-cu12=={driver}.*`)"
        ));
    }
    Error::Device(msg)
}

/// A buffer of `T` in GPU memory: a typed view over raw bytes.
pub struct CudaBuffer<T> {
    raw: CudaSlice<u8>,
    len: usize,
    _element: PhantomData<T>,
    _bytes: MeteredBytes,
}

impl<T> CudaBuffer<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }
}

impl Device for CudaDevice {
    type Buffer<T: bytemuck::Pod + Send + Sync> = CudaBuffer<T>;

    fn name(&self) -> String {
        let images: Vec<String> = self
            .modules
            .iter()
            .map(|(_, _, i)| i.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        format!(
            "{} (compute {}.{}; kernels from {})",
            self.info.name,
            self.info.compute_capability / 10,
            self.info.compute_capability % 10,
            if images.is_empty() {
                "nothing".to_string()
            } else {
                images.join(", ")
            }
        )
    }

    fn alloc_zeroed<T: bytemuck::Pod + Send + Sync>(&self, len: usize) -> Result<CudaBuffer<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::Device(format!("a buffer of {len} values overflows")))?;
        // cuMemAlloc rejects 0 bytes; an empty buffer still gets a (1-byte) allocation.
        let raw = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(driver_err(&format!("allocating {bytes} bytes on the GPU")))?;
        Ok(CudaBuffer {
            raw,
            len,
            _element: PhantomData,
            _bytes: self.memory.allocate(bytes),
        })
    }

    fn copy_to_device<T: bytemuck::Pod + Send + Sync>(
        &self,
        src: &[T],
        dst: &mut CudaBuffer<T>,
    ) -> Result<()> {
        if src.len() > dst.len {
            return Err(Error::Device(format!(
                "copying {} values into a GPU buffer of {}",
                src.len(),
                dst.len
            )));
        }
        if src.is_empty() {
            return Ok(());
        }
        let bytes: &[u8] = bytemuck::cast_slice(src);
        let mut view = dst.raw.slice_mut(0..bytes.len());
        self.stream
            .memcpy_htod(bytes, &mut view)
            .map_err(driver_err("copying to the GPU"))
    }

    fn copy_to_host<T: bytemuck::Pod + Send + Sync>(&self, src: &CudaBuffer<T>) -> Result<Vec<T>> {
        let mut host = vec![T::zeroed(); src.len];
        if src.len == 0 {
            return Ok(host);
        }
        let view = src.raw.slice(0..src.bytes());
        // Into pageable memory the copy completes before memcpy_dtoh returns, after all earlier work
        // queued on the stream.
        self.stream
            .memcpy_dtoh(&view, bytemuck::cast_slice_mut::<T, u8>(&mut host))
            .map_err(driver_err("copying from the GPU"))?;
        Ok(host)
    }

    fn memset_zero<T: bytemuck::Pod + Send + Sync>(&self, buf: &mut CudaBuffer<T>) -> Result<()> {
        self.stream
            .memset_zeros(&mut buf.raw)
            .map_err(driver_err("zeroing a GPU buffer"))
    }

    fn memory(&self) -> &MemoryMeter {
        &self.memory
    }

    fn buffer_len<T: bytemuck::Pod + Send + Sync>(&self, buf: &CudaBuffer<T>) -> usize {
        buf.len
    }

    fn device_ptr<T: bytemuck::Pod + Send + Sync>(&self, buf: &CudaBuffer<T>) -> DevicePtr {
        // With event tracking off the returned guard records nothing.
        let (ptr, _guard) = buf.raw.device_ptr(&self.stream);
        DevicePtr(ptr)
    }

    unsafe fn launch(
        &self,
        kernel: Kernel,
        config: &LaunchConfig,
        args: &mut KernelArgs,
    ) -> Result<()> {
        let f = self
            .functions
            .get(&(kernel.module, kernel.name))
            .ok_or_else(|| {
                Error::Device(format!(
                    "no kernel {}::{} was compiled into this binary",
                    kernel.module, kernel.name
                ))
            })?;
        let sizes: Vec<u32> = args.sizes().map(|s| s as u32).collect();
        if sizes != f.param_sizes {
            return Err(Error::Device(format!(
                "kernel {}::{} takes parameters of {:?} bytes but the launch packed {:?}",
                kernel.module, kernel.name, f.param_sizes, sizes
            )));
        }
        let (g, b) = (config.grid, config.block);
        let threads = config.threads_per_block();
        if [g.0, g.1, g.2, b.0, b.1, b.2].contains(&0)
            || g.0 > i32::MAX as u32
            || g.1 > 65535
            || g.2 > 65535
            || b.2 > 64
            || threads > f.max_threads_per_block
        {
            return Err(Error::Device(format!(
                "kernel {}::{}: invalid launch grid {g:?} × block {b:?} (at most {} threads per \
                 block for this kernel, block z ≤ 64, grid y and z ≤ 65535)",
                kernel.module, kernel.name, f.max_threads_per_block
            )));
        }
        // Bound first: cuFuncSetAttribute (in prepare_shared) and cuLaunchKernel act on the calling
        // thread's current context, and the trainer may launch from a thread cudarc never bound.
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("binding the CUDA context"))?;
        self.prepare_shared(kernel, f, config)?;
        let mut pointers = args.pointers();
        // SAFETY: `pointers` holds one pointer per kernel parameter, each addressing a value of exactly
        // the size the compiled kernel declares for that parameter (checked above against the PTX
        // signature), and stays alive (with `args`) until cuLaunchKernel has copied the values, which
        // it does before returning. The launch shape is within the device limits (checked above) and
        // the dynamic shared memory was allowed for this function. That the pointer arguments address
        // live buffers large enough for the kernel is the caller's contract (`Device::launch`).
        unsafe {
            drv::launch_kernel(
                f.function.cu_function(),
                config.grid,
                config.block,
                config.dynamic_shared_bytes,
                self.stream.cu_stream(),
                &mut pointers,
            )
        }
        .map_err(driver_err(&format!(
            "launching {}::{}",
            kernel.module, kernel.name
        )))
    }

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver_err("a CUDA kernel or copy failed"))
    }
}
