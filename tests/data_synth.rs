//! The synthetic corpus: deterministic by seed, balanced, of the intended length, and learnable but
//! not by loudness: a classifier on mean energy alone stays far from solving it, while simple
//! pitch/rate/spectral features separate the classes measurably better.

use rescnn::data::synth::{self, SynthConfig};
use rescnn::data::{Corpus, Source, EMOTIONS};

fn samples(c: &Corpus, i: usize) -> &[f32] {
    match &c.utterances[i].source {
        Source::Samples { samples, .. } => samples.as_slice(),
        Source::File(_) => panic!("synthetic utterances live in memory"),
    }
}

#[test]
fn deterministic_by_seed_and_independent_of_threads() {
    let cfg = SynthConfig {
        per_class_per_speaker: 2,
        speakers: 3,
        ..SynthConfig::default()
    };
    let a = synth::generate(&cfg).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = pool.install(|| synth::generate(&cfg).unwrap());
    assert_eq!(a.len(), b.len());
    for i in 0..a.len() {
        assert_eq!(a.utterances[i].id, b.utterances[i].id);
        assert_eq!(
            samples(&a, i),
            samples(&b, i),
            "utterance {i} differs between runs"
        );
    }
    let c = synth::generate(&SynthConfig {
        seed: 1,
        ..cfg.clone()
    })
    .unwrap();
    let same = (0..a.len())
        .filter(|&i| samples(&a, i) == samples(&c, i))
        .count();
    assert_eq!(same, 0, "another seed gives other utterances");
}

#[test]
fn balanced_named_like_emodb_and_of_the_intended_length() {
    let cfg = SynthConfig::default();
    let c = synth::generate(&cfg).unwrap();
    assert_eq!(
        c.classes,
        EMOTIONS.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(c.len(), 8 * 7 * 8);
    assert_eq!(c.class_counts(), vec![64; 7]);
    let speakers = c.speakers();
    assert_eq!(speakers.len(), 8);
    for s in &speakers {
        for class in 0..7 {
            let n = c
                .utterances
                .iter()
                .filter(|u| &u.speaker == s && u.label == class)
                .count();
            assert_eq!(n, 8, "speaker {s} class {class}");
        }
    }
    let durations: Vec<f64> = c.utterances.iter().map(|u| u.duration_s).collect();
    let mean = durations.iter().sum::<f64>() / durations.len() as f64;
    let (min, max) = durations
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &d| (a.min(d), b.max(d)));
    assert!((0.9..=1.6).contains(&mean), "mean duration {mean:.2} s");
    assert!(min > 0.4 && max < 3.0, "durations {min:.2}..{max:.2} s");
    for i in 0..c.len() {
        let x = samples(&c, i);
        assert!(
            x.iter().all(|v| v.is_finite() && v.abs() < 1.0),
            "utterance {i} clips or is not finite"
        );
    }
}

/// Per-utterance features measured on the waveform.
struct Features {
    energy_db: f64,
    others: Vec<f64>,
}

fn measure(x: &[f32], rate: f64) -> Features {
    let energy = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    // 20 ms frames: active frames are those within 30 dB of the loudest.
    let frame = (0.02 * rate) as usize;
    let frames: Vec<&[f32]> = x.chunks_exact(frame).collect();
    let fe: Vec<f64> = frames
        .iter()
        .map(|f| f.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / frame as f64)
        .collect();
    let peak = fe.iter().copied().fold(0.0, f64::max);
    let active: Vec<usize> = (0..fe.len()).filter(|&i| fe[i] > peak * 1e-3).collect();
    // Zero-crossing rate of active frames (brightness / noisiness).
    let zcr = active
        .iter()
        .map(|&i| {
            frames[i]
                .windows(2)
                .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                .count() as f64
                / frame as f64
        })
        .sum::<f64>()
        / active.len().max(1) as f64;
    // Pitch by autocorrelation on active frames (60–400 Hz), mean and spread in semitones.
    let mut pitches = Vec::new();
    for &i in &active {
        if i + 2 >= frames.len() {
            continue;
        }
        let seg: Vec<f64> = x[i * frame..i * frame + 2 * frame]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let (lo, hi) = ((rate / 400.0) as usize, (rate / 60.0) as usize);
        let r0: f64 = seg[..frame].iter().map(|v| v * v).sum();
        let mut best = (0.0, 0);
        for lag in lo..hi.min(frame) {
            let r: f64 = (0..frame).map(|k| seg[k] * seg[k + lag]).sum();
            if r > best.0 {
                best = (r, lag);
            }
        }
        if best.1 > 0 && best.0 > 0.5 * r0 {
            pitches.push(12.0 * (rate / best.1 as f64 / 100.0).log2());
        }
    }
    let pm = pitches.iter().sum::<f64>() / pitches.len().max(1) as f64;
    let ps = (pitches.iter().map(|p| (p - pm).powi(2)).sum::<f64>() / pitches.len().max(1) as f64)
        .sqrt();
    // Spectral tilt proxy: energy of the first difference relative to the signal's (level-free).
    let diff = x
        .windows(2)
        .map(|w| ((w[1] - w[0]) as f64).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    let tilt = 10.0 * (diff / energy).log10();
    // Speaking rate: active share of the utterance and its duration.
    let duration = x.len() as f64 / rate;
    let active_share = active.len() as f64 / fe.len() as f64;
    Features {
        energy_db: 10.0 * energy.log10(),
        others: vec![
            zcr * 100.0,
            pm,
            ps,
            tilt,
            active_share * 10.0,
            duration * 5.0,
        ],
    }
}

/// Leave-one-speaker-out nearest-centroid accuracy on standardised features.
fn nearest_centroid_accuracy(feats: &[Vec<f64>], labels: &[usize], speakers: &[String]) -> f64 {
    let dims = feats[0].len();
    let mut spk: Vec<&String> = speakers.iter().collect();
    spk.sort();
    spk.dedup();
    let mut correct = 0;
    for s in spk {
        let train: Vec<usize> = (0..feats.len()).filter(|&i| &speakers[i] != s).collect();
        let mean: Vec<f64> = (0..dims)
            .map(|d| train.iter().map(|&i| feats[i][d]).sum::<f64>() / train.len() as f64)
            .collect();
        let std: Vec<f64> = (0..dims)
            .map(|d| {
                (train
                    .iter()
                    .map(|&i| (feats[i][d] - mean[d]).powi(2))
                    .sum::<f64>()
                    / train.len() as f64)
                    .sqrt()
                    .max(1e-9)
            })
            .collect();
        let z = |v: &[f64]| -> Vec<f64> { (0..dims).map(|d| (v[d] - mean[d]) / std[d]).collect() };
        let centroids: Vec<Vec<f64>> = (0..7)
            .map(|c| {
                let members: Vec<Vec<f64>> = train
                    .iter()
                    .filter(|&&i| labels[i] == c)
                    .map(|&i| z(&feats[i]))
                    .collect();
                (0..dims)
                    .map(|d| members.iter().map(|m| m[d]).sum::<f64>() / members.len() as f64)
                    .collect()
            })
            .collect();
        for i in (0..feats.len()).filter(|&i| &speakers[i] == s) {
            let zi = z(&feats[i]);
            let pred = (0..7)
                .min_by(|&a, &b| {
                    let da: f64 = zi
                        .iter()
                        .zip(&centroids[a])
                        .map(|(x, y)| (x - y).powi(2))
                        .sum();
                    let db: f64 = zi
                        .iter()
                        .zip(&centroids[b])
                        .map(|(x, y)| (x - y).powi(2))
                        .sum();
                    da.partial_cmp(&db).unwrap()
                })
                .unwrap();
            correct += usize::from(pred == labels[i]);
        }
    }
    correct as f64 / feats.len() as f64
}

/// Best accuracy any assignment of classes to intervals of one feature can reach ON THE DATA ITSELF
/// (an optimistic bound for a threshold classifier: thresholds fitted on the test data): each of 40
/// quantile bins is given its majority class.
fn best_threshold_accuracy(values: &[f64], labels: &[usize]) -> f64 {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].partial_cmp(&values[b]).unwrap());
    let bins = 40;
    let per = values.len().div_ceil(bins);
    let mut correct = 0;
    for chunk in order.chunks(per) {
        let mut counts = [0usize; 7];
        for &i in chunk {
            counts[labels[i]] += 1;
        }
        correct += counts.iter().max().unwrap();
    }
    correct as f64 / values.len() as f64
}

#[test]
fn mean_energy_alone_does_not_solve_it_but_other_features_carry_the_class() {
    let cfg = SynthConfig::default();
    let c = synth::generate(&cfg).unwrap();
    let feats: Vec<Features> = (0..c.len())
        .map(|i| measure(samples(&c, i), cfg.sample_rate as f64))
        .collect();
    let labels: Vec<usize> = c.utterances.iter().map(|u| u.label).collect();
    let speakers: Vec<String> = c.utterances.iter().map(|u| u.speaker.clone()).collect();

    let energy: Vec<f64> = feats.iter().map(|f| f.energy_db).collect();
    let energy_bound = best_threshold_accuracy(&energy, &labels);
    let energy_nc = nearest_centroid_accuracy(
        &energy.iter().map(|&e| vec![e]).collect::<Vec<_>>(),
        &labels,
        &speakers,
    );
    // Speaker normalisation (z-scores within each speaker), the usual first step in SER: pitch level
    // is mostly the speaker's, the emotion moves it relative to that.
    let mut others: Vec<Vec<f64>> = feats.iter().map(|f| f.others.clone()).collect();
    for s in c.speakers() {
        let idx: Vec<usize> = (0..c.len()).filter(|&i| speakers[i] == s).collect();
        for d in 0..others[0].len() {
            let m = idx.iter().map(|&i| others[i][d]).sum::<f64>() / idx.len() as f64;
            let sd = (idx.iter().map(|&i| (others[i][d] - m).powi(2)).sum::<f64>()
                / idx.len() as f64)
                .sqrt()
                .max(1e-9);
            idx.iter()
                .for_each(|&i| others[i][d] = (others[i][d] - m) / sd);
        }
    }
    let others_nc = nearest_centroid_accuracy(&others, &labels, &speakers);
    println!(
        "7 classes, chance 14.3 %: mean-energy thresholds fitted on the data {:.1} %, mean-energy nearest \
         centroid (leave-one-speaker-out) {:.1} %, speaker-normalised pitch/rate/tilt/ZCR nearest centroid {:.1} %",
        energy_bound * 100.0,
        energy_nc * 100.0,
        others_nc * 100.0
    );
    assert!(
        energy_bound <= 0.50,
        "mean energy alone reaches {:.1} %",
        energy_bound * 100.0
    );
    assert!(
        energy_nc <= 0.35,
        "mean energy nearest centroid reaches {:.1} %",
        energy_nc * 100.0
    );
    assert!(
        others_nc >= energy_nc + 0.15,
        "other features must carry the class: {others_nc} vs {energy_nc}"
    );
}

#[test]
fn export_writes_a_folder_corpus_that_loads_back() {
    let cfg = SynthConfig {
        per_class_per_speaker: 1,
        speakers: 2,
        ..SynthConfig::default()
    };
    let c = synth::generate(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth::export(&c, dir.path()).unwrap();
    let back = rescnn::data::folders::load(dir.path(), &Default::default()).unwrap();
    assert_eq!(back.len(), c.len());
    assert_eq!(back.classes, c.classes);
    assert_eq!(back.speakers(), c.speakers());
    assert_eq!(back.class_counts(), c.class_counts());
}
