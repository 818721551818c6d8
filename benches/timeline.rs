//! `rescnn predict --timeline` throughput on ONE core: seconds of audio per second through the
//! streaming path (WAV decode, per-window resampling 44.1 → 16 kHz, STFT, image, network), with
//! the default run's model (`rescnn-train` with no arguments: the small residual network, 64 mel
//! bands × 128 frames gray), 1.3 s windows every 0.5 s.
//!
//! Validated first: windows of the timeline must give the probabilities `rescnn predict` gives for
//! WAV files holding exactly those windows' samples. The peer, measured in the same run, is that
//! per-file path (`rescnn predict` on the windows as separate files, one file per window).
//!
//! `cargo bench --bench timeline`; writes the timeline plot of its recording to
//! target/timeline-bench.svg.

use std::time::Instant;

use rescnn::audio::stream::{WavStream, Windows};
use rescnn::cli::predict::predict;
use rescnn::data::{synth, Source, SynthConfig};
use rescnn::inference::ensemble::Ensemble;
use rescnn::inference::model_dir::Weights;
use rescnn::timeline::{plot, timeline, TimelineSettings};
use rescnn::training::config::{DeviceChoice, TrainConfig};
use rescnn::training::run;
use rescnn::training::trainer::RunControl;

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("one-thread pool");
    let work = tempfile::tempdir().expect("temporary folder");

    // The default run's model; a few steps are enough for a throughput measurement.
    let model_dir = work.path().join("run");
    let cfg = TrainConfig {
        iterations: Some(4),
        eval_every: 4,
        device: DeviceChoice::Cpu,
        feature_cache: false,
        // A timeline reads one long recording of unknown speakers: training-set statistics.
        input_norm: rescnn::data::InputNormMode::Training,
        // The network path alone: the branch would add a pitch track and functionals per window.
        prosody_weight: 0.0,
        ..TrainConfig::default()
    };
    run::start(&cfg, &model_dir, &RunControl::default()).expect("training the benchmark's model");
    let model = Ensemble::load(&model_dir, Weights::Best).expect("the model");

    // A recording of synthetic utterances with pauses, at 44.1 kHz: about three minutes.
    let corpus = synth::generate(&SynthConfig {
        seed: 7,
        speakers: 2,
        per_class_per_speaker: 6,
        ..SynthConfig::default()
    })
    .expect("synthetic corpus");
    let rate = 44_100;
    let mut recording = Vec::new();
    for (i, u) in corpus.utterances.iter().enumerate() {
        let Source::Samples {
            samples,
            rate: from,
        } = &u.source
        else {
            unreachable!()
        };
        recording.extend(rescnn::audio::resample(samples, *from, rate).expect("resample"));
        recording.extend(std::iter::repeat_n(0.0f32, rate as usize * (i % 3) / 2));
    }
    let wav = work.path().join("long.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).expect("wav");
    for &v in &recording {
        w.write_sample((v.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .expect("sample");
    }
    w.finalize().expect("wav");
    let audio_s = recording.len() as f64 / rate as f64;
    let settings = TimelineSettings {
        window_s: 1.3,
        hop_s: 0.5,
        ..TimelineSettings::default()
    };

    // Validation: windows as files (their exact 16 kHz samples, as f32 WAV) through `predict`.
    let t = timeline(&model, &wav, &settings, None, DeviceChoice::Cpu).expect("timeline");
    let mut windows = Windows::new(WavStream::open(&wav).expect("open"), 16_000).expect("windows");
    let mut files = Vec::new();
    let mut picked = Vec::new();
    let mut buf = Vec::new();
    for (k, r) in t.windows.iter().enumerate() {
        let start = (r.start_s * 16_000.0).round() as u64;
        windows
            .window(
                start,
                (settings.window_s * 16_000.0).round() as u64,
                &mut buf,
            )
            .expect("window");
        if r.silent || k % 7 != 0 {
            continue;
        }
        let f = work.path().join(format!("w{k}.wav"));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&f, spec).expect("wav");
        buf.iter().for_each(|&v| w.write_sample(v).expect("sample"));
        w.finalize().expect("wav");
        files.push(f);
        picked.push(k);
    }
    let by_file = predict(&model, &files, DeviceChoice::Cpu).expect("predict");
    let mut max_diff = 0f64;
    for (p, &k) in by_file.iter().zip(&picked) {
        let ours = t.windows[k].probabilities.as_ref().expect("classified");
        for ((_, a), b) in p.probabilities.iter().zip(ours) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    // The same samples, images and network; only the batch composition differs (one GEMM call for
    // a batch of windows or files), which changes nothing on the one-thread CPU reference but is
    // allowed f32 rounding.
    assert!(
        max_diff <= 1e-6,
        "timeline windows differ from predict on the same samples by {max_diff:.2e}"
    );
    println!("validated: {} windows match `rescnn predict` on files of their samples (max |Δp| {max_diff:.1e})", picked.len());

    // Timing: the streaming timeline, best of 3.
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        let t = timeline(&model, &wav, &settings, None, DeviceChoice::Cpu).expect("timeline");
        best = best.min(t0.elapsed().as_secs_f64());
        std::hint::black_box(t);
    }
    let silent = t.windows.iter().filter(|w| w.silent).count();
    println!(
        "timeline, one core: {audio_s:.1} s of 44.1 kHz audio, {} windows ({silent} silent) in {best:.3} s: {:.0} audio-s/s ({:.1} windows/s)",
        t.windows.len(),
        audio_s / best,
        t.windows.len() as f64 / best
    );
    // Peer: the per-file path on the validation windows (each file read, featurised, classified).
    let t0 = Instant::now();
    std::hint::black_box(predict(&model, &files, DeviceChoice::Cpu).expect("predict"));
    let per_file = t0.elapsed().as_secs_f64() / files.len() as f64;
    println!(
        "peer, `rescnn predict` on one file per window: {:.1} windows/s (the timeline: {:.2}× that)",
        1.0 / per_file,
        t.windows.len() as f64 / best * per_file
    );
    let svg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/timeline-bench.svg");
    std::fs::write(&svg, plot::svg(&t)).expect("svg");
    println!("plot: {}", svg.display());
}
