//! The rescnn-train command line: layering of defaults, presets, config files (TOML and JSON) and
//! options; --resume's rules; and Ctrl-C on the real binary (checkpoint, clean exit, resume).

mod train_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rescnn::features::Colormap;
use rescnn::training::args::{config, parse, request, Request};
use rescnn::training::config::OptimizerConfig;
use rescnn::training::TrainConfig;
use train_support::*;

fn cfg_of(words: &[&str]) -> rescnn::Result<TrainConfig> {
    let (args, m) = parse(std::iter::once("rescnn-train").chain(words.iter().copied())).unwrap();
    config(&args, &m)
}

#[test]
fn no_arguments_is_the_default_configuration() {
    assert_eq!(cfg_of(&[]).unwrap(), TrainConfig::no_arguments());
}

/// `--preset recipe` with only the data and the protocol given runs end to end on the real
/// binary (here shortened to 3 steps on the synthetic corpus, two held-out speakers): the report
/// gives the fusion, the network alone and the prosody branch alone, and the run's configuration
/// is the recipe's but for what was given.
#[test]
fn the_recipe_preset_runs_with_data_and_protocol_only_and_reports_its_parts() {
    let dir = temp_dir();
    let run_dir = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_rescnn-train"))
        .args([
            "--preset",
            "recipe",
            "--corpus",
            "synthetic",
            "--protocol",
            "speakers:syn07,syn08",
            "--iters",
            "3",
            "--no-cache",
            "--no-progress",
            "--device",
            "cpu",
            "--out",
        ])
        .arg(&run_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    for row in [
        "| fusion at prosody weight 0.5 |",
        "| network alone |",
        "| prosody branch alone |",
    ] {
        assert!(summary.contains(row), "no {row} row in {summary}");
    }
    assert!(stdout.contains("network alone WA"), "{stdout}");
    let written = TrainConfig::load_toml(&run_dir.join("config.toml")).unwrap();
    assert_eq!(
        written,
        TrainConfig {
            corpus: "synthetic".into(),
            protocol: "speakers:syn07,syn08".into(),
            iterations: Some(3),
            feature_cache: false,
            device: rescnn::training::config::DeviceChoice::Cpu,
            ..TrainConfig::recipe()
        }
    );
}

#[test]
fn the_paper_preset_sets_what_the_paper_states() {
    let c = cfg_of(&["--preset", "paper"]).unwrap();
    assert_eq!(c.arch, "paper");
    assert_eq!((c.batch, c.iterations, c.epochs), (50, Some(100_000), None));
    assert_eq!(
        c.optimizer,
        OptimizerConfig::RmsProp(rescnn::model::RmsPropConfig {
            lr: 0.001,
            decay: 1e-6,
            ..Default::default()
        })
    );
    assert_eq!(
        (c.spectrogram.image.height, c.spectrogram.image.width),
        (512, 512)
    );
    assert_eq!(c.spectrogram.image.colormap, Colormap::Jet);
    assert_eq!(c.augment, rescnn::data::AugmentConfig::paper());
    assert!(c.balanced);
    assert_eq!(c.protocol, "random");
}

#[test]
fn toml_and_json_files_layer_under_the_options_given() {
    let dir = temp_dir();
    let toml = dir.path().join("run.toml");
    std::fs::write(
        &toml,
        "arch = \"paper-plain\"\neval_time = \"first\"\niterations = 5\n[optimizer]\nlr = 0.01\n[spectrogram.image]\nheight = 48\n",
    )
    .unwrap();
    let c = cfg_of(&["--config", toml.to_str().unwrap(), "--lr", "0.02"]).unwrap();
    assert_eq!(c.arch, "paper-plain");
    assert_eq!(c.iterations, Some(5));
    assert_eq!(c.optimizer.lr(), 0.02, "an option given beats the file");
    assert_eq!(c.spectrogram.image.height, 48);
    // Options NOT given (e.g. --width, whose clap default is 512) leave the file and defaults alone.
    assert_eq!(
        c.spectrogram.image.width,
        TrainConfig::no_arguments().spectrogram.image.width
    );

    let json = dir.path().join("run.json");
    std::fs::write(&json, r#"{"preset": "paper", "epochs": 3, "batch": 8}"#).unwrap();
    let c = cfg_of(&["--config", json.to_str().unwrap(), "--width", "96"]).unwrap();
    assert_eq!(
        (c.arch.as_str(), c.batch, c.epochs, c.iterations),
        ("paper", 8, Some(3.0), None)
    );
    assert_eq!(c.spectrogram.image.width, 96);
    assert_eq!(c.spectrogram.image.height, 512, "from the paper preset");

    // The effective configuration a run writes reads back the same.
    assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml()).unwrap(), c);

    std::fs::write(&toml, "itertions = 5\n").unwrap();
    let e = cfg_of(&["--config", toml.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("run.toml") && e.contains("itertions"), "{e}");
    std::fs::write(&toml, "iterations = \n").unwrap();
    let e = cfg_of(&["--config", toml.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("run.toml") && e.contains("not valid TOML"),
        "{e}"
    );
}

#[test]
fn data_options_build_the_corpus_and_bad_values_are_refused() {
    let c = cfg_of(&["--data", "/data/emodb"]).unwrap();
    assert_eq!(c.corpus, "emodb:/data/emodb");
    let c = cfg_of(&["--data", "/data/x", "--corpus", "folders"]).unwrap();
    assert_eq!(c.corpus, "folders:/data/x");
    let e = cfg_of(&["--corpus", "ravdess"]).unwrap_err().to_string();
    assert!(e.contains("needs --data"), "{e}");
    let e = cfg_of(&["--protocol", "speakers"]).unwrap_err().to_string();
    assert!(e.contains("speakers:A,B"), "{e}");
    assert!(parse(["rescnn-train", "--iters", "5", "--epochs", "2"]).is_err());
    assert!(parse(["rescnn-train", "--device", "tpu"]).is_err());
}

#[test]
fn resume_takes_the_runs_own_configuration() {
    let (args, m) = parse(["rescnn-train", "--resume", "runs/x"]).unwrap();
    assert!(matches!(
        request(&args, &m).unwrap(),
        Request::Resume { .. }
    ));
    let (args, m) = parse([
        "rescnn-train",
        "--resume",
        "runs/x",
        "--lr",
        "0.1",
        "--batch",
        "4",
    ])
    .unwrap();
    let e = request(&args, &m).unwrap_err().to_string();
    assert!(
        e.contains("--lr") && e.contains("--batch") && e.contains("config.toml"),
        "{e}"
    );
}

/// Ctrl-C (SIGINT) on the real binary: the step finishes, a checkpoint is written, the process exits
/// with 130 and says how to resume; `--resume` then finishes the run.
#[test]
fn ctrl_c_checkpoints_and_the_run_resumes() {
    let dir = temp_dir();
    let run_dir = dir.path().join("run");
    let common = [
        "--arch",
        "c8k3 p2 fc32",
        "--eval-time",
        "first",
        "--prosody",
        "0",
        "--height",
        "32",
        "--width",
        "32",
        "--colormap",
        "gray",
        "--batch",
        "8",
        "--iters",
        "300",
        "--eval-every",
        "5",
        "--device",
        "cpu",
        "--no-cache",
        "--protocol",
        "random",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_rescnn-train"))
        .args(common)
        .arg("--out")
        .arg(&run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let first_eval = line.contains("step 5/300");
        seen.push(line);
        if first_eval {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("step 5/300")),
        "no evaluation line: {seen:?}"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "output after the signal: {rest:?}"
    );
    let text = rest.join("\n");
    assert!(
        text.contains("continue with: rescnn-train --resume"),
        "{text}"
    );
    let ck = last_checkpoint(&run_dir);
    assert!(
        ck.state.step >= 5 && ck.state.step < 300,
        "step {}",
        ck.state.step
    );
    assert!(!run_dir.join("summary.md").exists());

    let out = Command::new(env!("CARGO_BIN_EXE_rescnn-train"))
        .arg("--resume")
        .arg(&run_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("resuming at step {}", ck.state.step)),
        "{stdout}"
    );
    assert!(
        stdout.contains("test accuracy") && stdout.contains("summary.md"),
        "{stdout}"
    );
    assert_eq!(last_checkpoint(&run_dir).state.step, 300);
    let status = std::fs::read_to_string(run_dir.join("STATUS")).unwrap();
    assert_eq!(status.trim(), "complete");
}

/// `--input-norm` and the file key `input_norm` layer like the other settings (default `speaker`,
/// the recipe's), reach config.toml, and are refused together with `--resume`.
#[test]
fn input_norm_option_and_key_layer_like_the_others() {
    use rescnn::data::InputNormMode;
    assert_eq!(cfg_of(&[]).unwrap().input_norm, InputNormMode::Speaker);
    let c = cfg_of(&["--input-norm", "training"]).unwrap();
    assert_eq!(c.input_norm, InputNormMode::Training);
    assert!(
        c.to_toml().contains("input_norm = \"training\""),
        "{}",
        c.to_toml()
    );
    assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml()).unwrap(), c);

    let dir = temp_dir();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "input_norm = \"training\"\n").unwrap();
    let from_file = cfg_of(&["--config", file.to_str().unwrap()]).unwrap();
    assert_eq!(from_file.input_norm, InputNormMode::Training);
    let overridden = cfg_of(&[
        "--config",
        file.to_str().unwrap(),
        "--input-norm",
        "speaker",
    ])
    .unwrap();
    assert_eq!(overridden.input_norm, InputNormMode::Speaker);
    std::fs::write(&file, "input_norm = \"utterance\"\n").unwrap();
    let e = cfg_of(&["--config", file.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("run.toml") && e.contains("utterance"), "{e}");
    assert!(parse(["rescnn-train", "--input-norm", "utterance"]).is_err());

    let (args, m) = parse([
        "rescnn-train",
        "--resume",
        "runs/x",
        "--input-norm",
        "speaker",
    ])
    .unwrap();
    let e = request(&args, &m).unwrap_err().to_string();
    assert!(e.contains("--input-norm"), "{e}");
}

/// `--augment` sets the augmentation and the waveform variants together, on top of the preset;
/// `--no-augment` clears both; the two cannot be given together.
#[test]
fn augment_levels_set_augmentation_and_waveform_variants() {
    use rescnn::data::AugmentConfig;
    use rescnn::training::config::AugmentLevel;
    let paper = cfg_of(&["--preset", "paper"]).unwrap();
    assert_eq!(paper.augment, AugmentConfig::paper());
    assert!(paper.waveform_variants.is_empty());

    let full = cfg_of(&["--preset", "paper", "--augment", "full"]).unwrap();
    assert_eq!(full.augment, AugmentConfig::default());
    assert!(full.augment.time_masks > 0 && full.augment.waveform > 0.0);
    assert_eq!(full.waveform_variants, AugmentLevel::FULL_VARIANTS.to_vec());
    assert_eq!(
        toml::from_str::<TrainConfig>(&full.to_toml()).unwrap(),
        full
    );

    // From a file that turns everything on, both ways of saying "none" clear both.
    let dir = temp_dir();
    let file = dir.path().join("full.toml");
    std::fs::write(&file, full.to_toml()).unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(cfg_of(&["--config", file]).unwrap(), full);
    for words in [&["--augment", "none"][..], &["--no-augment"][..]] {
        let mut w = vec!["--config", file];
        w.extend_from_slice(words);
        let c = cfg_of(&w).unwrap();
        assert_eq!(c.augment, AugmentConfig::none(), "{words:?}");
        assert!(c.waveform_variants.is_empty(), "{words:?}");
    }
    assert!(parse(["rescnn-train", "--augment", "full", "--no-augment"]).is_err());
    assert!(parse(["rescnn-train", "--augment", "most"]).is_err());
}

/// A run's config.toml given back as `--config` reproduces that run's configuration, including the
/// settings that are unset (`mel_bands`, `fmax_hz`: written as 0, since TOML has no null and an
/// absent key would keep the base's value, 64 mel bands for the no-argument base).
#[test]
fn a_written_configuration_read_back_as_a_config_file_is_the_same() {
    let dir = temp_dir();
    for words in [
        &["--preset", "paper"][..],
        &[][..],
        &["--mel", "40", "--fmax", "6000"][..],
    ] {
        let c = cfg_of(words).unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, c.to_toml()).unwrap();
        let back = cfg_of(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(back, c, "{words:?}");
    }
    assert_eq!(
        cfg_of(&["--preset", "paper"])
            .unwrap()
            .spectrogram
            .stft
            .mel_bands,
        None
    );
}

/// `--optimizer adamw` with its options; an option of the other optimizer, and a bad value, are
/// refused naming the option.
#[test]
fn optimizer_options_choose_and_set_adamw_and_name_misfits() {
    use rescnn::model::{AdamWConfig, LrSchedule};
    // From the paper's RMSProp: choosing AdamW starts from AdamW's own defaults.
    let c = cfg_of(&[
        "--preset",
        "paper",
        "--optimizer",
        "adamw",
        "--lr",
        "0.003",
        "--weight-decay",
        "0.05",
        "--warmup",
        "0.1",
        "--schedule",
        "one-cycle",
    ])
    .unwrap();
    assert_eq!(
        c.optimizer,
        OptimizerConfig::AdamW(AdamWConfig {
            lr: 0.003,
            weight_decay: 0.05,
            warmup_fraction: 0.1,
            schedule: LrSchedule::OneCycle,
            ..AdamWConfig::default()
        })
    );
    let e = cfg_of(&["--preset", "paper", "--warmup", "0.1"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--warmup") && e.contains("rmsprop") && e.contains("--optimizer adamw"),
        "{e}"
    );
    let e = cfg_of(&["--optimizer", "adamw", "--decay", "0.1"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--decay") && e.contains("--optimizer rmsprop"),
        "{e}"
    );
    let e = cfg_of(&["--optimizer", "adamw", "--warmup", "1.5"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("warmup_fraction") && e.contains("--warmup"),
        "{e}"
    );
    let e = cfg_of(&["--ensemble", "0"]).unwrap_err().to_string();
    assert!(e.contains("--ensemble"), "{e}");
    assert_eq!(cfg_of(&["--ensemble", "3"]).unwrap().ensemble, 3);
    let e = parse(["rescnn-train", "--optimizer", "adam"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--optimizer") && e.contains("adamw"), "{e}");
}
