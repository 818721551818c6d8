//! The trainer's configuration: everything a run depends on, in one serialisable struct, so the run
//! directory records exactly what produced its numbers (`config.toml`) and a run can be repeated or
//! resumed from it.
//!
//! Layering, lowest first: the built-in defaults (a small network on the synthetic corpus) or a named
//! preset (`paper`), then a TOML or JSON file, then command-line options. A file only needs the keys
//! it changes; unknown keys are an error naming the key.

use serde::{Deserialize, Serialize};

use crate::audio::Perturbation;
use crate::data::{AugmentConfig, InputNormMode};
use crate::features::SpectrogramConfig;
use crate::{config_err, Error, Result};

mod layers;
mod optimizer;
mod presets;
mod validate;

pub use optimizer::{OptimizerConfig, OptimizerKind};

/// Which compute device runs the network (`--device` of rescnn-train, predict and eval).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when a GPU and the compiled kernels are there, else the CPU reference.
    Auto,
    /// The CUDA device (GPU 0).
    Cuda,
    /// The emulated device: the CUDA kernels run on the CPU (slow; for checking kernels).
    Emu,
    /// The CPU reference backend.
    Cpu,
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Emu => "emu",
            DeviceChoice::Cpu => "cpu",
        })
    }
}

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
    /// statistics; [`crate::prosody::basic`]) fitted on the fold's training utterances,
    /// normalised as `input_norm` says. Applies to validation (selection) and test alike.
    pub prosody_weight: f64 = 0.0,
    /// The prosody branch's utterance vector: `basic` (29 F0, energy, voicing and spectral-balance
    /// statistics) or `full` (those and about two thousand functionals of 62 frame-level
    /// descriptors and their deltas, ComParE-like; [`crate::prosody::functionals`]). The same
    /// vector is the side input that a `vec` layer of the architecture appends to the network's
    /// pooled features (normalised as the branch's), trained end to end.
    pub prosody_set: crate::prosody::ProsodySet = crate::prosody::ProsodySet::Basic,
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

impl TrainConfig {
    pub fn protocol_choice(&self) -> Result<ProtocolChoice> {
        self.protocol.parse()
    }

    /// The network input of architecture `spec`: the spectrogram image and, when `spec` has a `vec`
    /// layer, the utterance vector of `prosody_set` as its side input.
    pub fn network_input(&self, spec: &crate::model::ArchSpec) -> crate::model::InputShape {
        let (c, h, w) = self.spectrogram.input_shape();
        let side = if spec.side_input().is_some() {
            crate::prosody::ProsodyConfig {
                set: self.prosody_set,
                ..Default::default()
            }
            .vector_len()
        } else {
            0
        };
        crate::model::InputShape::new(c, h, w).with_side(side)
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
