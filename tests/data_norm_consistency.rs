//! The input normalisation agrees with what the network is shown: speaker statistics over every
//! frame of every utterance, each waveform variant normalised with its own statistics, and
//! SpecAugment masks at the normalised mean in every channel.

use rescnn::audio::Perturbation;
use rescnn::data::cache::{CacheOptions, FeatureStore};
use rescnn::data::{synth, AugmentConfig, BatchConfig, Batcher, Corpus, SpeakerNorm, SynthConfig};
use rescnn::features::{Colormap, ImageConfig, Renderer, Spectrogram, StftConfig, TimeAxis};

fn corpus() -> Corpus {
    synth::generate(&SynthConfig {
        per_class_per_speaker: 1,
        speakers: 2,
        ..SynthConfig::default()
    })
    .unwrap()
}

fn speakers(c: &Corpus) -> Vec<&str> {
    c.utterances.iter().map(|u| u.speaker.as_str()).collect()
}

/// 32 rows of gray, Δ and ΔΔ (three channels), one column per frame, `width` frames.
fn fixed_image(width: usize) -> ImageConfig {
    ImageConfig {
        height: 32,
        width,
        colormap: Colormap::Gray,
        time_axis: TimeAxis::Fixed,
        delta_window: 2,
        ..ImageConfig::default()
    }
}

fn empty_spectrogram() -> Spectrogram {
    Spectrogram {
        frames: 0,
        bins: 0,
        db: vec![],
    }
}

/// Per (speaker, channel-row): sums, sums of squares and counts of normalised values.
type RowSums = std::collections::BTreeMap<String, Vec<(f64, f64, f64)>>;

fn accumulate(sums: &mut RowSums, speaker: &str, chw: &[f32], rows: usize, width: usize) {
    let entry = sums
        .entry(speaker.to_string())
        .or_insert_with(|| vec![(0.0, 0.0, 0.0); rows]);
    for (k, row) in chw.chunks_exact(width).enumerate() {
        for &v in row {
            entry[k].0 += v as f64;
            entry[k].1 += (v as f64).powi(2);
            entry[k].2 += 1.0;
        }
    }
}

/// Every (speaker, row) has mean 0 and a spread of at most 1 (the floor can hold a nearly
/// constant row below 1), and nine in ten rows have unit spread. Tolerance 1e-3: f32 images
/// normalised with f32 statistics of f64 sums.
fn assert_standardised(sums: &RowSums, what: &str) {
    let mut unit = 0;
    let mut total = 0;
    for (speaker, rows) in sums {
        for (k, (s, q, n)) in rows.iter().enumerate() {
            let m = s / n;
            let sd = (q / n - m * m).max(0.0).sqrt();
            assert!(
                m.abs() < 1e-3,
                "{what}: speaker {speaker} channel-row {k}: mean {m} after normalisation"
            );
            assert!(
                sd < 1.0 + 1e-3,
                "{what}: speaker {speaker} channel-row {k}: sd {sd}"
            );
            unit += usize::from((sd - 1.0).abs() < 1e-3);
            total += 1;
        }
    }
    assert!(
        unit * 10 >= 9 * total,
        "{what}: only {unit} of {total} rows have unit spread"
    );
}

/// A network trained on crops of 16 frames and evaluated on whole utterances (about 120 frames)
/// sees every frame: the speaker statistics describe all of them, so every speaker's whole
/// utterances come out standardised row by row. Statistics from the first 16 frames only (the
/// start of each utterance, mostly onset and silence) leave the whole utterances off centre.
#[test]
fn speaker_statistics_cover_every_frame_of_every_utterance() {
    let c = corpus();
    let store =
        FeatureStore::build(&c, &StftConfig::default(), &CacheOptions::in_memory()).unwrap();
    let image = fixed_image(16);
    let norm = SpeakerNorm::from_store(&store, &image, &speakers(&c)).unwrap();
    let (ch, h) = (image.channels(), image.height);
    let mut sums = RowSums::new();
    let mut spec = empty_spectrogram();
    for (u, utt) in c.utterances.iter().enumerate() {
        store.spectrogram_into(u, 0, &mut spec);
        assert!(
            spec.frames > 4 * image.width,
            "utterance {u} should be much longer than a crop: {} frames",
            spec.frames
        );
        let whole = ImageConfig {
            width: spec.frames,
            ..image.clone()
        };
        let mut buf = vec![0f32; ch * h * spec.frames];
        Renderer::new(&whole).unwrap().render_chw(&spec, &mut buf);
        norm.apply(u, &mut buf);
        accumulate(&mut sums, &utt.speaker, &buf, ch * h, spec.frames);
    }
    assert_standardised(&sums, "whole utterances");
}

/// With pitch- and speed-perturbed variants in the store, the batcher normalises a perturbed
/// image with its speaker's statistics of that same perturbation: each augmented sample is
/// exactly one of its utterance's variants normalised that way, and each variant's images come
/// out standardised per speaker. Normalising a pitch-shifted image with the unperturbed
/// statistics would shift it against its own speaker.
#[test]
fn perturbed_variants_are_normalised_with_their_own_statistics() {
    let c = corpus();
    let opts = CacheOptions {
        variants: vec![
            Perturbation {
                speed: 1.0,
                pitch_semitones: 3.0,
            },
            Perturbation {
                speed: 0.85,
                pitch_semitones: 0.0,
            },
        ],
        ..CacheOptions::in_memory()
    };
    let store = FeatureStore::build(&c, &StftConfig::default(), &opts).unwrap();
    // The whole utterance stretched to 24 columns: no random crop, so a sample is a pure
    // function of its variant.
    let image = ImageConfig {
        height: 32,
        width: 24,
        colormap: Colormap::Gray,
        ..ImageConfig::default()
    };
    let norm = SpeakerNorm::from_store(&store, &image, &speakers(&c)).unwrap();
    assert_eq!(norm.variants(), 3);
    let (ch, h, w) = (image.channels(), image.height, image.width);
    let per = ch * h * w;

    // Every variant's normalised plain images: standardised per speaker.
    let mut renderer = Renderer::new(&image).unwrap();
    let mut spec = empty_spectrogram();
    let mut normalised = vec![vec![Vec::new(); 3]; c.len()];
    let mut with_original_statistics = vec![vec![Vec::new(); 3]; c.len()];
    for v in 0..3 {
        let mut sums = RowSums::new();
        for (u, utt) in c.utterances.iter().enumerate() {
            store.spectrogram_into(u, v, &mut spec);
            let mut plain = vec![0f32; per];
            renderer.render_chw(&spec, &mut plain);
            let mut x = plain.clone();
            norm.apply_variant(u, v, &mut x);
            accumulate(&mut sums, &utt.speaker, &x, ch * h, w);
            normalised[u][v] = x;
            norm.apply(u, &mut plain);
            with_original_statistics[u][v] = plain;
        }
        assert_standardised(&sums, &format!("variant {v}"));
    }

    // The batcher draws a perturbed variant for every sample and normalises it with that
    // variant's statistics.
    let all: Vec<usize> = (0..c.len()).collect();
    let aug = AugmentConfig {
        waveform: 1.0,
        ..AugmentConfig::none()
    };
    let batcher = Batcher::new(
        &store,
        &image,
        &all,
        BatchConfig::training(4, 3, Some(aug)),
        norm.clone(),
    )
    .unwrap();
    let mut seen = 0;
    for b in batcher.epoch(0) {
        for (k, &u) in b.utterances.iter().enumerate() {
            let sample = &b.inputs.data[k * per..(k + 1) * per];
            let variant = (1..3).find(|&v| normalised[u][v] == sample);
            assert!(
                variant.is_some(),
                "sample {k} (utterance {u}) is no perturbed variant normalised with its own \
                 statistics"
            );
            let v = variant.unwrap();
            assert_ne!(
                with_original_statistics[u][v], sample,
                "the variant's statistics should differ from the original audio's"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, c.len());
}

/// SpecAugment masks hold the normalised mean, 0, in every channel (colour, Δ and ΔΔ), for
/// either normalisation. A mask drawn at the floor colour before normalisation would land several
/// standard deviations below the mean.
#[test]
fn masks_hold_the_normalised_mean_in_every_channel() {
    let c = corpus();
    let store =
        FeatureStore::build(&c, &StftConfig::default(), &CacheOptions::in_memory()).unwrap();
    let image = fixed_image(24);
    let (ch, h, w) = (image.channels(), image.height, image.width);
    let per = ch * h * w;
    let all: Vec<usize> = (0..c.len()).collect();
    let speaker_norm = SpeakerNorm::from_store(&store, &image, &speakers(&c)).unwrap();
    let training_norm = rescnn::data::InputNorm::from_training(&store, &image, &all).unwrap();
    let time_mask = AugmentConfig {
        time_masks: 1,
        time_mask_width: 1.0,
        ..AugmentConfig::none()
    };
    let freq_mask = AugmentConfig {
        freq_masks: 1,
        freq_mask_height: 1.0,
        ..AugmentConfig::none()
    };
    let norms: [rescnn::data::Normalization; 2] = [speaker_norm.into(), training_norm.into()];
    for norm in norms {
        for (aug, columns) in [(time_mask.clone(), true), (freq_mask.clone(), false)] {
            let batcher = Batcher::new(
                &store,
                &image,
                &all,
                BatchConfig::training(7, 11, Some(aug)),
                norm.clone(),
            )
            .unwrap();
            let mut zero_lines = 0;
            for epoch in 0..3 {
                for b in batcher.epoch(epoch) {
                    for sample in b.inputs.data.chunks_exact(per) {
                        let at = |c: usize, y: usize, x: usize| sample[(c * h + y) * w + x];
                        zero_lines += if columns {
                            (0..w)
                                .filter(|&x| (0..ch).all(|c| (0..h).all(|y| at(c, y, x) == 0.0)))
                                .count()
                        } else {
                            (0..h)
                                .filter(|&y| (0..ch).all(|c| (0..w).all(|x| at(c, y, x) == 0.0)))
                                .count()
                        };
                    }
                }
            }
            // 42 samples, each mask up to the whole width or height (half of it on average).
            let lines = if columns { w } else { h };
            assert!(
                zero_lines > 42 * lines / 4,
                "{:?}: only {zero_lines} masked {} hold 0 in every channel",
                norm.mode(),
                if columns { "columns" } else { "rows" }
            );
        }
    }
}
