//! Wrapper of `kernels/dense.cu`: kernel names, argument order and launch configuration of the fully
//! connected layer, forward and backward, in one place. See the `.cu` header for each kernel's strategy.

use super::{DenseBackwardIo, DenseForwardIo, DenseGeom, DenseOp, KERNEL_MODULE};
use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, KernelArgs, LaunchConfig};
use crate::backends::kernel_backend::KernelBackend;
use crate::backends::kernels::gemm::{self, check_int_range, Scratch, SplitK, Tile, Variants};
use crate::backends::kernels::need;
use crate::Result;

const FORWARD: Variants = Variants {
    rows64: Kernel::new(KERNEL_MODULE, "dense_forward"),
    rows32: Kernel::new(KERNEL_MODULE, "dense_forward_m32"),
};
const FORWARD_REDUCE: Kernel = Kernel::new(KERNEL_MODULE, "dense_forward_reduce");
const BACKWARD_DATA: Variants = Variants {
    rows64: Kernel::new(KERNEL_MODULE, "dense_backward_data"),
    rows32: Kernel::new(KERNEL_MODULE, "dense_backward_data_m32"),
};
const BACKWARD_FILTER: Variants = Variants {
    rows64: Kernel::new(KERNEL_MODULE, "dense_backward_filter"),
    rows32: Kernel::new(KERNEL_MODULE, "dense_backward_filter_m32"),
};
const REDUCE_PARTIALS: Kernel = Kernel::new(KERNEL_MODULE, "dense_reduce_partials");
const BIAS_GRAD: Kernel = Kernel::new(KERNEL_MODULE, "dense_bias_grad");
/// Threads of `dense_bias_grad` (its `BIAS_THREADS`).
const BIAS_THREADS: u32 = 128;

fn sizes(g: &DenseGeom) -> (usize, usize, usize) {
    (
        g.n as usize,
        g.in_features as usize,
        g.out_features as usize,
    )
}

/// A valid geometry ([`DenseGeom::validate`]; a negative size would wrap in `sizes`), and every
/// extent the kernels index with 32-bit ints in range, with a tile of slack for the last block.
fn check_geometry(g: &DenseGeom) -> Result<()> {
    g.validate()?;
    let (n, inp, out) = sizes(g);
    let slack = gemm::BN * gemm::BK;
    check_int_range(
        "dense",
        &[n * inp + slack, n * out + slack, inp * out + slack],
    )
}

/// db (OUT) = column sums of dy (N, OUT), WRITTEN; with `g.relu`, dy is first zeroed in place where
/// y <= 0.
pub fn bias_grad<D: Device>(
    dev: &D,
    g: &DenseGeom,
    y: &D::Buffer<f32>,
    dy: &mut D::Buffer<f32>,
    db: &mut D::Buffer<f32>,
) -> Result<()> {
    check_geometry(g)?;
    let (n, _, out) = sizes(g);
    need(dev, y, n * out, "dense backward: y")?;
    need(dev, dy, n * out, "dense backward: dy")?;
    need(dev, db, out, "dense backward: db")?;
    let cfg = LaunchConfig::cover(out, BIAS_THREADS);
    let mut args = KernelArgs::new();
    args.push(*g)
        .push(dev.device_ptr(y))
        .push(dev.device_ptr(dy))
        .push(dev.device_ptr(db));
    dev.note_cost(BIAS_GRAD, || {
        Cost::memory(4 * (n * out * if g.relu != 0 { 3 } else { 1 } + out))
    });
    // SAFETY: dense_bias_grad(DenseGeom, const float* y, float* dy, float* db): y and dy hold N·OUT
    // values and db OUT (checked above); thread o < OUT touches column o only.
    unsafe { dev.launch(BIAS_GRAD, &cfg, &mut args) }
}

/// dx (N, IN) += dy (N, OUT) · w (OUT, IN), dy already ReLU-masked (the NN GEMM).
pub fn backward_data<D: Device>(
    dev: &D,
    scratch: &Scratch<D>,
    g: &DenseGeom,
    dy: &D::Buffer<f32>,
    w: &D::Buffer<f32>,
    dx: &mut D::Buffer<f32>,
) -> Result<()> {
    check_geometry(g)?;
    let (n, inp, out) = sizes(g);
    need(dev, dy, n * out, "dense backward: dy")?;
    need(dev, w, inp * out, "dense backward: w")?;
    need(dev, dx, n * inp, "dense backward: dx")?;
    let split = SplitK::plan(n, inp, out);
    let cfg = gemm::launch(n, inp, split.splits)?;
    scratch.with(dev, split.scratch_len(n, inp), |partials| {
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(dev.device_ptr(dy))
            .push(dev.device_ptr(w))
            .push(dev.device_ptr(dx))
            .push(dev.device_ptr(partials))
            .push(split.chunk as i32);
        let kernel = Tile::for_rows(n).kernel(BACKWARD_DATA);
        dev.note_cost(kernel, || {
            // dx read and written when accumulated directly, else every split's partials written
            let c = if split.splits > 1 { split.splits } else { 2 };
            let bytes = 4 * (n * out + inp * out + c * n * inp);
            gemm::cost(&cfg, (n, inp, out), split, bytes)
        });
        // SAFETY: dense_backward_data(DenseGeom, const float* dy, const float* w, float* dx, float*
        // partials, int k_chunk): dy N·OUT, w OUT·IN, dx N·IN values (checked above); with several
        // splits block z writes slab z of partials, and the scratch holds splits·N·IN values.
        unsafe { dev.launch(kernel, &cfg, &mut args)? };
        if split.splits > 1 {
            reduce_partials(dev, n, inp, split.splits, true, partials, dx)?;
        }
        Ok(())
    })
}

/// dw (OUT, IN) = dyᵀ (OUT, N) · x (N, IN), WRITTEN, dy already ReLU-masked (the TN GEMM).
pub fn backward_filter<D: Device>(
    dev: &D,
    scratch: &Scratch<D>,
    g: &DenseGeom,
    dy: &D::Buffer<f32>,
    x: &D::Buffer<f32>,
    dw: &mut D::Buffer<f32>,
) -> Result<()> {
    check_geometry(g)?;
    let (n, inp, out) = sizes(g);
    need(dev, dy, n * out, "dense backward: dy")?;
    need(dev, x, n * inp, "dense backward: x")?;
    need(dev, dw, inp * out, "dense backward: dw")?;
    let split = SplitK::plan(out, inp, n);
    let cfg = gemm::launch(out, inp, split.splits)?;
    scratch.with(dev, split.scratch_len(out, inp), |partials| {
        let mut args = KernelArgs::new();
        args.push(*g)
            .push(dev.device_ptr(dy))
            .push(dev.device_ptr(x))
            .push(dev.device_ptr(dw))
            .push(dev.device_ptr(partials))
            .push(split.chunk as i32);
        let kernel = Tile::for_rows(out).kernel(BACKWARD_FILTER);
        dev.note_cost(kernel, || {
            let bytes = 4 * (n * out + n * inp + split.splits * inp * out);
            gemm::cost(&cfg, (out, inp, n), split, bytes)
        });
        // SAFETY: dense_backward_filter(DenseGeom, const float* dy, const float* x, float* dw, float*
        // partials, int k_chunk): dy N·OUT, x N·IN, dw OUT·IN values (checked above); with several
        // splits block z writes slab z of partials, and the scratch holds splits·OUT·IN values.
        unsafe { dev.launch(kernel, &cfg, &mut args)? };
        if split.splits > 1 {
            reduce_partials(dev, out, inp, split.splits, false, partials, dw)?;
        }
        Ok(())
    })
}

/// out (rows, cols) (+)= sum over z of partials[z] (rows, cols).
fn reduce_partials<D: Device>(
    dev: &D,
    rows: usize,
    cols: usize,
    splits: usize,
    accumulate: bool,
    partials: &D::Buffer<f32>,
    out: &mut D::Buffer<f32>,
) -> Result<()> {
    need(dev, partials, splits * rows * cols, "dense partial sums")?;
    need(dev, out, rows * cols, "dense reduced output")?;
    let cfg = gemm::reduce_launch(rows * cols);
    let mut args = KernelArgs::new();
    args.push(rows as i32)
        .push(cols as i32)
        .push(splits as i32)
        .push(accumulate as i32)
        .push(dev.device_ptr(partials))
        .push(dev.device_ptr(out));
    dev.note_cost(REDUCE_PARTIALS, || {
        Cost::memory(4 * (splits + 1 + accumulate as usize) * rows * cols)
    });
    // SAFETY: dense_reduce_partials(int rows, int cols, int splits, int accumulate, const float*
    // partials, float* out): partials holds splits·rows·cols values and out rows·cols (checked just
    // above); nothing else is touched.
    unsafe { dev.launch(REDUCE_PARTIALS, &cfg, &mut args) }
}

/// Scratch values the largest split-K GEMM of `g`'s forward and backward passes asks for (the
/// input gradient's only `with_dx`).
pub fn scratch_len(g: &DenseGeom, with_dx: bool) -> usize {
    let (n, inp, out) = sizes(g);
    let forward = SplitK::plan(n, out, inp).scratch_len(n, out);
    let dx = if with_dx {
        SplitK::plan(n, inp, out).scratch_len(n, inp)
    } else {
        0
    };
    let dw = SplitK::plan(out, inp, n).scratch_len(out, inp);
    forward.max(dx).max(dw)
}

impl<D: Device> DenseOp for KernelBackend<D> {
    /// y (N, OUT) = \[ReLU\](x (N, IN) · wᵀ + b), w (OUT, IN), b (OUT). Writes y. Split-K partial sums live
    /// in `scratch`.
    fn dense_forward(&self, g: &DenseGeom, io: DenseForwardIo<'_, Self::Buf>) -> Result<()> {
        let DenseForwardIo { x, w, b, y } = io;
        let dev = &self.dev;
        let scratch = &self.gemm_scratch;
        check_geometry(g)?;
        let (n, inp, out) = sizes(g);
        need(dev, x, n * inp, "dense forward: x")?;
        need(dev, w, inp * out, "dense forward: w")?;
        need(dev, b, out, "dense forward: b")?;
        need(dev, y, n * out, "dense forward: y")?;
        let split = SplitK::plan(n, out, inp);
        let cfg = gemm::launch(n, out, split.splits)?;
        scratch.with(dev, split.scratch_len(n, out), |partials| {
            let mut args = KernelArgs::new();
            args.push(*g)
                .push(dev.device_ptr(x))
                .push(dev.device_ptr(w))
                .push(dev.device_ptr(b))
                .push(dev.device_ptr(y))
                .push(dev.device_ptr(partials))
                .push(split.chunk as i32);
            let kernel = Tile::for_rows(n).kernel(FORWARD);
            dev.note_cost(kernel, || {
                let bytes = 4 * (n * inp + inp * out + split.splits * n * out + out);
                gemm::cost(&cfg, (n, out, inp), split, bytes)
            });
            // SAFETY: dense_forward(DenseGeom, const float* x, const float* w, const float* b, float* y,
            // float* partials, int k_chunk) — seven parameters in this order. x, w, b, y hold N·IN, OUT·IN,
            // OUT and N·OUT values (checked above); with gridDim.z > 1 block z writes slab z of partials,
            // z < splits, and the scratch holds splits·N·OUT values; loads stop at IN.
            unsafe { dev.launch(kernel, &cfg, &mut args)? };
            if split.splits > 1 {
                let cfg = gemm::reduce_launch(n * out);
                let mut args = KernelArgs::new();
                args.push(*g)
                    .push(split.splits as i32)
                    .push(dev.device_ptr(partials))
                    .push(dev.device_ptr(b))
                    .push(dev.device_ptr(y));
                dev.note_cost(FORWARD_REDUCE, || {
                    Cost::memory(4 * ((split.splits + 1) * n * out + out))
                });
                // SAFETY: dense_forward_reduce(DenseGeom, int splits, const float* partials, const float*
                // b, float* y): partials holds splits·N·OUT values written above, b OUT and y N·OUT values.
                unsafe { dev.launch(FORWARD_REDUCE, &cfg, &mut args)? };
            }
            Ok(())
        })
    }

    /// Backward of [`forward`]. With `g.relu`, first zeroes dy in place where y <= 0. ACCUMULATES dx
    /// (N, IN) when given; WRITES dw (OUT, IN) and db (OUT). Runs [`bias_grad`] (which masks dy, so it goes
    /// first), [`backward_data`] and [`backward_filter`].
    fn dense_backward(&self, g: &DenseGeom, io: DenseBackwardIo<'_, Self::Buf>) -> Result<()> {
        let dev = &self.dev;
        let scratch = &self.gemm_scratch;
        bias_grad(dev, g, io.y, io.dy, io.db)?;
        if let Some(dx) = io.dx {
            backward_data(dev, scratch, g, io.dy, io.w, dx)?;
        }
        backward_filter(dev, scratch, g, io.dy, io.x, io.dw)
    }
}
