//! The exported ONNX graph, run by ONNX Runtime, against rescnn's CPU reference: every preset and
//! networks that exercise every op setting (even and odd kernels, strides, overlapping pools,
//! shortcut chains, channel tiling that does not divide), both input normalisations, a whole trained
//! run through the command line (`export`, `spectrogram --npy`) against `rescnn predict`, and
//! deliberately wrong exports that the comparison must reject.

#[path = "common/check.rs"]
#[allow(dead_code)]
mod check;
mod ort_support;
mod train_support;

use check::{compare, Tolerance};
use ort_support::{Job, Ort};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rescnn::backends::cpu::CpuBackend;
use rescnn::data::{InputNorm, SpeakerNorm};
use rescnn::evaluation::predict::softmax;
use rescnn::export::onnx::{AttributeProto, ModelProto};
use rescnn::export::{graph, GraphNorm, GraphSpec};
use rescnn::model::{presets, ArchSpec, InputShape, Network};

/// ONNX Runtime's probabilities against rescnn's. Both compute in f32 but sum in different orders
/// (MLAS's convolution and GEMM tiles against im2col + the `gemm` crate; ORT's AveragePool divides
/// the window sum by r² where the reference multiplies by 1/r²), and rescnn's softmax runs in f64
/// from the f32 logits, ONNX's in f32. Logit errors of a few f32 ulps of the logits' scale (≤ ~30
/// here) reach about 1e-5 in the logits; a probability moves by at most that times itself, and
/// the f32 softmax adds a few ulps of 1. The deliberately wrong exports below move probabilities
/// by 1e-2 and more, three orders of magnitude beyond this.
const ORT_PROBABILITIES: Tolerance = Tolerance {
    name: "onnx_runtime_probabilities",
    atol: 2e-6,
    rtol: 1e-4,
    reason: "f32 convolutions and GEMMs summed in another order (logit error ~1e-5 at logits ≤ 30), f32 against f64 softmax",
};

/// A network with He weights (seeded) and random biases, so the bias path is exercised too.
fn network(
    spec: &str,
    input: InputShape,
    classes: usize,
    batch: usize,
    seed: u64,
) -> (CpuBackend<f32>, Network<CpuBackend<f32>>) {
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::from_name_or_spec(spec).unwrap();
    let mut net = Network::new(&cpu, &spec, input, classes, batch, seed).unwrap();
    let mut params = net.export_params(&cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb1a5);
    for p in params.iter_mut() {
        let range = if p.name.ends_with(".bias")
            || p.name.ends_with(".beta")
            || p.name.ends_with(".running_mean")
        {
            -0.3f32..0.3
        } else if p.name.ends_with(".gamma") || p.name.ends_with(".running_var") {
            0.5f32..2.0
        } else {
            continue;
        };
        p.data
            .iter_mut()
            .for_each(|v| *v = rng.random_range(range.clone()));
    }
    net.import_params(&cpu, &params).unwrap();
    (cpu, net)
}

fn random_images(n: usize, input: InputShape, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * input.len()).map(|_| rng.random::<f32>()).collect()
}

fn probabilities(logits: &[f32], classes: usize) -> Vec<f32> {
    logits
        .chunks(classes)
        .flat_map(|row| softmax(row).into_iter().map(|p| p as f32))
        .collect()
}

fn build(net: &Network<CpuBackend<f32>>, cpu: &CpuBackend<f32>, norm: GraphNorm<'_>) -> ModelProto {
    graph::build(&GraphSpec {
        plan: net.plan(),
        params: &net.export_params(cpu).unwrap(),
        any_width: false,
        norm,
        vector: None,
        branch: None,
        metadata: vec![("rescnn.classes".into(), "test".into())],
        producer_version: "test".into(),
        doc: String::new(),
    })
    .unwrap_or_else(|e| panic!("{}: {e}", net.plan().spec))
}

/// One network to compare: its CPU probabilities, and the exported model with its input.
struct Case {
    name: String,
    model: ModelProto,
    images: Vec<f32>,
    shape: Vec<usize>,
    /// The utterance vectors (N, D) of a network with `vec`, its second graph input.
    side: Option<(Vec<usize>, Vec<f32>)>,
    reference: Vec<f32>,
}

fn per_channel_case(spec: &str, input: InputShape, seed: u64) -> Case {
    let batch = 3;
    let classes = 7;
    // A network with `vec` gets a side input of 11 values per sample.
    let takes_vector = ArchSpec::from_name_or_spec(spec)
        .unwrap()
        .side_input()
        .is_some();
    let input = input.with_side(if takes_vector { 11 } else { 0 });
    let (cpu, mut net) = network(spec, input, classes, batch, seed);
    let side = takes_vector.then(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
        let rows: Vec<f32> = (0..batch * input.side)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        (vec![batch, input.side], rows)
    });
    let images = random_images(batch, input, seed + 1);
    // Training statistics that are far from the identity, so leaving them out would show.
    let norm = InputNorm {
        mean: (0..input.channels).map(|c| 0.3 + 0.1 * c as f32).collect(),
        std: (0..input.channels).map(|c| 0.2 + 0.05 * c as f32).collect(),
    };
    let mut normalised = images.clone();
    normalised
        .chunks_mut(input.len())
        .for_each(|x| norm.apply(x));
    let logits = net
        .forward_logits_with_side(&cpu, &normalised, side.as_ref().map(|s| &s.1[..]), batch)
        .unwrap();
    Case {
        name: format!(
            "{spec} at {}×{}×{}",
            input.channels, input.height, input.width
        ),
        model: build(&net, &cpu, GraphNorm::PerChannel(&norm)),
        images,
        shape: vec![batch, input.channels, input.height, input.width],
        side,
        reference: probabilities(&logits, classes),
    }
}

/// Every preset (one per distinct spec) and networks that exercise the rest of the op settings.
fn all_cases() -> Vec<Case> {
    let mut specs: Vec<&str> = Vec::new();
    for p in presets() {
        if !specs.contains(&p.spec) {
            specs.push(p.spec);
        }
    }
    let rgb = InputShape::new(3, 32, 48);
    let mut cases: Vec<Case> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| per_channel_case(s, rgb, 100 + i as u64))
        .collect();
    // Gray, square; strided convs, odd kernels, overlapping pools, shortcut chains (+0 then +1),
    // 3 → 5 channels (tiling that does not divide).
    cases.push(per_channel_case("paper", InputShape::new(1, 32, 32), 7));
    cases.push(per_channel_case(
        "c8k3s2 p3s2 c12k5 p2 fc16",
        InputShape::new(1, 33, 27),
        8,
    ));
    cases.push(per_channel_case(
        "c5k4 p2 +0 c6k3 p2 +0 +1 fc10",
        InputShape::new(3, 16, 24),
        9,
    ));
    cases.push(per_channel_case(
        "c6k2s2 p2 +0 c4k5 p2 +1 fc8 fc6",
        InputShape::new(3, 32, 32),
        10,
    ));
    // The newer layers: batch norm (with running statistics made far from 0 and 1), statistics
    // pooling, dropout (the identity at inference).
    cases.push(per_channel_case(
        "c8k3 bn p2 +0 c12k4 bn stats drop0.3 fc16 drop0.5",
        InputShape::new(1, 32, 40),
        11,
    ));
    cases.push(per_channel_case(
        "c6k4 bn p2 c8k3 p2 +0 fc12",
        InputShape::new(3, 16, 16),
        12,
    ));
    // The utterance vector appended after statistics pooling (dropped out: the identity at
    // inference) and, without pooling, after the flattened map through a projection.
    cases.push(per_channel_case(
        "c8k3 bn p2 +0 c12k4 bn stats vec0.5w0.5 fc16",
        InputShape::new(1, 32, 40),
        13,
    ));
    cases.push(per_channel_case(
        "c6k3 p2 vec0.2fc5 fc12",
        InputShape::new(3, 16, 16),
        14,
    ));
    cases
}

fn jobs(dir: &std::path::Path, cases: &[Case]) -> Vec<Job> {
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = dir.join(format!("case{i}.onnx"));
            std::fs::write(&path, c.model.to_bytes()).unwrap();
            let mut inputs = vec![(graph::INPUT.into(), c.shape.clone(), c.images.clone())];
            if let Some((shape, rows)) = &c.side {
                inputs.push((graph::UTTERANCE_VECTOR.into(), shape.clone(), rows.clone()));
            }
            Job {
                model: path,
                inputs,
            }
        })
        .collect()
}

#[test]
fn every_preset_matches_onnx_runtime() {
    let Some(ort) = Ort::find("every_preset_matches_onnx_runtime") else {
        return;
    };
    let dir = train_support::temp_dir();
    let cases = all_cases();
    let outputs = ort.run(dir.path(), &jobs(dir.path(), &cases));
    let mut failures = Vec::new();
    for (c, out) in cases.iter().zip(&outputs) {
        assert_eq!(out.shape, vec![c.shape[0], 7], "{}", c.name);
        assert_eq!(
            out.metadata.get("rescnn.classes").map(String::as_str),
            Some("test")
        );
        let max = out
            .values
            .iter()
            .zip(&c.reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{}: max |ORT − rescnn| = {max:.2e}", c.name);
        if let Err(e) = compare(&ORT_PROBABILITIES, &c.name, &out.values, &c.reference) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Mutate every node of `op_type` in `model` with `f`.
fn mutate(
    model: &mut ModelProto,
    op_type: &str,
    mut f: impl FnMut(&mut Vec<AttributeProto>),
) -> usize {
    let mut n = 0;
    for node in &mut model.graph.as_mut().unwrap().node {
        if node.op_type == op_type {
            f(&mut node.attribute);
            n += 1;
        }
    }
    n
}

/// Exports that are wrong the way an exporter could plausibly be wrong must fail the comparison:
/// SAME padding on the wrong side (top/left get the extra row of an even kernel), and the
/// shortcut's channel tiling in the wrong order.
#[test]
fn deliberately_wrong_exports_fail_the_comparison() {
    let Some(ort) = Ort::find("deliberately_wrong_exports_fail_the_comparison") else {
        return;
    };
    let dir = train_support::temp_dir();
    let good = per_channel_case("paper", InputShape::new(3, 32, 48), 1);
    let mut swapped = per_channel_case("paper", InputShape::new(3, 32, 48), 1);
    let convs = mutate(&mut swapped.model, "Conv", |attrs| {
        let pads = attrs.iter_mut().find(|a| a.name == "pads").unwrap();
        let p = pads.ints.clone();
        pads.ints = vec![p[2], p[3], p[0], p[1]];
    });
    assert_eq!(convs, 4);
    let mut tiled = per_channel_case("paper", InputShape::new(3, 32, 48), 1);
    let gathers = tiled
        .model
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .filter(|t| t.name.ends_with(".channels"))
        .map(|t| {
            // c mod 3 → (c + 1) mod 3: the tiled source channels rotated by one.
            let mut idx: Vec<i64> = t
                .raw_data
                .chunks(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            idx.iter_mut().for_each(|v| *v = (*v + 1) % 3);
            t.raw_data = idx.iter().flat_map(|v| v.to_le_bytes()).collect();
        })
        .count();
    assert_eq!(gathers, 3);
    let cases = [good, swapped, tiled];
    let outputs = ort.run(dir.path(), &jobs(dir.path(), &cases));
    let max_diff = |i: usize| {
        outputs[i]
            .values
            .iter()
            .zip(&cases[i].reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };
    compare(
        &ORT_PROBABILITIES,
        "correct export",
        &outputs[0].values,
        &cases[0].reference,
    )
    .unwrap();
    for (i, what) in [(1, "padding sides swapped"), (2, "channel tiling rotated")] {
        let err = compare(
            &ORT_PROBABILITIES,
            what,
            &outputs[i].values,
            &cases[i].reference,
        );
        eprintln!("{what}: max |ORT − rescnn| = {:.2e}", max_diff(i));
        assert!(
            err.is_err(),
            "{what}: the wrong export passed the comparison"
        );
        assert!(max_diff(i) > 1e-3, "{what}: only {:.2e} off", max_diff(i));
    }
}

/// A speaker-normalised model takes the speaker's statistics as graph inputs.
#[test]
fn speaker_normalised_graph_takes_the_statistics_as_inputs() {
    let Some(ort) = Ort::find("speaker_normalised_graph_takes_the_statistics_as_inputs") else {
        return;
    };
    let dir = train_support::temp_dir();
    let input = InputShape::new(3, 32, 32);
    let (batch, classes) = (2, 7);
    let (cpu, mut net) = network("paper", input, classes, batch, 3);
    let images = random_images(batch, input, 4);
    // Statistics of one speaker from other images of theirs, made to vary by row.
    let mut speaker_images: Vec<Vec<f32>> =
        (0..4).map(|s| random_images(1, input, 50 + s)).collect();
    for img in &mut speaker_images {
        for (k, row) in img.chunks_mut(input.width).enumerate() {
            row.iter_mut()
                .for_each(|v| *v = *v * (0.2 + 0.01 * (k % 32) as f32) + 0.005 * k as f32);
        }
    }
    speaker_images.extend(images.chunks(input.len()).map(<[f32]>::to_vec));
    let speakers = vec!["s"; speaker_images.len()];
    let norm = SpeakerNorm::from_images(&speaker_images, &speakers, (3, 32, 32)).unwrap();
    let mut normalised = images.clone();
    for (k, x) in normalised.chunks_mut(input.len()).enumerate() {
        norm.apply(4 + k, x);
    }
    let reference = probabilities(
        &net.forward_logits(&cpu, &normalised, batch).unwrap(),
        classes,
    );
    let (mean, std) = norm.stats("s").unwrap();
    let model = build(&net, &cpu, GraphNorm::PerSpeakerInputs);
    let path = dir.path().join("speaker.onnx");
    std::fs::write(&path, model.to_bytes()).unwrap();
    let out = ort.run(
        dir.path(),
        &[Job {
            model: path,
            inputs: vec![
                (graph::INPUT.into(), vec![batch, 3, 32, 32], images),
                (graph::SPEAKER_MEAN.into(), vec![3, 32, 1], mean.to_vec()),
                (graph::SPEAKER_STD.into(), vec![3, 32, 1], std.to_vec()),
            ],
        }],
    );
    compare(
        &ORT_PROBABILITIES,
        "speaker-normalised paper",
        &out[0].values,
        &reference,
    )
    .unwrap();
}

/// The whole path a user takes: a run trained here, `rescnn export`, `rescnn spectrogram --model
/// --npy`, ONNX Runtime, against `rescnn predict --json` on the same file; and the metadata ONNX
/// Runtime reads back.
#[test]
fn an_exported_run_gives_what_rescnn_predict_gives() {
    let Some(ort) = Ort::find("an_exported_run_gives_what_rescnn_predict_gives") else {
        return;
    };
    use train_support::*;
    let run = temp_dir();
    let mut cfg = tiny_config();
    cfg.iterations = Some(20);
    train(&cfg, run.path());
    let (data, _) = exported_small_corpus();
    let work = temp_dir();
    let onnx = work.path().join("model.onnx");
    let exported = rescnn_export(run.path(), &onnx);
    assert!(String::from_utf8_lossy(&exported.stdout).contains("input `spectrogram`"));
    let mut jobs = Vec::new();
    let mut predicted = Vec::new();
    for class in ["anger", "sadness", "neutral"] {
        let wav = data.path().join(format!("{class}/syn01/{class}_00.wav"));
        let npy = work.path().join(format!("{class}.npy"));
        rescnn_ok([
            "spectrogram".as_ref(),
            "--model".as_ref(),
            run.path().as_os_str(),
            wav.as_os_str(),
            "--npy".as_ref(),
            npy.as_os_str(),
        ]);
        let (shape, values) = rescnn::export::npy::read(&npy).unwrap();
        jobs.push(Job {
            model: onnx.clone(),
            inputs: vec![(graph::INPUT.into(), shape, values)],
        });
        let out = rescnn_ok([
            "predict".as_ref(),
            "--json".as_ref(),
            "--model".as_ref(),
            run.path().as_os_str(),
            wav.as_os_str(),
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let probs = json[0]["probabilities"].as_object().unwrap();
        predicted.push(
            rescnn::data::EMOTIONS
                .iter()
                .map(|c| probs[*c].as_f64().unwrap() as f32)
                .collect::<Vec<f32>>(),
        );
    }
    let outputs = ort.run(work.path(), &jobs);
    for (out, want) in outputs.iter().zip(&predicted) {
        compare(
            &ORT_PROBABILITIES,
            "exported run vs rescnn predict",
            &out.values,
            want,
        )
        .unwrap();
    }
    let meta = &outputs[0].metadata;
    let classes: Vec<String> = serde_json::from_str(&meta["rescnn.classes"]).unwrap();
    assert_eq!(classes, rescnn::data::EMOTIONS);
    let spectrogram: rescnn::features::SpectrogramConfig =
        serde_json::from_str(&meta["rescnn.spectrogram"]).unwrap();
    assert_eq!(spectrogram, cfg.spectrogram);
    assert!(meta["rescnn.version"].starts_with(&format!("rescnn {}", env!("CARGO_PKG_VERSION"))));
    let norm: serde_json::Value = serde_json::from_str(&meta["rescnn.input_norm"]).unwrap();
    assert_eq!(norm["mode"], "training");
    assert_eq!(meta["rescnn.arch"], cfg.arch);
}

/// A run with the prosody branch: the graph takes the spectrogram and the raw utterance vector
/// (`rescnn spectrogram --npy --vector-npy`), and ONNX Runtime's fused probabilities are `rescnn
/// predict`'s; the metadata documents the second input.
#[test]
fn an_exported_run_with_the_prosody_branch_gives_what_rescnn_predict_gives() {
    let mut cfg = train_support::tiny_config();
    cfg.iterations = Some(20);
    cfg.prosody_weight = 0.5;
    let meta = exported_run_gives_what_rescnn_predict_gives(
        "an_exported_run_with_the_prosody_branch_gives_what_rescnn_predict_gives",
        &cfg,
    );
    assert!(meta.is_none_or(|m| !m.contains_key("rescnn.ensemble")));
}

/// The same for an `--ensemble 2` fold with the branch: one graph of both members, whose outputs
/// are averaged as `rescnn predict` averages them.
#[test]
fn an_exported_ensemble_gives_what_rescnn_predict_gives() {
    let mut cfg = train_support::tiny_config();
    cfg.iterations = Some(20);
    cfg.prosody_weight = 0.5;
    cfg.ensemble = 2;
    let meta = exported_run_gives_what_rescnn_predict_gives(
        "an_exported_ensemble_gives_what_rescnn_predict_gives",
        &cfg,
    );
    if let Some(meta) = meta {
        let ensemble: serde_json::Value = serde_json::from_str(&meta["rescnn.ensemble"]).unwrap();
        assert_eq!(ensemble["members"], 2);
    }
}

/// A joint network (`vec`) with the branch that classifies whole utterances: its graph takes the
/// width as a symbolic dimension and the raw utterance vector once (the network's side input is
/// the branch's normalised vector), and on files longer than the training width ONNX Runtime gives
/// `rescnn predict`'s probabilities for the image `rescnn spectrogram --model` writes.
#[test]
fn an_exported_joint_run_evaluating_whole_utterances_gives_what_rescnn_predict_gives() {
    let mut cfg = train_support::tiny_config();
    cfg.arch = "c8k3 bn p2 +0 c16k3 bn p2 +0 stats vec0.2 fc16".into();
    cfg.spectrogram = rescnn::training::config::small_spectrogram(32, 40);
    cfg.eval_time = rescnn::data::EvalTime::Whole;
    cfg.iterations = Some(20);
    cfg.prosody_weight = 0.5;
    exported_run_gives_what_rescnn_predict_gives(
        "an_exported_joint_run_evaluating_whole_utterances_gives_what_rescnn_predict_gives",
        &cfg,
    );
}

/// A joint network trained without the branch: the graph still takes the raw vector and
/// normalises it inside (the model's saved normaliser), and has no branch outputs.
#[test]
fn an_exported_joint_run_without_the_branch_gives_what_rescnn_predict_gives() {
    let mut cfg = train_support::tiny_config();
    cfg.arch = "c8k3 p2 +0 c16k3 p2 stats vec0.2fc8 fc16".into();
    cfg.iterations = Some(20);
    cfg.prosody_weight = 0.0;
    let meta = exported_run_gives_what_rescnn_predict_gives(
        "an_exported_joint_run_without_the_branch_gives_what_rescnn_predict_gives",
        &cfg,
    );
    if let Some(meta) = meta {
        let vector: serde_json::Value =
            serde_json::from_str(&meta["rescnn.utterance_vector"]).unwrap();
        assert!(vector.get("fusion_weight").is_none(), "{vector}");
    }
}

/// Train `cfg`, export the run, and compare ONNX Runtime's probabilities on three files with
/// `rescnn predict`'s (the branch fused); the graph's metadata, or `None` without ONNX Runtime.
fn exported_run_gives_what_rescnn_predict_gives(
    test: &str,
    cfg: &rescnn::training::TrainConfig,
) -> Option<std::collections::BTreeMap<String, String>> {
    let ort = Ort::find(test)?;
    use train_support::*;
    let run = temp_dir();
    train(cfg, run.path());
    let (data, _) = exported_small_corpus();
    let work = temp_dir();
    let onnx = work.path().join("model.onnx");
    rescnn_export(run.path(), &onnx);
    let mut jobs = Vec::new();
    let mut predicted = Vec::new();
    for class in ["anger", "sadness", "neutral"] {
        let wav = data.path().join(format!("{class}/syn01/{class}_00.wav"));
        let npy = work.path().join(format!("{class}.npy"));
        let vector = work.path().join(format!("{class}-vector.npy"));
        rescnn_ok([
            "spectrogram".as_ref(),
            "--model".as_ref(),
            run.path().as_os_str(),
            wav.as_os_str(),
            "--npy".as_ref(),
            npy.as_os_str(),
            "--vector-npy".as_ref(),
            vector.as_os_str(),
        ]);
        let (shape, values) = rescnn::export::npy::read(&npy).unwrap();
        if cfg.eval_time == rescnn::data::EvalTime::Whole {
            // The whole utterance, wider than the training crops: the graph's width is symbolic.
            assert!(shape[3] > cfg.spectrogram.image.width, "{class}: {shape:?}");
        }
        let (vshape, vvalues) = rescnn::export::npy::read(&vector).unwrap();
        jobs.push(Job {
            model: onnx.clone(),
            inputs: vec![
                (graph::INPUT.into(), shape, values),
                (graph::VECTOR_INPUT.into(), vshape, vvalues),
            ],
        });
        let out = rescnn_ok([
            "predict".as_ref(),
            "--json".as_ref(),
            "--model".as_ref(),
            run.path().as_os_str(),
            wav.as_os_str(),
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let fused = cfg.prosody_weight > 0.0;
        assert_eq!(
            json[0]["prosody"].is_array(),
            fused,
            "predict fuses a branch"
        );
        let probs = json[0]["probabilities"].as_object().unwrap();
        predicted.push(
            rescnn::data::EMOTIONS
                .iter()
                .map(|c| probs[*c].as_f64().unwrap() as f32)
                .collect::<Vec<f32>>(),
        );
    }
    let outputs = ort.run(work.path(), &jobs);
    for (out, want) in outputs.iter().zip(&predicted) {
        compare(
            &ORT_PROBABILITIES,
            "exported run vs rescnn predict",
            &out.values,
            want,
        )
        .unwrap();
    }
    let meta = &outputs[0].metadata;
    let vector: serde_json::Value = serde_json::from_str(&meta["rescnn.utterance_vector"]).unwrap();
    assert_eq!(vector["input"], graph::VECTOR_INPUT);
    assert_eq!(vector["raw"], true);
    if cfg.prosody_weight > 0.0 {
        assert_eq!(vector["fusion_weight"], cfg.prosody_weight);
    }
    assert!(vector["entries"].as_array().is_some_and(|e| !e.is_empty()));
    let eval: serde_json::Value = serde_json::from_str(&meta["rescnn.eval"]).unwrap();
    assert_eq!(
        eval["eval_time"],
        serde_json::to_value(cfg.eval_time).unwrap()
    );
    Some(meta.clone())
}
