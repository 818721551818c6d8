//! Corpus loaders on file trees made here: EMO-DB names, RAVDESS names and its two label sets, the
//! folder-per-class layout, CSV manifests read and written, bad files all reported together, and
//! the summary.

use std::path::Path;

use rescnn::audio::write_wav_i16;
use rescnn::data::ravdess::{self, RavdessLabels, RavdessOptions};
use rescnn::data::{emodb, folders, manifest, LoadOptions, Source, EMOTIONS};

fn tone_file(path: &Path, seconds: f32, rate: u32) {
    let n = (seconds * rate as f32) as usize;
    let x: Vec<f32> = (0..n).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
    write_wav_i16(path, &x, rate).unwrap();
}

fn class_index(name: &str) -> usize {
    EMOTIONS.iter().position(|&e| e == name).unwrap()
}

#[test]
fn emodb_names_labels_speakers_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = [
        "03a01Wa", "03a02Lb", "08b01Ea", "08b02Ac", "09a05Fa", "10b03Ta", "11a04Nd",
    ];
    for (k, name) in good.iter().enumerate() {
        tone_file(
            &dir.path().join(format!("{name}.wav")),
            0.5 + k as f32 * 0.1,
            16_000,
        );
    }
    std::fs::write(
        dir.path().join("README.txt"),
        "not audio, not a .wav: ignored",
    )
    .unwrap();
    // Three bad files: a name off the convention, a truncated WAV, text with a .wav name.
    tone_file(&dir.path().join("hello.wav"), 0.2, 16_000);
    tone_file(&dir.path().join("12a01Xa.wav"), 0.2, 16_000);
    let full = std::fs::read(dir.path().join("03a01Wa.wav")).unwrap();
    std::fs::write(dir.path().join("13a01Wa.wav"), &full[..full.len() / 2]).unwrap();
    std::fs::write(dir.path().join("14a01Wa.wav"), b"definitely not RIFF").unwrap();

    let err = emodb::load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    for bad in ["hello.wav", "12a01Xa.wav", "13a01Wa.wav", "14a01Wa.wav"] {
        assert!(err.contains(bad), "the error must list {bad}: {err}");
    }
    assert!(err.contains("4 bad file(s)"), "{err}");
    assert!(err.contains("unknown emotion letter 'X'"), "{err}");
    assert!(err.contains("truncated"), "{err}");

    let c = emodb::load(dir.path(), &LoadOptions { skip_bad: true }).unwrap();
    assert_eq!(c.len(), good.len());
    assert_eq!(
        c.classes,
        EMOTIONS.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(c.class_counts(), vec![1; 7], "one file per emotion letter");
    let u = &c.utterances[c.find("08b02Ac.wav").unwrap()];
    assert_eq!((u.label, u.speaker.as_str()), (class_index("fear"), "08"));
    let u = &c.utterances[c.find("03a02Lb.wav").unwrap()];
    assert_eq!(u.label, class_index("boredom"));
    assert!((u.duration_s - 0.6).abs() < 1e-3);
    assert_eq!(c.speakers(), vec!["03", "08", "09", "10", "11"]);

    let summary = c.summary().to_string();
    assert!(
        summary.contains("7 utterances") && summary.contains("5 speakers"),
        "{summary}"
    );
    assert!(
        summary.contains("anger 1") && summary.contains("03 2"),
        "{summary}"
    );

    let parsed = emodb::parse_name("16b10Tb").unwrap();
    assert_eq!(
        (
            parsed.speaker.as_str(),
            parsed.text.as_str(),
            parsed.version
        ),
        ("16", "b10", 'b')
    );
    assert!(emodb::parse_name("16b10T").is_err());
    assert!(emodb::load(dir.path().join("nope"), &LoadOptions::default()).is_err());
}

#[test]
fn ravdess_names_and_both_label_sets() {
    let dir = tempfile::tempdir().unwrap();
    let actor = dir.path().join("Actor_01");
    std::fs::create_dir_all(&actor).unwrap();
    let actor2 = dir.path().join("Actor_02");
    std::fs::create_dir_all(&actor2).unwrap();
    // Speech, emotions 1..8 for actor 1; a song file; two emotions for actor 2.
    for e in 1..=8 {
        tone_file(
            &actor.join(format!("03-01-{e:02}-01-01-01-01.wav")),
            0.3,
            48_000,
        );
    }
    tone_file(&actor.join("03-02-05-01-01-01-01.wav"), 0.3, 48_000);
    tone_file(&actor2.join("03-01-05-02-02-01-02.wav"), 0.3, 48_000);
    tone_file(&actor2.join("03-01-02-01-01-02-02.wav"), 0.3, 48_000);

    let native = ravdess::load(
        dir.path(),
        &RavdessOptions {
            labels: RavdessLabels::Native,
            ..RavdessOptions::default()
        },
    )
    .unwrap();
    assert_eq!(native.classes.len(), 8);
    assert_eq!(native.len(), 10, "song left out by default");
    assert_eq!(native.class_counts(), vec![1, 2, 1, 1, 2, 1, 1, 1]);
    assert_eq!(native.speakers(), vec!["actor01", "actor02"]);

    let mapped = ravdess::load(dir.path(), &RavdessOptions::default()).unwrap();
    assert_eq!(
        mapped.classes,
        EMOTIONS.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(mapped.len(), 9, "surprised is left out");
    let counts = mapped.class_counts();
    assert_eq!(counts[class_index("neutral")], 3, "neutral + calm ×2");
    assert_eq!(counts[class_index("anger")], 2);
    assert_eq!(counts[class_index("boredom")], 0);

    let with_song = ravdess::load(
        dir.path(),
        &RavdessOptions {
            include_song: true,
            ..RavdessOptions::default()
        },
    )
    .unwrap();
    assert_eq!(with_song.len(), 10);

    tone_file(&actor.join("03-01-09-01-01-01-01.wav"), 0.3, 48_000);
    let err = ravdess::load(dir.path(), &RavdessOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("03-01-09-01-01-01-01.wav") && err.contains("emotion code 09"),
        "{err}"
    );
}

#[test]
fn folder_per_class_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (class, speaker, n) in [
        ("anger", Some("s1"), 2),
        ("anger", Some("s2"), 1),
        ("sadness", None, 3),
    ] {
        let d = match speaker {
            Some(s) => dir.path().join(class).join(s),
            None => dir.path().join(class),
        };
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..n {
            tone_file(&d.join(format!("u{k}.wav")), 0.25, 8_000);
        }
    }
    let c = folders::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(
        c.classes.len(),
        7,
        "all emotion names: the canonical seven-class order"
    );
    assert_eq!(c.len(), 6);
    assert_eq!(c.class_counts()[class_index("anger")], 3);
    assert_eq!(c.class_counts()[class_index("sadness")], 3);
    assert_eq!(c.speakers(), vec!["s1", "s2", "unknown"]);
    assert!(c.find("anger/s2/u0.wav").is_some());

    // Non-emotion class names: sorted folder names.
    let other = tempfile::tempdir().unwrap();
    for class in ["zebra", "apple"] {
        std::fs::create_dir_all(other.path().join(class)).unwrap();
        tone_file(&other.path().join(class).join("x.wav"), 0.25, 8_000);
    }
    let c = folders::load(other.path(), &LoadOptions::default()).unwrap();
    assert_eq!(c.classes, vec!["apple", "zebra"]);

    // A broken file is reported with its path.
    std::fs::write(other.path().join("apple").join("bad.wav"), b"RIFF").unwrap();
    let err = folders::load(other.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.wav"), "{err}");
}

#[test]
fn csv_manifest_round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio, with comma");
    std::fs::create_dir_all(&audio).unwrap();
    tone_file(&audio.join("a.wav"), 0.3, 16_000);
    tone_file(&audio.join("b \"q\".wav"), 0.3, 16_000);
    tone_file(&dir.path().join("c.wav"), 0.3, 16_000);
    let text = "path,label,speaker\n\"audio, with comma/a.wav\",anger,spk1\n\"audio, with comma/b \"\"q\"\".wav\",fear,spk2\nc.wav,anger,\n";
    let m = dir.path().join("list.csv");
    std::fs::write(&m, text).unwrap();
    let c = manifest::read(&m, &LoadOptions::default()).unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c.classes.len(), 7);
    assert_eq!(c.class_counts()[class_index("anger")], 2);
    assert_eq!(c.speakers(), vec!["spk1", "spk2", "unknown"]);

    // Written out (elsewhere) and read back: the same utterances, labels and speakers.
    let out_dir = tempfile::tempdir().unwrap();
    let m2 = out_dir.path().join("sub").join("copy.csv");
    manifest::write(&m2, &c).unwrap();
    let back = manifest::read(&m2, &LoadOptions::default()).unwrap();
    assert_eq!(back.len(), c.len());
    let key = |c: &rescnn::data::Corpus| {
        let mut v: Vec<(String, String, String)> = c
            .utterances
            .iter()
            .map(|u| {
                let Source::File(p) = &u.source else { panic!() };
                (
                    std::fs::canonicalize(p).unwrap().display().to_string(),
                    c.classes[u.label].clone(),
                    u.speaker.clone(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&back), key(&c));

    // Bad header, bad lines and missing files: all named.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "file,label\nx.wav,anger\n").unwrap();
    let e = manifest::read(&bad, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.csv") && e.contains("expected 'path,label,speaker'"),
        "{e}"
    );
    std::fs::write(
        &bad,
        "path,label,speaker\nc.wav,anger,s\nmissing.wav,fear,s\nonly-two,fields\n\"open,quote\n",
    )
    .unwrap();
    let e = manifest::read(&bad, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.wav") && e.contains("line 4") && e.contains("line 5"),
        "{e}"
    );
    let skipped = manifest::read(&bad, &LoadOptions { skip_bad: true }).unwrap();
    assert_eq!(skipped.len(), 1);

    // The in-memory synthetic corpus cannot be listed without files.
    let synth = rescnn::data::synth::generate(&rescnn::data::SynthConfig {
        speakers: 1,
        per_class_per_speaker: 1,
        ..Default::default()
    })
    .unwrap();
    assert!(manifest::write(out_dir.path().join("s.csv"), &synth).is_err());
}

#[test]
fn corpus_specs_parse_and_load() {
    use rescnn::data::CorpusSpec;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("anger")).unwrap();
    tone_file(&dir.path().join("anger").join("a.wav"), 0.2, 16_000);
    std::fs::create_dir_all(dir.path().join("fear")).unwrap();
    tone_file(&dir.path().join("fear").join("b.wav"), 0.2, 16_000);
    let spec: CorpusSpec = format!("folders:{}", dir.path().display()).parse().unwrap();
    assert_eq!(spec.load(&LoadOptions::default()).unwrap().len(), 2);
    let synth: CorpusSpec = "synthetic:3".parse().unwrap();
    let CorpusSpec::Synthetic(cfg) = &synth else {
        panic!("{synth:?}")
    };
    assert_eq!(cfg.seed, 3);
    assert!(matches!(
        "list.CSV".parse::<CorpusSpec>().unwrap(),
        CorpusSpec::Manifest(_)
    ));
    assert!(matches!(
        "emodb".parse::<CorpusSpec>().unwrap(),
        CorpusSpec::Emodb(_)
    ));
    let e = "wav:/x".parse::<CorpusSpec>().unwrap_err().to_string();
    assert!(e.contains("unknown corpus 'wav:/x'"), "{e}");
    assert!("folders:".parse::<CorpusSpec>().is_err());
    assert!("synthetic:abc".parse::<CorpusSpec>().is_err());
}
