//! Shared harness of the backend tests: each test body is written ONCE, generic over
//! `B: Backend<Elem = f32>`, and instantiated by [`backend_tests!`] for every kernel-running device;
//! inside, it runs the same calls on the CPU reference and compares with [`check`].
#![allow(dead_code)]

pub mod check;

use rescnn::backends::cpu::CpuBackend;
use rescnn::backends::cuda::CudaDevice;
use rescnn::backends::emu::{EmuDevice, ThreadOrder};
use rescnn::backends::kernel_backend::KernelBackend;

/// The oracle: the CPU reference in f32 (the devices' precision).
pub fn reference() -> CpuBackend<f32> {
    CpuBackend::new()
}

/// The emulated device with its threads run in `order`, blocks on every core.
pub fn emulated(order: ThreadOrder) -> KernelBackend<EmuDevice> {
    KernelBackend::new(EmuDevice::new(order).expect("emulated device")).expect("emulated backend")
}

/// The CUDA device on GPU 0 (only called where build.rs saw a GPU and NVRTC compiled the kernels:
/// the cfgs `rescnn_gpu` and `rescnn_nvrtc`).
pub fn cuda() -> KernelBackend<CudaDevice> {
    let dev =
        CudaDevice::new(0).unwrap_or_else(|e| panic!("a GPU was seen at build time, but: {e}"));
    KernelBackend::new(dev).expect("CUDA backend")
}

/// Deterministic pseudo-random numbers (SplitMix64), so every failure reproduces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }
    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Instantiate generic test bodies `fn name<B: Backend<Elem = f32>>(dev: &B)` for every device:
/// the emulated device in both thread orders (a missing barrier fails in at least one), and the CUDA
/// device where a GPU is present.
macro_rules! backend_tests {
    ($($test:ident),* $(,)?) => {
        mod emulated_forward {
            $(
                #[test]
                fn $test() {
                    super::$test(&crate::common::emulated(rescnn::backends::emu::ThreadOrder::Forward));
                }
            )*
        }
        mod emulated_reverse {
            $(
                #[test]
                fn $test() {
                    super::$test(&crate::common::emulated(rescnn::backends::emu::ThreadOrder::Reverse));
                }
            )*
        }
        // Compiled everywhere (a change that breaks the CUDA instantiation shows on every build), run
        // where build.rs saw a GPU and NVRTC compiled the kernels: `cargo test --release` on a GPU
        // machine (RESCNN_GPU_TESTS=1 forces GPU detection on).
        mod cuda {
            $(
                #[test]
                #[cfg_attr(not(all(rescnn_gpu, rescnn_nvrtc)), ignore = "needs a CUDA GPU and the kernels NVRTC compiles")]
                fn $test() {
                    super::$test(&crate::common::cuda());
                }
            )*
        }
    };
}
