//! Microbenchmarks of the convolution and dense kernels (kernels/conv2d.cu, kernels/dense.cu) at the
//! paper's shapes: batch 50, 3 × 512 × 512 spectrograms, conv 32×4×4 → 64×8×8 → 64×10×10 → 64×10×10
//! (each followed by a 2×2 max-pool), FC 65536 → 716 → 716 → 7.
//!
//! For each layer: validate the CUDA kernels against the CPU reference on a reduced slice (stated in
//! the output), then time every kernel with CUDA events after warm-up (median of repeats, L2 flushed
//! before each run) and print GFLOP/s or GB/s with the fraction of the GPU's peak; the dense GEMMs and
//! a 4096³ SGEMM also as a ratio to cuBLAS. Without a CUDA GPU it says so and exits 0.
//!
//! Run: `cargo bench --bench kernels` (on a machine with an NVIDIA GPU and NVRTC; see README).

#[path = "../tests/common/check.rs"]
#[allow(dead_code)]
mod check;
#[path = "../tests/common/cublas.rs"]
#[allow(dead_code, unused_imports)]
mod cublas;
#[path = "../tests/common/timing.rs"]
#[allow(dead_code, unused_imports)]
mod timing;

use check::{compare, Tolerance};
use cublas::{Cublas, Transpose};
use rescnn::backends::cpu::CpuBackend;
use rescnn::backends::cuda::peak::{self, GpuPeak};
use rescnn::backends::cuda::{list_gpus, CudaBuffer, CudaDevice};
use rescnn::backends::device::Device;
use rescnn::backends::kernel_backend::KernelBackend;
use rescnn::backends::kernels::{gather_tables::GatherTables, gemm::Scratch};
use rescnn::backends::ops::conv2d::kernel as conv2d;
use rescnn::backends::ops::conv2d::TOLERANCE as CONV2D;
use rescnn::backends::ops::dense::kernel as dense;
use rescnn::backends::ops::dense::TOLERANCE as DENSE;
use rescnn::backends::{
    Backend, Conv2dOp, ConvBackwardIo, ConvForwardIo, ConvGeom, DenseBackwardIo, DenseForwardIo,
    DenseGeom, DenseOp, InputGrad, Padding,
};
use rescnn::model::RmsPropConfig;
use rescnn::model::{ArchSpec, InputShape, Network};
use rescnn::{Error, Result, Shape};
use timing::{GpuTimer, Timing, TimingConfig};

const BATCH: usize = 50;

/// The paper's four convolutions: (input, filters, kernel side, ReLU). Each is followed by a 2×2
/// max-pool, which halves the next input.
fn paper_convs() -> Vec<(Shape, usize, usize)> {
    vec![
        (Shape::new(BATCH, 3, 512, 512), 32, 4),
        (Shape::new(BATCH, 32, 256, 256), 64, 8),
        (Shape::new(BATCH, 64, 128, 128), 64, 10),
        (Shape::new(BATCH, 64, 64, 64), 64, 10),
    ]
}

/// The paper's dense layers: (in, out, ReLU).
const PAPER_DENSE: [(usize, usize, bool); 3] =
    [(64 * 32 * 32, 716, true), (716, 716, true), (716, 7, false)];

fn main() {
    // The cost model needs no GPU: the launch list of a real step, priced on paper.
    match rescnn::model::cost::paper_step_report() {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("cost model failed: {e}");
            std::process::exit(1);
        }
    }
    let gpus = match list_gpus() {
        Ok(gpus) if !gpus.is_empty() => gpus,
        Ok(_) => {
            println!("kernels benchmark: the NVIDIA driver reports no GPU; nothing to measure.");
            return;
        }
        Err(e) => {
            println!("kernels benchmark: no CUDA GPU here ({e}); nothing to measure.");
            return;
        }
    };
    println!("GPU 0: {}", gpus[0].name);
    if let Err(e) = run() {
        eprintln!("kernels benchmark failed: {e}");
        std::process::exit(1);
    }
}

/// Deterministic uniform values in [-1, 1) (SplitMix64).
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Weights with variance 1/fan_in (as He-initialised layers have), so that outputs are O(1) and the
/// tolerances' √K·ε rounding model holds.
fn weights(len: usize, fan_in: usize, seed: u64) -> Vec<f32> {
    let scale = (3.0 / fan_in as f32).sqrt();
    random(len, seed).into_iter().map(|v| v * scale).collect()
}

fn upload(dev: &CudaDevice, host: &[f32]) -> Result<CudaBuffer<f32>> {
    let mut buf = dev.alloc_zeroed(host.len())?;
    dev.copy_to_device(host, &mut buf)?;
    Ok(buf)
}

fn check(tol: &Tolerance, what: &str, got: &[f32], reference: &[f64]) -> Result<()> {
    compare(tol, what, got, reference).map_err(Error::Device)
}

struct Report<'a> {
    peak: &'a GpuPeak,
    /// Milliseconds of one training step spent in the conv and dense kernels measured so far.
    step_ms: f64,
}

impl Report<'_> {
    fn flops(&mut self, what: &str, t: &Timing, flops: f64, in_step: bool) {
        let gflops = t.gflops(flops);
        println!(
            "  {what:<44} {:>9.3} ms  {:>8.0} GFLOP/s  {:>5.1} % of FP32 peak",
            t.median_ms,
            gflops,
            100.0 * self.peak.fraction_of_fp32(gflops)
        );
        if in_step {
            self.step_ms += t.median_ms;
        }
    }
    fn bytes(&mut self, what: &str, t: &Timing, bytes: f64, in_step: bool) {
        let gbs = t.gbs(bytes);
        println!(
            "  {what:<44} {:>9.3} ms  {:>8.0} GB/s     {:>5.1} % of DRAM peak",
            t.median_ms,
            gbs,
            100.0 * self.peak.fraction_of_bandwidth(gbs)
        );
        if in_step {
            self.step_ms += t.median_ms;
        }
    }
}

fn run() -> Result<()> {
    let backend = KernelBackend::new(CudaDevice::new(0)?)?;
    let dev = backend.device();
    let peak = peak::peak_for(dev)?;
    println!(
        "peaks ({}{}): {:.1} TFLOP/s FP32, {:.0} GB/s",
        peak.model,
        if peak.from_table { "" } else { ", estimated" },
        peak.fp32_tflops,
        peak.bandwidth_gbs
    );
    let mut timer = GpuTimer::new(dev)?;
    let cfg = TimingConfig::default();
    let scratch = Scratch::new();
    // Built by each shape's first (warm-up) launch and reused, as in training.
    let tables = GatherTables::new();
    let mut report = Report {
        peak: &peak,
        step_ms: 0.0,
    };

    // ---- convolutions ---------------------------------------------------------------------------
    for (layer, (input, filters, k)) in paper_convs().into_iter().enumerate() {
        let g = ConvGeom::new(input, filters, (k, k), 1, Padding::Same, true)?;
        println!(
            "conv{} {input} * {filters}x{}x{k}x{k} SAME + ReLU -> {}",
            layer + 1,
            input.c,
            g.output()
        );
        // Validation slice: batch 2, at most 40 × 40, same channels and kernel.
        let side = input.h.min(40);
        let small = ConvGeom::new(
            Shape::new(2, input.c, side, side),
            filters,
            (k, k),
            1,
            Padding::Same,
            true,
        )?;
        validate_conv(&backend, &small)?;
        println!(
            "  validated against the CPU reference on batch 2, {side}x{side} (full size: too slow for the CPU)"
        );

        let x = upload(dev, &random(g.input().len(), 1))?;
        let w = upload(dev, &weights(g.weight_len(), g.weight_len() / filters, 2))?;
        let b = upload(dev, &random(filters, 3))?;
        let mut y = dev.alloc_zeroed::<f32>(g.output().len())?;
        let mut dy = upload(dev, &random(g.output().len(), 4))?;
        let mut dx = dev.alloc_zeroed::<f32>(g.input().len())?;
        let mut dw = dev.alloc_zeroed::<f32>(g.weight_len())?;
        let mut db = dev.alloc_zeroed::<f32>(filters)?;
        let flops = g.forward_flops();
        let out_bytes = 4.0 * g.output().len() as f64;

        let t = timer.time(&cfg, || {
            backend.conv2d_forward(
                &g,
                ConvForwardIo {
                    x: &x,
                    w: &w,
                    b: &b,
                    y: &mut y,
                },
            )
        })?;
        report.flops("forward (implicit GEMM, bias, ReLU)", &t, flops, true);
        let t = timer.time(&cfg, || {
            conv2d::bias_grad(dev, &scratch, &g, &y, &mut dy, &mut db)
        })?;
        // reads y and dy, writes the masked dy
        report.bytes("ReLU mask + bias gradient", &t, 3.0 * out_bytes, true);
        let t = timer.time(&cfg, || {
            conv2d::backward_data(dev, &tables, &g, &w, &dy, &mut dx, false)
        })?;
        // The first layer's input needs no gradient: timed, but not part of a training step. In the
        // paper's step each convolution is the only producer of its input's gradient: it writes.
        report.flops("backward data (dx =)", &t, flops, layer > 0);
        let t = timer.time(&cfg, || {
            conv2d::backward_filter(dev, &scratch, &g, &x, &dy, &mut dw)
        })?;
        report.flops(
            "backward filter (split-K, ordered reduction)",
            &t,
            flops,
            true,
        );
    }

    // ---- dense layers and SGEMM vs cuBLAS -------------------------------------------------------
    let blas = match Cublas::new(dev) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("cuBLAS unavailable ({e}): no cuBLAS ratios");
            None
        }
    };
    for (layer, &(inp, out, relu)) in PAPER_DENSE.iter().enumerate() {
        let g = DenseGeom::new(BATCH, inp, out, relu)?;
        println!(
            "fc{} {BATCH} x {inp} -> {out}{}",
            layer + 1,
            if relu { " + ReLU" } else { "" }
        );
        validate_dense(&backend, &DenseGeom::new(4, inp, out, relu)?)?;
        println!("  validated against the CPU reference on batch 4 (all features)");
        let x = upload(dev, &random(BATCH * inp, 5))?;
        let w = upload(dev, &weights(inp * out, inp, 6))?;
        let b = upload(dev, &random(out, 7))?;
        let mut y = dev.alloc_zeroed::<f32>(BATCH * out)?;
        let mut dy = upload(dev, &random(BATCH * out, 8))?;
        let mut dx = dev.alloc_zeroed::<f32>(BATCH * inp)?;
        let mut dw = dev.alloc_zeroed::<f32>(inp * out)?;
        let mut db = dev.alloc_zeroed::<f32>(out)?;
        let flops = 2.0 * (BATCH * inp * out) as f64;

        let ours = timer.time(&cfg, || {
            backend.dense_forward(
                &g,
                DenseForwardIo {
                    x: &x,
                    w: &w,
                    b: &b,
                    y: &mut y,
                },
            )
        })?;
        report.flops("forward y = x·wᵀ (NT) + b", &ours, flops, true);
        cublas_ratio(
            dev,
            &mut timer,
            &cfg,
            blas.as_ref(),
            &ours,
            |c, out_buf| {
                c.sgemm(
                    Transpose::No,
                    Transpose::Yes,
                    BATCH,
                    out,
                    inp,
                    1.0,
                    &x,
                    &w,
                    0.0,
                    out_buf,
                )
            },
            BATCH * out,
        )?;
        let t = timer.time(&cfg, || dense::bias_grad(dev, &g, &y, &mut dy, &mut db))?;
        report.bytes(
            "ReLU mask + bias gradient",
            &t,
            12.0 * (BATCH * out) as f64,
            true,
        );
        let ours = timer.time(&cfg, || {
            dense::backward_data(dev, &scratch, &g, &dy, &w, &mut dx)
        })?;
        // every dense layer reads a hidden activation, whose gradient the step needs
        report.flops("backward data dx += dy·w (NN)", &ours, flops, true);
        cublas_ratio(
            dev,
            &mut timer,
            &cfg,
            blas.as_ref(),
            &ours,
            |c, out_buf| {
                c.sgemm(
                    Transpose::No,
                    Transpose::No,
                    BATCH,
                    inp,
                    out,
                    1.0,
                    &dy,
                    &w,
                    1.0,
                    out_buf,
                )
            },
            BATCH * inp,
        )?;
        let ours = timer.time(&cfg, || {
            dense::backward_filter(dev, &scratch, &g, &dy, &x, &mut dw)
        })?;
        report.flops("backward filter dw = dyᵀ·x (TN)", &ours, flops, true);
        cublas_ratio(
            dev,
            &mut timer,
            &cfg,
            blas.as_ref(),
            &ours,
            |c, out_buf| {
                c.sgemm(
                    Transpose::Yes,
                    Transpose::No,
                    out,
                    inp,
                    BATCH,
                    1.0,
                    &dy,
                    &x,
                    0.0,
                    out_buf,
                )
            },
            inp * out,
        )?;
    }

    // ---- square SGEMM ---------------------------------------------------------------------------
    let n = 4096;
    println!("SGEMM {n}³ (dense forward NT, no ReLU)");
    let g = DenseGeom::new(n, n, n, false)?;
    let (a_host, b_host) = (random(n * n, 9), random(n * n, 10));
    let a = upload(dev, &a_host)?;
    let bm = upload(dev, &b_host)?;
    let zero_bias = dev.alloc_zeroed::<f32>(n)?;
    let mut c = dev.alloc_zeroed::<f32>(n * n)?;
    // Validate this very launch (the unsplit path, float4 loads) before timing it: a few whole rows
    // of C = A·Bᵀ against f64 on the host (the full product would take minutes on the CPU).
    let sgemm = |c: &mut _| {
        backend.dense_forward(
            &g,
            DenseForwardIo {
                x: &a,
                w: &bm,
                b: &zero_bias,
                y: c,
            },
        )
    };
    sgemm(&mut c)?;
    let got = dev.copy_to_host(&c)?;
    for row in [0, 1, n / 2 + 3, n - 1] {
        let a_row = &a_host[row * n..(row + 1) * n];
        let want: Vec<f64> = b_host
            .chunks_exact(n)
            .map(|b_row| {
                a_row
                    .iter()
                    .zip(b_row)
                    .map(|(&x, &y)| x as f64 * y as f64)
                    .sum()
            })
            .collect();
        check(
            &DENSE,
            &format!("SGEMM {n}³ row {row}"),
            &got[row * n..(row + 1) * n],
            &want,
        )?;
    }
    println!(
        "  validated: rows 0, 1, {}, {} against f64 on the host",
        n / 2 + 3,
        n - 1
    );
    let ours = timer.time(&cfg, || sgemm(&mut c))?;
    report.flops("4096³ NT", &ours, 2.0 * (n as f64).powi(3), false);
    cublas_ratio(
        dev,
        &mut timer,
        &cfg,
        blas.as_ref(),
        &ours,
        |cb, out_buf| {
            cb.sgemm(
                Transpose::No,
                Transpose::Yes,
                n,
                n,
                n,
                1.0,
                &a,
                &bm,
                0.0,
                out_buf,
            )
        },
        n * n,
    )?;

    println!(
        "conv + dense kernels of one paper-net step (batch {BATCH}): {:.1} ms (sum of the medians above)",
        report.step_ms
    );
    train_step(&backend, &mut timer, &peak)
}

/// A whole training step of the `paper` net (batch 50, 3 × 512 × 512, 7 classes): forward, loss,
/// backward, RMSProp, including the upload of the batch, validated first on a reduced input.
fn train_step(
    gpu: &KernelBackend<CudaDevice>,
    timer: &mut GpuTimer<'_>,
    peak: &GpuPeak,
) -> Result<()> {
    let spec = ArchSpec::from_name_or_spec("paper")?;
    let classes = 7;
    let cfg = RmsPropConfig::default();

    // Validation: one step on 3 × 64 × 64 images, batch 4, against the CPU reference (f32): the loss
    // and every updated weight. (One step: the first RMSProp update moves every weight by about
    // 3·lr, after which this synthetic batch's logits grow large and the comparison would measure
    // cancellation in huge gradients rather than the kernels.)
    let small = InputShape::new(3, 64, 64);
    let cpu = CpuBackend::<f32>::new();
    let mut on_gpu = Network::new(gpu, &spec, small, classes, 4, 1)?;
    let mut on_cpu = Network::new(&cpu, &spec, small, classes, 4, 1)?;
    let images = random(4 * small.len(), 30);
    let labels = [0, 3, 6, 2];
    let got = on_gpu.train_step(gpu, &images, &labels, &cfg)?;
    let want = on_cpu.train_step(&cpu, &images, &labels, &cfg)?;
    let tol = Tolerance {
        name: "train_step",
        atol: 2e-5,
        rtol: 1e-4,
        reason: "every op's f32 rounding compounded through a whole step; RMSProp's slope in g is ≤ lr/√ε ≈ 3",
    };
    check(
        &tol,
        "paper net: mean loss",
        &[got.mean_loss as f32],
        &[want.mean_loss],
    )?;
    for (g, w) in on_gpu
        .export_params(gpu)?
        .iter()
        .zip(on_cpu.export_params(&cpu)?)
    {
        check(
            &tol,
            &format!("paper net: {} after one step", g.name),
            &g.data,
            &widen(&w.data),
        )?;
    }

    let input = InputShape::new(3, 512, 512);
    let mut net = Network::new(gpu, &spec, input, classes, BATCH, 1)?;
    let images = random(BATCH * input.len(), 40);
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % classes as u32).collect();
    let flops = BATCH as f64 * net.plan().train_flops();
    let t = timer.time(
        &TimingConfig {
            warmup: 2,
            repeats: 10,
            flush_l2: true,
        },
        || net.train_step(gpu, &images, &labels, &cfg).map(|_| ()),
    )?;
    let gflops = t.gflops(flops);
    println!(
        "paper net training step, batch {BATCH}, 3x512x512 (validated: one step on batch 4, 3x64x64, vs the CPU reference)"
    );
    println!(
        "  {:>9.1} ms/step  {:>7.1} images/s  {:.2} TFLOP/s ({:.1} % of FP32 peak; {:.2} TFLOP per step, batch upload and loss readback included)",
        t.median_ms,
        BATCH as f64 / (t.median_ms / 1e3),
        gflops / 1e3,
        100.0 * peak.fraction_of_fp32(gflops),
        flops / 1e12
    );
    Ok(())
}

/// Time the cuBLAS equivalent of a measured kernel and print our time as a fraction of its speed.
fn cublas_ratio(
    dev: &CudaDevice,
    timer: &mut GpuTimer<'_>,
    cfg: &TimingConfig,
    blas: Option<&Cublas<'_>>,
    ours: &Timing,
    mut call: impl FnMut(&Cublas<'_>, &mut CudaBuffer<f32>) -> Result<()>,
    out_len: usize,
) -> Result<()> {
    let Some(blas) = blas else { return Ok(()) };
    let mut out = dev.alloc_zeroed::<f32>(out_len)?;
    let theirs = timer.time(cfg, || call(blas, &mut out))?;
    println!(
        "  {:<44} {:>9.3} ms  ours at {:.0} % of cuBLAS speed",
        "  cuBLAS SGEMM, same shape",
        theirs.median_ms,
        100.0 * theirs.median_ms / ours.median_ms
    );
    Ok(())
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Forward and backward of `g` on the GPU and the f64 CPU reference; errors on any mismatch.
fn validate_conv(gpu: &KernelBackend<CudaDevice>, g: &ConvGeom) -> Result<()> {
    let cpu = CpuBackend::<f64>::new();
    let (x, w, b) = (
        random(g.input().len(), 11),
        weights(g.weight_len(), g.weight_len() / g.c_out as usize, 12),
        random(g.c_out as usize, 13),
    );
    let (dy0, dx0) = (random(g.output().len(), 14), random(g.input().len(), 15));
    let (gx, gw, gb) = (gpu.upload(&x)?, gpu.upload(&w)?, gpu.upload(&b)?);
    let mut gy = gpu.zeros(g.output().len())?;
    gpu.conv2d_forward(
        g,
        ConvForwardIo {
            x: &gx,
            w: &gw,
            b: &gb,
            y: &mut gy,
        },
    )?;
    let y = gpu.download(&gy)?;
    let (cx, cw, cb) = (widen(&x), widen(&w), widen(&b));
    let mut cy = cpu.zeros(g.output().len())?;
    cpu.conv2d_forward(
        g,
        ConvForwardIo {
            x: &cx,
            w: &cw,
            b: &cb,
            y: &mut cy,
        },
    )?;
    check(&CONV2D, "conv forward y", &y, &cy)?;

    let (mut gdy, mut gdx) = (gpu.upload(&dy0)?, gpu.upload(&dx0)?);
    let (mut gdw, mut gdb) = (gpu.zeros(g.weight_len())?, gpu.zeros(g.c_out as usize)?);
    gpu.conv2d_backward(
        g,
        ConvBackwardIo {
            x: &gx,
            w: &gw,
            y: &gy,
            dy: &mut gdy,
            dx: InputGrad::Add(&mut gdx),
            dw: &mut gdw,
            db: Some(&mut gdb),
        },
    )?;
    let (mut cdy, mut cdx) = (widen(&dy0), widen(&dx0));
    let (mut cdw, mut cdb) = (cpu.zeros(g.weight_len())?, cpu.zeros(g.c_out as usize)?);
    cpu.conv2d_backward(
        g,
        ConvBackwardIo {
            x: &cx,
            w: &cw,
            y: &widen(&y),
            dy: &mut cdy,
            dx: InputGrad::Add(&mut cdx),
            dw: &mut cdw,
            db: Some(&mut cdb),
        },
    )?;
    check(&CONV2D, "conv backward dx", &gpu.download(&gdx)?, &cdx)?;
    check(&CONV2D, "conv backward dw", &gpu.download(&gdw)?, &cdw)?;
    check(&CONV2D, "conv backward db", &gpu.download(&gdb)?, &cdb)
}

/// Forward and backward of `g` on the GPU and the f64 CPU reference; errors on any mismatch.
fn validate_dense(gpu: &KernelBackend<CudaDevice>, g: &DenseGeom) -> Result<()> {
    let cpu = CpuBackend::<f64>::new();
    let (n, inp, out) = (
        g.n as usize,
        g.in_features as usize,
        g.out_features as usize,
    );
    let (x, w, b) = (
        random(n * inp, 21),
        weights(inp * out, inp, 22),
        random(out, 23),
    );
    let (dy0, dx0) = (random(n * out, 24), random(n * inp, 25));
    let (gx, gw, gb) = (gpu.upload(&x)?, gpu.upload(&w)?, gpu.upload(&b)?);
    let mut gy = gpu.zeros(n * out)?;
    gpu.dense_forward(
        g,
        DenseForwardIo {
            x: &gx,
            w: &gw,
            b: &gb,
            y: &mut gy,
        },
    )?;
    let y = gpu.download(&gy)?;
    let (cx, cw, cb) = (widen(&x), widen(&w), widen(&b));
    let mut cy = cpu.zeros(n * out)?;
    cpu.dense_forward(
        g,
        DenseForwardIo {
            x: &cx,
            w: &cw,
            b: &cb,
            y: &mut cy,
        },
    )?;
    check(&DENSE, "dense forward y", &y, &cy)?;
    let (mut gdy, mut gdx) = (gpu.upload(&dy0)?, gpu.upload(&dx0)?);
    let (mut gdw, mut gdb) = (gpu.zeros(inp * out)?, gpu.zeros(out)?);
    gpu.dense_backward(
        g,
        DenseBackwardIo {
            x: &gx,
            w: &gw,
            y: &gy,
            dy: &mut gdy,
            dx: Some(&mut gdx),
            dw: &mut gdw,
            db: &mut gdb,
        },
    )?;
    let (mut cdy, mut cdx) = (widen(&dy0), widen(&dx0));
    let (mut cdw, mut cdb) = (cpu.zeros(inp * out)?, cpu.zeros(out)?);
    cpu.dense_backward(
        g,
        DenseBackwardIo {
            x: &cx,
            w: &cw,
            y: &widen(&y),
            dy: &mut cdy,
            dx: Some(&mut cdx),
            dw: &mut cdw,
            db: &mut cdb,
        },
    )?;
    check(&DENSE, "dense backward dx", &gpu.download(&gdx)?, &cdx)?;
    check(&DENSE, "dense backward dw", &gpu.download(&gdw)?, &cdw)?;
    check(&DENSE, "dense backward db", &gpu.download(&gdb)?, &cdb)
}
