//! CPU reference training speed of the `recipe` network (batch norm, the paper's input shortcuts,
//! statistics pooling, dropout) at its training shape: 3 × 64 × 128 (log-mel, Δ, ΔΔ; 64 mel bands,
//! 1.28 s crops of 10 ms frames), batch 32 — forward + backward + update of one step, in images per
//! second, with the same network timed in TensorFlow in the same invocation (the peer
//! `benches/peers/recipe_train_step.py`) and the ratio of the two.
//!
//! Validated before timing: the f32 network's logits agree with the f64 network's (same seed, so
//! the same weights), and one small step lowers the loss on the fixed batch.
//!
//! `cargo bench --bench recipe_train_step`; `RESCNN_BENCH_STEPS` sets the timed steps,
//! `RESCNN_BENCH_PEER=0` skips the TensorFlow peer, `RESCNN_BENCH_ARCH` times another spec (e.g.
//! `recipe-plain`).

use std::process::Command;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rescnn::backends::cpu::CpuBackend;
use rescnn::model::RmsPropConfig;
use rescnn::model::{ArchSpec, InputShape, Network};

const BATCH: usize = 32;
const INPUT: (usize, usize, usize) = (3, 64, 128);

fn main() -> rescnn::Result<()> {
    let arch = std::env::var("RESCNN_BENCH_ARCH").unwrap_or_else(|_| "recipe".into());
    let steps: usize = std::env::var("RESCNN_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let spec = ArchSpec::from_name_or_spec(&arch)?;
    let input = InputShape::new(INPUT.0, INPUT.1, INPUT.2);
    let (f32s, f64s) = (CpuBackend::<f32>::new(), CpuBackend::<f64>::new());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Standard normal-ish inputs, as the normalised features are.
    let images: Vec<f32> = (0..BATCH * input.len())
        .map(|_| rng.random::<f32>() * 3.4 - 1.7)
        .collect();
    let labels: Vec<u32> = (0..BATCH).map(|i| (i % 7) as u32).collect();
    let mut net = Network::new(&f32s, &spec, input, 7, BATCH, 1)?;
    let mut net64 = Network::new(&f64s, &spec, input, 7, BATCH, 1)?;
    let images64: Vec<f64> = images.iter().map(|&v| v as f64).collect();
    let l32 = net.forward_logits(&f32s, &images, BATCH)?;
    let l64 = net64.forward_logits(&f64s, &images64, BATCH)?;
    let scale = l64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = l32
        .iter()
        .zip(&l64)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    // f32 sums of ~1e4-term dot products: 1e-3 of the logits' scale is far above their rounding
    // and far below any indexing or formula error.
    assert!(
        worst <= 1e-3 * scale.max(1.0),
        "f32 and f64 logits disagree: max |Δ| {worst}, scale {scale}"
    );
    drop(net64);
    let small = RmsPropConfig {
        lr: 1e-6,
        ..RmsPropConfig::default()
    };
    let first = net.train_step(&f32s, &images, &labels, &small)?;
    let after = net.evaluate(&f32s, &images, &labels)?;
    assert!(
        first.mean_loss.is_finite() && after.mean_loss.is_finite(),
        "non-finite loss: {first:?} → {after:?}"
    );
    let cfg = RmsPropConfig {
        lr: 5e-4,
        ..RmsPropConfig::default()
    };
    for _ in 0..2 {
        net.train_step(&f32s, &images, &labels, &cfg)?; // warm-up
    }
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        net.train_step(&f32s, &images, &labels, &cfg)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let ours = BATCH as f64 / median;
    println!(
        "recipe_train_step: `{arch}` = `{}`, {} parameters, input {}×{}×{}, batch {BATCH}, rayon threads {}",
        spec.text(),
        net.param_count(),
        INPUT.0,
        INPUT.1,
        INPUT.2,
        rayon::current_num_threads()
    );
    println!(
        "  rescnn CPU reference: median {:.1} ms/step ({:.1}..{:.1} over {steps}), {ours:.1} images/s, {:.1} GFLOP/s; validated: f32/f64 logits max |Δ| {worst:.1e} (scale {scale:.2}); load average {}",
        1e3 * median,
        1e3 * times[0],
        1e3 * times[times.len() - 1],
        net.plan().train_flops() * ours / 1e9,
        load_average()
    );
    if std::env::var("RESCNN_BENCH_PEER").as_deref() == Ok("0") {
        return Ok(());
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/peers/recipe_train_step.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args(["--spec", spec.text()])
        .args(["--channels", &INPUT.0.to_string()])
        .args(["--height", &INPUT.1.to_string()])
        .args(["--width", &INPUT.2.to_string()])
        .args(["--batch", &BATCH.to_string()])
        .args(["--steps", &steps.max(10).to_string()])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            for line in text.lines().filter(|l| !l.starts_with("RESULT")) {
                println!("  TensorFlow peer: {line}");
            }
            let peer: Option<f64> = text
                .lines()
                .find_map(|l| l.strip_prefix("RESULT images_per_s="))
                .and_then(|v| v.trim().parse().ok());
            match peer {
                Some(tf) => println!(
                    "  ratio rescnn / TensorFlow: {:.2} ({ours:.1} / {tf:.1} images/s; load average {})",
                    ours / tf,
                    load_average()
                ),
                None => println!("  TensorFlow peer printed no RESULT line"),
            }
        }
        Ok(o) => println!(
            "  TensorFlow peer failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("  TensorFlow peer not run (python3: {e})"),
    }
    Ok(())
}

/// The 1-minute load average, so a reader can tell a busy machine's figures from a quiet one's.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
