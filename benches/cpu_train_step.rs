//! CPU reference training speed: forward + backward + RMSProp update of the `paper` network on
//! random RGB images, reported as images per second and GFLOP/s (the plan's FLOP count of a training
//! step). Before timing, each configuration is validated: the f32 network's logits must agree with
//! the f64 network's (same seed, same weights) and one step on a fixed batch must lower its loss.
//!
//! Reference (figures measured on this machine): TensorFlow 2.21 on CPU (oneDNN), 2 cores, trains `paper-plain`
//! at 43 images/s (128×128, batch 8) and 2.3 images/s (512×512, batch 2), about 280 GFLOP/s.
//!
//! `cargo bench --bench cpu_train_step` (set RESCNN_BENCH_STEPS to change the number of timed steps).

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rescnn::backends::cpu::CpuBackend;
use rescnn::backends::{ConvBackwardIo, ConvForwardIo, InputGrad};
use rescnn::model::RmsPropConfig;
use rescnn::model::{ArchSpec, InputShape, Network};

struct Case {
    side: usize,
    batch: usize,
    steps: usize,
    tf_images_per_s: f64,
}

fn main() -> rescnn::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument picks cases by input side.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let steps_override: Option<usize> = std::env::var("RESCNN_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok());
    let cases = [
        Case {
            side: 128,
            batch: 8,
            steps: 12,
            tf_images_per_s: 43.0,
        },
        Case {
            side: 512,
            batch: 2,
            steps: 4,
            tf_images_per_s: 2.3,
        },
    ];
    let spec = ArchSpec::from_name_or_spec("paper")?;
    let cfg = RmsPropConfig::default();
    let f32s = CpuBackend::<f32>::new();
    let f64s = CpuBackend::<f64>::new();
    println!(
        "cpu_train_step: `paper` net, {}, rayon threads {}",
        f32s_name(&f32s),
        rayon::current_num_threads()
    );
    for case in &cases {
        if filter
            .as_deref()
            .is_some_and(|f| !case.side.to_string().contains(f))
        {
            continue;
        }
        let input = InputShape::new(3, case.side, case.side);
        let mut rng = ChaCha8Rng::seed_from_u64(case.side as u64);
        let images: Vec<f32> = (0..case.batch * input.len())
            .map(|_| rng.random::<f32>())
            .collect();
        let labels: Vec<u32> = (0..case.batch).map(|i| (i % 7) as u32).collect();
        let mut net = Network::new(&f32s, &spec, input, 7, case.batch, 1)?;

        // Validate: f32 against f64 logits (same seed → same initial weights), then a step helps.
        let mut net64 = Network::new(&f64s, &spec, input, 7, case.batch, 1)?;
        let images64: Vec<f64> = images.iter().map(|&v| v as f64).collect();
        let l32 = net.forward_logits(&f32s, &images, case.batch)?;
        let l64 = net64.forward_logits(&f64s, &images64, case.batch)?;
        let scale = l64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = l32
            .iter()
            .zip(&l64)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        // f32 accumulates ~1e5-term dot products; 1e-3 of the logits' scale is far above its rounding
        // and far below any indexing or formula error.
        assert!(
            worst <= 1e-3 * scale.max(1.0),
            "f32 and f64 logits disagree: max |Δ| {worst}, scale {scale}"
        );
        drop(net64);
        // RMSProp's first update moves every weight by about 3·lr whatever its gradient, so with the
        // paper's lr the loss of a random net may jump; a small lr isolates the gradient's direction.
        let small = RmsPropConfig { lr: 1e-6, ..cfg };
        let first = net.train_step(&f32s, &images, &labels, &small)?;
        let after = net.evaluate(&f32s, &images, &labels)?;
        assert!(
            first.mean_loss.is_finite() && after.mean_loss < first.mean_loss,
            "a step did not lower the loss: {first:?} → {after:?}"
        );

        let steps = steps_override.unwrap_or(case.steps);
        let (t, cpu0) = (Instant::now(), process_cpu_seconds());
        for _ in 0..steps {
            net.train_step(&f32s, &images, &labels, &cfg)?;
        }
        let secs = t.elapsed().as_secs_f64();
        // On a shared machine wall time depends on the other load; CPU time per FLOP does much less.
        let cpu_note = match (cpu0, process_cpu_seconds()) {
            (Some(a), Some(b)) if b > a => format!(
                "; {:.1} GFLOP per CPU-second",
                net.plan().train_flops() * (steps * case.batch) as f64 / (b - a) / 1e9
            ),
            _ => String::new(),
        };
        let images_per_s = (steps * case.batch) as f64 / secs;
        let step_cpu = match (cpu0, process_cpu_seconds()) {
            (Some(a), Some(b)) => (b - a) / steps as f64,
            _ => f64::NAN,
        };
        let gflops = net.plan().train_flops() * images_per_s / 1e9;
        println!(
            "{side}×{side} RGB, batch {b}: {images_per_s:6.2} images/s, {gflops:6.1} GFLOP/s ({:.3} s/step over {steps} steps; TensorFlow reference {tf} images/s, ratio {:.2}; validated: f32/f64 logits max |Δ| {worst:.1e}{cpu_note}; load average {})",
            secs / steps as f64,
            images_per_s / case.tf_images_per_s,
            load_average(),
            side = case.side,
            b = case.batch,
            tf = case.tf_images_per_s,
        );
        conv_breakdown(&f32s, &net, case.batch, step_cpu)?;
    }
    Ok(())
}

/// Each convolution of the plan timed alone at the case's batch: forward, backward without d_input
/// (d_weight + d_bias) and the extra cost of d_input, in GFLOP per CPU-second (the FLOP count of each
/// part is the forward's). CPU time, not wall time, so the figures mean something on a busy machine.
fn conv_breakdown(
    backend: &CpuBackend<f32>,
    net: &Network<CpuBackend<f32>>,
    batch: usize,
    step_cpu: f64,
) -> rescnn::Result<()> {
    use rescnn::backends::Conv2dOp;
    use rescnn::model::PlannedOp;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut random =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random::<f32>() - 0.5).collect() };
    let mut conv_total = 0.0;
    for layer in &net.plan().layers {
        let PlannedOp::Conv { geom, .. } = layer.op else {
            continue;
        };
        let g = geom.with_batch(batch);
        let (x, w, b) = (
            random(g.input().len()),
            random(g.weight_len()),
            random(g.c_out as usize),
        );
        let mut y = vec![0.0f32; g.output().len()];
        let (mut dx, mut dw, mut db) = (
            vec![0.0f32; x.len()],
            vec![0.0f32; w.len()],
            vec![0.0f32; b.len()],
        );
        let mut dy = random(y.len());
        const REPS: usize = 3;
        let time = |f: &mut dyn FnMut() -> rescnn::Result<()>| -> rescnn::Result<f64> {
            f()?; // warm-up: scratch buffers, caches
            let t0 = process_cpu_seconds_fine();
            for _ in 0..REPS {
                f()?;
            }
            Ok((process_cpu_seconds_fine() - t0) / REPS as f64)
        };
        let fwd = time(&mut || {
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
        let dw_only = time(&mut || {
            backend.conv2d_backward(
                &g,
                ConvBackwardIo {
                    x: &x,
                    w: &w,
                    y: &y,
                    dy: &mut dy,
                    dx: InputGrad::None,
                    dw: &mut dw,
                    db: Some(&mut db),
                },
            )
        })?;
        let with_dx = time(&mut || {
            backend.conv2d_backward(
                &g,
                ConvBackwardIo {
                    x: &x,
                    w: &w,
                    y: &y,
                    dy: &mut dy,
                    dx: InputGrad::Add(&mut dx),
                    dw: &mut dw,
                    db: Some(&mut db),
                },
            )
        })?;
        let flops = g.forward_flops();
        let rate = |secs: f64| flops / secs / 1e9;
        let needs_dx = !matches!(layer.op, PlannedOp::Conv { input: 0, .. });
        conv_total += fwd + if needs_dx { with_dx } else { dw_only };
        println!(
            "    {:<6} {:>3}→{:<3} {:>2}×{:<2} at {:>3}×{:<3}: forward {:5.1}, d_weight {:5.1}, d_input {:5.1} GFLOP per CPU-second ({:.3}+{:.3}+{:.3} CPU-s)",
            layer.name,
            g.c_in,
            g.c_out,
            g.k_h,
            g.k_w,
            g.h_in,
            g.w_in,
            rate(fwd),
            rate(dw_only),
            rate(with_dx - dw_only),
            fwd,
            dw_only,
            if needs_dx { with_dx - dw_only } else { 0.0 },
        );
    }
    println!(
        "    convolutions alone {conv_total:.3} CPU-s of the step's {step_cpu:.3} (load average {})",
        load_average()
    );
    Ok(())
}

/// CPU time of every thread of this process in seconds, at nanosecond resolution (Linux
/// schedstat; falls back to the 10 ms `process_cpu_seconds`).
fn process_cpu_seconds_fine() -> f64 {
    let from_schedstat = || -> Option<f64> {
        let mut ns = 0u64;
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(ns as f64 * 1e-9)
    };
    from_schedstat()
        .or_else(process_cpu_seconds)
        .unwrap_or(f64::NAN)
}

fn f32s_name(b: &CpuBackend<f32>) -> String {
    use rescnn::backends::Backend;
    b.name()
}

/// User + system CPU time of this process (Linux; None elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// The 1-minute load average, so a reader can tell a busy machine's figures from a quiet one's.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
