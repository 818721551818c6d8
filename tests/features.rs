//! Spectrogram: the fast STFT against a direct DFT, the fast dB, the image against the per-pixel
//! reference, tones in the right rows with low frequencies at the bottom, colormaps, the
//! fixed-time-resolution mode, and the config's model input shape.

use std::f64::consts::PI;

use rescnn::features::colormap::{jet, ColorTable};
use rescnn::features::stft::fast_db;
use rescnn::features::{
    Colormap, ImageConfig, Renderer, SpectrogramConfig, StftConfig, StftPlan, TimeAxis,
};

#[path = "common/feature_reference.rs"]
mod reference;

fn noise_and_tones(n: usize, rate: u32) -> Vec<f32> {
    let mut state = 12345u64;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((state >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.02;
            let t = i as f64 / rate as f64;
            (0.3 * (2.0 * PI * 440.0 * t).sin()
                + 0.1 * (2.0 * PI * 3000.0 * t * (1.0 + t)).sin()
                + noise) as f32
        })
        .collect()
}

#[test]
fn stft_matches_a_direct_dft() {
    let x = noise_and_tones(4000, 16_000);
    for mel in [None, Some(40)] {
        let cfg = StftConfig {
            mel_bands: mel,
            ..StftConfig::default()
        };
        let spec = StftPlan::new(&cfg).unwrap().compute(&x);
        let (frames, bins, want) = reference::spectrogram_db(&x, &cfg);
        assert_eq!((spec.frames, spec.bins), (frames, bins));
        assert_eq!(frames, 1 + (4000 - 400) / 160);
        // Where the power is well above the f32 rounding of the FFT (−60 dB relative to the
        // frame's peak), the dB values agree to 0.01 dB; below, f32 FFT noise dominates both.
        let mut worst = 0f64;
        for t in 0..frames {
            let row = &want[t * bins..(t + 1) * bins];
            let peak = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for (f, &want_db) in row.iter().enumerate() {
                if want_db > peak - 60.0 {
                    worst = worst.max((spec.get(t, f) as f64 - want_db).abs());
                }
            }
        }
        assert!(
            worst < 0.01,
            "mel={mel:?}: STFT differs from the direct DFT by {worst} dB"
        );
    }
}

#[test]
fn fast_db_is_accurate() {
    let mut worst = 0f64;
    let mut x = 1e-12f32;
    while x < 1e6 {
        let want = 10.0 * (x as f64).log10();
        worst = worst.max((fast_db(x) as f64 - want).abs());
        x *= 1.0137;
    }
    println!("fast dB worst error {worst:.2e} dB");
    // f32 rounding of the result and the intermediate sums alone reaches ~2e-5 dB; the series'
    // truncation error (its s^9 term) is below 1e-6 dB.
    assert!(worst < 5e-5, "fast dB error {worst}");
}

#[test]
fn full_scale_sine_peaks_near_0_db() {
    let x: Vec<f32> = (0..8000)
        .map(|i| (2.0 * PI * 1000.0 * i as f64 / 16_000.0).sin() as f32)
        .collect();
    let spec = StftPlan::new(&StftConfig::default()).unwrap().compute(&x);
    let peak = spec
        .frame(10)
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    // The window's gain is normalised so a unit sine at a bin centre gives power 1 (0 dB).
    assert!(peak.abs() < 0.1, "peak {peak} dB");
}

#[test]
fn image_matches_the_per_pixel_reference() {
    let x = noise_and_tones(16_000, 16_000);
    for (h, w, axis) in [
        (64, 48, TimeAxis::Whole),
        (96, 200, TimeAxis::Whole),
        (40, 120, TimeAxis::Fixed),
    ] {
        let stft = StftConfig::default();
        let image = ImageConfig {
            height: h,
            width: w,
            time_axis: axis,
            ..ImageConfig::default()
        };
        let spec = StftPlan::new(&stft).unwrap().compute(&x);
        let mut r = Renderer::new(&image).unwrap();
        let region = r.default_region(&spec);
        let got = r.intensity(&spec, &region).to_vec();
        let (frames, bins, db) = reference::spectrogram_db(&x, &stft);
        let want = reference::intensity(frames, bins, &db, &image);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        // 1e-3 of the [0, 1] range is 0.08 dB of the 80 dB range, a quarter of one 8-bit level.
        assert!(worst < 1e-3, "{h}×{w} {axis:?}: max error {worst}");
    }
}

/// Row of the image (0 = top) with the most energy, averaged over columns.
fn brightest_row(intensity: &[f32], h: usize, w: usize) -> usize {
    (0..h)
        .max_by(|&a, &b| {
            let sa: f32 = intensity[a * w..(a + 1) * w].iter().sum();
            let sb: f32 = intensity[b * w..(b + 1) * w].iter().sum();
            sa.partial_cmp(&sb).unwrap()
        })
        .unwrap()
}

#[test]
fn a_tone_lands_in_its_row_and_low_frequencies_are_at_the_bottom() {
    let cfg = SpectrogramConfig::paper();
    let (h, w) = (cfg.image.height, cfg.image.width);
    let mut plan = StftPlan::new(&cfg.stft).unwrap();
    let mut r = Renderer::new(&cfg.image).unwrap();
    let mut rows = Vec::new();
    for freq in [500.0, 1000.0, 4000.0] {
        let x: Vec<f32> = (0..32_000)
            .map(|i| (0.5 * (2.0 * PI * freq * i as f64 / 16_000.0).sin()) as f32)
            .collect();
        let spec = plan.compute(&x);
        let region = r.default_region(&spec);
        let row = brightest_row(r.intensity(&spec, &region), h, w);
        // Bin k (centre k + 0.5 in source units) maps to image row h − 1 − ((k + 0.5)·h/bins − 0.5).
        let bin = freq / 16_000.0 * 512.0;
        let expected = (h - 1) as f64 - ((bin + 0.5) * h as f64 / 257.0 - 0.5);
        assert!(
            (row as f64 - expected).abs() <= 1.5,
            "{freq} Hz tone at row {row}, expected {expected:.1}"
        );
        rows.push(row);
    }
    assert!(
        rows[0] > rows[1] && rows[1] > rows[2],
        "higher tones must be higher up (smaller rows): {rows:?}"
    );
    assert!(rows[0] > h / 2, "500 Hz belongs in the bottom half");
}

#[test]
fn mel_tone_row_and_order() {
    let cfg = SpectrogramConfig {
        stft: StftConfig {
            mel_bands: Some(64),
            ..StftConfig::default()
        },
        image: ImageConfig {
            height: 64,
            width: 64,
            colormap: Colormap::Gray,
            ..ImageConfig::default()
        },
    };
    let mut plan = StftPlan::new(&cfg.stft).unwrap();
    let mut r = Renderer::new(&cfg.image).unwrap();
    let mut rows = Vec::new();
    for freq in [300.0, 1500.0, 6000.0] {
        let x: Vec<f32> = (0..16_000)
            .map(|i| (0.5 * (2.0 * PI * freq * i as f64 / 16_000.0).sin()) as f32)
            .collect();
        let spec = plan.compute(&x);
        let region = r.default_region(&spec);
        rows.push(brightest_row(r.intensity(&spec, &region), 64, 64));
    }
    assert!(rows[0] > rows[1] && rows[1] > rows[2], "{rows:?}");
    // On the mel scale 1.5 kHz sits near the middle (mel(1500)/mel(8000) ≈ 0.43).
    assert!(
        (rows[1] as i64 - (63.0 - 0.43 * 64.0) as i64).abs() <= 3,
        "{rows:?}"
    );
}

#[test]
fn jet_and_gray_colormaps() {
    let lo = jet(0.0);
    let hi = jet(1.0);
    assert_eq!(lo, [0.0, 0.0, 0.5], "low energy is dark blue");
    assert_eq!(hi, [0.5, 0.0, 0.0], "high energy is dark red");
    let mid = jet(0.5);
    assert!(mid[1] > 0.9, "the middle of jet is green-ish: {mid:?}");
    let t = ColorTable::new(Colormap::Jet);
    assert_eq!(t.rgb8[0], [0, 0, 128]);
    assert_eq!(t.rgb8[255], [128, 0, 0]);
    let g = ColorTable::new(Colormap::Gray);
    for q in 0..256 {
        assert_eq!(g.rgb8[q], [q as u8; 3]);
        assert_eq!(g.gray8[q], q as u8);
    }
}

#[test]
fn f32_output_is_the_u8_image_over_255() {
    let x = noise_and_tones(12_000, 16_000);
    for colormap in [Colormap::Jet, Colormap::Gray] {
        let image = ImageConfig {
            height: 50,
            width: 70,
            colormap,
            ..ImageConfig::default()
        };
        let spec = StftPlan::new(&StftConfig::default()).unwrap().compute(&x);
        let mut r = Renderer::new(&image).unwrap();
        let mut u8s = Vec::new();
        r.render_u8(&spec, &mut u8s);
        let c = colormap.channels();
        let mut chw = vec![0f32; c * 50 * 70];
        r.render_chw(&spec, &mut chw);
        for p in 0..50 * 70 {
            for ch in 0..c {
                assert_eq!(chw[ch * 50 * 70 + p], u8s[p * c + ch] as f32 / 255.0);
            }
        }
        assert!(chw.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn fixed_time_mode_pads_and_crops() {
    let image = ImageConfig {
        height: 32,
        width: 100,
        time_axis: TimeAxis::Fixed,
        ..ImageConfig::default()
    };
    let mut r = Renderer::new(&image).unwrap();
    let mut plan = StftPlan::new(&StftConfig::default()).unwrap();
    // 0.5 s = 48 frames: columns 48.. are padding (floor = 0).
    let short = noise_and_tones(8_000, 16_000);
    let spec = plan.compute(&short);
    assert_eq!(spec.frames, 48);
    let region = r.default_region(&spec);
    let img = r.intensity(&spec, &region).to_vec();
    for y in 0..32 {
        assert!(
            img[y * 100 + 48..(y + 1) * 100].iter().all(|&v| v == 0.0),
            "padding must be the floor"
        );
    }
    assert!(
        img.iter().take(48).any(|&v| v > 0.1),
        "speech columns are drawn"
    );
    // 2 s = 198 frames: the first 100 are shown, one frame per column (equal to a 100-frame cut).
    let long = noise_and_tones(32_000, 16_000);
    let spec_long = plan.compute(&long);
    let head = plan.compute(&long[..160 * 99 + 400]);
    assert_eq!(head.frames, 100);
    let region = r.default_region(&spec_long);
    let a = r.intensity(&spec_long, &region).to_vec();
    assert!(a.iter().all(|v| v.is_finite()));
    // Same frames, but normalised by different utterance ranges: compare the ranking of columns.
    let region = r.default_region(&head);
    let b = r.intensity(&head, &region).to_vec();
    let col = |img: &[f32], x: usize| (0..32).map(|y| img[y * 100 + x]).sum::<f32>();
    let order = |img: &[f32]| {
        let mut v: Vec<usize> = (0..100).collect();
        v.sort_by(|&i, &j| col(img, i).partial_cmp(&col(img, j)).unwrap());
        v[90..].to_vec()
    };
    assert_eq!(
        order(&a)[9],
        order(&b)[9],
        "the loudest column is the same frame"
    );
}

#[test]
fn config_shape_validation_and_serialisation() {
    let paper = SpectrogramConfig::paper();
    assert_eq!(paper.input_shape(), (3, 512, 512));
    assert_eq!(paper.stft.window_len(), 400);
    assert_eq!(paper.stft.hop_len(), 160);
    assert_eq!(paper.stft.bins(), 257);
    assert_eq!(SpectrogramConfig::small_gray(64).input_shape(), (1, 64, 64));
    let json = serde_json::to_string(&paper).unwrap();
    let back: SpectrogramConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, paper);
    // Partial configs fill in defaults; unknown keys are rejected.
    let partial: SpectrogramConfig =
        serde_json::from_str(r#"{"image": {"colormap": "gray", "width": 96}}"#).unwrap();
    assert_eq!(partial.input_shape(), (1, 512, 96));
    assert!(serde_json::from_str::<SpectrogramConfig>(r#"{"image": {"colour": "gray"}}"#).is_err());

    let bad = StftConfig {
        n_fft: 256,
        ..StftConfig::default()
    };
    let msg = bad.validate().unwrap_err().to_string();
    assert!(
        msg.contains("FFT length 256") && msg.contains("400 samples"),
        "{msg}"
    );
    assert!(ImageConfig {
        width: 0,
        ..ImageConfig::default()
    }
    .validate()
    .is_err());
    assert!(StftConfig {
        mel_bands: Some(1000),
        ..StftConfig::default()
    }
    .validate()
    .is_err());
}

#[test]
fn silence_and_tiny_inputs_do_not_break_rendering() {
    let cfg = SpectrogramConfig::paper();
    let mut plan = StftPlan::new(&cfg.stft).unwrap();
    let mut r = Renderer::new(&cfg.image).unwrap();
    for x in [vec![0f32; 16_000], vec![0.1f32; 10]] {
        let spec = plan.compute(&x);
        assert!(spec.frames >= 1);
        let mut px = Vec::new();
        r.render_u8(&spec, &mut px);
        assert_eq!(px.len(), 512 * 512 * 3);
    }
}

#[test]
fn colour_lookup_fast_path_matches_the_per_pixel_definition() {
    use rescnn::features::colormap::level;
    use rescnn::features::render::colorize_u8;
    // Odd length (a partial block and a partial group of four), out-of-range values, NaN, ±inf and
    // values at level boundaries.
    let vals: Vec<f32> = (0..1031)
        .map(|i| i as f32 / 1000.0 - 0.015)
        .chain([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5 / 255.0,
            1.5 / 255.0,
            254.5 / 255.0,
        ])
        .collect();
    for colormap in [Colormap::Jet, Colormap::Gray] {
        let t = ColorTable::new(colormap);
        let c = colormap.channels();
        let mut out = vec![0u8; vals.len() * c];
        colorize_u8(&t, &vals, &mut out);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(
                &out[c * i..c * (i + 1)],
                &t.rgb8[level(v) as usize][..c],
                "{colormap:?} value {v}"
            );
        }
    }
}

/// Δ and ΔΔ channels: the image gets two more planes after its colour channel(s), holding the
/// regression deltas (features::deltas) of the unquantised intensities along time; in the
/// fixed-time mode only the columns that hold frames take part (padding gets 0, and the last real
/// column's delta does not see the padding); time reversal flips the padding with the image.
#[test]
fn delta_channels_follow_the_intensity_and_skip_padding() {
    use rescnn::features::deltas::delta_1d;
    let (h, w) = (24, 100);
    let image = ImageConfig {
        height: h,
        width: w,
        colormap: Colormap::Gray,
        time_axis: TimeAxis::Fixed,
        delta_window: 2,
        ..ImageConfig::default()
    };
    assert_eq!(image.channels(), 3);
    assert_eq!(
        SpectrogramConfig {
            image: image.clone(),
            ..SpectrogramConfig::default()
        }
        .input_shape(),
        (3, h, w)
    );
    let mut r = Renderer::new(&image).unwrap();
    let spec = StftPlan::new(&StftConfig::default())
        .unwrap()
        .compute(&noise_and_tones(8_000, 16_000)); // 48 frames: columns 48.. are padding
    let region = r.default_region(&spec);
    let intensity = r.intensity(&spec, &region).to_vec();
    assert_eq!(r.valid_columns(), 0..48);
    let mut chw = vec![0f32; 3 * h * w];
    r.render_chw(&spec, &mut chw);
    let plane = h * w;
    let mut busy = 0;
    for y in 0..h {
        let row = &intensity[y * w..y * w + 48];
        let mut d = vec![0f32; 48];
        let mut dd = vec![0f32; 48];
        delta_1d(row, 2, &mut d);
        delta_1d(&d, 2, &mut dd);
        assert_eq!(
            &chw[plane + y * w..plane + y * w + 48],
            d.as_slice(),
            "Δ row {y}"
        );
        assert_eq!(
            &chw[2 * plane + y * w..2 * plane + y * w + 48],
            dd.as_slice()
        );
        assert!(chw[plane + y * w + 48..plane + (y + 1) * w]
            .iter()
            .all(|&v| v == 0.0));
        assert!(chw[2 * plane + y * w + 48..2 * plane + (y + 1) * w]
            .iter()
            .all(|&v| v == 0.0));
        busy += d.iter().filter(|v| v.abs() > 1e-3).count();
    }
    assert!(
        busy > h * 10,
        "the deltas of a noisy chirp are mostly non-zero ({busy})"
    );
    // Time reversal: padding moves to the start and the deltas change sign (a reversed ramp
    // falls), so Δ of the flipped image at column w-1-t is −Δ at t.
    r.intensity(&spec, &region);
    r.flip_time();
    assert_eq!(r.valid_columns(), w - 48..w);
    let mut flipped = vec![0f32; 3 * h * w];
    r.colorize_chw(false, &mut flipped);
    for y in 0..h {
        for t in 0..48 {
            let a = chw[plane + y * w + t];
            let b = flipped[plane + y * w + (w - 1 - t)];
            // Tolerance: the same terms summed in the opposite order (f32).
            assert!((a + b).abs() < 1e-6, "row {y} column {t}: {a} vs {b}");
        }
        assert!(flipped[plane + y * w..plane + y * w + w - 48]
            .iter()
            .all(|&v| v == 0.0));
    }
    // Too wide a window is refused with the setting's name.
    let bad = ImageConfig {
        delta_window: 11,
        ..image
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("delta_window"), "{e}");
}
