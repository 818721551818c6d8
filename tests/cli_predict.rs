//! `rescnn predict` and `rescnn eval` on a model trained in the test.

mod train_support;

use rescnn::cli::predict::predict;
use rescnn::data::EMOTIONS;
use rescnn::inference::ensemble::Ensemble;
use rescnn::inference::model_dir::{TrainedModel, Weights};
use rescnn::training::DeviceChoice;
use train_support::*;

#[test]
fn predict_gives_probabilities_that_sum_to_one_and_eval_counts_every_utterance() {
    let dir = temp_dir();
    let mut cfg = tiny_config();
    cfg.iterations = Some(20);
    train(&cfg, dir.path());

    // New audio: a few synthetic utterances (another seed) written as WAV, plus a stereo 44.1 kHz file.
    let (data, corpus) = exported_small_corpus();
    let elsewhere = temp_dir();
    let stereo = elsewhere.path().join("stereo.wav");
    {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&stereo, spec).unwrap();
        for i in 0..44_100 {
            let v = (8000.0 * (i as f32 * 0.05).sin()) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v / 2).unwrap();
        }
        w.finalize().unwrap();
    }
    let anger = data.path().join("anger/syn01/anger_00.wav");
    assert!(anger.exists());
    let files = vec![anger.clone(), stereo.clone()];

    let model = Ensemble::load(dir.path(), Weights::Best).unwrap();
    let predictions = predict(&model, &files, DeviceChoice::Cpu).unwrap();
    assert_eq!(predictions.len(), 2);
    for (p, f) in predictions.iter().zip(&files) {
        assert_eq!(p.file, f.display().to_string(), "in the order given");
        let names: Vec<&str> = p.probabilities.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, EMOTIONS);
        let sum: f64 = p.probabilities.iter().map(|(_, v)| v).sum();
        assert!((sum - 1.0).abs() < 1e-9, "probabilities sum to {sum}");
        assert!(p.probabilities.iter().all(|(_, v)| (0.0..=1.0).contains(v)));
        let best = p
            .probabilities
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(p.emotion, best.0);
    }

    // The binary, with --json.
    let out = rescnn_ok([
        "predict".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--json".as_ref(),
        "--model".as_ref(),
        dir.path().as_os_str(),
        anger.as_os_str(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probs = json[0]["probabilities"].as_object().unwrap();
    assert_eq!(probs.len(), 7);
    let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    assert_eq!(
        json[0]["emotion"],
        serde_json::json!(predictions[0].emotion)
    );

    // --device cuda without a GPU: one error that names the missing GPU (both commands share it).
    if rescnn::backends::cuda::list_gpus().is_ok_and(|g| !g.is_empty()) {
        eprintln!("a CUDA GPU is present: the no-GPU error of --device cuda is not checked");
    } else {
        for command in ["predict", "eval"] {
            let mut args: Vec<&std::ffi::OsStr> = vec![
                command.as_ref(),
                "--device".as_ref(),
                "cuda".as_ref(),
                "--model".as_ref(),
                dir.path().as_os_str(),
            ];
            if command == "predict" {
                args.push(anger.as_os_str());
            } else {
                for word in ["--corpus", "folders", "--data"] {
                    args.push(word.as_ref());
                }
                args.push(data.path().as_os_str());
            }
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_rescnn"))
                .args(&args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{command} --device cuda ran without a GPU"
            );
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(
                stderr.contains("--device cuda needs an NVIDIA GPU"),
                "{command}: {stderr}"
            );
        }
    }

    // eval on the exported folder corpus: every utterance counted, report files written.
    let report_dir = data.path().join("eval-report");
    let out = rescnn_ok([
        "eval".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--corpus".as_ref(),
        "folders".as_ref(),
        "--json".as_ref(),
        "--model".as_ref(),
        dir.path().as_os_str(),
        "--data".as_ref(),
        data.path().as_os_str(),
        "--out".as_ref(),
        report_dir.as_os_str(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(utterances_evaluated(&report), corpus.len() as u64);
    let wa = report["wa"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&wa));
    for f in ["eval.md", "eval.json", "confusion.svg"] {
        assert!(report_dir.join(f).exists(), "{f}");
    }

    // A LOSO-style folder of several models is refused with the choices listed.
    let parent = temp_dir();
    std::fs::create_dir_all(parent.path().join("fold-01-a/checkpoints")).unwrap();
    std::fs::create_dir_all(parent.path().join("fold-02-b/checkpoints")).unwrap();
    let e = TrainedModel::load(parent.path(), Weights::Best)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 models") && e.contains("fold-01-a"), "{e}");
}
