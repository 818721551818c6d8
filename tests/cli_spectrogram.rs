//! `rescnn spectrogram IN.wav -o OUT.png`: writes the PNG the settings ask for, and names the file
//! and the problem when the input is bad.

use std::process::Command;

fn rescnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rescnn"))
}

#[test]
fn writes_a_png_of_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("in.wav");
    let x: Vec<f32> = (0..44_100).map(|i| 0.3 * (i as f32 * 0.07).sin()).collect();
    rescnn::audio::write_wav_i16(&wav, &x, 44_100).unwrap();

    let out = dir.path().join("out.png");
    let status = rescnn()
        .arg("spectrogram")
        .arg(&wav)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (512, 512));
    assert_eq!(img.color(), image::ColorType::Rgb8);

    let out = dir.path().join("gray.png");
    let status = rescnn()
        .args([
            "spectrogram",
            "--colormap",
            "gray",
            "--width",
            "96",
            "--height",
            "64",
            "--mel",
            "64",
        ])
        .arg(&wav)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let img = image::open(&out).unwrap();
    assert_eq!(
        (img.width(), img.height(), img.color()),
        (96, 64, image::ColorType::L8)
    );
}

#[test]
fn bad_input_and_bad_options_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.wav");
    std::fs::write(&bad, b"not a wav file at all").unwrap();
    let r = rescnn()
        .arg("spectrogram")
        .arg(&bad)
        .arg("-o")
        .arg(dir.path().join("x.png"))
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("broken.wav") && err.contains("not a valid WAV"),
        "{err}"
    );
    assert!(!dir.path().join("x.png").exists());

    let r = rescnn()
        .args(["spectrogram", "in.wav", "-o", "x.png", "--n-fft", "128"])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("FFT length 128"), "{err}");
}

/// `--npy` writes exactly what the network sees for the file (the batcher's image: the feature
/// store's spectrogram, rendered without augmentation), and the PNG is that image in 8 bits: its
/// pixels divided by 255 are the same f32 values (the colour table holds 8-bit levels).
#[test]
fn npy_is_the_network_input_and_the_png_holds_it_in_8_bits() {
    use rescnn::data::{CacheOptions, FeatureStore};
    use rescnn::features::{ImageConfig, Renderer, Spectrogram, SpectrogramConfig};

    let dir = tempfile::tempdir().unwrap();
    let corpus = rescnn::data::synth::generate(&rescnn::data::SynthConfig {
        speakers: 1,
        per_class_per_speaker: 1,
        ..Default::default()
    })
    .unwrap();
    rescnn::data::synth::export(&corpus, dir.path()).unwrap();
    let wav = dir.path().join("anger/syn01/anger_00.wav");
    let (png, npy) = (dir.path().join("x.png"), dir.path().join("x.npy"));
    let out = rescnn()
        .args(["spectrogram", "--width", "100", "--height", "64"])
        .arg(&wav)
        .arg("-o")
        .arg(&png)
        .arg("--npy")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (shape, values) = rescnn::export::npy::read(&npy).unwrap();
    assert_eq!(shape, vec![1, 3, 64, 100]);

    let cfg = SpectrogramConfig {
        image: ImageConfig {
            height: 64,
            width: 100,
            ..ImageConfig::default()
        },
        ..SpectrogramConfig::default()
    };
    let files =
        rescnn::inference::model_dir::files_corpus(std::slice::from_ref(&wav), &corpus.classes)
            .unwrap();
    let store = FeatureStore::build(&files, &cfg.stft, &CacheOptions::in_memory()).unwrap();
    let mut spec = Spectrogram {
        frames: 0,
        bins: 0,
        db: Vec::new(),
    };
    store.spectrogram_into(0, 0, &mut spec);
    let mut seen = vec![0f32; 3 * 64 * 100];
    Renderer::new(&cfg.image)
        .unwrap()
        .render_chw(&spec, &mut seen);
    let differ = values
        .iter()
        .zip(&seen)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        differ,
        0,
        "{differ} of {} values differ from the network's input",
        seen.len()
    );

    let img = image::open(&png).unwrap().to_rgb8();
    let plane = 64 * 100;
    for (x, y, px) in img.enumerate_pixels() {
        for c in 0..3 {
            let v = values[c * plane + y as usize * 100 + x as usize];
            assert_eq!(px[c] as f32 / 255.0, v, "pixel ({x}, {y}) channel {c}");
        }
    }
    // Without anything to write, it says what to give.
    let out = rescnn().arg("spectrogram").arg(&wav).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--npy"));
}
