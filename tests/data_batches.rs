//! Feature cache (disk round trip, keys, corruption), augmentation determinism and effects, batches
//! (shapes, per-epoch shuffling, balance, normalisation from the training split only).

use rescnn::audio::Perturbation;
use rescnn::data::cache::{CacheOptions, FeatureStore};
use rescnn::data::{split, synth, AugmentConfig, Corpus, SynthConfig};
use rescnn::data::{BatchConfig, Batcher, InputNorm};
use rescnn::features::{Colormap, ImageConfig, Renderer, Spectrogram, StftConfig, StftPlan};

fn corpus() -> Corpus {
    synth::generate(&SynthConfig {
        per_class_per_speaker: 2,
        speakers: 3,
        ..SynthConfig::default()
    })
    .unwrap()
}

fn small_image(colormap: Colormap) -> ImageConfig {
    ImageConfig {
        height: 48,
        width: 40,
        colormap,
        ..ImageConfig::default()
    }
}

#[test]
fn disk_cache_round_trip_keys_and_corruption() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let opts = CacheOptions {
        dir: Some(dir.path().to_path_buf()),
        progress: false,
        variants: vec![],
    };
    let stft = StftConfig::default();
    let first = FeatureStore::build(&c, &stft, &opts).unwrap();
    assert_eq!((first.stats.computed, first.stats.loaded), (c.len(), 0));
    let second = FeatureStore::build(&c, &stft, &opts).unwrap();
    assert_eq!(
        (second.stats.computed, second.stats.loaded),
        (0, c.len()),
        "second build reads the cache"
    );
    let (mut a, mut b) = (
        Spectrogram {
            frames: 0,
            bins: 0,
            db: vec![],
        },
        Spectrogram {
            frames: 0,
            bins: 0,
            db: vec![],
        },
    );
    for i in 0..c.len() {
        first.spectrogram_into(i, 0, &mut a);
        second.spectrogram_into(i, 0, &mut b);
        assert_eq!(a, b);
    }
    // Half precision against the f32 spectrogram: |x| ≤ 128 dB has f16 spacing ≤ 0.0625 (half: 0.031).
    let audio = c.utterances[0].audio().unwrap();
    let exact = StftPlan::new(&stft).unwrap().compute(&audio.samples);
    first.spectrogram_into(0, 0, &mut a);
    let worst = exact
        .db
        .iter()
        .zip(&a.db)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 0.032, "f16 cache error {worst} dB");

    // Other STFT settings are other keys.
    let other = StftConfig {
        hop_ms: 12.5,
        ..stft.clone()
    };
    let third = FeatureStore::build(&c, &other, &opts).unwrap();
    assert_eq!(third.stats.computed, c.len());

    // A corrupted entry is recomputed, not trusted.
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("spec-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 2 * c.len(), "no temporary files left behind");
    for e in &entries {
        std::fs::write(e, b"garbage").unwrap();
    }
    let fourth = FeatureStore::build(&c, &stft, &opts).unwrap();
    assert_eq!(fourth.stats.computed, c.len());
    fourth.spectrogram_into(3, 0, &mut a);
    first.spectrogram_into(3, 0, &mut b);
    assert_eq!(a, b);
}

#[test]
fn perturbed_variants_are_stored_and_differ() {
    let c = corpus();
    let opts = CacheOptions {
        dir: None,
        progress: false,
        variants: vec![
            Perturbation {
                speed: 0.9,
                pitch_semitones: 0.0,
            },
            Perturbation {
                speed: 1.0,
                pitch_semitones: 2.0,
            },
        ],
    };
    let store = FeatureStore::build(&c, &StftConfig::default(), &opts).unwrap();
    assert_eq!(store.variants().len(), 3);
    let (o, slow, high) = (store.stored(0, 0), store.stored(0, 1), store.stored(0, 2));
    assert!(
        slow.frames > o.frames,
        "speed 0.9 lengthens: {} vs {}",
        slow.frames,
        o.frames
    );
    assert!(
        (high.frames as i64 - o.frames as i64).abs() <= 1,
        "pitch shift keeps the length"
    );
}

#[test]
fn augmentation_is_reproducible_and_does_what_it_says() {
    let c = corpus();
    let store =
        FeatureStore::build(&c, &StftConfig::default(), &CacheOptions::in_memory()).unwrap();
    let image = small_image(Colormap::Jet);
    let idx: Vec<usize> = (0..c.len()).collect();
    let norm = InputNorm::identity(3);
    let aug = Some(AugmentConfig::default());
    let make = |seed| {
        Batcher::new(
            &store,
            &image,
            &idx,
            BatchConfig::training(8, seed, aug.clone()),
            norm.clone(),
        )
        .unwrap()
    };
    let b1: Vec<_> = make(5).epoch(0).collect();
    let b2: Vec<_> = make(5).epoch(0).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b3: Vec<_> = pool.install(|| make(5).epoch(0).collect());
    for ((x, y), z) in b1.iter().zip(&b2).zip(&b3) {
        assert_eq!(x.inputs, y.inputs, "same seed and epoch, same batch");
        assert_eq!(x.inputs, z.inputs, "independent of the thread count");
        assert_eq!(x.labels, y.labels);
    }
    let other_epoch: Vec<_> = make(5).epoch(1).collect();
    assert_ne!(
        b1[0].utterances, other_epoch[0].utterances,
        "each epoch reshuffles"
    );
    let other_seed: Vec<_> = make(6).epoch(0).collect();
    assert_ne!(b1[0].inputs, other_seed[0].inputs);

    // No augmentation = the plain rendering; flip-only = the plain rendering reversed in time.
    let mut r = Renderer::new(&image).unwrap();
    let mut spec = Spectrogram {
        frames: 0,
        bins: 0,
        db: vec![],
    };
    store.spectrogram_into(4, 0, &mut spec);
    let mut plain = vec![0f32; 3 * 48 * 40];
    r.render_chw(&spec, &mut plain);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let mut out = vec![0f32; 3 * 48 * 40];
    AugmentConfig::none().render(&mut r, &spec, &mut rng, &mut out);
    assert_eq!(out, plain);
    let flip = AugmentConfig {
        flip: 1.0,
        ..AugmentConfig::none()
    };
    flip.render(&mut r, &spec, &mut rng, &mut out);
    for row in 0..3 * 48 {
        let (a, b) = (
            &out[row * 40..(row + 1) * 40],
            &plain[row * 40..(row + 1) * 40],
        );
        assert!(
            a.iter().eq(b.iter().rev()),
            "row {row} is not time-reversed"
        );
    }
    // Graying: three equal channels.
    let gray = AugmentConfig {
        gray: 1.0,
        ..AugmentConfig::none()
    };
    gray.render(&mut r, &spec, &mut rng, &mut out);
    let plane = 48 * 40;
    assert!((0..plane).all(|p| out[p] == out[plane + p] && out[p] == out[2 * plane + p]));
    assert_ne!(out, plain);
    // Masks act after normalisation: the image comes back unmasked, and the returned plan zeroes
    // whole rows (the normalised mean) in every channel.
    let mask = AugmentConfig {
        freq_masks: 1,
        freq_mask_height: 1.0,
        ..AugmentConfig::none()
    };
    let mut zero_rows = 0;
    for seed in 0..20 {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
        let after = mask.render(&mut r, &spec, &mut rng, &mut out);
        assert_eq!(out, plain, "masks are not drawn on the unnormalised image");
        after.apply(&mut out);
        zero_rows += (0..48)
            .filter(|&y| (0..3).all(|c| (0..40).all(|x| out[c * plane + y * 40 + x] == 0.0)))
            .count();
    }
    assert!(
        zero_rows > 48 * 20 / 4,
        "masks should blank many rows: {zero_rows}"
    );
    // Noise points change a few pixels only.
    let noisy = AugmentConfig {
        noise_points: 1.0,
        noise_density: 0.05,
        ..AugmentConfig::none()
    };
    noisy.render(&mut r, &spec, &mut rng, &mut out);
    let changed = (0..plane)
        .filter(|&p| out[p] != plain[p] || out[plane + p] != plain[plane + p])
        .count();
    assert!(changed <= plane / 20 + 1, "{changed} pixels changed");
    assert!(AugmentConfig {
        flip: 2.0,
        ..AugmentConfig::none()
    }
    .validate()
    .is_err());
}

#[test]
fn batches_shapes_labels_balance_and_training_only_normalisation() {
    let c = corpus();
    let store =
        FeatureStore::build(&c, &StftConfig::default(), &CacheOptions::in_memory()).unwrap();
    let s = split::random(&c, 0.25, &split::SplitOptions::default()).unwrap();
    let image = small_image(Colormap::Gray);
    let norm = InputNorm::from_training(&store, &image, &s.train).unwrap();
    assert_eq!(norm.mean.len(), 1);

    // After normalisation the plain training images have mean 0 and standard deviation 1.
    let eval = Batcher::new(
        &store,
        &image,
        &s.train,
        BatchConfig::evaluation(7),
        norm.clone(),
    )
    .unwrap();
    let batches: Vec<_> = eval.epoch(0).collect();
    assert_eq!(batches.len(), s.train.len().div_ceil(7));
    let all: Vec<f64> = batches
        .iter()
        .flat_map(|b| b.inputs.data.iter().map(|&v| v as f64))
        .collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let sd = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
    assert!(
        mean.abs() < 1e-3 && (sd - 1.0).abs() < 1e-3,
        "mean {mean}, sd {sd}"
    );
    // In order, with the right labels and shape.
    let order: Vec<usize> = batches.iter().flat_map(|b| b.utterances.clone()).collect();
    assert_eq!(order, s.train);
    for b in &batches {
        assert_eq!(
            (b.inputs.shape.c, b.inputs.shape.h, b.inputs.shape.w),
            (1, 48, 40)
        );
        assert_eq!(b.inputs.shape.n, b.labels.len());
        for (k, &u) in b.utterances.iter().enumerate() {
            assert_eq!(b.labels[k], c.utterances[u].label as u32);
        }
    }
    // Statistics from the test utterances differ: the normalisation really is the training split's.
    let test_norm = InputNorm::from_training(&store, &image, &s.test).unwrap();
    assert_ne!(test_norm, norm);

    // drop_last and class-balanced sampling.
    let mut cfg = BatchConfig::training(10, 1, None);
    cfg.drop_last = true;
    let b = Batcher::new(&store, &image, &s.train, cfg.clone(), norm.clone()).unwrap();
    assert!(b.epoch(0).all(|x| x.labels.len() == 10));
    // Balanced: from a training list where class 0 is 8× over-represented, draws are near uniform.
    let mut skewed: Vec<usize> = Vec::new();
    for (i, u) in c.utterances.iter().enumerate() {
        let copies = if u.label == 0 { 8 } else { 1 };
        skewed.extend(std::iter::repeat_n(i, copies));
    }
    cfg.balanced = true;
    cfg.drop_last = false;
    let b = Batcher::new(&store, &image, &skewed, cfg, norm.clone()).unwrap();
    let mut counts = [0usize; 7];
    for e in 0..20 {
        for i in b.epoch_order(e) {
            counts[c.utterances[i].label] += 1;
        }
    }
    let total: usize = counts.iter().sum();
    for n in counts {
        let share = n as f64 / total as f64;
        assert!(
            (share - 1.0 / 7.0).abs() < 0.03,
            "balanced share {share:.3}: {counts:?}"
        );
    }

    // Errors: wrong channel count for the normalisation, bad index, zero batch size.
    assert!(Batcher::new(
        &store,
        &image,
        &s.train,
        BatchConfig::evaluation(4),
        InputNorm::identity(3)
    )
    .is_err());
    assert!(Batcher::new(
        &store,
        &image,
        &[10_000],
        BatchConfig::evaluation(4),
        norm.clone()
    )
    .is_err());
    assert!(Batcher::new(&store, &image, &s.train, BatchConfig::evaluation(0), norm).is_err());
}

/// Per-speaker normalisation through the feature store: each speaker's plain images come out with
/// mean 0 and standard deviation 1 in every (channel, row) that varies; the statistics do not
/// depend on labels, on the split, or on the thread count; `training` mode is the per-channel
/// normalisation of the training utterances, as before.
#[test]
fn speaker_normalisation_is_per_speaker_and_row_and_ignores_labels_and_splits() {
    use rescnn::data::{InputNormMode, Normalization, SpeakerNorm};
    let c = corpus();
    let store =
        FeatureStore::build(&c, &StftConfig::default(), &CacheOptions::in_memory()).unwrap();
    let image = small_image(Colormap::Gray);
    let speakers: Vec<&str> = c.utterances.iter().map(|u| u.speaker.as_str()).collect();
    let norm = SpeakerNorm::from_store(&store, &image, &speakers).unwrap();
    assert_eq!(norm.speakers(), c.speakers());

    // Normalised plain images, speaker by speaker and row by row: mean 0, sd 1 (or below 1 where
    // the floor holds a nearly constant row). Tolerance 1e-3: f32 images, f64 sums.
    let all: Vec<usize> = (0..c.len()).collect();
    let batcher = Batcher::new(
        &store,
        &image,
        &all,
        BatchConfig::evaluation(8),
        norm.clone(),
    )
    .unwrap();
    let (h, w) = (image.height, image.width);
    let mut sums: std::collections::BTreeMap<String, Vec<(f64, f64, f64)>> = Default::default();
    for b in batcher.epoch(0) {
        for (k, &u) in b.utterances.iter().enumerate() {
            let rows = sums
                .entry(c.utterances[u].speaker.clone())
                .or_insert_with(|| vec![(0.0, 0.0, 0.0); h]);
            let img = &b.inputs.data[k * h * w..(k + 1) * h * w];
            for (row, values) in img.chunks_exact(w).enumerate() {
                for &v in values {
                    rows[row].0 += v as f64;
                    rows[row].1 += (v as f64).powi(2);
                    rows[row].2 += 1.0;
                }
            }
        }
    }
    let mut unit_rows = 0;
    for (speaker, rows) in &sums {
        for (row, (s, q, n)) in rows.iter().enumerate() {
            let m = s / n;
            let sd = (q / n - m * m).max(0.0).sqrt();
            assert!(m.abs() < 1e-3, "speaker {speaker} row {row}: mean {m}");
            assert!(sd < 1.0 + 1e-3, "speaker {speaker} row {row}: sd {sd}");
            unit_rows += usize::from((sd - 1.0).abs() < 1e-3);
        }
    }
    assert!(
        unit_rows * 10 >= 9 * sums.len() * h,
        "only {unit_rows} of {} rows have unit spread",
        sums.len() * h
    );
    // Per speaker: the speakers' statistics differ (one set for all would not normalise them all).
    let (m0, _) = norm.stats(&c.speakers()[0]).unwrap();
    let (m1, _) = norm.stats(&c.speakers()[1]).unwrap();
    assert_ne!(m0, m1);

    // Labels are never read: the same audio with other labels gives the same statistics. (Not a
    // permutation of the classes, which would keep every speaker's multiset of labels.)
    let mut relabelled = c.clone();
    for (i, u) in relabelled.utterances.iter_mut().enumerate() {
        u.label = (i * i) % 3;
    }
    let store2 = FeatureStore::build(
        &relabelled,
        &StftConfig::default(),
        &CacheOptions::in_memory(),
    )
    .unwrap();
    assert_eq!(
        SpeakerNorm::from_store(&store2, &image, &speakers).unwrap(),
        norm
    );

    // The split plays no part: two different training sets, the same speaker normalisation
    // (while the training-mode statistics do change with them).
    let s1 = split::random(&c, 0.25, &split::SplitOptions::default()).unwrap();
    let s2 = split::random(
        &c,
        0.25,
        &split::SplitOptions {
            seed: 7,
            ..split::SplitOptions::default()
        },
    )
    .unwrap();
    assert_ne!(s1.train, s2.train);
    let for_split = |mode, train: &[usize]| {
        Normalization::for_training(mode, &store, &image, &speakers, train).unwrap()
    };
    let speaker_mode = for_split(InputNormMode::Speaker, &s1.train);
    assert_eq!(speaker_mode, norm.clone().into());
    assert_eq!(for_split(InputNormMode::Speaker, &s2.train), speaker_mode);
    assert_ne!(
        for_split(InputNormMode::Training, &s1.train),
        for_split(InputNormMode::Training, &s2.train)
    );

    // Training mode is exactly the per-channel normalisation of the training utterances.
    let training_mode = for_split(InputNormMode::Training, &s1.train);
    assert_eq!(
        training_mode,
        Normalization::Global(InputNorm::from_training(&store, &image, &s1.train).unwrap())
    );
    assert_eq!(training_mode.mode(), InputNormMode::Training);

    // Bit-identical whatever the thread count.
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| SpeakerNorm::from_store(&store, &image, &speakers).unwrap());
    let bits = |n: &SpeakerNorm| -> Vec<u32> {
        n.speakers()
            .iter()
            .flat_map(|s| {
                let (m, sd) = n.stats(s).unwrap();
                m.iter().chain(sd).map(|v| v.to_bits()).collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(bits(&one_thread), bits(&norm));

    // A normalisation for another store size or image height is refused.
    assert!(Batcher::new(
        &store2,
        &ImageConfig {
            height: 32,
            ..image.clone()
        },
        &all,
        BatchConfig::evaluation(4),
        norm.clone()
    )
    .is_err());
    assert!(SpeakerNorm::from_store(&store, &image, &speakers[1..]).is_err());
}
