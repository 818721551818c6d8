//! Audio in: WAV round trips for every supported format and channel count, clear errors for bad
//! files, the resampler's pass band and stop band, and the waveform perturbations.

use std::f64::consts::PI;
use std::path::Path;

use rescnn::audio::perturb::{change_speed, time_stretch, Perturbation};
use rescnn::audio::{read_wav, resample, Resampler};
use rescnn::Error;

/// A test signal per channel: different tones so a wrong channel order or mixdown shows.
fn channel_signal(ch: usize, n: usize, rate: u32) -> Vec<f64> {
    let f = 220.0 * (ch + 1) as f64;
    (0..n)
        .map(|i| 0.4 * (2.0 * PI * f * i as f64 / rate as f64).sin() + 0.1 * ch as f64 - 0.05)
        .collect()
}

fn write_wav(
    path: &Path,
    channels: u16,
    bits: u16,
    float: bool,
    rate: u32,
    n: usize,
) -> Vec<Vec<f64>> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let signals: Vec<Vec<f64>> = (0..channels as usize)
        .map(|c| channel_signal(c, n, rate))
        .collect();
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..n {
        for s in &signals {
            if float {
                w.write_sample(s[i] as f32).unwrap();
            } else {
                let scale = (1u64 << (bits - 1)) as f64;
                let v = (s[i] * scale).round().clamp(-scale, scale - 1.0) as i64;
                match bits {
                    8 => w.write_sample(v as i8).unwrap(),
                    16 => w.write_sample(v as i16).unwrap(),
                    _ => w.write_sample(v as i32).unwrap(),
                }
            }
        }
    }
    w.finalize().unwrap();
    signals
}

#[test]
fn wav_round_trip_every_format_and_channel_count() {
    let dir = tempfile::tempdir().unwrap();
    for (bits, float) in [
        (8, false),
        (16, false),
        (24, false),
        (32, false),
        (32, true),
    ] {
        for channels in [1u16, 2, 3] {
            let path = dir.path().join(format!("t_{bits}_{float}_{channels}.wav"));
            let n = 1000;
            let signals = write_wav(&path, channels, bits, float, 22_050, n);
            let audio = read_wav(&path).unwrap();
            assert_eq!(audio.sample_rate, 22_050);
            assert_eq!(audio.samples.len(), n, "{bits}-bit {channels} ch: frames");
            // Tolerance: one quantisation step of the format (float: f32 rounding),
            // plus f32 rounding of the decoded value (half an ulp near 1 is 3e-8).
            let tol = if float {
                1e-6
            } else {
                1.0 / (1u64 << (bits - 1)) as f64 + 1e-7
            };
            for i in 0..n {
                let want: f64 = signals.iter().map(|s| s[i]).sum::<f64>() / channels as f64;
                let got = audio.samples[i] as f64;
                assert!(
                    (got - want).abs() <= tol,
                    "{bits}-bit float={float} {channels} ch sample {i}: {got} vs {want}"
                );
            }
        }
    }
}

fn data_error_message(e: Error) -> (Option<std::path::PathBuf>, String) {
    match e {
        Error::Data { path, message } => (path, message),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn bad_wav_files_give_errors_naming_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    // Empty file.
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let (p, m) = data_error_message(read_wav(&empty).unwrap_err());
    assert_eq!(p.as_deref(), Some(empty.as_path()));
    assert!(
        m.contains("not a complete WAV") || m.contains("not a valid WAV"),
        "{m}"
    );

    // Not a WAV at all.
    let text = dir.path().join("text.wav");
    std::fs::write(
        &text,
        b"this is not audio, just some text that is long enough",
    )
    .unwrap();
    let (p, m) = data_error_message(read_wav(&text).unwrap_err());
    assert_eq!(p.as_deref(), Some(text.as_path()));
    assert!(m.contains("not a valid WAV"), "{m}");

    // Truncated data chunk.
    let good = dir.path().join("good.wav");
    write_wav(&good, 1, 16, false, 16_000, 4000);
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 1]).unwrap();
    let err = read_wav(&cut).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("cut.wav") && shown.contains("truncated"),
        "{shown}"
    );

    // Header only: valid WAV, no samples.
    let none = dir.path().join("none.wav");
    write_wav(&none, 1, 16, false, 16_000, 0);
    let (_, m) = data_error_message(read_wav(&none).unwrap_err());
    assert!(m.contains("no samples"), "{m}");

    // Unsupported encoding: a hand-made header with format tag 6 (A-law).
    let alaw = dir.path().join("alaw.wav");
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36u32 + 8).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&6u16.to_le_bytes()); // A-law
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&8u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&8u32.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    std::fs::write(&alaw, &h).unwrap();
    let shown = read_wav(&alaw).unwrap_err().to_string();
    assert!(
        shown.contains("alaw.wav") && shown.contains("unsupported"),
        "{shown}"
    );

    // Missing file: an I/O error with the path.
    let shown = read_wav(dir.path().join("missing.wav"))
        .unwrap_err()
        .to_string();
    assert!(shown.contains("missing.wav"), "{shown}");
}

/// Amplitude of the `freq` component of `x` (least-squares fit of a sine and cosine over the
/// middle half, away from the edges).
fn tone_amplitude(x: &[f32], rate: u32, freq: f64) -> f64 {
    let (a, b) = (x.len() / 4, 3 * x.len() / 4);
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate().take(b).skip(a) {
        let phi = 2.0 * PI * freq * i as f64 / rate as f64;
        s += v as f64 * phi.sin();
        c += v as f64 * phi.cos();
    }
    let n = (b - a) as f64;
    2.0 * (s * s + c * c).sqrt() / n
}

fn tone(freq: f64, rate: u32, seconds: f64) -> Vec<f32> {
    let n = (rate as f64 * seconds) as usize;
    (0..n)
        .map(|i| (0.5 * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32)
        .collect()
}

#[test]
fn resampler_pass_band_keeps_a_1khz_tone_within_0_1_db() {
    for from in [8_000u32, 11_025, 22_050, 44_100, 48_000, 96_000] {
        let x = tone(1000.0, from, 0.5);
        let y = resample(&x, from, 16_000).unwrap();
        assert_eq!(
            y.len(),
            (x.len() * 16_000).div_ceil(from as usize),
            "{from} Hz: output length"
        );
        let gain_db = 20.0 * (tone_amplitude(&y, 16_000, 1000.0) / 0.5).log10();
        assert!(
            gain_db.abs() <= 0.1,
            "{from} Hz → 16 kHz: 1 kHz tone changed by {gain_db:.3} dB"
        );
    }
    // Speech's upper pass band too (7 kHz < 0.9 × 8 kHz).
    let y = resample(&tone(7000.0, 44_100, 0.5), 44_100, 16_000).unwrap();
    let gain_db = 20.0 * (tone_amplitude(&y, 16_000, 7000.0) / 0.5).log10();
    assert!(
        gain_db.abs() <= 0.1,
        "7 kHz tone changed by {gain_db:.3} dB"
    );
}

#[test]
fn resampler_stop_band_attenuates_tones_above_the_new_nyquist_by_60_db() {
    for from in [22_050u32, 44_100, 48_000] {
        for freq in [8_200.0, 9_000.0, 10_000.0, 10_500.0] {
            if freq >= from as f64 / 2.0 {
                continue;
            }
            let x = tone(freq, from, 0.5);
            let y = resample(&x, from, 16_000).unwrap();
            let mid = &y[y.len() / 4..3 * y.len() / 4];
            let rms_out =
                (mid.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
            let rms_in = 0.5 / 2f64.sqrt();
            let att = 20.0 * (rms_out / rms_in).log10();
            assert!(
                att <= -60.0,
                "{from} Hz → 16 kHz: {freq} Hz tone only {att:.1} dB down"
            );
        }
    }
}

#[test]
fn resampler_identity_and_bad_rates() {
    let x = tone(440.0, 16_000, 0.1);
    assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
    assert!(Resampler::new(0, 16_000).is_err());
    let r = Resampler::new(22_050, 16_000).unwrap();
    assert!(
        r.taps() > 50,
        "a 90 dB filter with a 10 % transition needs long filters"
    );
}

/// Frequency of the strongest component by zero-crossing rate of a pure tone.
fn zero_crossing_freq(x: &[f32], rate: u32) -> f64 {
    let mid = &x[x.len() / 4..3 * x.len() / 4];
    let crossings = mid
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f64 / 2.0 / (mid.len() as f64 / rate as f64)
}

#[test]
fn speed_and_pitch_perturbations() {
    let x = tone(200.0, 16_000, 1.0);
    let fast = change_speed(&x, 16_000, 1.1).unwrap();
    assert!(
        (fast.len() as f64 - 16_000.0 / 1.1).abs() < 2.0,
        "speed 1.1 shortens by 1/1.1: {}",
        fast.len()
    );
    let f = zero_crossing_freq(&fast, 16_000);
    assert!(
        (f - 220.0).abs() < 2.0,
        "speed 1.1 raises 200 Hz to 220 Hz, got {f}"
    );

    let up = Perturbation {
        speed: 1.0,
        pitch_semitones: 2.0,
    }
    .apply(&x, 16_000)
    .unwrap();
    assert_eq!(up.len(), x.len(), "pitch shift keeps the duration");
    let f = zero_crossing_freq(&up, 16_000);
    let want = 200.0 * 2f64.powf(2.0 / 12.0);
    assert!(
        (f - want).abs() < 3.0,
        "+2 semitones: {want:.1} Hz expected, got {f:.1}"
    );

    let stretched = time_stretch(&x, 24_000, 16_000);
    assert_eq!(stretched.len(), 24_000);
    let f = zero_crossing_freq(&stretched, 16_000);
    assert!((f - 200.0).abs() < 2.0, "WSOLA keeps the pitch: {f}");

    assert!(Perturbation {
        speed: 3.0,
        pitch_semitones: 0.0
    }
    .apply(&x, 16_000)
    .is_err());
}
