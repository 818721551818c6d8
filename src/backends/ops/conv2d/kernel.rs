//! Wrapper of `kernels/conv2d.cu`: kernel names, argument order and launch configuration of the
//! convolution, forward and backward, in one place. See the `.cu` header for each kernel's strategy.

use super::{Conv2dOp, ConvBackwardIo, ConvForwardIo, ConvGeom, KERNEL_MODULE};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, KernelArgs, LaunchConfig};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::gather_tables::{GatherKey, GatherTables};
use crate::backends::kernels::gemm::{self, check_int_range, Scratch, SplitK, Tile, Variants};
use crate::backends::kernels::need;
use crate::backends::InputGrad;
use crate::{shape_err, Result};

const FORWARD: Variants = Variants {
    rows64: Kernel::new(KERNEL_MODULE, "conv2d_forward"),
    rows32: Kernel::new(KERNEL_MODULE, "conv2d_forward_m32"),
};
const BACKWARD_DATA: Variants = Variants {
    rows64: Kernel::new(KERNEL_MODULE, "conv2d_backward_data"),
    rows32: Kernel::new(KERNEL_MODULE, "conv2d_backward_data_m32"),
};
const BACKWARD_DATA_STRIDED: Variants = Variants {
    rows64: Kernel::new(KERNEL_MODULE, "conv2d_backward_data_strided"),
    rows32: Kernel::new(KERNEL_MODULE, "conv2d_backward_data_strided_m32"),
};
const BACKWARD_FILTER: Variants = Variants {
    rows64: Kernel::new(KERNEL_MODULE, "conv2d_backward_filter"),
    rows32: Kernel::new(KERNEL_MODULE, "conv2d_backward_filter_m32"),
};
const GATHER_TABLE: Kernel = Kernel::new(KERNEL_MODULE, "conv2d_gather_table");
const BIAS_GRAD_PARTIAL: Kernel = Kernel::new(KERNEL_MODULE, "conv2d_bias_grad_partial");
const SUM_PARTIALS: Kernel = Kernel::new(KERNEL_MODULE, "conv2d_sum_partials");

/// The backward-filter kernel's pixel ring after the GEMM tiles: (`RING_SLOTS` + 1) × BK int4s (three
/// slots of entries and the producers' states).
const PIXEL_RING_BYTES: u32 = (4 * gemm::BK * 16) as u32;
/// Threads of the per-channel reductions, `conv2d_bias_grad_partial` and `maxpool_relu_backward`
/// (`REDUCE_THREADS` of kernels/channel_sum.cuh).
pub(in crate::backends) const REDUCE_THREADS: usize = 256;
/// Blocks a per-channel reduction aims for: enough 256-thread blocks to keep every SM's memory
/// pipeline busy on an H100 (about 8 per SM).
const BIAS_TARGET_BLOCKS: usize = 1024;
/// Fewest (n, h, w) positions per reduction block.
const BIAS_MIN_CHUNK: usize = 16 * REDUCE_THREADS;

/// What the launches' soundness rests on: a valid geometry ([`ConvGeom::validate`]), then the sizes
/// every kernel of this family indexes with 32-bit ints: the tensors and the GEMM extents, plus a
/// tile of slack for the last block's overshoot.
fn check_geometry(g: &ConvGeom) -> Result<()> {
    g.validate()?;
    let slack = gemm::BN * gemm::BK;
    let (input, output) = (g.input(), g.output());
    check_int_range(
        "conv2d",
        &[
            input.len() + slack,
            output.len() + slack,
            g.weight_len() + slack,
        ],
    )
}

/// Entries of the K table of a GEMM over `k`: whole BK steps.
fn table_len(k: usize) -> usize {
    k.next_multiple_of(gemm::BK)
}

/// Scratch floats holding that table (an int4 per entry).
fn table_floats(k: usize) -> usize {
    4 * table_len(k)
}

/// Fill `table` (a fresh allocation, so 256-byte aligned) with the K table of the forward (`backward_data` false) or backward-data gather of `g`.
fn gather_table<D: Device>(
    dev: &D,
    g: &ConvGeom,
    backward_data: bool,
    k: usize,
    table: &mut D::Buffer<f32>,
) -> Result<()> {
    let len = table_len(k);
    // An int4 is 16 bytes: the scratch must be 16-byte aligned (device allocations are) and long enough.
    need(dev, table, 4 * len, "conv2d gather table")?;
    if dev.device_ptr(table).0 % 16 != 0 {
        return Err(shape_err!(
            "conv2d gather table: scratch is not 16-byte aligned"
        ));
    }
    let cfg = gemm::reduce_launch(len);
    let mut args = KernelArgs::new();
    args.push(*g)
        .push(backward_data as i32)
        .push(len as i32)
        .push(dev.device_ptr(table));
    dev.note_cost(GATHER_TABLE, || Cost::memory(16 * len));
    // SAFETY: conv2d_gather_table(ConvGeom, int backward_data, int len, int4* table): the table buffer
    // holds 4·len floats = len int4s and is 16-byte aligned (both checked just above); the kernel writes
    // table[0 .. len) only.
    unsafe { dev.launch(GATHER_TABLE, &cfg, &mut args) }
}

/// What a K table depends on (see `conv2d_gather_table`): the direction, then the gathered tensor's
/// channels and plane (C_in, H_in, W_in forward; C_out, H_out, W_out backward-data) and the kernel
/// window. Not the batch: a short last batch reuses its full batch's table.
fn table_key(g: &ConvGeom, backward_data: bool) -> GatherKey {
    let (channels, h, w) = if backward_data {
        (g.c_out, g.h_out, g.w_out)
    } else {
        (g.c_in, g.h_in, g.w_in)
    };
    GatherKey {
        backward_data,
        channels,
        h,
        w,
        k_h: g.k_h,
        k_w: g.k_w,
    }
}

/// Run `f` with the K table of the forward (`backward_data` false) or backward-data gather of `g`
/// over `k` entries, building it first if the cache has none for its key.
fn with_table<D: Device, R>(
    tables: &GatherTables<D>,
    dev: &D,
    g: &ConvGeom,
    backward_data: bool,
    k: usize,
    f: impl FnOnce(&D::Buffer<f32>) -> Result<R>,
) -> Result<R> {
    tables.with(
        table_key(g, backward_data),
        || {
            let mut table = dev.alloc_zeroed::<f32>(table_floats(k))?;
            gather_table(dev, g, backward_data, k, &mut table)?;
            Ok(table)
        },
        f,
    )
}

/// How a per-channel sum over `positions` (n, h, w) values of each of `channels` channels is split
/// (kernels/channel_sum.cuh): `splits` blocks per channel of `chunk` positions, a multiple of
/// [`REDUCE_THREADS`].
pub(in crate::backends) fn channel_chunks(channels: usize, positions: usize) -> (usize, usize) {
    let wanted = BIAS_TARGET_BLOCKS.div_ceil(channels);
    let splits = wanted.min(positions.div_ceil(BIAS_MIN_CHUNK)).max(1);
    let chunk = positions.div_ceil(splits).next_multiple_of(REDUCE_THREADS);
    (positions.div_ceil(chunk), chunk)
}

/// Scratch values the backward pass of `g` (with its batch) asks for: the bias gradient's partial
/// sums (`with_bias`: not when a fused pool wrote db) and the weight gradient's split-K partials.
/// The scratch is one buffer grown to the largest request, so a step needs the maximum of these.
pub fn backward_scratch_len(g: &ConvGeom, with_bias: bool) -> usize {
    let c_out = g.c_out as usize;
    let (splits, _) = bias_plan(g);
    let bias = if with_bias { splits * c_out } else { 0 };
    let cols = g.weight_len() / c_out;
    let filter = SplitK::plan(c_out, cols, g.output().len() / c_out).scratch_len(c_out, cols);
    bias.max(filter)
}

/// The K table of `g`'s forward (`backward_data` false) or backward-data gather: its identity (two
/// geometries with the same key share one table) and its size in bytes.
pub fn gather_table_bytes(g: &ConvGeom, backward_data: bool) -> ([i32; 6], usize) {
    let key = table_key(g, backward_data);
    let k = if backward_data {
        g.weight_len() / g.c_in as usize
    } else {
        g.weight_len() / g.c_out as usize
    };
    (
        [
            key.backward_data as i32,
            key.channels,
            key.h,
            key.w,
            key.k_h,
            key.k_w,
        ],
        4 * table_floats(k),
    )
}

/// How the bias-gradient reduction of `g` is split.
fn bias_plan(g: &ConvGeom) -> (usize, usize) {
    channel_chunks(g.c_out as usize, g.output().len() / g.c_out as usize)
}

/// db (C_out) = sum of dy (N, C_out, H_out, W_out) over (n, h, w), WRITTEN; with `g.relu` dy is first
/// zeroed in place where y <= 0. Two stages through `scratch`: per-chunk partial sums, then their
/// ordered sum.
pub fn bias_grad<D: Device>(
    dev: &D,
    scratch: &Scratch<D>,
    g: &ConvGeom,
    y: &D::Buffer<f32>,
    dy: &mut D::Buffer<f32>,
    db: &mut D::Buffer<f32>,
) -> Result<()> {
    check_geometry(g)?;
    let output = g.output().len();
    let c_out = g.c_out as usize;
    need(dev, y, output, "conv2d backward: y")?;
    need(dev, dy, output, "conv2d backward: dy")?;
    need(dev, db, c_out, "conv2d backward: db")?;
    let (splits, chunk) = bias_plan(g);
    scratch.with(dev, splits * c_out, |partials| {
        let cfg = LaunchConfig {
            grid: (c_out as u32, splits as u32, 1),
            ..LaunchConfig::linear(1, REDUCE_THREADS as u32)
        };
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(dev.device_ptr(y))
            .push(dev.device_ptr(dy))
            .push(dev.device_ptr(partials))
            .push(chunk as i32);
        dev.note_cost(BIAS_GRAD_PARTIAL, || {
            Cost::memory(4 * (output * if g.relu != 0 { 3 } else { 1 } + splits * c_out))
        });
        // SAFETY: conv2d_bias_grad_partial(ConvGeom, const float* y, float* dy, float* partials, int
        // chunk). y and dy hold the output of `g` (checked above); block (c, z) touches channel c < C_out
        // at positions [z·chunk, min(total, (z+1)·chunk)) only, and writes partials[z·C_out + c] with
        // z < splits: inside the scratch, sized for splits·C_out values.
        unsafe { dev.launch(BIAS_GRAD_PARTIAL, &cfg, &mut args)? };
        sum_partials(dev, c_out, splits, partials, db)
    })
}

/// dx (N, C_in, H_in, W_in) += (with `accumulate`; else =, without reading dx) the gradient of the
/// convolution with respect to its input, from the (already ReLU-masked) dy (N, C_out, H_out, W_out)
/// and w (C_out, C_in, K_h, K_w). The gather's K table comes from `tables`.
pub fn backward_data<D: Device>(
    dev: &D,
    tables: &GatherTables<D>,
    g: &ConvGeom,
    w: &D::Buffer<f32>,
    dy: &D::Buffer<f32>,
    dx: &mut D::Buffer<f32>,
    accumulate: bool,
) -> Result<()> {
    check_geometry(g)?;
    let input = g.input().len();
    need(dev, w, g.weight_len(), "conv2d backward: w")?;
    need(dev, dy, g.output().len(), "conv2d backward: dy")?;
    need(dev, dx, input, "conv2d backward: dx")?;
    let cfg = gemm::launch(g.c_in as usize, input / g.c_in as usize, 1)?;
    let k = g.weight_len() / g.c_in as usize;
    with_table(tables, dev, g, true, k, |table| {
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(dev.device_ptr(w))
            .push(dev.device_ptr(dy))
            .push(dev.device_ptr(table))
            .push(dev.device_ptr(dx))
            .push(accumulate as i32);
        let kernel = Tile::for_rows(g.c_in as usize).kernel(if g.stride == 1 {
            BACKWARD_DATA
        } else {
            BACKWARD_DATA_STRIDED
        });
        dev.note_cost(kernel, || {
            // dx written, and read too when accumulated into.
            let dx_passes = if accumulate { 2 } else { 1 };
            let bytes =
                4 * (g.weight_len() + g.output().len() + dx_passes * input) + 16 * table_len(k);
            let c_in = g.c_in as usize;
            gemm::cost(
                &cfg,
                (c_in, input / c_in, k),
                SplitK::with_splits(k, 1),
                bytes,
            )
        });
        // SAFETY: conv2d_backward_data and conv2d_backward_data_strided both take (ConvGeom, const
        // float* w, const float* dy, const int4* table, float* dx, int accumulate), pushed in that
        // order with those types (the flag as an i32). w, dy and dx hold the filter, output and
        // input of `g` (checked above); the table holds one int4 per k = (co, kh, kw) for the
        // kernel's k_steps·BK reads, filled by conv2d_gather_table for this geometry's key (all it
        // reads of `g`); all accesses are guarded by the geometry.
        unsafe { dev.launch(kernel, &cfg, &mut args) }
    })
}

/// dw (C_out, C_in, K_h, K_w) = the gradient of the convolution with respect to its filter, WRITTEN,
/// from x (N, C_in, H_in, W_in) and the (already ReLU-masked) dy (N, C_out, H_out, W_out). The sum over
/// N·H_out·W_out pixels is split into chunks when the filter has few tiles; their partial sums go
/// through `scratch` and are added in a fixed order.
pub fn backward_filter<D: Device>(
    dev: &D,
    scratch: &Scratch<D>,
    g: &ConvGeom,
    x: &D::Buffer<f32>,
    dy: &D::Buffer<f32>,
    dw: &mut D::Buffer<f32>,
) -> Result<()> {
    check_geometry(g)?;
    let output = g.output().len();
    need(dev, x, g.input().len(), "conv2d backward: x")?;
    need(dev, dy, output, "conv2d backward: dy")?;
    need(dev, dw, g.weight_len(), "conv2d backward: dw")?;
    let c_out = g.c_out as usize;
    let cols = g.weight_len() / c_out;
    let split = SplitK::plan(c_out, cols, output / c_out);
    let mut cfg = gemm::launch(c_out, cols, split.splits)?;
    cfg.dynamic_shared_bytes += PIXEL_RING_BYTES;
    let kernel = Tile::for_rows(c_out).kernel(BACKWARD_FILTER);
    scratch.with(dev, split.scratch_len(c_out, cols), |partials| {
        let direct = split.splits == 1;
        let out_ptr = if direct {
            dev.device_ptr(dw)
        } else {
            dev.device_ptr(partials)
        };
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(dev.device_ptr(x))
            .push(dev.device_ptr(dy))
            .push(out_ptr)
            .push(split.chunk as i32);
        dev.note_cost(kernel, || {
            let out = split.splits * c_out * cols;
            let bytes = 4 * (g.input().len() + output + out);
            gemm::cost(&cfg, (c_out, cols, output / c_out), split, bytes)
        });
        // SAFETY: conv2d_backward_filter(ConvGeom, const float* x, const float* dy, float* partials, int
        // k_chunk), with the GEMM tiles plus the pixel ring as dynamic shared memory. x and dy hold the
        // input and output of `g` (checked above); block z writes the
        // C_out × cols slab z of `partials`, z < splits: with one split that is dw (weight_len values,
        // checked above), else the scratch, sized for splits·C_out·cols values. k_chunk·splits covers
        // the pixel count.
        unsafe { dev.launch(kernel, &cfg, &mut args)? };
        if !direct {
            sum_partials(dev, c_out * cols, split.splits, partials, dw)?;
        }
        Ok(())
    })
}

/// out[i] = sum over z of partials[z·len + i], for i < len.
pub(in crate::backends) fn sum_partials<D: Device>(
    dev: &D,
    len: usize,
    splits: usize,
    partials: &D::Buffer<f32>,
    out: &mut D::Buffer<f32>,
) -> Result<()> {
    need(dev, partials, len * splits, "conv2d partial sums")?;
    need(dev, out, len, "conv2d reduced output")?;
    let cfg = gemm::reduce_launch(len);
    let mut args = KernelArgs::new();
    args.push(len as i32)
        .push(splits as i32)
        .push(dev.device_ptr(partials))
        .push(dev.device_ptr(out));
    dev.note_cost(SUM_PARTIALS, || Cost::memory(4 * (splits + 1) * len));
    // SAFETY: conv2d_sum_partials(int len, int splits, const float* partials, float* out); partials holds
    // splits·len values and out len values (checked just above); the kernel touches nothing else.
    unsafe { dev.launch(SUM_PARTIALS, &cfg, &mut args) }
}

impl<D: Device> Conv2dOp for KernelBackend<D> {
    /// y (N, C_out, H_out, W_out) = \[ReLU\](conv(x (N, C_in, H_in, W_in), w (C_out, C_in, K_h, K_w)) + b (C_out)). Writes y.
    /// The gather's K table comes from `tables`.
    fn conv2d_forward(&self, g: &ConvGeom, io: ConvForwardIo<'_, Self::Buf>) -> Result<()> {
        let ConvForwardIo { x, w, b, y } = io;
        let dev = &self.dev;
        let tables = &self.gather_tables;
        check_geometry(g)?;
        need(dev, x, g.input().len(), "conv2d forward: x")?;
        need(dev, w, g.weight_len(), "conv2d forward: w")?;
        need(dev, b, g.c_out as usize, "conv2d forward: b")?;
        need(dev, y, g.output().len(), "conv2d forward: y")?;
        let c_out = g.c_out as usize;
        let pixels = g.output().len() / c_out;
        let cfg = gemm::launch(c_out, pixels, 1)?;
        let kernel = Tile::for_rows(c_out).kernel(FORWARD);
        let k = g.weight_len() / g.c_out as usize;
        with_table(tables, dev, g, false, k, |table| {
            let mut args = KernelArgs::new();
            args.push(*g)
                .push(dev.device_ptr(x))
                .push(dev.device_ptr(w))
                .push(dev.device_ptr(b))
                .push(dev.device_ptr(table))
                .push(dev.device_ptr(y));
            dev.note_cost(kernel, || {
                let bytes = 4 * (g.input().len() + g.weight_len() + g.output().len() + c_out)
                    + 16 * table_len(k);
                gemm::cost(&cfg, (c_out, pixels, k), SplitK::with_splits(k, 1), bytes)
            });
            // SAFETY: conv2d_forward(ConvGeom, const float* x, const float* w, const float* b, const int4*
            // table, float* y) — the same six parameters in this order. The buffers were checked above to
            // hold the input, filter, bias and output of `g`; the table holds one int4 per k for the
            // kernel's k_steps·BK reads, filled by conv2d_gather_table for this geometry's key (all it
            // reads of `g`). Every load and store is guarded by the geometry,
            // whatever the grid's overshoot past C_out or the pixel count.
            unsafe { dev.launch(kernel, &cfg, &mut args) }
        })
    }

    /// Backward of [`forward`]. With `g.relu`, first zeroes dy in place where y <= 0. ACCUMULATES or
    /// WRITES dx (N, C_in, H_in, W_in), as [`InputGrad`] says; WRITES dw (C_out, C_in, K_h, K_w), and db (C_out) when given
    /// (`None`: a fused pool backward already wrote it, and masked dy, so `g.relu` must be off). Partial
    /// sums live in `scratch`, the backward-data gather's K table in `tables`. Runs [`bias_grad`] (which masks dy, so it goes first), [`backward_data`]
    /// and [`backward_filter`].
    fn conv2d_backward(&self, g: &ConvGeom, io: ConvBackwardIo<'_, Self::Buf>) -> Result<()> {
        let dev = &self.dev;
        let scratch = &self.gemm_scratch;
        let tables = &self.gather_tables;
        match io.db {
            Some(db) => bias_grad(dev, scratch, g, io.y, io.dy, db)?,
            // The ReLU mask is applied by the bias-gradient pass: without it, nothing would mask dy.
            None if g.relu != 0 => {
                return Err(shape_err!(
            "conv2d backward of {g:?} without db: dy must already be masked, so ReLU must be off"
        ))
            }
            None => {}
        }
        match io.dx {
            InputGrad::None => {}
            InputGrad::Add(dx) => backward_data(dev, tables, g, io.w, io.dy, dx, true)?,
            InputGrad::Write(dx) => backward_data(dev, tables, g, io.w, io.dy, dx, false)?,
        }
        backward_filter(dev, scratch, g, io.x, io.dy, io.dw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::ops::conv2d::Padding;
    use crate::tensor::Shape;

    #[test]
    fn geometry_check_refuses_what_32_bit_kernels_cannot_index() {
        // 1024 × 1024 × 64 × 64 weights are exactly 2³²: an i32 product wraps to 0, which once let
        // a 1-value filter buffer pass the length check.
        let big = ConvGeom::new(
            Shape::new(1, 1024, 64, 64),
            1024,
            (64, 64),
            1,
            Padding::Valid,
            false,
        )
        .unwrap();
        assert_eq!(big.weight_len(), 1 << 32);
        let err = check_geometry(&big).unwrap_err().to_string();
        assert!(err.contains("32-bit"), "{err}");

        let ok = ConvGeom::new(Shape::new(2, 3, 9, 8), 4, (3, 3), 2, Padding::Same, true).unwrap();
        assert!(check_geometry(&ok).is_ok());
        for broken in [
            ConvGeom { stride: 0, ..ok },
            ConvGeom { c_in: -1, ..ok },
            ConvGeom { pad_top: -1, ..ok },
            ConvGeom { pad_left: 3, ..ok },
        ] {
            assert!(check_geometry(&broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn bias_plan_covers_every_position() {
        for &(n, c, h) in &[(50usize, 64usize, 256usize), (1, 3, 5), (3, 70, 17)] {
            let g =
                ConvGeom::new(Shape::new(n, 2, h, h), c, (3, 3), 1, Padding::Same, true).unwrap();
            let (splits, chunk) = bias_plan(&g);
            let total = n * h * h;
            assert!(splits * chunk >= total && (splits - 1) * chunk < total);
            assert!(splits * c <= 2 * BIAS_TARGET_BLOCKS);
        }
    }
}
