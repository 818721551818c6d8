//! The kernels compiled by NVRTC at build time (build/nvrtc.rs), embedded in the binary: per
//! `kernels/*.cu` module, PTX for each virtual architecture and a CUBIN with the assembler's resource
//! figures for each real architecture.
//!
//! ```no_run
//! use rescnn::backends::cuda::embedded::KERNELS;
//! for m in KERNELS.modules {
//!     let ptx = m.best_ptx(86).expect("compute_80 PTX runs on 8.6");
//!     println!("{} ({}): {} entries, PTX compute_{}", m.module, m.source_file, m.entries.len(), ptx.arch);
//! }
//! ```

/// How the build went: NVRTC found and every kernel compiled, or NVRTC absent (the table is empty).
#[derive(Clone, Copy, Debug)]
pub enum NvrtcBuild {
    Compiled {
        /// NVRTC's (major, minor) version.
        version: (i32, i32),
        /// Which libnvrtc was used and how it was found.
        library: &'static str,
        /// Wall time of all NVRTC compilations (every module, every architecture), in milliseconds.
        compile_ms: u64,
    },
    Absent {
        /// Why, and how to install NVRTC.
        reason: &'static str,
    },
}

/// Everything build/nvrtc.rs produced.
#[derive(Debug)]
pub struct EmbeddedKernels {
    pub nvrtc: NvrtcBuild,
    /// One per `kernels/*.cu`, sorted by module name; empty when NVRTC was absent.
    pub modules: &'static [EmbeddedModule],
}

/// One `kernels/<module>.cu`.
#[derive(Debug)]
pub struct EmbeddedModule {
    /// The file stem, as in [`crate::backends::device::Kernel::module`].
    pub module: &'static str,
    /// `kernels/<module>.cu`.
    pub source_file: &'static str,
    /// The `extern "C" __global__` entry points, as parsed from the source.
    pub entries: &'static [EmbeddedEntry],
    /// PTX per virtual architecture, ascending (compute_61, compute_80, compute_90).
    pub ptx: &'static [PtxImage],
    /// CUBIN per real architecture, ascending (sm_61, sm_80, sm_90).
    pub cubins: &'static [CubinImage],
}

/// One `extern "C" __global__` kernel.
#[derive(Debug)]
pub struct EmbeddedEntry {
    pub name: &'static str,
    /// Its parameters as written in the source (`"const float* __restrict__ x"`).
    pub params: &'static [&'static str],
    /// Byte size of each parameter as compiled (read from the PTX `.param` list): what each slot of
    /// the launch's [`crate::backends::device::KernelArgs`] must hold.
    pub param_sizes: &'static [u32],
}

/// PTX for `compute_<arch>`.
#[derive(Debug)]
pub struct PtxImage {
    /// 10 × major + minor of the virtual architecture, e.g. 61.
    pub arch: u32,
    pub text: &'static str,
}

/// A CUBIN (ELF) for `sm_<arch>`, with what the assembler reported for each entry point.
#[derive(Debug)]
pub struct CubinImage {
    /// 10 × major + minor of the real architecture, e.g. 90.
    pub arch: u32,
    pub image: &'static [u8],
    pub resources: &'static [KernelResources],
}

/// The assembler's (`ptxas -v`) figures for one entry point on one real architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelResources {
    pub entry: &'static str,
    /// Registers per thread.
    pub registers: u32,
    pub barriers: u32,
    /// Static `__shared__` bytes per block (dynamic shared memory comes on top, per launch).
    pub shared_bytes: u32,
    /// Constant bank 0 bytes (kernel parameters).
    pub const_bytes: u32,
    pub stack_frame_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

impl EmbeddedKernels {
    pub fn module(&self, name: &str) -> Option<&'static EmbeddedModule> {
        self.modules.iter().find(|m| m.module == name)
    }
    /// Whether NVRTC compiled the kernels at build time.
    pub fn compiled(&self) -> bool {
        matches!(self.nvrtc, NvrtcBuild::Compiled { .. })
    }
}

impl EmbeddedModule {
    pub fn entry(&self, name: &str) -> Option<&'static EmbeddedEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
    /// The newest PTX a GPU of compute capability `cc` (10 × major + minor) can JIT-compile: PTX for
    /// compute_XY runs on every GPU of capability ≥ X.Y.
    pub fn best_ptx(&self, cc: u32) -> Option<&'static PtxImage> {
        self.ptx
            .iter()
            .filter(|p| p.arch <= cc)
            .max_by_key(|p| p.arch)
    }
    /// The newest CUBIN a GPU of compute capability `cc` runs natively: an sm_XY CUBIN runs on X.Z for
    /// Z ≥ Y (same major only).
    pub fn best_cubin(&self, cc: u32) -> Option<&'static CubinImage> {
        self.cubins
            .iter()
            .filter(|c| c.arch / 10 == cc / 10 && c.arch <= cc)
            .max_by_key(|c| c.arch)
    }
}

impl CubinImage {
    pub fn resources_of(&self, entry: &str) -> Option<&'static KernelResources> {
        self.resources.iter().find(|r| r.entry == entry)
    }
}

include!(concat!(env!("OUT_DIR"), "/cuda_kernels.rs"));
