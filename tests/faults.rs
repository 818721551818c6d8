//! Trust under faults, on the real binaries: a diverged run fails with its STATUS and keeps no
//! non-finite checkpoint; a run folder is locked while in use and taken over after its holder dies;
//! SIGTERM and SIGHUP checkpoint like Ctrl-C; empty splits and bad files are refused by name;
//! predict --skip-bad; messages and help text.

mod train_support;

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use rescnn::training::checkpoint::Checkpoint;
use rescnn::training::run::{self, RunOutcome};
use train_support::*;

const TRAIN: &str = env!("CARGO_BIN_EXE_rescnn-train");
const RESCNN: &str = env!("CARGO_BIN_EXE_rescnn");

/// A short synthetic run on the CPU: 32×32 gray images, a small network (no statistics pooling,
/// so first-frames evaluation), no prosody branch.
fn small_run(iters: &str, eval_every: &str) -> Vec<String> {
    [
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
        "--mel",
        "32",
        "--colormap",
        "gray",
        "--batch",
        "8",
        "--iters",
        iters,
        "--eval-every",
        eval_every,
        "--device",
        "cpu",
        "--no-cache",
        "--no-progress",
        "--protocol",
        "random",
    ]
    .map(String::from)
    .to_vec()
}

fn status(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("STATUS"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Start a training process, with its stdout lines, and wait for its evaluation at `step`.
fn spawn_until(args: &[String], step_text: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(TRAIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let found = line.contains(step_text);
        seen.push(line);
        if found {
            return (child, lines);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no `{step_text}` line: {seen:?}");
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// An exploding learning rate: the run stops as diverged with a non-zero exit, STATUS says at which
/// step, and every checkpoint it left is finite (a diverged one is never written).
#[test]
fn a_diverged_run_fails_and_writes_no_non_finite_checkpoint() {
    // 1e30 and 1000: losses far past the threshold from the second step on. 1e39: one step, whose
    // loss (before the update) is ordinary, and whose update overflows f32: only the weights show it.
    for (lr, iters) in [("1e30", "6"), ("1000", "6"), ("1e39", "1")] {
        let dir = temp_dir();
        let run_dir = dir.path().join("run");
        let out = Command::new(TRAIN)
            .args(small_run(iters, "1"))
            .args(["--lr", lr, "--out"])
            .arg(&run_dir)
            .output()
            .unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "lr {lr}: {all}");
        let st = status(&run_dir);
        assert!(
            st.starts_with("failed: diverged at step ") && st.contains("lower the learning rate"),
            "lr {lr}: STATUS {st:?}\n{all}"
        );
        assert!(all.contains("diverged at step"), "{all}");
        for name in ["last", "best"] {
            let path = run_dir.join(format!("checkpoints/{name}.safetensors"));
            if path.exists() {
                let ck = Checkpoint::load(&path).unwrap_or_else(|e| panic!("lr {lr}: {e}"));
                assert!(ck
                    .params
                    .iter()
                    .all(|t| t.data.iter().all(|v| v.is_finite())));
            }
        }
        assert!(!run_dir.join("summary.md").exists());
    }
}

/// A second `--resume` while a run trains is refused with one clear message and changes nothing;
/// SIGTERM then checkpoints like Ctrl-C; after kill -9 the lock is free again, the temporaries a
/// killed writer left are removed, and the run completes with every evaluation once.
#[test]
fn a_run_folder_is_locked_sigterm_checkpoints_and_a_killed_run_resumes() {
    let dir = temp_dir();
    let run_dir = dir.path().join("run");
    let mut args = small_run("400", "5");
    args.push("--out".into());
    args.push(run_dir.display().to_string());
    let (mut child, lines) = spawn_until(&args, "step 5/400");

    let second = Command::new(TRAIN)
        .arg("--resume")
        .arg(&run_dir)
        .output()
        .unwrap();
    let said = text(&second);
    assert_eq!(second.status.code(), Some(1), "{said}");
    assert!(
        said.contains("is in use by another rescnn-train (process ")
            && said.contains(&child.id().to_string()),
        "{said}"
    );
    assert_eq!(
        status(&run_dir),
        "running",
        "the refused resume leaves STATUS alone"
    );

    // A fresh run with the same --out is refused the same way, not with a split mismatch.
    let fresh = Command::new(TRAIN).args(&args).output().unwrap();
    assert!(text(&fresh).contains("is in use by"), "{}", text(&fresh));

    signal(&child, "-TERM");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    let st = status(&run_dir);
    assert!(
        st.starts_with("interrupted: ") && st.contains("rescnn-train --resume"),
        "{st}"
    );
    let stopped_at = last_checkpoint(&run_dir).state.step;
    assert!((5..400).contains(&stopped_at), "step {stopped_at}");

    // Resume, kill -9 it mid-run, and leave a writer's temporary behind.
    let resume = ["--resume".to_string(), run_dir.display().to_string()];
    let (mut killed, _) = spawn_until(&resume, "step ");
    signal(&killed, "-KILL");
    killed.wait().unwrap();
    let stale = run_dir.join("checkpoints/.last.safetensors.999999.0.tmp");
    std::fs::write(&stale, b"half a checkpoint").unwrap();

    let out = Command::new(TRAIN).args(&resume).output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    // Ours, and one more when the kill landed inside a write.
    assert!(
        all.contains("temporary file(s) left by an interrupted write"),
        "{all}"
    );
    assert!(!stale.exists());
    let left: Vec<_> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(status(&run_dir), "complete");
    let steps: Vec<u64> = metrics_without_time(&run_dir)
        .iter()
        .map(|m| m.step)
        .collect();
    let expected: Vec<u64> = (1..=80).map(|k| 5 * k).collect();
    assert_eq!(steps, expected, "every evaluation once");
}

/// SIGHUP (a closed terminal) is handled as the first Ctrl-C.
#[test]
fn sighup_checkpoints_like_ctrl_c() {
    let dir = temp_dir();
    let run_dir = dir.path().join("run");
    let mut args = small_run("400", "5");
    args.push("--out".into());
    args.push(run_dir.display().to_string());
    let (mut child, lines) = spawn_until(&args, "step 5/400");
    signal(&child, "-HUP");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    assert!(status(&run_dir).starts_with("interrupted: "));
    assert!(last_checkpoint(&run_dir).state.step >= 5);
}

/// `--test-fraction 0` leaves no test set: refused, instead of "WA 0.00 % over 0 utterances".
#[test]
fn an_empty_test_set_is_an_error() {
    let dir = temp_dir();
    let mut cfg = tiny_config();
    cfg.test_fraction = 0.0;
    let err = run::start(&cfg, &dir.path().join("run"), &quiet()).unwrap_err();
    assert!(err.to_string().contains("the test set is empty"), "{err}");
    let mut cfg = tiny_config();
    cfg.test_fraction = 0.2;
    assert!(matches!(
        run::start(&cfg, &dir.path().join("ok"), &quiet()).unwrap(),
        RunOutcome::Complete { .. }
    ));
}

/// NaN and infinity are named as what they are, on the command line and in a TOML file.
#[test]
fn non_finite_settings_are_named() {
    let out = Command::new(TRAIN).args(["--lr", "nan"]).output().unwrap();
    assert!(
        text(&out).contains("`nan` is not a finite number"),
        "{}",
        text(&out)
    );
    let dir = temp_dir();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "[optimizer]\nlr = inf\n").unwrap();
    let out = Command::new(TRAIN)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(
        said.contains("`optimizer.lr` is inf; a setting must be a finite number"),
        "{said}"
    );
}

/// Every help text of both binaries: no rustdoc link syntax, no per-optimizer default for the
/// choice of optimizer itself.
#[test]
fn help_texts_hold_no_rustdoc_syntax() {
    let mut helps = vec![(TRAIN, vec!["--help"])];
    for sub in ["spectrogram", "info", "predict", "eval", "export", "score"] {
        helps.push((RESCNN, vec![sub, "--help"]));
    }
    helps.push((RESCNN, vec!["--help"]));
    for (bin, args) in helps {
        let out = Command::new(bin).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        for bad in ["[`", "]("] {
            assert!(!help.contains(bad), "{bin} {args:?} shows `{bad}`:\n{help}");
        }
        if bin == TRAIN {
            let optimizer = help
                .lines()
                .skip_while(|l| !l.contains("--optimizer <OPTIMIZER>"))
                .nth(1)
                .unwrap_or_default();
            assert!(
                optimizer.ends_with("[default: rmsprop]")
                    || optimizer.ends_with("[default: adamw]"),
                "one default for the optimizer choice: {optimizer:?}"
            );
        }
    }
}

/// predict names every bad file and predicts nothing without --skip-bad; with it, the good files
/// are predicted and the bad ones listed. A too-short and a silent file get no label.
#[test]
fn predict_names_every_bad_file_and_skip_bad_predicts_the_rest() {
    let dir = temp_dir();
    let mut cfg = tiny_config();
    cfg.iterations = Some(10);
    train(&cfg, dir.path());
    let (data, _) = exported_small_corpus();
    let good = data.path().join("anger/syn01/anger_00.wav");
    let truncated = data.path().join("truncated.wav");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2 + 1]).unwrap();
    let not_wav = data.path().join("notes.wav");
    std::fs::write(&not_wav, b"not audio at all").unwrap();
    let short = data.path().join("short.wav");
    rescnn::audio::write_wav_i16(&short, &[0.3; 10], 16_000).unwrap();
    let silent = data.path().join("silent.wav");
    rescnn::audio::write_wav_i16(&silent, &[0.0; 16_000], 16_000).unwrap();

    let model = dir.path().display().to_string();
    let files = [&good, &truncated, &not_wav, &short, &silent];
    let out = Command::new(RESCNN)
        .args(["predict", "--device", "cpu", "--model", &model])
        .args(files)
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(out.stdout.is_empty(), "{said}");
    assert!(said.contains("2 of 5 file(s) cannot be read"), "{said}");
    for f in [&truncated, &not_wav] {
        assert!(said.contains(&f.display().to_string()), "{said}");
    }
    assert!(said.contains("--skip-bad"), "{said}");

    let out = Command::new(RESCNN)
        .args([
            "predict",
            "--skip-bad",
            "--device",
            "cpu",
            "--model",
            &model,
        ])
        .args(files)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains(&good.display().to_string()));
    let line_of = |f: &Path| {
        stdout
            .lines()
            .find(|l| l.starts_with(&f.display().to_string()))
            .unwrap_or_else(|| panic!("{f:?}: {stdout}"))
            .to_string()
    };
    assert!(
        line_of(&short).contains("no label (only 0.001 s long"),
        "{stdout}"
    );
    assert!(
        line_of(&silent).contains("no label (digital silence"),
        "{stdout}"
    );
    assert!(!line_of(&good).contains("no label"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("left out 2 of 5 file(s)"),
        "{said}"
    );
}

/// `eval_time = "whole"` with a network that is not width-independent says that `stats` is needed
/// (it complained about a shortcut token).
#[test]
fn whole_evaluation_without_stats_names_stats() {
    let mut cfg = tiny_config();
    cfg.spectrogram.image.time_axis = rescnn::features::TimeAxis::Fixed;
    cfg.eval_time = rescnn::data::EvalTime::Whole;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("needs an architecture with `stats`"), "{err}");
    cfg.arch = "c8k3 p2 +0 c16k3 p2 stats fc32".into();
    cfg.validate().unwrap();
}

/// A file past the documented length is refused from its header by `spectrogram` and `predict`,
/// saying why and what to use instead.
#[test]
fn over_long_files_are_refused_with_the_limit() {
    let dir = temp_dir();
    let long = dir.path().join("long.wav");
    let seconds = rescnn::audio::MAX_WHOLE_FILE_S as usize + 1;
    rescnn::audio::write_wav_i16(&long, &vec![0.1; seconds * 1000], 1000).unwrap();
    let png = dir.path().join("long.png");
    let out = Command::new(RESCNN)
        .arg("spectrogram")
        .arg(&long)
        .arg("-o")
        .arg(&png)
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("601 s long; rescnn spectrogram takes recordings up to 600 s"),
        "{said}"
    );
    assert!(!png.exists());
}
