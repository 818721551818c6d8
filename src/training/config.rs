//! The trainer's configuration: everything a run depends on, in one serialisable struct, so the run
//! directory records exactly what produced its numbers (`config.toml`) and a run can be repeated or
//! resumed from it.
//!
//! Layering, lowest first: the built-in defaults (a small network on the synthetic corpus) or a named
//! preset (`paper`), then a TOML or JSON file, then command-line options. A file only needs the keys
//! it changes; unknown keys are an error naming the key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audio::Perturbation;
use crate::data::{AugmentConfig, InputNormMode};
use crate::features::SpectrogramConfig;
use crate::model::{AdamWConfig, LrSchedule, Optimizer, OptimizerKind, RmsPropConfig};
use crate::{config_err, Error, Result};

pub use super::device::DeviceChoice;

/// What picks the selected checkpoint among the periodic validation evaluations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Highest validation unweighted average recall (ties: lower validation loss).
    Uar,
    /// Highest validation weighted accuracy (ties: lower validation loss).
    Wa,
    /// Lowest validation loss.
    Loss,
}

/// The `[optimizer]` table: `kind = "rmsprop"` (keys `lr`, `decay`, `rho`, `eps`, `weight_decay`;
/// see [`RmsPropConfig`]) or `kind = "adamw"` (keys `lr`, `beta1`, `beta2`, `eps`,
/// `weight_decay`, `warmup_fraction`, `schedule`, `final_lr_fraction`; see [`AdamWConfig`]). A
/// table without `kind` is RMSProp's, as every configuration and checkpoint written before AdamW
/// existed; missing keys take that optimizer's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum OptimizerConfig {
    #[serde(rename = "rmsprop")]
    RmsProp(RmsPropConfig),
    #[serde(rename = "adamw")]
    AdamW(AdamWConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::RmsProp(RmsPropConfig::default())
    }
}

impl<'de> Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let kind = match table.remove("kind") {
            None => OptimizerKind::RmsProp,
            Some(k) => OptimizerKind::deserialize(k)
                .map_err(|_| D::Error::custom("optimizer kind must be \"rmsprop\" or \"adamw\""))?,
        };
        let table = serde_json::Value::Object(table);
        let named = |e: serde_json::Error| D::Error::custom(format!("optimizer ({kind}): {e}"));
        match kind {
            OptimizerKind::RmsProp => RmsPropConfig::deserialize(table)
                .map(OptimizerConfig::RmsProp)
                .map_err(named),
            OptimizerKind::AdamW => AdamWConfig::deserialize(table)
                .map(OptimizerConfig::AdamW)
                .map_err(named),
        }
    }
}

impl OptimizerConfig {
    /// The recipe's optimizer: AdamW at 0.002 with decoupled weight decay 0.01, no warm-up, and
    /// half a cosine down to 0 at the last step.
    pub fn recipe() -> Self {
        OptimizerConfig::AdamW(AdamWConfig {
            lr: 0.002,
            weight_decay: 0.01,
            warmup_fraction: 0.0,
            schedule: LrSchedule::Cosine,
            final_lr_fraction: 0.0,
            ..AdamWConfig::default()
        })
    }

    /// The defaults of optimizer `kind`.
    pub fn defaults(kind: OptimizerKind) -> Self {
        match kind {
            OptimizerKind::RmsProp => OptimizerConfig::RmsProp(RmsPropConfig::default()),
            OptimizerKind::AdamW => OptimizerConfig::AdamW(AdamWConfig::default()),
        }
    }

    pub fn kind(&self) -> OptimizerKind {
        match self {
            OptimizerConfig::RmsProp(_) => OptimizerKind::RmsProp,
            OptimizerConfig::AdamW(_) => OptimizerKind::AdamW,
        }
    }

    /// The base learning rate (RMSProp's α, AdamW's peak rate).
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::RmsProp(o) => o.lr,
            OptimizerConfig::AdamW(o) => o.lr,
        }
    }

    /// The learning rate of update `step` (0-based) of a run of `total_steps`.
    pub fn lr_at(&self, step: u64, total_steps: u64) -> f64 {
        match self {
            OptimizerConfig::RmsProp(o) => o.lr_at(step),
            OptimizerConfig::AdamW(o) => o.lr_at(step, total_steps),
        }
    }

    /// What the network applies in a run of `total_steps` updates.
    pub fn for_run(&self, total_steps: u64) -> Optimizer {
        match *self {
            OptimizerConfig::RmsProp(cfg) => Optimizer::RmsProp(cfg),
            OptimizerConfig::AdamW(cfg) => Optimizer::AdamW { cfg, total_steps },
        }
    }

    /// One line for the reports.
    pub fn describe(&self) -> String {
        match self {
            OptimizerConfig::RmsProp(o) => format!("RMSProp lr {} decay {}", o.lr, o.decay),
            OptimizerConfig::AdamW(o) => format!(
                "AdamW lr {} (β1 {}, β2 {}, decoupled weight decay {}), linear warm-up over {} % \
                 of the steps, then {} to {} × lr",
                o.lr,
                o.beta1,
                o.beta2,
                o.weight_decay,
                100.0 * o.warmup_fraction,
                match o.schedule {
                    LrSchedule::Constant => "constant",
                    LrSchedule::Cosine => "cosine",
                    LrSchedule::OneCycle => "one-cycle",
                },
                o.final_lr_fraction
            ),
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::RmsProp(o) => {
                if !(o.lr > 0.0 && o.lr.is_finite())
                    || o.decay < 0.0
                    || !(0.0..1.0).contains(&o.rho)
                {
                    return Err(config_err!(
                        "optimizer: need lr > 0, decay ≥ 0 and 0 ≤ rho < 1 (got lr {}, decay {}, rho {})",
                        o.lr,
                        o.decay,
                        o.rho
                    ));
                }
                Ok(())
            }
            OptimizerConfig::AdamW(o) => o.validate().map_err(|e| config_err!("optimizer: {e}")),
        }
    }
}

/// A named augmentation setting for the command line (`--augment`); a config file can set every
/// field of [`AugmentConfig`] and `waveform_variants` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AugmentLevel {
    /// No augmentation.
    None,
    /// The paper's four: random crop, time flip, graying, noise points.
    Paper,
    /// The paper's four, SpecAugment time and frequency masks, and speed (0.9, 1.1) and pitch
    /// (±2 semitones) perturbed variants of every utterance.
    Full,
    /// SpecAugment's masks alone: two time masks of up to an eighth of the width, two frequency
    /// masks of up to an eighth of the height.
    #[value(name = "specaugment")]
    SpecAugment,
}

impl AugmentLevel {
    /// The speed and pitch variants `Full` computes per utterance (each costs one more STFT per
    /// utterance, once, and one more cached spectrogram).
    pub const FULL_VARIANTS: [Perturbation; 4] = [
        Perturbation {
            speed: 0.9,
            pitch_semitones: 0.0,
        },
        Perturbation {
            speed: 1.1,
            pitch_semitones: 0.0,
        },
        Perturbation {
            speed: 1.0,
            pitch_semitones: -2.0,
        },
        Perturbation {
            speed: 1.0,
            pitch_semitones: 2.0,
        },
    ];

    /// Set `c`'s augmentation and waveform variants to this level.
    pub fn apply(self, c: &mut TrainConfig) {
        let (augment, variants) = match self {
            AugmentLevel::None => (AugmentConfig::none(), Vec::new()),
            AugmentLevel::Paper => (AugmentConfig::paper(), Vec::new()),
            AugmentLevel::Full => (AugmentConfig::default(), Self::FULL_VARIANTS.to_vec()),
            AugmentLevel::SpecAugment => (AugmentConfig::specaugment(), Vec::new()),
        };
        c.augment = augment;
        c.waveform_variants = variants;
    }
}

/// How the corpus is split (see [`crate::data::split`]), parsed from `random`, `speakers:15,16` or
/// `loso`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// Stratified random split by utterance (the paper's protocol; speakers on both sides).
    Random,
    /// The listed speakers are the test set; nobody else is.
    Speakers(Vec<String>),
    /// Leave one speaker out: one fold per speaker.
    Loso,
}

impl std::str::FromStr for ProtocolChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "random" => return Ok(ProtocolChoice::Random),
            "loso" => return Ok(ProtocolChoice::Loso),
            _ => {}
        }
        if let Some(list) = s.strip_prefix("speakers:") {
            let speakers: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect();
            if !speakers.is_empty() {
                return Ok(ProtocolChoice::Speakers(speakers));
            }
        }
        Err(config_err!(
            "protocol '{s}': expected random, loso, or speakers:A,B (the test speakers, e.g. speakers:15,16)"
        ))
    }
}

impl std::fmt::Display for ProtocolChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolChoice::Random => f.write_str("random"),
            ProtocolChoice::Loso => f.write_str("loso"),
            ProtocolChoice::Speakers(s) => write!(f, "speakers:{}", s.join(",")),
        }
    }
}

/// Declares a settings struct and its `Default` from one list, so each setting is written once:
/// its doc, type and default value together (`pub name: Type = default,`).
macro_rules! settings {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$fmeta:meta])* pub $field:ident: $ty:ty = $default:expr,)*
    }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }
        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }
    };
}

settings! {
/// Everything a training run depends on. Each setting's default here is what a configuration file
/// or checkpoint that lacks its key means: a feature added later is off, so a run written before
/// it existed reads and resumes as it was trained. The no-argument run is
/// [`TrainConfig::no_arguments`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The corpus, as [`crate::data::CorpusSpec`] reads it: `synthetic[:SEED]`, `emodb:DIR`,
    /// `ravdess:DIR`, `folders:DIR`, `manifest:FILE` or a `.csv` path.
    pub corpus: String = "synthetic".into(),
    /// Leave unreadable audio files out (listed on stderr) instead of stopping.
    pub skip_bad: bool = false,
    /// A preset name or an architecture spec (see [`crate::model::spec`]).
    pub arch: String = SMALL_ARCH.into(),
    /// The compute device (`auto`: CUDA when a GPU and the compiled kernels are there, else the CPU).
    pub device: DeviceChoice = DeviceChoice::Auto,
    /// `random`, `speakers:A,B` or `loso`.
    pub protocol: String = "random".into(),
    /// Share of every class held out for testing (random protocol).
    pub test_fraction: f64 = 0.2,
    /// Share of every class's training utterances used for validation (random protocol, or speaker
    /// protocols with `val_speakers = 0`).
    pub val_fraction: f64 = 0.1,
    /// Training speakers held out for validation (speaker protocols).
    pub val_speakers: usize = 1,
    /// Seeds everything: splits, initial weights, data order, augmentation.
    pub seed: u64 = 0,
    /// Utterances per training step (and per evaluation batch).
    pub batch: usize = 32,
    /// Training iterations (batches); exactly one of `iterations` and `epochs` is set. (Absent from
    /// a file means unset, not the default's value: TOML has no null, so an unset length is absent.)
    #[serde(default)]
    pub iterations: Option<u64> = Some(400),
    /// Training length in passes over the training utterances (rounded up to whole batches).
    #[serde(default)]
    pub epochs: Option<f64> = None,
    /// Validate (and checkpoint) every this many iterations, and after the last.
    pub eval_every: u64 = 50,
    /// How the selected checkpoint is chosen among the validation evaluations.
    pub select_by: Selection = Selection::Uar,
    /// The optimizer and its settings: `kind = "rmsprop"` (the default; `lr`, its time `decay`,
    /// `rho`, `eps`, `weight_decay`: the paper's Table III) or `kind = "adamw"` (with its
    /// learning-rate schedule); see [`OptimizerConfig`].
    pub optimizer: OptimizerConfig = OptimizerConfig::default(),
    /// The network's input: STFT settings (`[spectrogram.stft]`) and the image (`[spectrogram.image]`).
    pub spectrogram: SpectrogramConfig = small_spectrogram(64, 128),
    /// Augmentation of training images (`AugmentConfig::none()` turns it off).
    pub augment: AugmentConfig = AugmentConfig::paper(),
    /// Class-balanced sampling of training utterances.
    pub balanced: bool = false,
    /// Input normalisation: `training` (per-channel statistics of the training utterances) or
    /// `speaker` (each speaker's own per-(channel, row) statistics over all of its utterances,
    /// labels unused; transductive for test speakers).
    pub input_norm: InputNormMode = InputNormMode::Training,
    /// Waveform-perturbed variants computed per utterance for augmentation (speed, pitch).
    pub waveform_variants: Vec<Perturbation> = Vec::new(),
    /// Keep spectrograms in the on-disk feature cache (see [`crate::data::cache`]).
    pub feature_cache: bool = true,
    /// Train a series of networks instead of one: every Table IV preset, or every placement of
    /// input shortcuts into `arch`'s pools.
    pub sweep: Option<SweepKind> = None,
    /// How validation and test utterances are shown to the network (see
    /// [`crate::data::crops`]): `first` (the image as training draws it without augmentation:
    /// the first `width` frames with `time_axis = "fixed"`), `whole` (each whole utterance in one
    /// image, the network re-laid out for its width; needs `stats` pooling) or `crops` (the mean of
    /// the class probabilities over crops of the training width, every `eval_hop` frames).
    pub eval_time: crate::data::EvalTime = crate::data::EvalTime::First,
    /// Frames between evaluation crops (`eval_time = "crops"`); 0 = half the crop width.
    pub eval_hop: usize = 0,
    /// Weight of the prosody branch in the late fusion of class probabilities (0 = no prosody
    /// branch): `p = (1 − w)·p_network + w·p_prosody`, where `p_prosody` comes from a class-balanced
    /// logistic regression on the utterance prosody vector (F0, energy, voicing, voice quality
    /// statistics; [`crate::features::prosody`]) fitted on the fold's training utterances,
    /// normalised as `input_norm` says. Applies to validation (selection) and test alike.
    pub prosody_weight: f64 = 0.0,
    /// The prosody branch's utterance vector: `basic` (29 F0, energy, voicing and spectral-balance
    /// statistics) or `full` (those and about two thousand functionals of 62 frame-level
    /// descriptors and their deltas, ComParE-like; [`crate::features::functionals`]). The same
    /// vector is the side input that a `vec` layer of the architecture appends to the network's
    /// pooled features (normalised as the branch's), trained end to end.
    pub prosody_set: crate::features::prosody::ProsodySet = crate::features::prosody::ProsodySet::Basic,
    /// Mixup (Zhang et al. 2018): mix each training batch with a permutation of itself at
    /// λ ~ Beta(α, α), inputs and targets alike (0 = off; 0.2–0.4 usual). Trains on soft targets.
    pub mixup_alpha: f64 = 0.0,
    /// Label smoothing ε: targets (1 − ε)·one-hot + ε/classes (0 = off). Trains on soft targets.
    pub label_smoothing: f64 = 0.0,
    /// Ensemble members per fold: K networks trained on the fold's split from the seeds `seed`,
    /// `seed + 1`, … (their weights, data order, augmentation and dropout; the split stays that of
    /// `seed`), each in its own folder, their test probabilities averaged (1 = one network).
    pub ensemble: usize = 1,
}
}

/// What a sweep trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SweepKind {
    /// Every row of the paper's Table IV (`table4-1` … `table4-11`).
    Table4,
    /// `arch` with the network input added into every subset of its pools' outputs.
    Shortcuts,
}

/// The default run's input: `bands` mel bands (pitch and formants get rows of their own at a
/// small height), one column per 10 ms frame over `frames` frames (speaking rate stays visible;
/// stretching the whole utterance to the width would hide it), gray.
pub fn small_spectrogram(bands: usize, frames: usize) -> SpectrogramConfig {
    let mut s = SpectrogramConfig::small_gray(bands);
    s.stft.mel_bands = Some(bands);
    s.image.width = frames;
    s.image.time_axis = crate::features::TimeAxis::Fixed;
    s
}

/// The architecture a file or checkpoint without `arch` names: the paper's network scaled down.
pub const SMALL_ARCH: &str = "c16k4 p2 +0 c32k8 p2 +0 c32k10 p2 +0 c32k10 p2 fc128 fc128";

/// The recipe's input: 64 log-mel bands from 50 Hz to 8 kHz, one column per 10 ms frame, crops of
/// `frames` frames, gray with Δ and ΔΔ over ±4 frames (three channels).
pub fn recipe_spectrogram(frames: usize) -> SpectrogramConfig {
    let mut s = small_spectrogram(64, frames);
    s.stft.fmin_hz = 50.0;
    s.stft.fmax_hz = Some(8000.0);
    s.image.delta_window = 4;
    s
}

impl TrainConfig {
    /// Everything the paper states (its Table III and Section III): EMO-DB, 512×512 jet spectrograms,
    /// the `paper` network, RMSProp α = 0.001 with decay 1e-6, batch 50, 1e5 iterations, random
    /// cropping, flipping, graying and noise points, emotions balanced, the random split.
    pub fn paper() -> Self {
        TrainConfig {
            corpus: "emodb".into(),
            arch: "paper".into(),
            protocol: "random".into(),
            batch: 50,
            iterations: Some(100_000),
            epochs: None,
            eval_every: 1000,
            optimizer: OptimizerConfig::RmsProp(RmsPropConfig::default()),
            spectrogram: SpectrogramConfig::paper(),
            augment: AugmentConfig::paper(),
            balanced: true,
            ..TrainConfig::default()
        }
    }

    /// The recipe: our best speaker-independent setting for EMO-DB-like corpora. The `recipe`
    /// network on 64 log-mel bands (50 Hz to 8 kHz) with Δ and ΔΔ over ±4 frames, one column per
    /// 10 ms frame, random crops of 160 frames in training and whole utterances in evaluation;
    /// SpecAugment masks only; per-speaker normalisation; class-balanced batches of 32; mixup
    /// (α 0.2, one λ per sample) and label smoothing 0.1; AdamW at 0.002 with weight decay 0.01 and
    /// a cosine schedule to 0 over 1 440 steps, no warm-up, the last weights reported (no
    /// validation set, so no selection); the full utterance vector's logistic-regression branch
    /// fused at weight 0.5. The user adds the corpus and the protocol.
    pub fn recipe() -> Self {
        TrainConfig {
            corpus: "emodb".into(),
            protocol: "loso".into(),
            val_speakers: 0,
            val_fraction: 0.0,
            iterations: Some(1440),
            epochs: None,
            eval_every: 1440,
            spectrogram: recipe_spectrogram(160),
            ..TrainConfig::no_arguments()
        }
    }

    /// The no-argument run: the recipe scaled to about two minutes on two CPU cores (400 steps of
    /// 32, crops of 96 frames, validation every 100) on the built-in synthetic corpus, with the
    /// paper's random split and a validation share for the training curves.
    pub fn no_arguments() -> Self {
        TrainConfig {
            arch: "recipe".into(),
            eval_every: 100,
            optimizer: OptimizerConfig::recipe(),
            spectrogram: recipe_spectrogram(96),
            augment: AugmentConfig::specaugment(),
            balanced: true,
            input_norm: InputNormMode::Speaker,
            eval_time: crate::data::EvalTime::Whole,
            mixup_alpha: 0.2,
            label_smoothing: 0.1,
            prosody_weight: 0.5,
            prosody_set: crate::features::prosody::ProsodySet::Full,
            ..TrainConfig::default()
        }
    }

    /// A named starting point: `default`, `paper` or `recipe`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "default" => Ok(Self::no_arguments()),
            "paper" => Ok(Self::paper()),
            "recipe" => Ok(Self::recipe()),
            _ => Err(config_err!(
                "unknown configuration preset '{name}': expected default, paper or recipe"
            )),
        }
    }

    pub fn protocol_choice(&self) -> Result<ProtocolChoice> {
        self.protocol.parse()
    }

    /// The network input of architecture `spec`: the spectrogram image and, when `spec` has a `vec`
    /// layer, the utterance vector of `prosody_set` as its side input.
    pub fn network_input(&self, spec: &crate::model::ArchSpec) -> crate::model::InputShape {
        let (c, h, w) = self.spectrogram.input_shape();
        let side = if spec.side_input().is_some() {
            crate::features::prosody::ProsodyConfig {
                set: self.prosody_set,
                ..Default::default()
            }
            .vector_len()
        } else {
            0
        };
        crate::model::InputShape::new(c, h, w).with_side(side)
    }

    /// Check everything that can be checked without data.
    pub fn validate(&self) -> Result<()> {
        self.protocol_choice()?;
        self.corpus
            .parse::<crate::data::CorpusSpec>()
            .map_err(|e| config_err!("corpus: {e}"))?;
        crate::model::ArchSpec::from_name_or_spec(&self.arch)?;
        self.spectrogram.validate()?;
        self.augment.validate()?;
        if self.batch == 0 {
            return Err(config_err!("batch must be at least 1"));
        }
        match (self.iterations, self.epochs) {
            (Some(0), _) => return Err(config_err!("iterations must be at least 1")),
            (_, Some(e)) if !(e > 0.0 && e.is_finite()) => {
                return Err(config_err!("epochs must be a positive number, got {e}"))
            }
            (Some(_), Some(_)) => {
                return Err(config_err!(
                    "give either iterations or epochs, not both (iterations = {}, epochs = {})",
                    self.iterations.unwrap_or(0),
                    self.epochs.unwrap_or(0.0)
                ))
            }
            (None, None) => return Err(config_err!("give iterations or epochs")),
            _ => {}
        }
        if self.eval_every == 0 {
            return Err(config_err!("eval_every must be at least 1"));
        }
        self.optimizer.validate()?;
        for v in &self.waveform_variants {
            v.validate()?;
        }
        if !(self.mixup_alpha >= 0.0 && self.mixup_alpha.is_finite()) {
            return Err(config_err!(
                "mixup_alpha must be ≥ 0 (0 = off), got {}",
                self.mixup_alpha
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(config_err!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if self.ensemble == 0 {
            return Err(config_err!(
                "ensemble must be at least 1 (the members per fold; 1 = one network)"
            ));
        }
        if !(0.0..=1.0).contains(&self.prosody_weight) {
            return Err(config_err!(
                "prosody_weight must be in [0, 1] (0 = no prosody branch), got {}",
                self.prosody_weight
            ));
        }
        if self.eval_time != crate::data::EvalTime::First
            && self.spectrogram.image.time_axis != crate::features::TimeAxis::Fixed
        {
            return Err(config_err!(
                "eval_time = \"{}\" needs time_axis = \"fixed\" (--fixed-time): with \"whole\" the \
                 utterance is already stretched into one image",
                self.eval_time
            ));
        }
        if self.eval_time == crate::data::EvalTime::Whole {
            let spec = crate::model::ArchSpec::from_name_or_spec(&self.arch)?;
            if !spec.layers().contains(&crate::model::LayerSpec::StatsPool) {
                return Err(config_err!(
                    "eval_time = \"whole\" needs an architecture with `stats` (statistics pooling \
                     makes the network accept any width); `{}` has none: add `stats` before its fc \
                     layers, or use eval_time = \"first\" or \"crops\"",
                    self.arch
                ));
            }
        }
        Ok(())
    }

    /// Training iterations for a training set of `train_utterances` (with `epochs`, whole batches).
    pub fn total_iterations(&self, train_utterances: usize) -> u64 {
        match (self.iterations, self.epochs) {
            (Some(n), _) => n,
            (None, Some(e)) => {
                let per_epoch = batches_per_epoch(train_utterances, self.batch) as f64;
                ((e * per_epoch).ceil() as u64).max(1)
            }
            (None, None) => 1,
        }
    }

    /// Layer a TOML or JSON file (by extension) over `self`: keys present in the file replace ours.
    pub fn with_file(&self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let is_json = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("json"));
        let overlay: serde_json::Value = if is_json {
            serde_json::from_str(&text)
                .map_err(|e| Error::data(path, format!("not valid JSON: {e}")))?
        } else {
            let table: toml::Value = toml::from_str(&text)
                .map_err(|e| Error::data(path, format!("not valid TOML: {e}")))?;
            if let Some((key, v)) = non_finite_float(&table, "") {
                return Err(Error::data(
                    path,
                    format!("`{key}` is {v}; a setting must be a finite number"),
                ));
            }
            serde_json::to_value(&table).map_err(|e| Error::data(path, e.to_string()))?
        };
        self.with_overlay(overlay)
            .map_err(|e| Error::data(path, e.to_string()))
    }

    /// Layer a JSON object of settings over `self`. A `preset` key first replaces the base with that
    /// preset. Setting `iterations` clears `epochs` and the other way round.
    pub fn with_overlay(&self, mut overlay: serde_json::Value) -> Result<Self> {
        let Some(map) = overlay.as_object_mut() else {
            return Err(config_err!("a configuration must be a table of settings"));
        };
        let base = match map.remove("preset") {
            Some(serde_json::Value::String(name)) => Self::preset(&name)?,
            Some(other) => {
                return Err(config_err!(
                    "preset must be a name such as \"paper\", got {other}"
                ))
            }
            None => self.clone(),
        };
        let mut base = base;
        // Another optimizer starts from its own defaults: the keys of one are no settings of the other.
        let kind = map
            .get("optimizer")
            .and_then(|o| o.get("kind"))
            .and_then(|k| OptimizerKind::deserialize(k).ok());
        if let Some(kind) = kind.filter(|&k| k != base.optimizer.kind()) {
            base.optimizer = OptimizerConfig::defaults(kind);
        }
        let mut value = serde_json::to_value(&base).expect("TrainConfig serialises");
        let target = value.as_object_mut().expect("a struct serialises to a map");
        // Null, not absent: an absent key would take the default's value.
        if map.contains_key("iterations") {
            target.insert("epochs".into(), serde_json::Value::Null);
        }
        if map.contains_key("epochs") {
            target.insert("iterations".into(), serde_json::Value::Null);
        }
        merge(&mut value, overlay);
        serde_json::from_value(value).map_err(|e| config_err!("configuration: {e}"))
    }

    /// The configuration as TOML (what `config.toml` in a run directory holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("TrainConfig serialises to TOML")
    }

    /// Read a run directory's `config.toml`.
    pub fn load_toml(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a rescnn configuration: {e}")))
    }

    /// A short label for file and folder names: the corpus kind and the architecture.
    pub fn label(&self) -> String {
        let corpus = self.corpus.split(':').next().unwrap_or("data");
        let arch = if crate::model::preset(&self.arch).is_some() {
            self.arch.clone()
        } else {
            "custom".into()
        };
        format!("{corpus}-{arch}")
    }
}

/// The trainer's batching rule: whole batches only (a short last batch would be a noisier step),
/// unless the training set is smaller than one batch (then the one short batch is the epoch).
pub fn drop_short_batch(train_utterances: usize, batch: usize) -> bool {
    train_utterances >= batch
}

/// Batches per epoch under [`drop_short_batch`].
pub fn batches_per_epoch(train_utterances: usize, batch: usize) -> usize {
    if drop_short_batch(train_utterances, batch) {
        train_utterances / batch
    } else {
        1
    }
}

/// Recursive merge: objects merge key by key, anything else replaces.
fn merge(base: &mut serde_json::Value, overlay: serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
/// The first NaN or infinite float in a TOML value, with its dotted key (TOML has both; JSON,
/// which the settings are layered as, has neither).
fn non_finite_float(v: &toml::Value, key: &str) -> Option<(String, f64)> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some((key.to_string(), *f)),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| {
            let key = if key.is_empty() {
                k.clone()
            } else {
                format!("{key}.{k}")
            };
            non_finite_float(v, &key)
        }),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite_float(v, &format!("{key}[{i}]"))),
        _ => None,
    }
}
