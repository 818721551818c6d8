//! The `rescnn-train` command line. Settings layer: the defaults (or `--preset paper`), then
//! `--config FILE`, then the options given on the command line, which are one more overlay merged
//! exactly like a file ([`TrainConfig::with_overlay`]). Only options actually given go into it
//! (clap's value source tells), so a `--config` file is never silently overridden by a default.
//!
//! A training setting is declared once, in [`TrainConfig`] (doc, type, default, validation); its
//! flag is one line of [`config_flags!`] naming the key it sets. `--help` shows the defaults of
//! [`TrainConfig::default`], and `--resume` refuses every option but the run-control ones.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde_json::{json, Map, Value};

use super::config::{AugmentLevel, OptimizerConfig, TrainConfig};
use crate::model::OptimizerKind;
use crate::{config_err, Result};

#[derive(Parser, Debug)]
#[command(
    name = "rescnn-train",
    version,
    about = "Train and evaluate a speech emotion recognition CNN. With no arguments: a small residual \
             network on the built-in synthetic corpus, on the best device available."
)]
pub struct Args {
    /// Data folder (or manifest file) of the corpus; with no --data, the built-in synthetic corpus.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Corpus kind: emodb (default with --data), ravdess, ravdess8, folders, manifest, synthetic[:SEED],
    /// or a manifest .csv file.
    #[arg(long, value_name = "KIND")]
    pub corpus: Option<String>,
    /// Training augmentation: `paper` (random crop, flip, graying, noise points), `full` (those,
    /// SpecAugment masks, and speed/pitch-perturbed variants), `specaugment` (the masks alone), or
    /// `none`.
    #[arg(long, value_enum, conflicts_with = "no_augment")]
    pub augment: Option<AugmentLevel>,
    /// Stretch the whole utterance to the width, instead of one column per frame (the opposite of
    /// --fixed-time).
    #[arg(long, conflicts_with = "spectrogram.image.time_axis")]
    pub whole_time: bool,
    /// Turn training augmentation off (the same as `--augment none`).
    #[arg(long)]
    pub no_augment: bool,
    /// Start from a named configuration: recipe (our best speaker-independent setting; add --data
    /// and --protocol), paper (everything the paper states) or default.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Settings from a TOML or JSON file (keys as in a run's config.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run directory (default: runs/<UTC time>-<corpus>-<arch>).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint, with its own configuration.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Stop (checkpoint, resumable) once this many iterations of the current fold are done.
    #[arg(long, value_name = "ITER")]
    pub stop_at: Option<u64>,
    /// No progress bar (one line per validation is printed either way).
    #[arg(long)]
    pub no_progress: bool,
}

/// Options that steer a run without changing its configuration (allowed with `--resume`).
const RUN_CONTROL: &[&str] = &["resume", "stop_at", "no_progress", "help", "version"];

/// A configuration key given on the command line: `value` options parse their word as the type
/// given (`choice`: one of a [`clap::ValueEnum`]'s names), `switch` options set the key to a fixed
/// value.
struct ConfigFlag {
    flag: &'static str,
    key: &'static str,
    help: &'static str,
    /// The value a switch sets (`None`: the option takes a value).
    switch: Option<Value>,
    arg: Arg,
}

fn to_json<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("a setting serialises")
}

/// One line per option: `value "flag" => "key": Type, "help";` (Type: FromStr),
/// `choice "flag" => "key": Type, "help";` (Type: ValueEnum) or
/// `switch "flag" => "key" = json, "help";`, where `key` is the dotted path in [`TrainConfig`].
macro_rules! config_flags {
    ($($kind:ident $flag:literal => $key:literal $(: $ty:ty)? $(= $set:expr)?, $help:literal;)*) => {
        fn config_flags() -> Vec<ConfigFlag> {
            vec![$(ConfigFlag {
                flag: $flag,
                key: $key,
                help: $help,
                switch: config_flags!(@switch $kind $(, $set)?),
                arg: config_flags!(@arg $kind, $key $(, $ty)?),
            }),*]
        }
    };
    (@switch switch, $set:expr) => { Some(json!($set)) };
    (@switch $kind:ident) => { None };
    (@arg value, $key:literal, $ty:ty) => {
        Arg::new($key).value_parser(|s: &str| {
            // JSON has no NaN or infinity: they would become `null` and be refused as one.
            match s.parse::<$ty>().map(to_json).map_err(|e| e.to_string())? {
                Value::Null => Err(format!("`{s}` is not a finite number")),
                v => Ok(v),
            }
        })
    };
    (@arg choice, $key:literal, $ty:ty) => {
        Arg::new($key).value_parser(clap::builder::TypedValueParser::map(
            clap::builder::EnumValueParser::<$ty>::new(),
            to_json,
        ))
    };
    (@arg switch, $key:literal) => { Arg::new($key).action(ArgAction::SetTrue) };
}

config_flags! {
    value "arch" => "arch": String, "Network: a preset name (paper, paper-plain, badshah2017, table4-1 … table4-11) or a spec such as \"c32k4 p2 +0 c64k8 p2 fc716\".";
    choice "device" => "device": super::DeviceChoice, "Compute device.";
    value "protocol" => "protocol": String, "Split protocol: random, speakers:A,B (held-out test speakers) or loso.";
    value "test-fraction" => "test_fraction": f64, "Share of each class held out for testing (random protocol).";
    value "val-fraction" => "val_fraction": f64, "Share of training utterances used for validation (random protocol, or --val-speakers 0).";
    value "val-speakers" => "val_speakers": usize, "Training speakers held out for validation (speaker protocols).";
    value "sample-rate" => "spectrogram.stft.sample_rate": u32, "Analysis sample rate in Hz (audio is resampled to it).";
    value "window-ms" => "spectrogram.stft.window_ms": f32, "STFT (Hamming) window length in ms.";
    value "hop-ms" => "spectrogram.stft.hop_ms": f32, "STFT hop in ms.";
    value "n-fft" => "spectrogram.stft.n_fft": usize, "FFT length in samples (≥ the window).";
    value "mel" => "spectrogram.stft.mel_bands": usize, "Use N mel bands instead of linear FFT bins (0: the FFT bins).";
    value "fmin" => "spectrogram.stft.fmin_hz": f32, "Lowest mel frequency in Hz.";
    value "fmax" => "spectrogram.stft.fmax_hz": f32, "Highest mel frequency in Hz (0: Nyquist).";
    value "height" => "spectrogram.image.height": usize, "Image height in pixels (frequency axis).";
    value "width" => "spectrogram.image.width": usize, "Image width in pixels (time axis).";
    value "colormap" => "spectrogram.image.colormap": crate::features::Colormap, "Colormap: jet (3 channels, as in the paper) or gray (1 channel).";
    switch "fixed-time" => "spectrogram.image.time_axis" = "fixed", "Fixed time resolution: one column per frame, cropped or padded to the width, instead of stretching the whole utterance to the width.";
    value "top-db" => "spectrogram.image.top_db": f32, "Dynamic range shown, in dB below the utterance's maximum.";
    value "deltas" => "spectrogram.image.delta_window": usize, "Δ and ΔΔ input channels: regression deltas along time over ±N frames (0: none; 2 is the usual choice).";
    value "batch" => "batch": usize, "Batch size.";
    value "iters" => "iterations": u64, "Training iterations (batches).";
    value "epochs" => "epochs": f64, "Training length in epochs (passes over the training utterances).";
    choice "optimizer" => "optimizer.kind": OptimizerKind, "Optimizer (its settings start from its own defaults).";
    value "lr" => "optimizer.lr": f64, "Learning rate: RMSProp's α, or AdamW's peak rate after the warm-up.";
    value "decay" => "optimizer.decay": f64, "RMSProp's learning-rate time decay: α_t = α / (1 + decay·t).";
    value "weight-decay" => "optimizer.weight_decay": f64, "Weight decay λ: RMSProp adds λ·w to the gradient; AdamW decays decoupled, w ← w − lr_t·λ·w.";
    value "warmup" => "optimizer.warmup_fraction": f64, "AdamW: share of the steps in [0, 1) spent in the linear warm-up to --lr.";
    choice "schedule" => "optimizer.schedule": crate::model::LrSchedule, "AdamW: the learning rate after the warm-up.";
    value "seed" => "seed": u64, "Seed of everything random (splits, weights, data order, augmentation).";
    value "eval-every" => "eval_every": u64, "Validate and checkpoint every N iterations.";
    choice "select-by" => "select_by": super::config::Selection, "Model selection criterion on the validation set.";
    switch "balanced" => "balanced" = true, "Class-balanced sampling of training utterances.";
    choice "input-norm" => "input_norm": crate::data::InputNormMode, "Input normalisation: per-channel statistics of the training utterances, or each speaker's own per-(channel, row) statistics (transductive for test speakers).";
    switch "no-cache" => "feature_cache" = false, "Do not read or write the on-disk feature cache.";
    switch "skip-bad" => "skip_bad" = true, "Leave unreadable audio files out instead of stopping.";
    choice "sweep" => "sweep": super::config::SweepKind, "Train a series: every Table IV preset, or every input-shortcut placement of --arch.";
    choice "eval-time" => "eval_time": crate::data::EvalTime, "Evaluation of validation/test utterances: first (the first --width frames), whole (the whole utterance; needs stats pooling) or crops (mean probabilities over crops).";
    value "eval-hop" => "eval_hop": usize, "Frames between evaluation crops with --eval-time crops (0: half the width).";
    value "mixup" => "mixup_alpha": f64, "Mixup of training batches at λ ~ Beta(α, α) (0: off; 0.2–0.4 usual).";
    value "label-smoothing" => "label_smoothing": f64, "Label smoothing ε of the training targets (0: off).";
    value "ensemble" => "ensemble": usize, "Train K networks per fold from seeds seed, seed+1, … (each in its own folder) and report their averaged probabilities beside each member's result (1: one network).";
    value "prosody" => "prosody_weight": f64, "Late fusion with the prosody branch (logistic regression on the --prosody-set utterance vector) at weight W in [0, 1] (0: off).";
    choice "prosody-set" => "prosody_set": crate::features::prosody::ProsodySet, "The utterance vector of the prosody branch and of a `vec` layer: basic (29 prosody statistics) or full (those and ~2000 functionals of 62 frame-level descriptors and their deltas).";
}

/// The value at dotted `key` of `v`.
fn at<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// Every optimizer, in the order the help lists their defaults.
const OPTIMIZER_KINDS: [OptimizerKind; 2] = [OptimizerKind::RmsProp, OptimizerKind::AdamW];

/// The trainer's default configuration as JSON, and the same with each other optimizer's defaults
/// (so that every optimizer's settings have a default to show).
fn default_settings() -> Vec<Value> {
    OPTIMIZER_KINDS
        .into_iter()
        .map(|kind| {
            to_json(TrainConfig {
                optimizer: OptimizerConfig::defaults(kind),
                ..TrainConfig::no_arguments()
            })
        })
        .collect()
}

/// `[default: …]` as the help shows it, from the trainer's own default configuration; a setting
/// whose default differs between optimizers (`weight_decay`) shows each one's.
fn default_text(defaults: &[Value], key: &str) -> Option<String> {
    // The choice of optimizer itself has one default: the trainer's.
    let own;
    let defaults = if key == "optimizer.kind" {
        own = [to_json(TrainConfig::no_arguments())];
        &own[..]
    } else {
        defaults
    };
    let shown: Vec<Option<String>> = defaults
        .iter()
        .map(|d| match at(d, key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .collect();
    if shown.iter().all(|v| *v == shown[0]) {
        return shown[0].clone();
    }
    let per_kind: Vec<String> = OPTIMIZER_KINDS
        .iter()
        .zip(&shown)
        .filter_map(|(kind, v)| Some(format!("{} with {kind}", v.as_ref()?)))
        .collect();
    Some(per_kind.join(", "))
}

/// The command: [`Args`] plus one option per [`config_flags!`] line, with the trainer's defaults.
pub fn command() -> clap::Command {
    let defaults = default_settings();
    let mut cmd = Args::command();
    for f in config_flags() {
        let value_name = f.flag.to_ascii_uppercase().replace('-', "_");
        let help = config_flag_help(&f, &defaults);
        let arg = f.arg.long(f.flag).help(help);
        cmd = cmd.arg(match f.switch {
            Some(_) => arg,
            None => arg.value_name(value_name),
        });
    }
    // Setting one length clears the other in a layered configuration; both at once is a mistake.
    cmd.mut_arg("iterations", |a| a.conflicts_with("epochs"))
}

fn config_flag_help(f: &ConfigFlag, defaults: &[Value]) -> String {
    match (&f.switch, default_text(defaults, f.key)) {
        (None, Some(d)) => format!("{} [default: {d}]", f.help),
        _ => f.help.to_string(),
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Request {
    Start {
        config: Box<TrainConfig>,
        out: PathBuf,
    },
    Resume {
        dir: PathBuf,
    },
}

/// Parse command-line words (the first is the program name).
pub fn parse<I, T>(words: I) -> std::result::Result<(Args, ArgMatches), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(words)?;
    let args = Args::from_arg_matches(&matches)?;
    Ok((args, matches))
}

fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The request the arguments make.
pub fn request(args: &Args, m: &ArgMatches) -> Result<Request> {
    if let Some(dir) = &args.resume {
        let extra: Vec<String> = command()
            .get_arguments()
            .filter(|a| {
                !RUN_CONTROL.contains(&a.get_id().as_str()) && given(m, a.get_id().as_str())
            })
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        if !extra.is_empty() {
            return Err(config_err!(
                "--resume continues a run with its own config.toml; leave out {}",
                extra.join(", ")
            ));
        }
        return Ok(Request::Resume { dir: dir.clone() });
    }
    let config = config(args, m)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| super::run_dir::default_run_dir(&config.label()));
    Ok(Request::Start {
        config: Box::new(config),
        out,
    })
}

/// The effective configuration: defaults or preset, then the file, then the given options.
pub fn config(args: &Args, m: &ArgMatches) -> Result<TrainConfig> {
    let mut c = match &args.preset {
        Some(p) => TrainConfig::preset(p)?,
        None => TrainConfig::no_arguments(),
    };
    if let Some(file) = &args.config {
        c = c.with_file(file)?;
    }
    let overlay = overlay(args, m)?;
    check_optimizer_flags(&c, &overlay, m)?;
    let c = c.with_overlay(overlay)?;
    c.validate().map_err(|e| name_the_flags(e, m))?;
    Ok(c)
}

/// Refuse an optimizer option the chosen optimizer has no setting for (e.g. `--warmup` with
/// RMSProp), naming the option and the optimizer it belongs to.
fn check_optimizer_flags(base: &TrainConfig, overlay: &Value, m: &ArgMatches) -> Result<()> {
    let kind = match at(overlay, "optimizer.kind") {
        Some(k) => serde_json::from_value(k.clone()).expect("--optimizer parsed as a kind"),
        None => base.optimizer.kind(),
    };
    let settings = |kind| to_json(OptimizerConfig::defaults(kind));
    for f in config_flags() {
        let Some(setting) = f.key.strip_prefix("optimizer.") else {
            continue;
        };
        if !given(m, f.key) || settings(kind).get(setting).is_some() {
            continue;
        }
        let owners: Vec<String> = [OptimizerKind::RmsProp, OptimizerKind::AdamW]
            .into_iter()
            .filter(|&k| settings(k).get(setting).is_some())
            .map(|k| format!("--optimizer {k}"))
            .collect();
        return Err(config_err!(
            "--{} is not a setting of the {kind} optimizer; it applies with {}",
            f.flag,
            owners.join(" or ")
        ));
    }
    Ok(())
}

/// A validation error that names a setting given as an option says which option.
fn name_the_flags(e: crate::Error, m: &ArgMatches) -> crate::Error {
    let text = e.to_string();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let named: Vec<String> = config_flags()
        .into_iter()
        .filter(|f| given(m, f.key))
        .filter(|f| {
            let setting = f.key.rsplit('.').next().unwrap_or(f.key);
            text.match_indices(setting).any(|(i, _)| {
                !is_word(text[..i].chars().next_back())
                    && !is_word(text[i + setting.len()..].chars().next())
            })
        })
        .map(|f| format!("--{}", f.flag))
        .collect();
    if named.is_empty() {
        e
    } else {
        config_err!("{text} (given as {})", named.join(", "))
    }
}

/// The options given on the command line as a configuration overlay.
pub fn overlay(args: &Args, m: &ArgMatches) -> Result<Value> {
    let mut overlay = Value::Object(Map::new());
    if let Some(corpus) = corpus(args)? {
        insert(&mut overlay, "corpus", Value::String(corpus));
    }
    let level = if args.no_augment {
        Some(AugmentLevel::None)
    } else {
        args.augment
    };
    if let Some(level) = level {
        let mut c = TrainConfig::default();
        level.apply(&mut c);
        insert(&mut overlay, "augment", to_json(&c.augment));
        insert(
            &mut overlay,
            "waveform_variants",
            to_json(&c.waveform_variants),
        );
    }
    if args.whole_time {
        insert(&mut overlay, "spectrogram.image.time_axis", json!("whole"));
    }
    for f in config_flags() {
        let id = f.arg.get_id().as_str();
        if !given(m, id) {
            continue;
        }
        let value = match f.switch {
            Some(v) => v,
            None => m.get_one::<Value>(id).cloned().unwrap_or(Value::Null),
        };
        insert(&mut overlay, f.key, value);
    }
    Ok(overlay)
}

/// The `corpus` setting --data and --corpus give, if any.
fn corpus(args: &Args) -> Result<Option<String>> {
    Ok(match (&args.data, &args.corpus) {
        (Some(dir), kind) => {
            let kind = kind.as_deref().unwrap_or("emodb");
            if kind.to_ascii_lowercase().ends_with(".csv") || kind.starts_with("synthetic") {
                return Err(config_err!(
                    "--corpus {kind} names its own data; leave out --data (or give --corpus emodb|ravdess|ravdess8|folders|manifest)"
                ));
            }
            // Absolute, so the run can be resumed from another folder.
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            Some(format!("{kind}:{}", dir.display()))
        }
        (None, Some(kind)) => {
            if matches!(
                kind.as_str(),
                "ravdess" | "ravdess8" | "folders" | "manifest"
            ) {
                return Err(config_err!(
                    "--corpus {kind} needs --data DIR (the corpus's folder or manifest)"
                ));
            }
            Some(kind.clone())
        }
        (None, None) => None,
    })
}

/// Set dotted `key` of the object `v` to `value`, creating the tables on the way.
fn insert(v: &mut Value, key: &str, value: Value) {
    let mut slot = v;
    for k in key.split('.') {
        slot = slot
            .as_object_mut()
            .expect("overlay tables are objects")
            .entry(k)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    *slot = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help_line(help: &str, flag: &str) -> String {
        let start = help
            .find(&format!("--{flag} "))
            .unwrap_or_else(|| panic!("--{flag} not in the help:\n{help}"));
        let rest = &help[start..];
        let end = rest.find("\n  -").unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn help_shows_the_trainers_own_defaults() {
        let help = command().render_long_help().to_string();
        let d = TrainConfig::no_arguments();
        let height = help_line(&help, "height");
        assert!(
            height.contains(&format!("[default: {}]", d.spectrogram.image.height)),
            "{height}"
        );
        let batch = help_line(&help, "batch");
        assert!(
            batch.contains(&format!("[default: {}]", d.batch)),
            "{batch}"
        );
        let colormap = help_line(&help, "colormap");
        assert!(colormap.contains("[default: gray]"), "{colormap}");
        // Each optimizer's own default where they differ, from the same source as the training.
        let decay = help_line(&help, "weight-decay");
        let want = format!(
            "[default: {:?} with rmsprop, {:?} with adamw]",
            crate::model::RmsPropConfig::default().weight_decay,
            crate::model::AdamWConfig::default().weight_decay
        );
        assert!(decay.contains(&want), "{decay} lacks {want}");
    }

    #[test]
    fn every_flag_key_is_a_setting_and_given_flags_alone_form_the_overlay() {
        let defaults = default_settings();
        for f in config_flags() {
            assert!(
                defaults.iter().any(|d| at(d, f.key).is_some()),
                "--{} sets unknown key {}",
                f.flag,
                f.key
            );
        }
        let (args, m) =
            parse(["rescnn-train", "--lr", "0.5", "--fixed-time", "--mel", "40"]).unwrap();
        assert_eq!(
            overlay(&args, &m).unwrap(),
            json!({"optimizer": {"lr": 0.5}, "spectrogram": {"stft": {"mel_bands": 40},
                   "image": {"time_axis": "fixed"}}})
        );
        let (args, m) = parse(["rescnn-train", "--whole-time"]).unwrap();
        assert_eq!(
            overlay(&args, &m).unwrap(),
            json!({"spectrogram": {"image": {"time_axis": "whole"}}})
        );
        assert!(parse(["rescnn-train", "--whole-time", "--fixed-time"]).is_err());
    }
}
