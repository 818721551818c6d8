//! Wrapper of kernels/maxpool.cu: max-pool forward (with argmax) and backward (gather into dx; the
//! fused ReLU form also emits the producing convolution's bias-gradient partials, which the
//! convolution's second stage, `conv2d_sum_partials`, adds).

use super::{MaxPoolOp, MaxPoolReluBackwardIo, PoolGeom, KERNEL_MODULE};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, KernelArgs, LaunchConfig};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, grid_stride, need};
use crate::backends::ops::conv2d::kernel as conv2d;
use crate::Result;

pub const FORWARD: Kernel = Kernel::new(KERNEL_MODULE, "maxpool_forward");
pub const BACKWARD: Kernel = Kernel::new(KERNEL_MODULE, "maxpool_backward");
pub const RELU_BACKWARD: Kernel = Kernel::new(KERNEL_MODULE, "maxpool_relu_backward");

fn check(g: &PoolGeom) -> Result<()> {
    g.validate()?;
    check_index_range("max-pool input", g.input().len())
}

/// Scratch values [`relu_backward`] of `g` asks for (the bias gradient's per-chunk partials).
pub fn relu_backward_scratch_len(g: &PoolGeom) -> usize {
    let channels = g.c as usize;
    let (splits, _) = conv2d::channel_chunks(channels, g.input().len() / channels);
    splits * channels
}

impl<D: Device> MaxPoolOp for KernelBackend<D> {
    /// WRITES y and argmax (N, C, H_out, W_out) from x (N, C, H_in, W_in).
    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &D::Buffer<f32>,
        y: &mut D::Buffer<f32>,
        argmax: &mut D::Buffer<u32>,
    ) -> Result<()> {
        let dev = &self.dev;
        check(g)?;
        let (input, output) = (g.input().len(), g.output().len());
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, x, input, "max-pool x")?)
            .push(need(dev, y, output, "max-pool y")?)
            .push(need(dev, argmax, output, "max-pool argmax")?);
        // x read once (overlapping windows hit in cache), y and a u32 argmax written.
        dev.note_cost(FORWARD, || Cost::memory(4 * input + 8 * output));
        // SAFETY: maxpool_forward(PoolGeom, const float* x, float* y, unsigned* argmax): the arguments are
        // pushed in that order with those types, x holds N·C·H_in·W_in values and y and argmax
        // N·C·H_out·W_out (checked above), and the kernel touches no index beyond those (its grid-stride
        // loop is bounded by the geometry; windows lie inside the input by PoolGeom's floor mode).
        unsafe { dev.launch(FORWARD, &grid_stride(output), &mut args) }
    }

    /// ACCUMULATES dx (N, C, H_in, W_in) from dy and argmax (N, C, H_out, W_out).
    fn maxpool_backward(
        &self,
        g: &PoolGeom,
        dy: &D::Buffer<f32>,
        argmax: &D::Buffer<u32>,
        dx: &mut D::Buffer<f32>,
    ) -> Result<()> {
        let dev = &self.dev;
        check(g)?;
        let (input, output) = (g.input().len(), g.output().len());
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(need(dev, dy, output, "max-pool dy")?)
            .push(need(dev, argmax, output, "max-pool argmax")?)
            .push(need(dev, dx, input, "max-pool dx")?);
        // dy and argmax read once (a window's inputs share them through L1), dx read and written.
        dev.note_cost(BACKWARD, || Cost::memory(8 * output + 8 * input));
        // SAFETY: maxpool_backward(PoolGeom, const float* dy, const unsigned* argmax, float* dx), pushed in
        // that order; lengths checked above. The kernel only compares argmax values (never indexes with
        // them, index bits only), so any argmax content is memory-safe.
        unsafe { dev.launch(BACKWARD, &grid_stride(input), &mut args) }
    }

    /// WRITES dx (N, C, H_in, W_in) = [x > 0] · (dy (N, C, H_out, W_out) routed to its argmax), x the
    /// pool's input, its sign read from the argmax's `ARGMAX_POSITIVE` bit, and db (C) = Σ over (n, h, w) of dx, the bias gradient of the convolution that
    /// produced x (see `Backend::maxpool_relu_backward`). The per-chunk partial sums of db live in
    /// `scratch`; the convolution's own second stage ([`conv2d::sum_partials`]) adds them.
    fn maxpool_relu_backward(
        &self,
        g: &PoolGeom,
        io: MaxPoolReluBackwardIo<'_, Self::Buf, Self::Idx>,
    ) -> Result<()> {
        let MaxPoolReluBackwardIo { dy, argmax, dx, db } = io;
        let dev = &self.dev;
        let scratch = &self.gemm_scratch;
        check(g)?;
        let (input, output) = (g.input().len(), g.output().len());
        let channels = g.c as usize;
        need(dev, db, channels, "max-pool db")?;
        let (splits, chunk) = conv2d::channel_chunks(channels, input / channels);
        scratch.with(dev, splits * channels, |partials| {
            let mut args = KernelArgs::new();
            args.push(*g)
                .push(need(dev, dy, output, "max-pool dy")?)
                .push(need(dev, argmax, output, "max-pool argmax")?)
                .push(need(dev, dx, input, "max-pool dx")?)
                .push(dev.device_ptr(partials))
                .push(chunk as i32);
            let cfg = LaunchConfig {
                grid: (channels as u32, splits as u32, 1),
                ..LaunchConfig::linear(1, conv2d::REDUCE_THREADS as u32)
            };
            // dy and argmax read once (a window's inputs share them through L1), dx written, one
            // partial per block.
            dev.note_cost(RELU_BACKWARD, || {
                Cost::memory(8 * output + 4 * input + 4 * splits * channels)
            });
            // SAFETY: maxpool_relu_backward(PoolGeom, const float* dy, const unsigned* argmax, float* dx,
            // float* partials, int chunk), pushed in that order; dy, argmax and dx lengths checked above. Block (c, z) touches channel c < C at positions [z·chunk, min(N·H_in·
            // W_in, (z+1)·chunk)) only, and writes partials[z·C + c] with z < splits: inside the scratch,
            // sized for splits·C values. As in maxpool_backward, argmax values are only compared, never
            // used as indices (their top bit only read as the ReLU mask).
            unsafe { dev.launch(RELU_BACKWARD, &cfg, &mut args)? };
            conv2d::sum_partials(dev, channels, splits, partials, db)
        })
    }
}
