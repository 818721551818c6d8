//! [`KernelBackend`]: the op contract ([`Backend`]) on top of any kernel-running [`Device`]. One
//! implementation serves the emulated device and the CUDA device: each op trait is implemented by
//! the wrapper of its `.cu` file in the op's folder (`super::ops::<op>::kernel`), which checks the
//! buffers, packs the arguments and picks the launch configuration. Here: the memory methods and the
//! state the wrappers share. Nothing here knows a kernel name or a grid size.

use std::sync::Mutex;

use super::device::Device;
use super::kernels;
use super::{Backend, Buffers};
use crate::Result;

/// The op contract on a kernel-running device (f32 throughout).
pub struct KernelBackend<D: Device> {
    pub(in crate::backends) dev: D,
    /// Scratch of the conv2d, dense and max-pool wrappers (split-K partial sums, bias-gradient
    /// partials): one device buffer, grown to the largest request and reused, so training
    /// allocates nothing after its first step.
    pub(in crate::backends) gemm_scratch: kernels::gemm::Scratch<D>,
    /// The convolution gathers' K tables, built once per geometry and direction.
    pub(in crate::backends) gather_tables: kernels::gather_tables::GatherTables<D>,
    /// Scratch for softmax_xent's two counters (correct rows, bad labels), reused across calls.
    pub(in crate::backends) xent_counters: Mutex<D::Buffer<u32>>,
}

impl<D: Device> KernelBackend<D> {
    pub fn new(dev: D) -> Result<Self> {
        let xent_counters = Mutex::new(dev.alloc_zeroed::<u32>(2)?);
        Ok(KernelBackend {
            dev,
            gemm_scratch: kernels::gemm::Scratch::new(),
            gather_tables: kernels::gather_tables::GatherTables::new(),
            xent_counters,
        })
    }
    pub fn device(&self) -> &D {
        &self.dev
    }
    /// The convolution K tables currently cached.
    pub fn gather_tables(&self) -> usize {
        self.gather_tables.len()
    }
}

impl<D: Device> Buffers for KernelBackend<D> {
    type Elem = f32;
    type Buf = D::Buffer<f32>;
    type Idx = D::Buffer<u32>;
}

impl<D: Device> Backend for KernelBackend<D> {
    fn name(&self) -> String {
        self.dev.name()
    }

    fn zeros(&self, len: usize) -> Result<Self::Buf> {
        self.dev.alloc_zeroed(len)
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        let mut buf = self.dev.alloc_zeroed(host.len())?;
        self.dev.copy_to_device(host, &mut buf)?;
        Ok(buf)
    }
    fn write(&self, buf: &mut Self::Buf, host: &[f32]) -> Result<()> {
        self.dev.copy_to_device(host, buf)
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        self.dev.copy_to_host(buf)
    }
    fn fill_zero(&self, buf: &mut Self::Buf) -> Result<()> {
        self.dev.memset_zero(buf)
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        self.dev.buffer_len(buf)
    }
    fn zeros_idx(&self, len: usize) -> Result<Self::Idx> {
        self.dev.alloc_zeroed(len)
    }
    fn write_idx(&self, buf: &mut Self::Idx, host: &[u32]) -> Result<()> {
        self.dev.copy_to_device(host, buf)
    }
    fn download_idx(&self, buf: &Self::Idx) -> Result<Vec<u32>> {
        self.dev.copy_to_host(buf)
    }
    fn synchronize(&self) -> Result<()> {
        self.dev.synchronize()
    }
}
