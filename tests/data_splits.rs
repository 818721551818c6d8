//! Split invariants: no utterance in two parts, no speaker in both training and test for speaker
//! splits, stratification within one utterance per class, validation drawn from the training side,
//! determinism by seed, file round trip, and the errors.

use std::collections::BTreeSet;
use std::sync::Arc;

use rescnn::data::split::{self, Protocol, Split, SplitOptions};
use rescnn::data::{synth, Corpus, Source, SynthConfig, Utterance};

fn corpus() -> Corpus {
    synth::generate(&SynthConfig {
        per_class_per_speaker: 5,
        speakers: 6,
        ..SynthConfig::default()
    })
    .unwrap()
}

/// A corpus from (label, speaker) pairs, with dummy audio.
fn tiny(classes: usize, items: &[(usize, &str)]) -> Corpus {
    Corpus {
        name: "tiny".into(),
        classes: (0..classes).map(|c| format!("c{c}")).collect(),
        utterances: items
            .iter()
            .enumerate()
            .map(|(i, &(label, speaker))| Utterance {
                id: format!("u{i}"),
                source: Source::Samples {
                    samples: Arc::new(vec![0.0; 10]),
                    rate: 16_000,
                },
                label,
                speaker: speaker.into(),
                duration_s: 1.0,
            })
            .collect(),
    }
}

fn check_partition(c: &Corpus, s: &Split) {
    let all: Vec<usize> = s
        .train
        .iter()
        .chain(&s.val)
        .chain(&s.test)
        .copied()
        .collect();
    let set: BTreeSet<usize> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "an utterance is in two parts");
    assert_eq!(set.len(), c.len(), "every utterance is in some part");
    assert!(!s.train.is_empty() && !s.test.is_empty());
}

fn speakers_of(c: &Corpus, v: &[usize]) -> BTreeSet<String> {
    v.iter().map(|&i| c.utterances[i].speaker.clone()).collect()
}

#[test]
fn random_split_is_stratified_and_seeded() {
    let c = corpus();
    let opts = SplitOptions {
        seed: 7,
        ..SplitOptions::default()
    };
    let s = split::random(&c, 0.2, &opts).unwrap();
    check_partition(&c, &s);
    for (class, &n) in c.class_counts().iter().enumerate() {
        let count = |v: &[usize]| {
            v.iter()
                .filter(|&&i| c.utterances[i].label == class)
                .count() as f64
        };
        assert!(
            (count(&s.test) - 0.2 * n as f64).abs() <= 1.0,
            "class {class}: test count off"
        );
        assert!(
            (count(&s.val) - 0.1 * n as f64).abs() <= 1.0,
            "class {class}: val count off"
        );
    }
    assert_eq!(
        split::random(&c, 0.2, &opts).unwrap(),
        s,
        "same seed, same split"
    );
    assert_ne!(
        split::random(&c, 0.2, &SplitOptions { seed: 8, ..opts })
            .unwrap()
            .test,
        s.test
    );
}

#[test]
fn held_out_speakers_never_meet_training() {
    let c = corpus();
    let test = vec!["syn02".to_string(), "syn05".to_string()];
    let s = split::held_out_speakers(&c, &test, &SplitOptions::default()).unwrap();
    check_partition(&c, &s);
    let (tr, va, te) = (
        speakers_of(&c, &s.train),
        speakers_of(&c, &s.val),
        speakers_of(&c, &s.test),
    );
    assert_eq!(te, test.iter().cloned().collect());
    assert!(tr.is_disjoint(&te) && va.is_disjoint(&te) && tr.is_disjoint(&va));
    assert_eq!(
        va.len(),
        1,
        "one validation speaker from the training speakers"
    );
    let Protocol::Speakers { val_speakers, .. } = &s.protocol else {
        panic!()
    };
    assert_eq!(val_speakers.len(), 1);

    // val_speakers = 0: validation is a share of the training speakers' utterances.
    let s0 = split::held_out_speakers(
        &c,
        &test,
        &SplitOptions {
            val_speakers: 0,
            ..SplitOptions::default()
        },
    )
    .unwrap();
    check_partition(&c, &s0);
    assert!(speakers_of(&c, &s0.val).is_subset(&speakers_of(&c, &s0.train)));
    assert!(speakers_of(&c, &s0.val).is_disjoint(&te));
}

#[test]
fn leave_one_speaker_out_tests_each_speaker_once() {
    let c = corpus();
    let folds = split::leave_one_speaker_out(&c, &SplitOptions::default()).unwrap();
    assert_eq!(folds.len(), 6);
    let mut tested = Vec::new();
    for f in &folds {
        check_partition(&c, f);
        let te = speakers_of(&c, &f.test);
        assert_eq!(te.len(), 1);
        assert!(speakers_of(&c, &f.train).is_disjoint(&te));
        assert!(speakers_of(&c, &f.val).is_disjoint(&te));
        assert!(speakers_of(&c, &f.val).is_disjoint(&speakers_of(&c, &f.train)));
        tested.extend(te);
    }
    tested.sort();
    assert_eq!(tested, c.speakers());
}

#[test]
fn split_errors() {
    let c = corpus();
    let e = split::held_out_speakers(&c, &["nobody".into()], &SplitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown test speaker 'nobody'") && e.contains("syn01"),
        "{e}"
    );

    // Class 1 is spoken only by speaker b: holding b out leaves it with no training speaker.
    let t = tiny(2, &[(0, "a"), (0, "a"), (1, "b"), (0, "c"), (0, "c")]);
    let e = split::held_out_speakers(&t, &["b".into()], &SplitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("class 'c1' has no training speaker"), "{e}");
    // Holding out c for test leaves a and b; b cannot be the validation speaker, a cannot either
    // (class 0 would have no training speaker).
    let e = split::held_out_speakers(&t, &["c".into()], &SplitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot hold out 1 validation speaker"), "{e}");

    let one = tiny(3, &[(2, "a"), (2, "b"), (2, "c")]);
    let e = split::random(&one, 0.3, &SplitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least two"), "{e}");
    assert!(split::leave_one_speaker_out(&one, &SplitOptions::default()).is_err());
    assert!(split::random(&c, 1.5, &SplitOptions::default()).is_err());
    let all = c.speakers();
    assert!(split::held_out_speakers(&c, &all, &SplitOptions::default()).is_err());
}

#[test]
fn split_files_round_trip_and_reject_unknown_ids() {
    let c = corpus();
    let s = split::held_out_speakers(
        &c,
        &["syn03".into()],
        &SplitOptions {
            seed: 3,
            ..SplitOptions::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs").join("split.json");
    s.save(&c, &path).unwrap();
    assert_eq!(Split::load(&c, &path).unwrap(), s);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("syn03/anger_00"),
        "the file names utterances by id"
    );

    let other = synth::generate(&SynthConfig {
        per_class_per_speaker: 1,
        speakers: 2,
        ..SynthConfig::default()
    })
    .unwrap();
    let e = Split::load(&other, &path).unwrap_err().to_string();
    assert!(e.contains("split.json") && e.contains("not in"), "{e}");
    println!("{}", s.describe(&c));
}
