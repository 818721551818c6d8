//! Evaluation over time crops on the CPU reference: one crop per utterance that fits is the plain
//! evaluation image; longer utterances get the mean of their crops' class probabilities; Δ
//! channels and per-speaker normalisation go through the same path.

use rescnn::backends::cpu::CpuBackend;
use rescnn::data::crops::{crop_starts, plan_crops};
use rescnn::data::synth::{self, SynthConfig};
use rescnn::data::{
    BatchConfig, Batcher, CacheOptions, FeatureStore, InputNormMode, Normalization,
};
use rescnn::evaluation::eval_mode::{predict_over_crops, NetworkInputs};
use rescnn::evaluation::predict::{predict_all, softmax};
use rescnn::features::{ImageConfig, Region, Renderer, Spectrogram, StftConfig, TimeAxis};
use rescnn::model::{ArchSpec, InputShape, Network};

fn setup() -> (rescnn::data::Corpus, FeatureStore) {
    let corpus = synth::generate(&SynthConfig {
        speakers: 2,
        per_class_per_speaker: 1,
        ..SynthConfig::default()
    })
    .unwrap();
    let stft = StftConfig {
        mel_bands: Some(16),
        ..StftConfig::default()
    };
    let store = FeatureStore::build(&corpus, &stft, &CacheOptions::in_memory()).unwrap();
    (corpus, store)
}

fn image(width: usize) -> ImageConfig {
    ImageConfig {
        height: 16,
        width,
        colormap: rescnn::features::Colormap::Gray,
        time_axis: TimeAxis::Fixed,
        delta_window: 2,
        ..ImageConfig::default()
    }
}

#[test]
fn crops_of_the_whole_width_are_the_plain_evaluation() {
    let (corpus, store) = setup();
    let frames_max = (0..store.len())
        .map(|i| store.stored(i, 0).frames)
        .max()
        .unwrap();
    let img = image(frames_max);
    let speakers: Vec<&str> = corpus
        .utterances
        .iter()
        .map(|u| u.speaker.as_str())
        .collect();
    let all: Vec<usize> = (0..corpus.len()).collect();
    let norm =
        Normalization::for_training(InputNormMode::Speaker, &store, &img, &speakers, &all).unwrap();
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::from_name_or_spec("c4k3 p2 fc8").unwrap();
    let mut net = Network::new(&cpu, &spec, InputShape::new(3, 16, frames_max), 7, 5, 3).unwrap();
    let crops = predict_over_crops(&cpu, &mut net, shown(&store, &img, &norm), &all, 10).unwrap();
    let batcher =
        Batcher::new(&store, &img, &all, BatchConfig::evaluation(5), norm.clone()).unwrap();
    let plain = predict_all(&cpu, &mut net, &batcher).unwrap();
    assert_eq!(crops.len(), plain.len());
    for ((u, p), (v, q)) in crops.iter().zip(&plain) {
        assert_eq!(u, v);
        // Tolerance 1e-6: the same images in batches of other compositions (GEMM blocking may
        // sum in another order; probabilities are O(1)).
        assert!(
            p.iter().zip(q).all(|(a, b)| (a - b).abs() < 1e-6),
            "utterance {u}: {p:?} vs {q:?}"
        );
    }
}

#[test]
fn longer_utterances_average_their_crops() {
    let (corpus, store) = setup();
    let width = 40;
    let img = image(width);
    let all: Vec<usize> = (0..corpus.len()).collect();
    let norm =
        Normalization::for_training(InputNormMode::Training, &store, &img, &[] as &[&str], &all)
            .unwrap();
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::from_name_or_spec("c4k3 p2 fc8").unwrap();
    let mut net = Network::new(&cpu, &spec, InputShape::new(3, 16, width), 7, 4, 3).unwrap();
    let hop = 15;
    let planned = plan_crops(&store, &img, &all, hop).unwrap();
    assert!(
        planned.len() > 2 * all.len(),
        "utterances of ~1.2 s hold several 0.4 s crops"
    );
    let got = predict_over_crops(&cpu, &mut net, shown(&store, &img, &norm), &all, hop).unwrap();
    // By hand for three utterances: render every crop, classify it alone, average.
    let mut r = Renderer::new(&img).unwrap();
    let mut spec_buf = Spectrogram {
        frames: 0,
        bins: 0,
        db: Vec::new(),
    };
    for &u in &all[..3] {
        store.spectrogram_into(u, 0, &mut spec_buf);
        let starts = crop_starts(spec_buf.frames, width, hop);
        let mut mean = vec![0f64; 7];
        for &s in &starts {
            let mut x = vec![0f32; 3 * 16 * width];
            let region = Region {
                t0: s as f32,
                t1: (s + width) as f32,
                ..Region::whole(&spec_buf)
            };
            r.render_region_chw(&spec_buf, &region, &mut x);
            norm.apply(u, &mut x);
            let p = softmax(&net.forward_logits(&cpu, &x, 1).unwrap());
            mean.iter_mut()
                .zip(&p)
                .for_each(|(m, v)| *m += v / starts.len() as f64);
        }
        let (v, p) = &got[u];
        assert_eq!(*v, u);
        // Tolerance 1e-6 as above (batch of one against batches of four).
        assert!(
            p.iter().zip(&mean).all(|(a, b)| (a - b).abs() < 1e-6),
            "utterance {u}: {p:?} vs {mean:?}"
        );
    }
}

/// What the network is shown: `store` rendered by `image`, normalised by `norm`, no side input.
fn shown<'a>(
    store: &'a FeatureStore,
    image: &'a ImageConfig,
    norm: &'a Normalization,
) -> NetworkInputs<'a> {
    NetworkInputs {
        store,
        image,
        norm,
        side: None,
    }
}
