//! The `rescnn` command line: one subcommand per file (`src/cli/<name>.rs`), each with an `Args`
//! struct and a `run` function; [`Command`] lists them and [`run`] dispatches.
//!
//! [`SpectrogramArgs`] is the shared set of feature options, so every subcommand that turns audio into
//! network inputs spells them the same way.

pub mod enroll;
pub mod eval;
pub mod export;
pub mod info;
pub mod predict;
pub mod score;
pub mod spectrogram;
pub mod timeline;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::features::{Colormap, ImageConfig, SpectrogramConfig, StftConfig, TimeAxis};
use crate::inference::ensemble::Ensemble;
use crate::inference::model_dir::Weights;
use crate::Result;

/// The trained model a subcommand reads (`--model`, `--weights`), spelled the same everywhere.
#[derive(clap::Args, Debug)]
pub struct ModelChoice {
    /// A run directory of rescnn-train (a single split, or one fold's folder; `eval` also takes a
    /// multi-fold run and pools its folds, each evaluated on its own test speakers), or a checkpoint
    /// file. An `--ensemble K` fold's folder stands for all of its members (`seed-N/`), their
    /// probabilities averaged.
    #[arg(long = "model", value_name = "RUN_DIR")]
    pub dir: PathBuf,
    /// Which weights: those selected on validation, or the last.
    #[arg(long, value_enum, default_value = "best")]
    pub weights: Weights,
}

impl ModelChoice {
    /// The model, or all members of an ensemble fold.
    pub fn load(&self) -> Result<Ensemble> {
        Ensemble::load(&self.dir, self.weights)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "rescnn",
    version,
    about = "Speech emotion recognition with multi-level residual CNNs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Draw the spectrogram image the network sees for a WAV file: PNG (8 bits), and/or the exact
    /// f32 network input as .npy.
    Spectrogram(spectrogram::Args),
    /// Show the compute devices, the NVRTC used at build time and the compiled CUDA kernels.
    Info(info::InfoArgs),
    /// Each WAV file's emotion and class probabilities, from a model trained by rescnn-train
    /// (--timeline: per window over long recordings).
    Predict(predict::Args),
    /// A trained model's metrics and confusion matrix on a corpus (or part of a split file).
    Eval(eval::Args),
    /// Save a speaker's normalisation statistics from some of their utterances (for a
    /// speaker-normalised model; used by predict --speaker-stats).
    Enroll(enroll::Args),
    /// Write a trained model as one ONNX graph (spectrogram image in, class probabilities out).
    Export(export::Args),
    /// Re-score a finished run from its folds' saved test probabilities: the network alone, the
    /// prosody branch alone and their fusion, pooled over folds and per fold.
    Score(score::Args),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Spectrogram(args) => spectrogram::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Enroll(args) => enroll::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Score(args) => score::run(&args),
    }
}

/// Feature settings on the command line; defaults are the paper's (see [`SpectrogramConfig`]).
#[derive(clap::Args, Debug, Clone)]
pub struct SpectrogramArgs {
    /// Analysis sample rate in Hz (audio is resampled to it).
    #[arg(long, default_value_t = 16_000)]
    pub sample_rate: u32,
    /// STFT (Hamming) window length in ms.
    #[arg(long, default_value_t = 25.0)]
    pub window_ms: f32,
    /// STFT hop in ms.
    #[arg(long, default_value_t = 10.0)]
    pub hop_ms: f32,
    /// FFT length in samples (≥ the window).
    #[arg(long, default_value_t = 512)]
    pub n_fft: usize,
    /// Use N mel bands instead of linear FFT bins.
    #[arg(long, value_name = "N")]
    pub mel: Option<usize>,
    /// Lowest mel frequency in Hz.
    #[arg(long, default_value_t = 0.0)]
    pub fmin: f32,
    /// Highest mel frequency in Hz (default: Nyquist).
    #[arg(long)]
    pub fmax: Option<f32>,
    /// Image height in pixels (frequency axis).
    #[arg(long, default_value_t = 512)]
    pub height: usize,
    /// Image width in pixels (time axis).
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    /// Colormap: jet (3 channels, as in the paper) or gray (1 channel).
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    /// Fixed time resolution: one column per frame, cropped or padded to the width, instead of
    /// stretching the whole utterance to the width.
    #[arg(long)]
    pub fixed_time: bool,
    /// Dynamic range shown, in dB below the utterance's maximum.
    #[arg(long, default_value_t = 80.0)]
    pub top_db: f32,
}

impl SpectrogramArgs {
    pub fn to_config(&self) -> Result<SpectrogramConfig> {
        let cfg = SpectrogramConfig {
            stft: StftConfig {
                sample_rate: self.sample_rate,
                window_ms: self.window_ms,
                hop_ms: self.hop_ms,
                n_fft: self.n_fft,
                mel_bands: self.mel,
                fmin_hz: self.fmin,
                fmax_hz: self.fmax,
                ..StftConfig::default()
            },
            image: ImageConfig {
                height: self.height,
                width: self.width,
                colormap: self.colormap,
                time_axis: if self.fixed_time {
                    TimeAxis::Fixed
                } else {
                    TimeAxis::Whole
                },
                top_db: self.top_db,
                ..ImageConfig::default()
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
