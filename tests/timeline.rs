//! `rescnn predict --timeline`: the streamed windows are the whole file resampled, stretch by
//! stretch; on a recording made of held-out utterances of known classes separated by silences, a
//! model trained here labels the windows inside each utterance with its class well above chance,
//! marks the silences silent, and the windows cover the whole file.

mod train_support;

use rescnn::audio::stream::{WavStream, Windows};
use rescnn::data::{CorpusSpec, LoadOptions, Source, Split};
use rescnn::inference::ensemble::Ensemble;
use rescnn::inference::model_dir::Weights;
use rescnn::timeline::{timeline, TimelineSettings};
use rescnn::training::DeviceChoice;
use train_support::*;

fn write_wav_f32(path: &std::path::Path, channels: u16, rate: u32, frames: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    frames.iter().for_each(|&v| w.write_sample(v).unwrap());
    w.finalize().unwrap();
}

/// Every window equals the same samples of the whole file loaded and resampled at once, bit for
/// bit: per-window resampling with the filter's context leaves no seams. Stereo at 44.1 kHz and
/// mono at the analysis rate.
#[test]
fn streamed_windows_are_the_whole_file_resampled() {
    let dir = temp_dir();
    for (channels, rate) in [(2u16, 44_100u32), (1, 16_000), (1, 22_050)] {
        let frames = (rate as f64 * 3.7) as usize;
        let data: Vec<f32> = (0..frames * channels as usize)
            .map(|i| {
                let t = (i / channels as usize) as f32 / rate as f32;
                0.4 * (t * (300.0 + 900.0 * t) * std::f32::consts::TAU).sin()
                    + 0.1 * ((i * 7919) % 97) as f32 / 97.0
            })
            .collect();
        let path = dir.path().join(format!("x{channels}-{rate}.wav"));
        write_wav_f32(&path, channels, rate, &data);
        let whole = rescnn::audio::load(&path, 16_000).unwrap().samples;
        let mut windows = Windows::new(WavStream::open(&path).unwrap(), 16_000).unwrap();
        assert_eq!(
            windows.total() as usize,
            whole.len(),
            "{rate} Hz: total samples"
        );
        let mut buf = Vec::new();
        let (len, hop) = (20_800u64, 4_001u64);
        let mut start = 0;
        let mut checked = 0;
        while start < windows.total() {
            windows.window(start, len, &mut buf).unwrap();
            let end = (start + len).min(whole.len() as u64) as usize;
            let want = &whole[start as usize..end];
            assert_eq!(buf.len(), want.len(), "{rate} Hz, window at {start}");
            let differ = buf
                .iter()
                .zip(want)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{channels} ch at {rate} Hz, window at {start}: {differ} samples differ"
            );
            start += hop;
            checked += 1;
        }
        assert!(checked >= 10);
    }
}

#[test]
fn a_recording_of_known_utterances_gets_their_labels_and_its_silences_marked() {
    // Seven classes a model trained in seconds tells apart: harmonic tones of seven pitches (a
    // factor 1.3 apart) with jitter, vibrato, levels and lengths that vary per utterance, written as
    // a folder corpus named by emotion. (The synthetic speech corpus is deliberately hard: a model
    // trained for as long as a test can afford gets about 20 % of its test utterances.) What this
    // test checks is the timeline: streaming, resampling, windows, silences, coverage.
    let data = temp_dir();
    let mut seed = 12_345u64;
    let mut uniform = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for (class, name) in rescnn::data::EMOTIONS.iter().enumerate() {
        for speaker in ["a", "b"] {
            let dir = data.path().join(name).join(speaker);
            std::fs::create_dir_all(&dir).unwrap();
            for k in 0..8 {
                let rate = 16_000.0;
                let len = ((1.0 + uniform()) * rate) as usize;
                let f0 = 110.0 * 1.3f64.powi(class as i32) * (1.0 + 0.03 * (uniform() - 0.5));
                let level = 0.05 * 10f64.powf((uniform() - 0.5) * 12.0 / 20.0);
                let (vib, mut phase) = (5.0 + uniform() * 2.0, 0.0f64);
                let x: Vec<f32> = (0..len)
                    .map(|i| {
                        let t = i as f64 / rate;
                        let edge = (t / 0.05)
                            .min((len as f64 / rate - t) / 0.05)
                            .clamp(0.0, 1.0);
                        phase += std::f64::consts::TAU
                            * f0
                            * (1.0 + 0.01 * (std::f64::consts::TAU * vib * t).sin())
                            / rate;
                        let tone: f64 = (1..=5).map(|h| (h as f64 * phase).sin() / h as f64).sum();
                        (level * edge * tone + 0.002 * (uniform() - 0.5)) as f32
                    })
                    .collect();
                rescnn::audio::write_wav_i16(dir.join(format!("{name}_{k:02}.wav")), &x, 16_000)
                    .unwrap();
            }
        }
    }
    let run = temp_dir();
    let mut cfg = tiny_config();
    cfg.corpus = format!("folders:{}", data.path().display());
    cfg.iterations = Some(150);
    cfg.eval_every = 50;
    train(&cfg, run.path());
    let model = Ensemble::load(run.path(), Weights::Best).unwrap();

    // The test part of the run's own split (utterances the model never trained on): for each class,
    // three of its test utterances back to back make one stretch of that emotion (about 4 s).
    let spec: CorpusSpec = cfg.corpus.parse().unwrap();
    let corpus = spec.load(&LoadOptions::default()).unwrap();
    let split = Split::load(&corpus, run.path().join("split.json")).unwrap();
    let rate = 22_050; // not the analysis rate, so the timeline resamples
    let gap = (2.5 * rate as f64) as usize;
    let mut recording: Vec<f32> = Vec::new();
    let mut noise = 1u32;
    let mut silence = |out: &mut Vec<f32>, n: usize| {
        for _ in 0..n {
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            out.push(1e-4 * ((noise >> 8) as f32 / (1u32 << 24) as f32 - 0.5)); // about −86 dBFS
        }
    };
    // (start s, end s, class) of every stretch in the recording.
    let mut truth: Vec<(f64, f64, usize)> = Vec::new();
    silence(&mut recording, gap);
    for class in 0..corpus.classes.len() {
        let t0 = recording.len() as f64 / rate as f64;
        let mine: Vec<usize> = split
            .test
            .iter()
            .copied()
            .filter(|&u| corpus.utterances[u].label == class)
            .take(3)
            .collect();
        assert!(!mine.is_empty(), "class {class} has test utterances");
        for u in mine {
            let Source::File(path) = &corpus.utterances[u].source else {
                panic!("a folder corpus reads files")
            };
            recording.extend(rescnn::audio::load(path, rate).unwrap().samples);
        }
        truth.push((t0, recording.len() as f64 / rate as f64, class));
        silence(&mut recording, gap);
    }
    let wav = run.path().join("long.wav");
    write_wav_f32(&wav, 1, rate, &recording);
    let duration = recording.len() as f64 / rate as f64;

    // Windows of the model's own image length (128 frames of 10 ms: 1.295 s).
    let settings = TimelineSettings {
        window_s: 1.3,
        hop_s: 0.25,
        ..TimelineSettings::default()
    };
    let t = timeline(&model, &wav, &settings, None, DeviceChoice::Cpu).unwrap();
    // Coverage: from 0 to the end, no holes between consecutive windows.
    assert_eq!(t.windows[0].start_s, 0.0);
    assert!(
        (t.windows.last().unwrap().end_s - duration).abs() < 1e-3,
        "ends at {} of {duration}",
        t.windows.last().unwrap().end_s
    );
    for w in t.windows.windows(2) {
        assert!(w[1].start_s <= w[0].end_s && w[1].start_s > w[0].start_s);
    }
    let (mut inside, mut correct, mut in_gaps, mut silent_in_gaps) = (0, 0, 0, 0);
    for w in &t.windows {
        let within = truth
            .iter()
            .find(|(a, b, _)| w.start_s >= *a && w.end_s <= *b);
        let overlaps_speech = truth.iter().any(|(a, b, _)| w.start_s < *b && w.end_s > *a);
        if let Some((_, _, label)) = within {
            assert!(
                !w.silent,
                "window {:.2}–{:.2} s inside an utterance marked silent ({:.1} dBFS)",
                w.start_s, w.end_s, w.rms_dbfs
            );
            inside += 1;
            correct += usize::from(w.emotion.as_deref() == Some(t.classes[*label].as_str()));
        } else if !overlaps_speech {
            in_gaps += 1;
            silent_in_gaps += usize::from(w.silent);
            assert!(w.emotion.is_none() && w.probabilities.is_none());
        }
    }
    let accuracy = correct as f64 / inside as f64;
    eprintln!("{inside} windows inside utterances, {correct} with the utterance's label ({:.1} %); {silent_in_gaps} of {in_gaps} windows in silences marked silent", 100.0 * accuracy);
    assert!(inside >= 20 && in_gaps >= 20, "{inside} / {in_gaps}");
    assert_eq!(silent_in_gaps, in_gaps);
    // Chance is 1/7 = 14.3 %. The bar, 2.5× chance, leaves room for a 200-step model of the hard
    // synthetic corpus (its whole-utterance test accuracy is about 35–45 %) seeing 1.3 s crops.
    assert!(
        accuracy >= 2.5 / 7.0,
        "window accuracy {:.1} % is not well above chance",
        100.0 * accuracy
    );

    // The command line: CSV rows for every window, the JSON's windows, and the plot.
    let svg = run.path().join("timeline.svg");
    let out = rescnn_ok([
        "predict".as_ref(),
        "--model".as_ref(),
        run.path().as_os_str(),
        "--timeline".as_ref(),
        "--window".as_ref(),
        "1.3".as_ref(),
        "--hop".as_ref(),
        "0.25".as_ref(),
        "--csv".as_ref(),
        "--plot".as_ref(),
        svg.as_os_str(),
        wav.as_os_str(),
    ]);
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), t.windows.len() + 1);
    assert!(csv.lines().any(|l| l.contains(",silent,")));
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.matches("<polyline").count() >= 7);
    let out = rescnn_ok([
        "predict".as_ref(),
        "--model".as_ref(),
        run.path().as_os_str(),
        "--timeline".as_ref(),
        "--window".as_ref(),
        "1.3".as_ref(),
        "--hop".as_ref(),
        "0.25".as_ref(),
        "--json".as_ref(),
        wav.as_os_str(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["windows"].as_array().unwrap().len(), t.windows.len());
}
