//! The options that set a training setting: one line of [`config_flags!`] each, naming the key it
//! sets, with `--help`'s defaults taken from the trainer's own default configuration.

use clap::{Arg, ArgAction};
use serde_json::{json, Value};

use crate::training::config::{OptimizerConfig, OptimizerKind, TrainConfig};

/// A configuration key given on the command line: `value` options parse their word as the type
/// given (`choice`: one of a [`clap::ValueEnum`]'s names), `switch` options set the key to a fixed
/// value.
pub(super) struct ConfigFlag {
    pub(super) flag: &'static str,
    pub(super) key: &'static str,
    pub(super) help: &'static str,
    /// The value a switch sets (`None`: the option takes a value).
    pub(super) switch: Option<Value>,
    pub(super) arg: Arg,
}

pub(super) fn to_json<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("a setting serialises")
}

/// One line per option: `value "flag" => "key": Type, "help";` (Type: FromStr),
/// `choice "flag" => "key": Type, "help";` (Type: ValueEnum) or
/// `switch "flag" => "key" = json, "help";`, where `key` is the dotted path in [`TrainConfig`].
macro_rules! config_flags {
    ($($kind:ident $flag:literal => $key:literal $(: $ty:ty)? $(= $set:expr)?, $help:literal;)*) => {
        pub(super) fn config_flags() -> Vec<ConfigFlag> {
            vec![$(ConfigFlag {
                flag: $flag,
                key: $key,
                help: $help,
                switch: config_flags!(@switch $kind $(, $set)?),
                arg: config_flags!(@arg $kind, $flag $(, $ty)?),
            }),*]
        }
    };
    (@switch switch, $set:expr) => { Some(json!($set)) };
    (@switch $kind:ident) => { None };
    (@arg value, $flag:literal, $ty:ty) => {
        Arg::new($flag).value_parser(|s: &str| {
            // JSON has no NaN or infinity: they would become `null` and be refused as one.
            match s.parse::<$ty>().map(to_json).map_err(|e| e.to_string())? {
                Value::Null => Err(format!("`{s}` is not a finite number")),
                v => Ok(v),
            }
        })
    };
    (@arg choice, $flag:literal, $ty:ty) => {
        Arg::new($flag).value_parser(clap::builder::TypedValueParser::map(
            clap::builder::EnumValueParser::<$ty>::new(),
            to_json,
        ))
    };
    (@arg switch, $flag:literal) => { Arg::new($flag).action(ArgAction::SetTrue) };
}

config_flags! {
    value "arch" => "arch": String, "Network: a preset name (paper, paper-plain, badshah2017, table4-1 … table4-11) or a spec such as \"c32k4 p2 +0 c64k8 p2 fc716\".";
    choice "device" => "device": crate::training::config::DeviceChoice, "Compute device.";
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
    switch "whole-time" => "spectrogram.image.time_axis" = "whole", "Stretch the whole utterance to the width, instead of one column per frame (the opposite of --fixed-time).";
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
    choice "select-by" => "select_by": crate::training::config::Selection, "Model selection criterion on the validation set.";
    switch "balanced" => "balanced" = true, "Class-balanced sampling of training utterances.";
    choice "input-norm" => "input_norm": crate::data::InputNormMode, "Input normalisation: per-channel statistics of the training utterances, or each speaker's own per-(channel, row) statistics (transductive for test speakers).";
    switch "no-cache" => "feature_cache" = false, "Do not read or write the on-disk feature cache.";
    switch "skip-bad" => "skip_bad" = true, "Leave unreadable audio files out instead of stopping.";
    choice "sweep" => "sweep": crate::training::config::SweepKind, "Train a series: every Table IV preset, or every input-shortcut placement of --arch.";
    choice "eval-time" => "eval_time": crate::data::EvalTime, "Evaluation of validation/test utterances: first (the first --width frames), whole (the whole utterance; needs stats pooling) or crops (mean probabilities over crops).";
    value "eval-hop" => "eval_hop": usize, "Frames between evaluation crops with --eval-time crops (0: half the width).";
    value "mixup" => "mixup_alpha": f64, "Mixup of training batches at λ ~ Beta(α, α) (0: off; 0.2–0.4 usual).";
    value "label-smoothing" => "label_smoothing": f64, "Label smoothing ε of the training targets (0: off).";
    value "ensemble" => "ensemble": usize, "Train K networks per fold from seeds seed, seed+1, … (each in its own folder) and report their averaged probabilities beside each member's result (1: one network).";
    value "prosody" => "prosody_weight": f64, "Late fusion with the prosody branch (logistic regression on the --prosody-set utterance vector) at weight W in [0, 1] (0: off).";
    choice "prosody-set" => "prosody_set": crate::prosody::ProsodySet, "The utterance vector of the prosody branch and of a `vec` layer: basic (29 prosody statistics) or full (those and ~2000 functionals of 62 frame-level descriptors and their deltas).";
}

/// The value at dotted `key` of `v`.
pub(super) fn at<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// Every optimizer, in the order the help lists their defaults.
pub(super) const OPTIMIZER_KINDS: [OptimizerKind; 2] =
    [OptimizerKind::RmsProp, OptimizerKind::AdamW];

/// The trainer's default configuration as JSON, and the same with each other optimizer's defaults
/// (so that every optimizer's settings have a default to show).
pub(super) fn default_settings() -> Vec<Value> {
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
pub(super) fn default_text(defaults: &[Value], key: &str) -> Option<String> {
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
