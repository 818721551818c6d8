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
