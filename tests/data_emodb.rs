//! The EMO-DB development folder (`$RESCNN_EMODB_DIR`, default `../shared/data/emodb-dev`): exactly
//! the utterances, speakers and class counts its README states. Without the folder this test is
//! compiled as ignored (build.rs sets `cfg(rescnn_emodb)` only when the folder exists), so it is
//! reported as ignored, never as passed.

use rescnn::data::{emodb, split, LoadOptions};

#[test]
#[cfg_attr(
    not(rescnn_emodb),
    ignore = "EMO-DB dev folder not found; set RESCNN_EMODB_DIR"
)]
fn emodb_dev_folder_has_408_utterances_8_speakers_and_the_stated_class_counts() {
    let dir = emodb::default_dir();
    let c = emodb::load(&dir, &LoadOptions::default()).unwrap();
    println!("{}", c.summary());
    assert_eq!(c.len(), 408);
    assert_eq!(
        c.speakers(),
        vec!["03", "08", "09", "10", "11", "12", "13", "14"]
    );
    let count = |name: &str| c.class_counts()[c.classes.iter().position(|x| x == name).unwrap()];
    // README: W 100, L 58, N 63, A 54, F 54, T 49, E 30.
    assert_eq!(count("anger"), 100);
    assert_eq!(count("boredom"), 58);
    assert_eq!(count("neutral"), 63);
    assert_eq!(count("fear"), 54);
    assert_eq!(count("happiness"), 54);
    assert_eq!(count("sadness"), 49);
    assert_eq!(count("disgust"), 30);
    assert!(
        c.utterances
            .iter()
            .all(|u| (u.duration_s - 2.0).abs() < 1e-3),
        "this copy is cut/padded to 2.0 s"
    );

    // The speaker-independent protocol works on it, and speakers 15/16 are (correctly) unknown here.
    let s = split::held_out_speakers(
        &c,
        &["03".into(), "08".into()],
        &split::SplitOptions::default(),
    )
    .unwrap();
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 408);
    let e =
        split::held_out_speakers(&c, &["15".into()], &split::SplitOptions::default()).unwrap_err();
    assert!(e.to_string().contains("unknown test speaker '15'"));
}

#[test]
#[cfg_attr(
    not(rescnn_emodb),
    ignore = "EMO-DB dev folder not found; set RESCNN_EMODB_DIR"
)]
fn rescnn_spectrogram_on_an_emodb_file_writes_a_512_by_512_jet_image() {
    let wav = emodb::default_dir().join("03a01Wa.wav");
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("03a01Wa.png");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rescnn"))
        .arg("spectrogram")
        .arg(&wav)
        .arg("-o")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (512, 512));
    // As in the paper's Fig. 2: mostly dark blue background, the strongest (red) energy in the
    // lower half (low frequencies at the bottom).
    let red_rows: Vec<u32> = img
        .enumerate_pixels()
        .filter(|(_, _, p)| p[0] > 200 && p[2] < 60)
        .map(|(_, y, _)| y)
        .collect();
    assert!(
        !red_rows.is_empty(),
        "an utterance has some red (high-energy) pixels"
    );
    let low_half = red_rows.iter().filter(|&&y| y >= 256).count();
    assert!(
        low_half * 10 >= red_rows.len() * 9,
        "high energy sits at the bottom: {low_half}/{}",
        red_rows.len()
    );
    let blue = img.pixels().filter(|p| p[2] > p[0] && p[2] > p[1]).count();
    assert!(blue > 512 * 512 / 2, "most of the image is blue: {blue}");
}
