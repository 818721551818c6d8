//! The prosody vectors on the built-in synthetic corpus (whose emotions set pitch level, range,
//! rate, loudness and tilt): they follow the generator's known F0 ordering, carry emotion
//! information a speaker-independent classifier can use, and are cached on disk under a key that
//! covers their settings.

use rescnn::data::synth::{self, SynthConfig};
use rescnn::data::{CacheOptions, InputNormMode, EMOTIONS};
use rescnn::prosody::basic;
use rescnn::prosody::pitch::PitchConfig;
use rescnn::prosody::{ProsodyConfig, ProsodyNorm, ProsodyStore};

fn index(name: &str) -> usize {
    basic::FEATURES.iter().position(|&n| n == name).unwrap()
}

/// Leave-one-speaker-out nearest-centroid accuracy on already normalised vectors.
fn loso_nearest_centroid(x: &[Vec<f32>], labels: &[usize], speakers: &[String]) -> f64 {
    let mut names = speakers.to_vec();
    names.sort();
    names.dedup();
    let dims = x[0].len();
    let mut correct = 0;
    for s in &names {
        let centroids: Vec<Vec<f64>> = (0..7)
            .map(|c| {
                let m: Vec<usize> = (0..x.len())
                    .filter(|&i| &speakers[i] != s && labels[i] == c)
                    .collect();
                (0..dims)
                    .map(|d| m.iter().map(|&i| x[i][d] as f64).sum::<f64>() / m.len() as f64)
                    .collect()
            })
            .collect();
        for i in (0..x.len()).filter(|&i| &speakers[i] == s) {
            let dist = |c: usize| -> f64 {
                (0..dims)
                    .map(|d| (x[i][d] as f64 - centroids[c][d]).powi(2))
                    .sum()
            };
            let pred = (0..7).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
            correct += usize::from(pred == labels[i]);
        }
    }
    correct as f64 / x.len() as f64
}

#[test]
fn synthetic_emotions_show_in_the_prosody_vector() {
    let corpus = synth::generate(&SynthConfig::default()).unwrap();
    let store = ProsodyStore::build(
        &corpus,
        &ProsodyConfig::default(),
        16_000,
        &CacheOptions::in_memory(),
    )
    .unwrap();
    assert_eq!(store.len(), corpus.len());
    assert_eq!(store.stats.computed, corpus.len());

    // The generator scales each speaker's F0 by the class: fear 1.35, anger 1.25 against
    // boredom 0.92, sadness 0.88, i.e. 5 to 7 semitones apart. Class means of the tracked F0 must
    // keep that order with at least 3 semitones between the groups (jitter, tremor, declination
    // and the speakers' spread blur each utterance, not the class means).
    let class_mean = |c: usize| {
        let v: Vec<f64> = (0..corpus.len())
            .filter(|&i| corpus.utterances[i].label == c)
            .map(|i| store.vector(i)[index("f0_p50_st")] as f64)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let class = |name: &str| EMOTIONS.iter().position(|&e| e == name).unwrap();
    let (high, low) = (
        class_mean(class("fear")).min(class_mean(class("anger"))),
        class_mean(class("sadness")).max(class_mean(class("boredom"))),
    );
    assert!(
        high > low + 3.0,
        "median F0 of fear/anger {high:.1} st vs sadness/boredom {low:.1} st"
    );

    // Speaker-normalised vectors, leave one speaker out, nearest centroid: well above chance
    // (14.3 %). The README quotes 39 % for hand-picked speaker-normalised pitch/rate/tilt/ZCR
    // features with a similar classifier; this vector reached 67 % when written, and 55 % is the
    // bar (with F0 taken from a wrong octave, or from noise, it falls towards the energy
    // features' share).
    let speakers: Vec<String> = corpus
        .utterances
        .iter()
        .map(|u| u.speaker.clone())
        .collect();
    let labels: Vec<usize> = corpus.utterances.iter().map(|u| u.label).collect();
    let norm = ProsodyNorm::for_training(InputNormMode::Speaker, &store, &speakers, &[]).unwrap();
    let x: Vec<Vec<f32>> = (0..corpus.len())
        .map(|i| norm.normalised(&store, i))
        .collect();
    let acc = loso_nearest_centroid(&x, &labels, &speakers);
    println!(
        "prosody vector, speaker-normalised, LOSO nearest centroid: {:.1} %",
        100.0 * acc
    );
    assert!(acc > 0.55, "accuracy {:.1} %", 100.0 * acc);
}

/// A small synthetic corpus and cache options writing to a fresh temporary folder (kept alive by
/// the returned guard).
fn corpus_with_disk_cache(
    speakers: usize,
    per_class_per_speaker: usize,
) -> (rescnn::data::Corpus, tempfile::TempDir, CacheOptions) {
    let corpus = synth::generate(&SynthConfig {
        speakers,
        per_class_per_speaker,
        ..SynthConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = CacheOptions {
        dir: Some(dir.path().to_path_buf()),
        progress: false,
        variants: Vec::new(),
    };
    (corpus, dir, opts)
}

#[test]
fn disk_cache_round_trip_and_key() {
    let (corpus, dir, opts) = corpus_with_disk_cache(2, 1);
    let cfg = ProsodyConfig::default();
    let a = ProsodyStore::build(&corpus, &cfg, 16_000, &opts).unwrap();
    assert_eq!((a.stats.computed, a.stats.loaded), (corpus.len(), 0));
    let b = ProsodyStore::build(&corpus, &cfg, 16_000, &opts).unwrap();
    assert_eq!((b.stats.computed, b.stats.loaded), (0, corpus.len()));
    for i in 0..corpus.len() {
        assert_eq!(a.vector(i), b.vector(i), "utterance {i}");
    }
    // Another tracker setting or analysis rate is another key: computed again, not read stale.
    let other = ProsodyConfig {
        pitch: PitchConfig {
            threshold: 0.15,
            ..PitchConfig::default()
        },
        ..ProsodyConfig::default()
    };
    let c = ProsodyStore::build(&corpus, &other, 16_000, &opts).unwrap();
    assert_eq!(c.stats.computed, corpus.len());
    let d = ProsodyStore::build(&corpus, &cfg, 8_000, &opts).unwrap();
    assert_eq!(d.stats.computed, corpus.len());
    // A damaged entry is recomputed, with the same result.
    for e in std::fs::read_dir(dir.path().join("prosody-v1")).unwrap() {
        std::fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    let e = ProsodyStore::build(&corpus, &cfg, 16_000, &opts).unwrap();
    assert_eq!(e.stats.computed, corpus.len());
    assert_eq!(e.vector(0), a.vector(0));
}

/// The full set: the basic vector followed by the functionals (its first entries are the basic
/// vector bit for bit), cached under its own key; and the functionals alone carry the synthetic
/// emotions: a leave-one-speaker-out logistic regression on them (speaker-normalised; the prosody
/// branch's classifier, L2 fixed in advance at 0.3) is well above chance (14.3 %). Measured when
/// written: 44.0 % on the functionals alone, 66.7 % on the basic vector (this 84-utterance corpus
/// encodes emotion in a few prosodic parameters, which the 29 statistics capture directly; on
/// EMO-DB the full set is far ahead, see the README). The bar is 30 %: all-zero or constant
/// functionals give chance.
#[test]
fn the_full_set_extends_the_basic_vector_and_carries_the_emotions() {
    use rescnn::prosody::linear::SoftmaxRegression;
    use rescnn::prosody::ProsodySet;
    let (corpus, _dir, opts) = corpus_with_disk_cache(4, 3);
    let basic = ProsodyStore::build(&corpus, &ProsodyConfig::default(), 16_000, &opts).unwrap();
    let full_cfg = ProsodyConfig {
        set: ProsodySet::Full,
        ..ProsodyConfig::default()
    };
    let full = ProsodyStore::build(&corpus, &full_cfg, 16_000, &opts).unwrap();
    assert_eq!(
        full.stats.computed,
        corpus.len(),
        "not read from the basic set's entries"
    );
    assert_eq!(full.vector(0).len(), full_cfg.vector_len());
    assert_eq!(full_cfg.names().len(), full_cfg.vector_len());
    for i in 0..corpus.len() {
        assert_eq!(
            &full.vector(i)[..basic::LEN],
            basic.vector(i),
            "utterance {i}"
        );
    }
    let speakers: Vec<String> = corpus
        .utterances
        .iter()
        .map(|u| u.speaker.clone())
        .collect();
    let labels: Vec<usize> = corpus.utterances.iter().map(|u| u.label).collect();
    let accuracy = |store: &ProsodyStore, from: usize| {
        let norm =
            ProsodyNorm::for_training(InputNormMode::Speaker, store, &speakers, &[]).unwrap();
        let x: Vec<Vec<f32>> = (0..corpus.len())
            .map(|i| norm.normalised(store, i)[from..].to_vec())
            .collect();
        let mut correct = 0;
        for s in corpus.speakers() {
            let train: Vec<usize> = (0..x.len()).filter(|&i| speakers[i] != s).collect();
            let rows: Vec<&[f32]> = train.iter().map(|&i| x[i].as_slice()).collect();
            let y: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
            let m = SoftmaxRegression::fit(&rows, &y, 7, 0.3).unwrap();
            for i in (0..x.len()).filter(|&i| speakers[i] == s) {
                let p = m.predict(&x[i]);
                correct += usize::from(rescnn::evaluation::predict::argmax(&p) == labels[i]);
            }
        }
        correct as f64 / x.len() as f64
    };
    let (a, b) = (accuracy(&basic, 0), accuracy(&full, basic::LEN));
    println!(
        "LOSO logistic regression: basic vector {:.1} %, functionals alone {:.1} %",
        100.0 * a,
        100.0 * b
    );
    assert!(b > 0.3, "functionals alone: accuracy {:.1} %", 100.0 * b);
}

/// The late fusion is the two-member weighted mean of an ensemble, bit for bit: on probabilities
/// with many significant digits, at weights whose complement is inexact in binary (0.1, 0.3, 1/3)
/// as well as 0, 0.5 and 1, with the branch's utterances in another order; and the same refusals
/// with the same messages (a missing utterance, a class count that differs, an extra utterance,
/// a weight outside [0, 1]).
#[test]
fn fusion_is_the_ensembles_weighted_mean_bit_for_bit() {
    use rand::{RngExt, SeedableRng};
    use rescnn::evaluation::ensemble::average;
    use rescnn::prosody::branch::{fuse, Probabilities};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut probabilities = |n: usize| -> Probabilities {
        (0..n)
            .map(|u| {
                let raw: Vec<f64> = (0..7).map(|_| rng.random::<f64>()).collect();
                let sum: f64 = raw.iter().sum();
                (3 * u + 1, raw.iter().map(|p| p / sum).collect())
            })
            .collect()
    };
    let network = probabilities(40);
    let mut branch = probabilities(40);
    branch.reverse();
    for w in [0.0, 0.1, 0.3, 1.0 / 3.0, 0.5, 0.7, 1.0] {
        let fused = fuse(network.clone(), branch.clone(), w).unwrap();
        let want = average(&[network.clone(), branch.clone()], Some(&[1.0 - w, w])).unwrap();
        assert_eq!(fused.len(), want.len());
        for ((u, p), (v, q)) in fused.iter().zip(&want) {
            assert_eq!(u, v);
            let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(p), bits(q), "utterance {u} at weight {w}");
        }
    }
    let message = |r: rescnn::Result<Probabilities>| r.unwrap_err().to_string();
    let refusals: Vec<(Probabilities, f64)> = vec![
        (branch[1..].to_vec(), 0.5),
        (
            branch.iter().map(|(u, p)| (*u, p[..6].to_vec())).collect(),
            0.5,
        ),
        ([branch.clone(), vec![(1000, vec![0.0; 7])]].concat(), 0.5),
        (branch.clone(), 1.5),
        (branch.clone(), f64::NAN),
    ];
    for (other, w) in refusals {
        let mine = message(fuse(network.clone(), other.clone(), w));
        let theirs = message(average(&[network.clone(), other], Some(&[1.0 - w, w])));
        assert_eq!(mine, theirs);
    }
}
