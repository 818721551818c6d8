//! The trained model is the deployed model: `rescnn eval` and `rescnn predict` give exactly the class
//! probabilities the trainer scored for its test set (whole-utterance evaluation, the prosody branch
//! and its fusion, selected and last weights), a multi-fold run is evaluated fold by fold and pooled
//! as its report, and speakers at prediction time (enrollment, saved statistics, the training
//! fallback, folders older than the model file).

mod train_support;

use std::path::{Path, PathBuf};

use rescnn::data::{synth, EvalTime, InputNormMode, SynthConfig};
use rescnn::evaluation::metrics::EvalReport;
use rescnn::training::report::RunResult;
use rescnn::training::run_dir::FoldResult;
use rescnn::training::TrainConfig;
use train_support::*;

/// A synthetic corpus written as `<class>/<speaker>/<file>.wav`: 4 speakers, 3 utterances per
/// class each (84 files).
fn corpus_on_disk() -> tempfile::TempDir {
    let data = temp_dir();
    let corpus = synth::generate(&SynthConfig {
        seed: 5,
        speakers: 4,
        per_class_per_speaker: 3,
        ..SynthConfig::default()
    })
    .expect("synthetic corpus");
    synth::export(&corpus, data.path()).expect("export as WAV files");
    data
}

/// The recipe's evaluation on the corpus in `data`: statistics pooling, whole utterances in one
/// image, the prosody branch fused at 0.5.
fn whole_with_branch(data: &Path) -> TrainConfig {
    let mut cfg = tiny_config();
    cfg.corpus = format!("folders:{}", data.display());
    cfg.arch = "c8k3 bn p2 +0 c16k3 bn p2 +0 stats drop0.2 fc16".into();
    cfg.spectrogram.image.width = 64;
    cfg.eval_time = EvalTime::Whole;
    cfg.prosody_weight = 0.5;
    cfg.iterations = Some(20);
    cfg
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    }))
    .unwrap()
}

fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).unwrap()
}

/// `rescnn eval --out` on `model`, returning (eval.json report, predictions.json).
fn eval(model: &Path, data: &Path, extra: &[&str]) -> (EvalReport, serde_json::Value) {
    let out = temp_dir();
    let mut args: Vec<std::ffi::OsString> = vec![
        "eval".into(),
        "--device".into(),
        "cpu".into(),
        "--corpus".into(),
        "folders".into(),
        "--model".into(),
        model.into(),
        "--data".into(),
        data.into(),
        "--out".into(),
        out.path().into(),
    ];
    args.extend(extra.iter().map(Into::into));
    rescnn_ok(&args);
    let report: EvalReport =
        serde_json::from_value(read_json(&out.path().join("eval.json"))).unwrap();
    (report, read_json(&out.path().join("predictions.json")))
}

/// The arguments of `rescnn predict --device cpu --json --model RUN`, before the files.
fn predict_json_args(run: &Path) -> Vec<std::ffi::OsString> {
    ["predict", "--device", "cpu", "--json", "--model"]
        .iter()
        .map(Into::into)
        .chain([run.into()])
        .collect()
}

/// On a run's own split, eval gives the trainer's test probabilities bit for bit (network, branch,
/// fusion; selected and last weights) and so the report's WA, UAR, per-class recall and confusion;
/// predict on the test files gives the same fused probabilities.
#[test]
fn eval_and_predict_give_the_trainers_test_probabilities() {
    let data = corpus_on_disk();
    eval_and_predict_agree_with_training(&whole_with_branch(data.path()), data.path());
}

/// The same for a joint network: the utterance vector as its second input, speaker-normalised like
/// the image, and no branch (so `model.json` holds the vector's normaliser alone).
#[test]
fn a_joint_model_predicts_the_trainers_test_probabilities() {
    let data = corpus_on_disk();
    let mut cfg = whole_with_branch(data.path());
    cfg.arch = "c8k3 bn p2 +0 c16k3 bn p2 +0 stats vec0.2fc8 drop0.2 fc16".into();
    cfg.input_norm = InputNormMode::Speaker;
    cfg.prosody_weight = 0.0;
    eval_and_predict_agree_with_training(&cfg, data.path());
}

fn eval_and_predict_agree_with_training(cfg: &TrainConfig, data: &Path) {
    let run = temp_dir();
    train(cfg, run.path());
    let saved = read_json(&run.path().join("test-predictions.json"));
    let fold: FoldResult =
        serde_json::from_value(read_json(&run.path().join("fold.json"))).unwrap();
    let split = run.path().join("split.json");
    let split_s = split.to_str().unwrap();
    for (weights, network_key, fused_key, reported) in [
        ("best", "network_selected", "selected", &fold.selected),
        ("last", "network_last", "last", &fold.last),
    ] {
        let (report, p) = eval(
            run.path(),
            data,
            &["--split", split_s, "--part", "test", "--weights", weights],
        );
        let f = &p["folds"][0];
        assert_eq!(
            f["ids"], saved["ids"],
            "{weights}: the test utterances in order"
        );
        assert_eq!(
            rows(&f["network"]),
            rows(&saved[network_key]),
            "{weights}: network"
        );
        assert_eq!(f["prosody"], saved["prosody"], "{weights}: branch");
        assert_eq!(
            rows(&f["fused"]),
            rows(&saved[fused_key]),
            "{weights}: fusion"
        );
        assert_eq!(
            &report, reported,
            "{weights}: eval's report is the trainer's"
        );
    }

    // predict gives each test file the trainer's fused probabilities whatever files it is given
    // beside it: all of them in reverse order, and the shortest one alone (the trainer evaluated
    // it in a batch with longer ones). A speaker-normalised model gets each speaker's statistics
    // as the trainer did, from all of the speaker's files (one folder per speaker); those files
    // follow the ones compared.
    let by_speaker = cfg.input_norm == InputNormMode::Speaker;
    let ids: Vec<String> = serde_json::from_value(saved["ids"].clone()).unwrap();
    let classes: Vec<String> = serde_json::from_value(saved["classes"].clone()).unwrap();
    let selected = rows(&saved["selected"]);
    let predict = |which: &[usize]| -> Vec<Vec<f64>> {
        let mut args: Vec<std::ffi::OsString> = predict_json_args(run.path());
        let compared: Vec<PathBuf> = which.iter().map(|&k| data.join(&ids[k])).collect();
        args.extend(compared.iter().map(Into::into));
        if by_speaker {
            args.extend(["--speaker-from".into(), "folder".into()]);
            args.extend(
                wav_files(data)
                    .into_iter()
                    .filter(|f| !compared.contains(f))
                    .map(Into::into),
            );
        }
        let out = rescnn_ok(&args);
        let predicted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (0..which.len())
            .map(|k| {
                let probs = &predicted[k]["probabilities"];
                classes.iter().map(|c| probs[c].as_f64().unwrap()).collect()
            })
            .collect()
    };
    let reversed: Vec<usize> = (0..ids.len()).rev().collect();
    let shortest = (0..ids.len())
        .min_by_key(|&k| std::fs::metadata(data.join(&ids[k])).unwrap().len())
        .unwrap();
    for which in [reversed, vec![shortest]] {
        for (k, got) in which.iter().zip(predict(&which)) {
            assert_eq!(
                got,
                selected[*k],
                "{}: predict of {} file(s) vs the trainer's fused probabilities",
                ids[*k],
                which.len()
            );
        }
    }
}

/// An `--ensemble 2` fold is deployed as its report scored it: eval averages its members'
/// probabilities as the trainer did (the report and the network rows bit for bit, selected and
/// last weights), predict and a timeline window holding a whole file give the test files those
/// fused probabilities, and export, which writes one network, names a member instead of exporting
/// part of the model.
#[test]
fn an_ensemble_fold_is_evaluated_and_predicted_as_its_report_scores_it() {
    let data = corpus_on_disk();
    let mut cfg = whole_with_branch(data.path());
    cfg.ensemble = 2;
    cfg.iterations = Some(60);
    let run = temp_dir();
    train(&cfg, run.path());
    let fold: FoldResult =
        serde_json::from_value(read_json(&run.path().join("fold.json"))).unwrap();
    let members: Vec<serde_json::Value> = ["seed-0", "seed-1"]
        .iter()
        .map(|m| read_json(&run.path().join(m).join("test-predictions.json")))
        .collect();
    assert_ne!(members[0]["network_last"], members[1]["network_last"]);
    let split = run.path().join("split.json");
    let (mut fused_selected, mut network_selected) = (Vec::new(), Vec::new());
    for (weights, network_key, reported) in [
        ("best", "network_selected", &fold.selected),
        ("last", "network_last", &fold.last),
    ] {
        let (report, p) = eval(
            run.path(),
            data.path(),
            &["--split", split.to_str().unwrap(), "--weights", weights],
        );
        assert_eq!(
            &report, reported,
            "{weights}: eval's report is the ensemble's"
        );
        let f = &p["folds"][0];
        assert_eq!(f["ids"], members[0]["ids"]);
        assert_eq!(
            f["prosody"], members[0]["prosody"],
            "{weights}: the fold's branch"
        );
        let (a, b) = (
            rows(&members[0][network_key]),
            rows(&members[1][network_key]),
        );
        // The trainer's order of operations (0 + ½·a) + ½·b, so equality is exact.
        let averaged: Vec<Vec<f64>> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (0.0 + 0.5 * x) + 0.5 * y)
                    .collect()
            })
            .collect();
        assert_eq!(
            rows(&f["network"]),
            averaged,
            "{weights}: the networks averaged"
        );
        if weights == "best" {
            fused_selected = rows(&f["fused"]);
            network_selected = averaged;
        }
    }

    let ids: Vec<String> = serde_json::from_value(members[0]["ids"].clone()).unwrap();
    let classes: Vec<String> = serde_json::from_value(members[0]["classes"].clone()).unwrap();
    let mut args = predict_json_args(run.path());
    args.extend(ids.iter().map(|id| data.path().join(id).into()));
    let predicted: serde_json::Value = serde_json::from_slice(&rescnn_ok(&args).stdout).unwrap();
    for (k, id) in ids.iter().enumerate() {
        let probs = &predicted[k]["probabilities"];
        let got: Vec<f64> = classes.iter().map(|c| probs[c].as_f64().unwrap()).collect();
        assert_eq!(
            got, fused_selected[k],
            "{id}: predict vs eval of the ensemble"
        );
    }
    let mut args = predict_json_args(run.path());
    args.extend(["--timeline", "--window", "30", "--hop", "30"].map(Into::into));
    args.push(data.path().join(&ids[0]).into());
    let timeline: serde_json::Value = serde_json::from_slice(&rescnn_ok(&args).stdout).unwrap();
    let windows = timeline["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1, "one window covers the file");
    let got: Vec<f64> = (classes.iter())
        .map(|c| windows[0]["probabilities"][c].as_f64().unwrap())
        .collect();
    assert_eq!(
        got, fused_selected[0],
        "the timeline's window vs eval of the ensemble"
    );

    // export writes the fold as one graph of both members (ONNX Runtime runs it in
    // tests/onnx_export.rs).
    let out = temp_dir();
    let onnx = out.path().join("m.onnx");
    rescnn_export(run.path(), &onnx);
    let proto =
        rescnn::export::onnx::ModelProto::from_bytes(&std::fs::read(&onnx).unwrap()).unwrap();
    let meta = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "rescnn.ensemble")
        .expect("ensemble metadata");
    let meta: serde_json::Value = serde_json::from_str(&meta.value).unwrap();
    assert_eq!(meta["members"], 2);
    let means = proto
        .graph
        .unwrap()
        .node
        .into_iter()
        .filter(|n| n.op_type == "Mean")
        .count();
    assert!(means >= 1, "the members' outputs are averaged");

    // The enrollment table's first row (each test speaker's own statistics over all of their
    // utterances: the training statistics for this model) scores the ensemble as eval does.
    use rescnn::inference::enrollment::{evaluate_enrollment, EnrollmentSettings, FoldModel};
    let corpus = rescnn::training::prepare::load_corpus(&cfg).unwrap();
    let split = rescnn::data::Split::load(&corpus, &split).unwrap();
    let ensemble = rescnn::inference::ensemble::Ensemble::load(
        run.path(),
        rescnn::inference::model_dir::Weights::Best,
    )
    .unwrap();
    let fold_model = FoldModel {
        name: "ensemble".into(),
        model: ensemble,
        test: split.test,
        train: split.train,
    };
    let settings = EnrollmentSettings {
        ks: vec![1],
        draws: 1,
        seed: 7,
        device: rescnn::training::DeviceChoice::Cpu,
    };
    let identity: Vec<usize> = (0..corpus.classes.len()).collect();
    let rows = evaluate_enrollment(&[fold_model], &corpus, &identity, &settings).unwrap();
    let all = rows[0].fusion.as_ref().unwrap();
    assert_eq!(
        (all.wa.0, all.uar.0),
        (100.0 * fold.selected.wa, 100.0 * fold.selected.uar)
    );
    let labels: Vec<usize> = serde_json::from_value(members[0]["labels"].clone()).unwrap();
    let right = (network_selected.iter().zip(&labels))
        .filter(|(p, &l)| rescnn::evaluation::predict::argmax(p) == l)
        .count();
    assert_eq!(
        rows[0].network.wa.0,
        100.0 * (right as f64 / labels.len() as f64),
        "the networks averaged"
    );

    // A member that reads other inputs (here: images of another width) is refused by name.
    let mut other_cfg = cfg.clone();
    other_cfg.ensemble = 1;
    other_cfg.spectrogram.image.width = 48;
    let other = temp_dir();
    train(&other_cfg, other.path());
    std::fs::remove_dir_all(run.path().join("seed-1")).unwrap();
    std::fs::rename(other.path(), run.path().join("seed-1")).unwrap();
    let mixed = std::process::Command::new(env!("CARGO_BIN_EXE_rescnn"))
        .arg("predict")
        .arg("--model")
        .arg(run.path())
        .arg(data.path().join(&ids[0]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(!mixed.status.success());
    assert!(stderr.contains("must read the same inputs"), "{stderr}");

    // A fold whose training stopped before its last member is not the ensemble its report names.
    std::fs::remove_dir_all(run.path().join("seed-1")).unwrap();
    let partial = std::process::Command::new(env!("CARGO_BIN_EXE_rescnn"))
        .arg("predict")
        .arg("--model")
        .arg(run.path())
        .arg(data.path().join(&ids[0]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&partial.stderr);
    assert!(!partial.status.success());
    assert!(
        stderr.contains("1 trained members of an ensemble of 2"),
        "{stderr}"
    );
}

/// `eval --eval-time crops --eval-hop H` on a model trained to evaluate whole utterances gives,
/// bit for bit, the test probabilities of the same training with `eval_time = "crops"` and that hop
/// (evaluation does not touch training, so the two runs' last weights are the same).
#[test]
fn eval_time_override_evaluates_as_a_model_trained_that_way() {
    let data = corpus_on_disk();
    let whole = whole_with_branch(data.path());
    let crops = TrainConfig {
        eval_time: EvalTime::Crops,
        eval_hop: 24,
        ..whole.clone()
    };
    let (whole_run, crops_run) = (temp_dir(), temp_dir());
    train(&whole, whole_run.path());
    train(&crops, crops_run.path());
    let saved = read_json(&crops_run.path().join("test-predictions.json"));
    let split = whole_run.path().join("split.json");
    let test = ["--split", split.to_str().unwrap(), "--weights", "last"];
    let (_, own) = eval(whole_run.path(), data.path(), &test);
    let overridden = [&test[..], &["--eval-time", "crops", "--eval-hop", "24"]].concat();
    let (_, p) = eval(whole_run.path(), data.path(), &overridden);
    let f = &p["folds"][0];
    assert_eq!(f["ids"], saved["ids"]);
    assert_eq!(rows(&f["network"]), rows(&saved["network_last"]), "network");
    assert_eq!(rows(&f["fused"]), rows(&saved["last"]), "fusion");
    assert_ne!(
        rows(&own["folds"][0]["network"]),
        rows(&f["network"]),
        "whole utterances and crops differ on this model"
    );
}

/// `--without-vector` evaluates a joint network with every utterance vector absent: its network
/// rows then differ from the rows with the vectors, and no longer depend on the vectors at all (the
/// saved normaliser shifted by one standard deviation changes the rows with vectors and leaves
/// these bit for bit); the branch still reads the vectors, unchanged. Absent means zero, the value
/// whole-vector dropout leaves: the same model with the vector's columns of the following fc layer
/// zeroed gives these rows bit for bit with its vectors given (a zero column and a zero input both
/// add exact zeros to the same sums). A model without a `vec` layer is refused, naming the option.
#[test]
fn a_joint_model_without_its_vector_answers_from_the_image_alone() {
    let data = corpus_on_disk();
    let mut cfg = whole_with_branch(data.path());
    cfg.arch = "c8k3 bn p2 +0 c16k3 bn p2 +0 stats vec0.2w0.5 drop0.2 fc16".into();
    // Training statistics, which model.json saves, normalise the vectors (not each speaker's own).
    cfg.input_norm = InputNormMode::Training;
    let run = temp_dir();
    train(&cfg, run.path());
    let split = run.path().join("split.json");
    let test = ["--split", split.to_str().unwrap(), "--weights", "last"];
    let absent = [&test[..], &["--without-vector"]].concat();
    let (_, given) = eval(run.path(), data.path(), &test);
    let (_, without) = eval(run.path(), data.path(), &absent);
    let (g, w) = (&given["folds"][0], &without["folds"][0]);
    assert_eq!(g["ids"], w["ids"]);
    assert_ne!(
        rows(&g["network"]),
        rows(&w["network"]),
        "the vectors reach the network, and --without-vector takes them away"
    );
    assert_eq!(
        g["prosody"], w["prosody"],
        "the branch reads the vectors still"
    );

    let zeroed = temp_dir();
    copy_run(run.path(), zeroed.path());
    let mut ck = last_checkpoint(zeroed.path());
    let d = ck.model.side_input_len;
    let fc = ck
        .params
        .iter_mut()
        .find(|t| t.dims.len() == 2 && t.dims[1] > d)
        .expect("the fc layer that reads the pooled statistics and the vector");
    let width = fc.dims[1];
    for row in fc.data.chunks_exact_mut(width) {
        // The vector follows the pooled statistics in the layer's input.
        row[width - d..].fill(0.0);
    }
    ck.save(&zeroed.path().join("checkpoints/last.safetensors"))
        .unwrap();
    let (_, ignoring) = eval(zeroed.path(), data.path(), &test);
    assert_eq!(
        rows(&ignoring["folds"][0]["network"]),
        rows(&w["network"]),
        "an absent vector is a zero vector"
    );

    let model_file = run.path().join("model.json");
    let mut parts = read_json(&model_file);
    let training = &mut parts["utterance"]["training"];
    let std: Vec<f64> = serde_json::from_value(training["std"].clone()).unwrap();
    for (m, s) in training["mean"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(&std)
    {
        *m = (m.as_f64().unwrap() + s).into();
    }
    std::fs::write(&model_file, serde_json::to_string(&parts).unwrap()).unwrap();
    let (_, shifted_given) = eval(run.path(), data.path(), &test);
    let (_, shifted_without) = eval(run.path(), data.path(), &absent);
    assert_ne!(
        rows(&shifted_given["folds"][0]["network"]),
        rows(&g["network"]),
        "the shifted normaliser changes the network's input vectors"
    );
    assert_eq!(
        rows(&shifted_without["folds"][0]["network"]),
        rows(&w["network"]),
        "without its vector, the network does not read the vectors"
    );

    let plain = temp_dir();
    train(&whole_with_branch(data.path()), plain.path());
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_rescnn"))
        .args([
            "eval",
            "--device",
            "cpu",
            "--corpus",
            "folders",
            "--without-vector",
        ])
        .arg("--model")
        .arg(plain.path())
        .arg("--data")
        .arg(data.path())
        .output()
        .expect("the rescnn binary runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("--without-vector")
            && stderr.contains("not a joint network"),
        "a model without `vec` is refused: {stderr}"
    );
}

/// A copy of the single-split run folder `from` (its files and its checkpoints) in `to`.
fn copy_run(from: &Path, to: &Path) {
    for sub in ["", "checkpoints"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// A timeline window holding a whole file is that file's prediction, for the whole model: a joint
/// network evaluated over the whole utterance with its vector as second input, the branch fused on
/// top, and the training speakers' statistics for a speaker-normalised model given no others.
#[test]
fn a_timeline_window_of_a_whole_file_is_its_prediction() {
    let data = corpus_on_disk();
    let mut cfg = whole_with_branch(data.path());
    cfg.arch = "c8k3 bn p2 +0 c16k3 bn p2 +0 stats vec0.2fc8 drop0.2 fc16".into();
    cfg.input_norm = InputNormMode::Speaker;
    let run = temp_dir();
    train(&cfg, run.path());
    let files = wav_files(data.path());
    let file = files
        .iter()
        .min_by_key(|f| std::fs::metadata(f).unwrap().len())
        .unwrap();
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args: Vec<std::ffi::OsString> = predict_json_args(run.path());
        args.extend(extra.iter().map(Into::into));
        args.push(file.into());
        serde_json::from_slice(&rescnn_ok(&args).stdout).unwrap()
    };
    let predicted = json(&[]);
    let timeline = json(&["--timeline", "--window", "30", "--hop", "30"]);
    let windows = timeline["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1, "one window covers the file");
    assert_eq!(windows[0]["probabilities"], predicted[0]["probabilities"]);
    assert_eq!(windows[0]["emotion"], predicted[0]["emotion"]);
}

/// Every WAV file under `dir`, in sorted order.
fn wav_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(wav_files(&path));
        } else if path.extension().is_some_and(|e| e == "wav") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A leave-one-speaker-out run: eval of the run folder evaluates each fold's test speaker with
/// that fold's model and pools, giving the run's report; a folder without `model.json` (an older
/// rescnn) loads with one note naming what is missing.
#[test]
fn eval_of_a_loso_run_pools_its_folds_as_the_report_does() {
    let data = corpus_on_disk();
    let run = temp_dir();
    let mut cfg = whole_with_branch(data.path());
    cfg.protocol = "loso".into();
    cfg.iterations = Some(10);
    cfg.eval_every = 5;
    train(&cfg, run.path());
    let result: RunResult =
        serde_json::from_value(read_json(&run.path().join("result.json"))).unwrap();
    assert_eq!(result.folds.len(), 4);
    let (report, p) = eval(run.path(), data.path(), &[]);
    assert_eq!(p["folds"].as_array().unwrap().len(), 4);
    assert_eq!(
        report, result.selected,
        "pooled over the folds as the report"
    );

    // Without the saved branch: a clear note, and the network's probabilities alone.
    let fold = std::fs::read_dir(run.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("model.json").exists())
        .unwrap();
    std::fs::remove_file(fold.join("model.json")).unwrap();
    let wav = first_wav(data.path());
    let out = rescnn_ok([
        "predict".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--json".as_ref(),
        "--model".as_ref(),
        fold.as_os_str(),
        wav.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no saved prosody branch") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json[0]["prosody"].is_null());
}

fn first_wav(data: &Path) -> PathBuf {
    data.join("anger/syn01/anger_00.wav")
}

/// A speaker-normalised model: statistics saved by `rescnn enroll` are shrunk toward the model's
/// prior, and for a model without one they are the files' own, giving exactly what grouping those
/// files by speaker gives; without any statistics the training speakers' are used, with one note;
/// a folder without them is refused in one line.
#[test]
fn enrolled_statistics_and_the_training_fallback() {
    let data = corpus_on_disk();
    let run = temp_dir();
    let mut cfg = whole_with_branch(data.path());
    cfg.input_norm = InputNormMode::Speaker;
    train(&cfg, run.path());
    let files: Vec<PathBuf> = ["anger", "sadness", "neutral", "happiness"]
        .iter()
        .flat_map(|c| (0..3).map(move |k| format!("{c}/syn02/{c}_{k:02}.wav")))
        .map(|f| data.path().join(f))
        .collect();
    assert!(files.iter().all(|f| f.exists()));
    let work = temp_dir();
    let stats = work.path().join("syn02.json");
    let mut args: Vec<std::ffi::OsString> = vec![
        "enroll".into(),
        "--model".into(),
        run.path().into(),
        "--speaker".into(),
        "syn02".into(),
        "-o".into(),
        stats.clone().into(),
    ];
    args.extend(files.iter().map(|f| f.clone().into_os_string()));
    rescnn_ok(&args);
    let shrunk = read_json(&stats);
    assert_eq!(shrunk["speaker"], "syn02");
    assert!(
        shrunk["vector"]["mean"].is_array(),
        "the branch's statistics too"
    );
    // The model's enrollment prior shrinks the files' own statistics toward the training
    // speakers': (k · own + w · prior) / (k + w) per entry, k = 12 files. The own statistics are
    // what enroll saves for the model without its prior.
    let model_json = run.path().join("model.json");
    let with_prior = read_json(&model_json);
    let prior = with_prior["enrollment_prior"].clone();
    let mut without = with_prior.clone();
    without.as_object_mut().unwrap().remove("enrollment_prior");
    std::fs::write(&model_json, serde_json::to_string(&without).unwrap()).unwrap();
    let out = rescnn_ok(&args);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no enrollment prior"),
        "one note says the statistics are the files' own"
    );
    let saved = read_json(&stats);
    let k = files.len() as f64;
    let values = |v: &serde_json::Value| -> Vec<f64> { serde_json::from_value(v.clone()).unwrap() };
    for part in ["image", "vector"] {
        let (own, got) = (values(&saved[part]["mean"]), values(&shrunk[part]["mean"]));
        let (p, w) = (values(&prior[part]["mean"]), values(&prior[part]["weight"]));
        for j in 0..own.len() {
            let want = (k * own[j] + w[j] * p[j]) / (k + w[j]);
            // f32 storage of the image statistics: a few units in the 7th digit.
            assert!(
                (got[j] - want).abs() <= 1e-6 + 1e-5 * want.abs(),
                "{part} entry {j}: shrunk mean {} vs (k·own + w·prior)/(k + w) = {want}",
                got[j]
            );
        }
    }

    let predict = |extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = predict_json_args(run.path());
        args.extend(extra.iter().map(Into::into));
        args.extend(files.iter().map(|f| f.clone().into_os_string()));
        let out = rescnn_ok(&args);
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (enrolled, note) = predict(&["--speaker-stats", stats.to_str().unwrap()]);
    assert!(note.is_empty(), "{note}");
    let (grouped, note) = predict(&["--speaker-from", "folder"]);
    assert!(
        note.contains("statistics of their files given here"),
        "{note}"
    );
    assert_eq!(grouped[0]["speaker"], "syn02");
    for k in 0..files.len() {
        assert_eq!(
            enrolled[k]["probabilities"],
            grouped[k]["probabilities"],
            "{}: enrolled from these files without a prior = grouped",
            files[k].display()
        );
    }
    let (fallback, note) = predict(&[]);
    assert!(
        note.contains("using the training speakers' statistics") && note.lines().count() == 1,
        "{note}"
    );
    assert_ne!(fallback[0]["network"], grouped[0]["network"]);

    // A folder from before model.json: no training statistics, so refused in one line.
    std::fs::remove_file(run.path().join("model.json")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rescnn"))
        .args(["predict", "--device", "cpu", "--model"])
        .arg(run.path())
        .arg(&files[0])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(error[0].contains("no training-set statistics"), "{stderr}");
}

/// The enrollment evaluation of a speaker-normalised LOSO run: the "all of the speaker's
/// utterances" row is the run's report, the k rows score only the utterances not enrolled, and the
/// command prints the table.
#[test]
fn enrollment_table_of_a_loso_run() {
    use rescnn::inference::enrollment::{evaluate_enrollment, EnrollmentSettings, FoldModel};
    use rescnn::inference::model_dir::{TrainedModel, Weights};
    let data = corpus_on_disk();
    let run = temp_dir();
    let mut cfg = whole_with_branch(data.path());
    cfg.protocol = "loso".into();
    cfg.input_norm = InputNormMode::Speaker;
    cfg.iterations = Some(10);
    cfg.eval_every = 5;
    train(&cfg, run.path());
    let result: RunResult =
        serde_json::from_value(read_json(&run.path().join("result.json"))).unwrap();
    let corpus = rescnn::training::prepare::load_corpus(&cfg).unwrap();
    let mut folds = Vec::new();
    for dir in rescnn::cli::eval::fold_dirs(run.path()).unwrap() {
        let split = rescnn::data::Split::load(&corpus, dir.join("split.json")).unwrap();
        folds.push(FoldModel {
            name: dir.display().to_string(),
            model: TrainedModel::load(&dir, Weights::Best).unwrap().into(),
            test: split.test,
            train: split.train,
        });
    }
    assert_eq!(folds.len(), 4);
    // Each fold's model carries its enrollment prior: per (channel, row) of the image and per entry
    // of the vector, with finite positive weights.
    for fold in &folds {
        let model = fold.model.first();
        let prior = model.parts.enrollment_prior.as_ref().expect("a prior");
        let (c, h, _) = model.checkpoint.model.input_shape;
        assert_eq!(prior.image.mean.len(), c * h);
        assert_eq!(prior.image.weight.len(), c * h);
        let vector = prior
            .vector
            .as_ref()
            .expect("the branch's vector has a prior");
        assert_eq!(
            vector.var.len(),
            model.utterance().unwrap().features.vector_len()
        );
        assert!(prior.image.weight.iter().all(|w| w.is_finite() && *w > 0.0));
    }
    let identity: Vec<usize> = (0..corpus.classes.len()).collect();
    let settings = EnrollmentSettings {
        ks: vec![1, 3],
        draws: 2,
        seed: 7,
        device: rescnn::training::DeviceChoice::Cpu,
    };
    let rows = evaluate_enrollment(&folds, &corpus, &identity, &settings).unwrap();
    // All, training statistics, then k = 1 and k = 3 each with own and shrunk statistics.
    assert_eq!(rows.len(), 6);
    let all = &rows[0];
    assert_eq!(all.scored, 84);
    // The same probabilities as the trainer's, so the same pooled accuracy (exact: counts).
    assert_eq!(
        all.fusion.as_ref().unwrap().wa.0,
        100.0 * result.selected.wa
    );
    assert_eq!(
        all.fusion.as_ref().unwrap().uar.0,
        100.0 * result.selected.uar
    );
    assert!(all.branch.is_some());
    for (row, k) in rows[2..].iter().zip([1, 1, 3, 3]) {
        assert_eq!(
            row.scored,
            84 - 4 * k,
            "{}: enrolled utterances are not scored",
            row.setting
        );
        assert_eq!(row.speakers_skipped, 0);
    }

    let out = rescnn_ok([
        "eval".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--corpus".as_ref(),
        "folders".as_ref(),
        "--model".as_ref(),
        run.path().as_os_str(),
        "--data".as_ref(),
        data.path().as_os_str(),
        "--enroll".as_ref(),
        "1,3".as_ref(),
        "--draws".as_ref(),
        "2".as_ref(),
        "--seed".as_ref(),
        "7".as_ref(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("k = 3 enrollment utterances (2 draws)")
            && table.contains(
                "k = 3 enrollment utterances, shrunk toward the training speakers (2 draws)"
            )
            && table.contains("training-set statistics (no enrollment)"),
        "{table}"
    );
    let fusion = all.fusion.as_ref().unwrap();
    let cell = format!("{:.2} / {:.2}", fusion.wa.0, fusion.uar.0);
    assert!(table.contains(&cell), "{cell} in {table}");
}
