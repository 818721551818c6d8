//! Wrapper of kernels/rmsprop.cu: one RMSProp step over a parameter tensor.

use super::{RmsPropIo, RmsPropOp, RmsPropStep, KERNEL_MODULE};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, KernelArgs};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::{check_index_range, grid_stride, need};
use crate::{shape_err, Result};

pub const UPDATE: Kernel = Kernel::new(KERNEL_MODULE, "rmsprop_update");

impl<D: Device> RmsPropOp for KernelBackend<D> {
    /// Update w and r in place from g (all of w's length).
    fn rmsprop_update(&self, step: &RmsPropStep, io: RmsPropIo<'_, Self::Buf>) -> Result<()> {
        let RmsPropIo { w, g, r } = io;
        let dev = &self.dev;
        let len = dev.buffer_len(w);
        check_index_range("RMSProp parameters", len)?;
        let params = step.params(len)?;
        let pointers = [
            need(dev, w, len, "RMSProp w")?,
            need(dev, g, len, "RMSProp g")?,
            need(dev, r, len, "RMSProp r")?,
        ];
        if pointers.iter().any(|p| p.0 % 16 != 0) {
            return Err(shape_err!(
                "RMSProp buffers must be 16-byte aligned for the kernel's float4 accesses"
            ));
        }
        let mut args = KernelArgs::new();
        args.push(params);
        for p in pointers {
            args.push(p);
        }
        // w, g, r read; w, r written.
        dev.note_cost(UPDATE, || Cost::memory(20 * len));
        // SAFETY: rmsprop_update(RmsPropParams, float* w, const float* g, float* r), pushed in that order;
        // each buffer holds at least params.len values and is 16-byte aligned (checked above), so the
        // kernel's float4 body (len/4 vectors) and scalar tail stay inside them.
        unsafe { dev.launch(UPDATE, &grid_stride(len.div_ceil(4)), &mut args) }
    }
}
