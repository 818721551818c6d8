//! Spectrogram images per second: 512×512 jet RGB from 3 s of speech at 16 kHz, the whole path from
//! samples to pixels (STFT, dB, normalisation, resize, colour), on one core and on all cores.
//!
//! `cargo bench --bench spectrogram` (`-- --quick` for a short run). Before timing, the fast path is
//! checked against the f64 reference implementation (direct DFT, per-pixel filter weights).
//!
//! For scale: librosa 0.11 + PIL resize + a jet lookup table make about 295 images/s on one
//! core of a machine like ours, scipy 329/s; the goal is 1 500/s.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use rescnn::data::synth::{self, SynthConfig};
use rescnn::features::{Renderer, Spectrogram, SpectrogramConfig, StftPlan};

#[path = "../tests/common/feature_reference.rs"]
mod reference;

/// Three seconds of synthetic speech: consecutive synthetic utterances, cut to 48 000 samples.
fn speech_3s() -> Vec<f32> {
    let cfg = SynthConfig::default();
    let speakers = synth::speakers(&cfg);
    let mut s = Vec::new();
    let mut i = 0;
    while s.len() < 48_000 {
        s.extend(synth::utterance(
            &cfg,
            &speakers[i % speakers.len()],
            i % speakers.len(),
            i % 7,
            i,
        ));
        i += 1;
    }
    s.truncate(48_000);
    s
}

fn check_against_reference(samples: &[f32], cfg: &SpectrogramConfig) {
    let mut plan = StftPlan::new(&cfg.stft).unwrap();
    let mut renderer = Renderer::new(&cfg.image).unwrap();
    let spec = plan.compute(samples);
    let (frames, bins, db) = reference::spectrogram_db(samples, &cfg.stft);
    assert_eq!((spec.frames, spec.bins), (frames, bins));
    let mut img = vec![0f32; cfg.image.height * cfg.image.width];
    img.copy_from_slice(renderer.intensity(&spec, &renderer.default_region(&spec)));
    let want = reference::intensity(frames, bins, &db, &cfg.image);
    let max_err = img
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    // Intensities live in [0, 1] over an 80 dB range: 1e-3 is 0.08 dB, a quarter of one 8-bit level.
    assert!(
        max_err < 1e-3,
        "fast path differs from the reference by {max_err}"
    );
    println!("checked against the f64 reference: max intensity error {max_err:.2e}");
}

fn one_image(
    plan: &mut StftPlan,
    renderer: &mut Renderer,
    samples: &[f32],
    spec: &mut Spectrogram,
    pixels: &mut Vec<u8>,
) {
    plan.compute_into(samples, spec);
    renderer.render_u8(spec, pixels);
}

/// CPU time this thread has run, from Linux's /proc/thread-self/schedstat (nanoseconds); `None`
/// elsewhere. On a shared machine wall-clock rates understate speed; CPU-time rates do much less so.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (images per wall-clock second, images per CPU second of the calling thread when `threads` = 1).
fn measure(
    threads: usize,
    samples: &[f32],
    cfg: &SpectrogramConfig,
    budget: Duration,
) -> (f64, Option<f64>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let batch = 64 * threads;
        let run = || {
            (0..batch).into_par_iter().for_each_init(
                || {
                    let spec = Spectrogram {
                        frames: 0,
                        bins: 0,
                        db: Vec::new(),
                    };
                    (
                        StftPlan::new(&cfg.stft).unwrap(),
                        Renderer::new(&cfg.image).unwrap(),
                        spec,
                        Vec::new(),
                    )
                },
                |(plan, renderer, spec, pixels), _| {
                    one_image(plan, renderer, samples, spec, pixels);
                    std::hint::black_box(&pixels);
                },
            )
        };
        run(); // warm-up
        let start = Instant::now();
        let cpu_start = thread_cpu_ns();
        let mut images = 0;
        while start.elapsed() < budget {
            run();
            images += batch;
        }
        let wall = images as f64 / start.elapsed().as_secs_f64();
        let cpu = match (threads, cpu_start, thread_cpu_ns()) {
            (1, Some(a), Some(b)) if b > a => Some(images as f64 / ((b - a) as f64 * 1e-9)),
            _ => None,
        };
        (wall, cpu)
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 500 } else { 3000 });
    let samples = speech_3s();
    let cfg = SpectrogramConfig::paper();
    check_against_reference(&samples, &cfg);

    // Stage split on one core, for orientation.
    let mut plan = StftPlan::new(&cfg.stft).unwrap();
    let mut renderer = Renderer::new(&cfg.image).unwrap();
    let mut pixels = Vec::new();
    let reps = if quick { 200 } else { 1000 };
    let t = Instant::now();
    let mut spec = plan.compute(&samples);
    for _ in 0..reps {
        plan.compute_into(&samples, &mut spec);
    }
    let stft_s = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        renderer.render_u8(&spec, &mut pixels);
    }
    let render_s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "one core, per image: STFT+dB {:.3} ms ({} frames × {} bins), render 512×512 jet {:.3} ms",
        stft_s * 1e3,
        spec.frames,
        spec.bins,
        render_s * 1e3
    );

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one, one_cpu) = measure(1, &samples, &cfg, budget);
    let cpu = one_cpu.map_or(String::new(), |c| {
        format!(" ({c:.0} per CPU-second of the thread)")
    });
    println!("spectrogram 512x512 jet from 3 s @ 16 kHz, 1 thread:  {one:.0} images/s{cpu}");
    if cores > 1 {
        let (all, _) = measure(cores, &samples, &cfg, budget);
        println!("spectrogram 512x512 jet from 3 s @ 16 kHz, {cores} threads: {all:.0} images/s");
    }
    synthetic_pipeline();
    println!(
        "(load average now: {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

/// The trainer's no-argument data path: generate the synthetic corpus, featurise it, and render one
/// augmented epoch of 64×64 gray batches (all cores).
fn synthetic_pipeline() {
    use rescnn::data::cache::{CacheOptions, FeatureStore};
    use rescnn::data::{split, AugmentConfig};
    use rescnn::data::{BatchConfig, Batcher, InputNorm};
    let t = Instant::now();
    let corpus = synth::generate(&SynthConfig::default()).unwrap();
    let generate = t.elapsed();
    let cfg = SpectrogramConfig::small_gray(64);
    let t = Instant::now();
    let store = FeatureStore::build(&corpus, &cfg.stft, &CacheOptions::in_memory()).unwrap();
    let featurise = t.elapsed();
    let s = split::random(&corpus, 0.2, &split::SplitOptions::default()).unwrap();
    let t = Instant::now();
    let norm = InputNorm::from_training(&store, &cfg.image, &s.train).unwrap();
    let batcher = Batcher::new(
        &store,
        &cfg.image,
        &s.train,
        BatchConfig::training(50, 0, Some(AugmentConfig::default())),
        norm,
    )
    .unwrap();
    let n: usize = batcher.epoch(0).map(|b| b.labels.len()).sum();
    let epoch = t.elapsed();
    println!(
        "synthetic corpus ({} utterances, {:.0} s of audio): generate {:.0} ms, featurise {:.0} ms, \
         statistics + one augmented 64x64 epoch ({n} images) {:.0} ms",
        corpus.len(),
        corpus.summary().total_s,
        generate.as_secs_f64() * 1e3,
        featurise.as_secs_f64() * 1e3,
        epoch.as_secs_f64() * 1e3
    );
}
