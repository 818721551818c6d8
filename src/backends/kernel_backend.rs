//! [`KernelBackend`]: the op contract ([`Backend`]) on top of any kernel-running [`Device`]. One
//! implementation serves the emulated device and the CUDA device: every op is a call into the wrapper
//! module of its `.cu` file ([`super::kernels`]), which checks the buffers, packs the arguments and
//! picks the launch configuration. Nothing here knows a kernel name or a grid size.

use std::sync::Mutex;

use super::device::Device;
use super::geometry::{
    BatchNormGeom, ConcatGeom, ConvGeom, DenseGeom, DropoutParams, PoolGeom, ShortcutGeom,
    StatsPoolGeom, XentGeom, XentStats,
};
use super::kernels;
use super::{Backend, InputGrad};
use crate::model::optimizer::{AdamWStep, RmsPropConfig};
use crate::Result;

/// The op contract on a kernel-running device (f32 throughout).
pub struct KernelBackend<D: Device> {
    dev: D,
    /// Scratch of the conv2d, dense and max-pool wrappers (split-K partial sums, bias-gradient
    /// partials): one device buffer, grown to the largest request and reused, so training
    /// allocates nothing after its first step.
    gemm_scratch: kernels::gemm::Scratch<D>,
    /// The convolution gathers' K tables, built once per geometry and direction.
    gather_tables: kernels::conv2d::GatherTables<D>,
    /// Scratch for softmax_xent's two counters (correct rows, bad labels), reused across calls.
    xent_counters: Mutex<D::Buffer<u32>>,
}

impl<D: Device> KernelBackend<D> {
    pub fn new(dev: D) -> Result<Self> {
        let xent_counters = Mutex::new(dev.alloc_zeroed::<u32>(2)?);
        Ok(KernelBackend {
            dev,
            gemm_scratch: kernels::gemm::Scratch::new(),
            gather_tables: kernels::conv2d::GatherTables::new(),
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

impl<D: Device> Backend for KernelBackend<D> {
    type Elem = f32;
    type Buf = D::Buffer<f32>;
    type Idx = D::Buffer<u32>;

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

    fn conv2d_forward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()> {
        kernels::conv2d::forward(&self.dev, &self.gather_tables, g, x, w, b, y)
    }

    fn conv2d_backward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        y: &Self::Buf,
        dy: &mut Self::Buf,
        dx: InputGrad<'_, Self::Buf>,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()> {
        kernels::conv2d::backward(
            &self.dev,
            &self.gemm_scratch,
            &self.gather_tables,
            g,
            x,
            w,
            y,
            dy,
            dx,
            dw,
            db,
        )
    }

    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &Self::Buf,
        y: &mut Self::Buf,
        argmax: &mut Self::Idx,
    ) -> Result<()> {
        kernels::maxpool::forward(&self.dev, g, x, y, argmax)
    }

    fn maxpool_backward(
        &self,
        g: &PoolGeom,
        dy: &Self::Buf,
        argmax: &Self::Idx,
        dx: &mut Self::Buf,
    ) -> Result<()> {
        kernels::maxpool::backward(&self.dev, g, dy, argmax, dx)
    }

    fn maxpool_relu_backward(
        &self,
        g: &PoolGeom,
        dy: &Self::Buf,
        argmax: &Self::Idx,
        dx: &mut Self::Buf,
        db: &mut Self::Buf,
    ) -> Result<()> {
        kernels::maxpool::relu_backward(&self.dev, &self.gemm_scratch, g, dy, argmax, dx, db)
    }

    fn shortcut_forward(
        &self,
        g: &ShortcutGeom,
        src: &Self::Buf,
        dst: &mut Self::Buf,
    ) -> Result<()> {
        kernels::shortcut::forward(&self.dev, g, src, dst)
    }

    fn shortcut_backward(
        &self,
        g: &ShortcutGeom,
        d_dst: &Self::Buf,
        d_src: &mut Self::Buf,
    ) -> Result<()> {
        kernels::shortcut::backward(&self.dev, g, d_dst, d_src)
    }

    fn dense_forward(
        &self,
        g: &DenseGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()> {
        kernels::dense::forward(&self.dev, &self.gemm_scratch, g, x, w, b, y)
    }

    fn dense_backward(
        &self,
        g: &DenseGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        y: &Self::Buf,
        dy: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
    ) -> Result<()> {
        kernels::dense::backward(&self.dev, &self.gemm_scratch, g, x, w, y, dy, dx, dw, db)
    }

    fn batchnorm_forward_train(
        &self,
        g: &BatchNormGeom,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        saved: &mut Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
    ) -> Result<()> {
        kernels::batchnorm::forward_train(
            &self.dev,
            g,
            x,
            gamma,
            beta,
            y,
            saved,
            running_mean,
            running_var,
        )
    }

    fn batchnorm_forward_eval(
        &self,
        g: &BatchNormGeom,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &Self::Buf,
        running_var: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()> {
        kernels::batchnorm::forward_eval(&self.dev, g, x, gamma, beta, running_mean, running_var, y)
    }

    fn batchnorm_backward(
        &self,
        g: &BatchNormGeom,
        x: &Self::Buf,
        gamma: &Self::Buf,
        y: &Self::Buf,
        saved: &Self::Buf,
        dy: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    ) -> Result<()> {
        kernels::batchnorm::backward(&self.dev, g, x, gamma, y, saved, dy, dx, dgamma, dbeta)
    }

    fn statspool_forward(&self, g: &StatsPoolGeom, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        kernels::statspool::forward(&self.dev, g, x, y)
    }

    fn statspool_backward(
        &self,
        g: &StatsPoolGeom,
        x: &Self::Buf,
        y: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()> {
        kernels::statspool::backward(&self.dev, g, x, y, dy, dx)
    }

    fn dropout_forward(&self, p: &DropoutParams, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        kernels::dropout::forward(&self.dev, p, x, y)
    }

    fn dropout_backward(
        &self,
        p: &DropoutParams,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()> {
        kernels::dropout::backward(&self.dev, p, dy, dx)
    }

    fn concat_forward(
        &self,
        g: &ConcatGeom,
        a: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()> {
        kernels::concat::forward(&self.dev, g, a, b, y)
    }

    fn concat_backward(
        &self,
        g: &ConcatGeom,
        dy: &Self::Buf,
        da: Option<&mut Self::Buf>,
        db: Option<&mut Self::Buf>,
    ) -> Result<()> {
        kernels::concat::backward(&self.dev, g, dy, da, db)
    }

    fn softmax_xent(
        &self,
        g: &XentGeom,
        logits: &Self::Buf,
        labels: &Self::Idx,
        losses: &mut Self::Buf,
        d_logits: &mut Self::Buf,
    ) -> Result<XentStats> {
        let mut counters = self.xent_counters.lock().unwrap_or_else(|p| p.into_inner());
        kernels::softmax_xent::softmax_xent(
            &self.dev,
            g,
            logits,
            labels,
            losses,
            d_logits,
            &mut counters,
        )
    }

    fn softmax_xent_soft(
        &self,
        g: &XentGeom,
        logits: &Self::Buf,
        targets: &Self::Buf,
        class_weights: Option<&Self::Buf>,
        losses: &mut Self::Buf,
        d_logits: &mut Self::Buf,
    ) -> Result<XentStats> {
        let mut counters = self.xent_counters.lock().unwrap_or_else(|p| p.into_inner());
        kernels::softmax_xent::softmax_xent_soft(
            &self.dev,
            g,
            logits,
            targets,
            class_weights,
            losses,
            d_logits,
            &mut counters,
        )
    }

    fn rmsprop_update(
        &self,
        cfg: &RmsPropConfig,
        step: u64,
        w: &mut Self::Buf,
        g: &Self::Buf,
        r: &mut Self::Buf,
    ) -> Result<()> {
        kernels::rmsprop::update(&self.dev, cfg, step, w, g, r)
    }

    fn adamw_update(
        &self,
        step: &AdamWStep,
        w: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    ) -> Result<()> {
        kernels::adamw::update(&self.dev, step, w, g, m, v)
    }
}
