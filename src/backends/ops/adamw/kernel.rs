//! Wrapper of kernels/adamw.cu: one AdamW step over a parameter tensor.

use super::{AdamWIo, AdamWOp, AdamWStep, KERNEL_MODULE};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, KernelArgs};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, grid_stride, need};
use crate::{shape_err, Result};

pub const UPDATE: Kernel = Kernel::new(KERNEL_MODULE, "adamw_update");

impl<D: Device> AdamWOp for KernelBackend<D> {
    /// Update w, m and v in place from g (all of w's length) with the host values of `step`.
    fn adamw_update(&self, step: &AdamWStep, io: AdamWIo<'_, Self::Buf>) -> Result<()> {
        let AdamWIo { w, g, m, v } = io;
        let dev = &self.dev;
        let len = dev.buffer_len(w);
        check_index_range("AdamW parameters", len)?;
        // Scheduled lr and bias corrections, computed once, here, in f64.
        let params = step.params(len)?;
        let pointers = [
            need(dev, w, len, "AdamW w")?,
            need(dev, g, len, "AdamW g")?,
            need(dev, m, len, "AdamW m")?,
            need(dev, v, len, "AdamW v")?,
        ];
        if pointers.iter().any(|p| p.0 % 16 != 0) {
            return Err(shape_err!(
                "AdamW buffers must be 16-byte aligned for the kernel's float4 accesses"
            ));
        }
        let mut args = KernelArgs::new();
        args.push(params);
        for p in pointers {
            args.push(p);
        }
        // w, g, m, v read; w, m, v written.
        dev.note_cost(UPDATE, || Cost::memory(28 * len));
        // SAFETY: adamw_update(AdamWParams, float* w, const float* g, float* m, float* v), pushed in that
        // order; each buffer holds at least params.len values and is 16-byte aligned (checked above), so
        // the kernel's float4 body (len/4 vectors) and scalar tail stay inside them.
        unsafe { dev.launch(UPDATE, &grid_stride(len.div_ceil(4)), &mut args) }
    }
}
