//! The `rescnn-train` command line. Settings layer: the defaults (or `--preset paper`), then
//! `--config FILE`, then the options given on the command line. Only options actually given
//! override (clap's value source tells), so `--config` files are never silently overridden by
//! option defaults.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::config::{AugmentLevel, DeviceChoice, Selection, SweepKind, TrainConfig};
use crate::cli::SpectrogramArgs;
use crate::data::InputNormMode;
use crate::features::TimeAxis;
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
    /// Network: a preset name (paper, paper-plain, badshah2017, table4-1 … table4-11) or a spec such
    /// as "c32k4 p2 +0 c64k8 p2 fc716".
    #[arg(long, value_name = "PRESET|SPEC")]
    pub arch: Option<String>,
    /// Compute device.
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Split protocol: random, speakers:A,B (held-out test speakers) or loso.
    #[arg(long, value_name = "PROTOCOL")]
    pub protocol: Option<String>,
    /// Share of each class held out for testing (random protocol).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Share of training utterances used for validation (random protocol, or --val-speakers 0).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Training speakers held out for validation (speaker protocols).
    #[arg(long)]
    pub val_speakers: Option<usize>,
    #[command(flatten)]
    pub spectrogram: SpectrogramArgs,
    /// Batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Training iterations (batches).
    #[arg(long, conflicts_with = "epochs")]
    pub iters: Option<u64>,
    /// Training length in epochs (passes over the training utterances).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// RMSProp learning rate α.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning-rate time decay: α_t = α / (1 + decay·t).
    #[arg(long)]
    pub decay: Option<f64>,
    /// Seed of everything random (splits, weights, data order, augmentation).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Validate and checkpoint every N iterations.
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Model selection criterion on the validation set.
    #[arg(long, value_enum)]
    pub select_by: Option<Selection>,
    /// Training augmentation: `paper` (random crop, flip, graying, noise points), `full` (those,
    /// SpecAugment masks, and speed/pitch-perturbed variants), or `none`.
    #[arg(long, value_enum, conflicts_with = "no_augment")]
    pub augment: Option<AugmentLevel>,
    /// Turn training augmentation off (the same as `--augment none`).
    #[arg(long)]
    pub no_augment: bool,
    /// Class-balanced sampling of training utterances.
    #[arg(long)]
    pub balanced: bool,
    /// Input normalisation: per-channel statistics of the training utterances, or each speaker's
    /// own per-(channel, row) statistics (transductive for test speakers).
    #[arg(long, value_enum)]
    pub input_norm: Option<InputNormMode>,
    /// Do not read or write the on-disk feature cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Leave unreadable audio files out instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Start from a named configuration: paper (everything the paper states) or default.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Settings from a TOML or JSON file (keys as in a run's config.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Train a series: every Table IV preset, or every input-shortcut placement of --arch.
    #[arg(long, value_enum)]
    pub sweep: Option<SweepKind>,
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
    let matches = Args::command().try_get_matches_from(words)?;
    let args = Args::from_arg_matches(&matches)?;
    Ok((args, matches))
}

fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Options that change the configuration (all but --resume, --stop-at and --no-progress).
const CONFIG_OPTIONS: &[&str] = &[
    "data",
    "corpus",
    "arch",
    "device",
    "protocol",
    "test_fraction",
    "val_fraction",
    "val_speakers",
    "sample_rate",
    "window_ms",
    "hop_ms",
    "n_fft",
    "mel",
    "fmin",
    "fmax",
    "height",
    "width",
    "colormap",
    "fixed_time",
    "top_db",
    "batch",
    "iters",
    "epochs",
    "lr",
    "decay",
    "seed",
    "eval_every",
    "select_by",
    "augment",
    "no_augment",
    "balanced",
    "input_norm",
    "no_cache",
    "skip_bad",
    "preset",
    "config",
    "sweep",
    "out",
];

/// The request the arguments make.
pub fn request(args: &Args, m: &ArgMatches) -> Result<Request> {
    if let Some(dir) = &args.resume {
        let extra: Vec<String> = CONFIG_OPTIONS
            .iter()
            .filter(|id| given(m, id))
            .map(|id| format!("--{}", id.replace('_', "-")))
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
        .unwrap_or_else(|| super::config::default_run_dir(&config.label()));
    Ok(Request::Start {
        config: Box::new(config),
        out,
    })
}

/// The effective configuration: defaults or preset, then the file, then given options.
pub fn config(args: &Args, m: &ArgMatches) -> Result<TrainConfig> {
    let mut c = match &args.preset {
        Some(p) => TrainConfig::preset(p)?,
        None => TrainConfig::default(),
    };
    if let Some(file) = &args.config {
        c = c.with_file(file)?;
    }
    match (&args.data, &args.corpus) {
        (Some(dir), kind) => {
            let kind = kind.as_deref().unwrap_or("emodb");
            if kind.to_ascii_lowercase().ends_with(".csv") || kind.starts_with("synthetic") {
                return Err(config_err!(
                    "--corpus {kind} names its own data; leave out --data (or give --corpus emodb|ravdess|ravdess8|folders|manifest)"
                ));
            }
            // Absolute, so the run can be resumed from another folder.
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            c.corpus = format!("{kind}:{}", dir.display());
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
            c.corpus = kind.clone();
        }
        (None, None) => {}
    }
    if let Some(v) = &args.arch {
        c.arch = v.clone();
    }
    if let Some(v) = args.device {
        c.device = v;
    }
    if let Some(v) = &args.protocol {
        c.protocol = v.clone();
    }
    if let Some(v) = args.test_fraction {
        c.test_fraction = v;
    }
    if let Some(v) = args.val_fraction {
        c.val_fraction = v;
    }
    if let Some(v) = args.val_speakers {
        c.val_speakers = v;
    }
    apply_spectrogram(&mut c, &args.spectrogram, m);
    if let Some(v) = args.batch {
        c.batch = v;
    }
    if let Some(v) = args.iters {
        c.iterations = Some(v);
        c.epochs = None;
    }
    if let Some(v) = args.epochs {
        c.epochs = Some(v);
        c.iterations = None;
    }
    if let Some(v) = args.lr {
        c.optimizer.lr = v;
    }
    if let Some(v) = args.decay {
        c.optimizer.decay = v;
    }
    if let Some(v) = args.seed {
        c.seed = v;
    }
    if let Some(v) = args.eval_every {
        c.eval_every = v;
    }
    if let Some(v) = args.select_by {
        c.select_by = v;
    }
    if let Some(level) = args.augment {
        level.apply(&mut c);
    }
    if args.no_augment {
        AugmentLevel::None.apply(&mut c);
    }
    if args.balanced {
        c.balanced = true;
    }
    if let Some(v) = args.input_norm {
        c.input_norm = v;
    }
    if args.no_cache {
        c.feature_cache = false;
    }
    if args.skip_bad {
        c.skip_bad = true;
    }
    if let Some(s) = args.sweep {
        c.sweep = Some(s);
    }
    c.validate()?;
    Ok(c)
}

/// Spectrogram options override only where given.
fn apply_spectrogram(c: &mut TrainConfig, a: &SpectrogramArgs, m: &ArgMatches) {
    let s = &mut c.spectrogram;
    if given(m, "sample_rate") {
        s.stft.sample_rate = a.sample_rate;
    }
    if given(m, "window_ms") {
        s.stft.window_ms = a.window_ms;
    }
    if given(m, "hop_ms") {
        s.stft.hop_ms = a.hop_ms;
    }
    if given(m, "n_fft") {
        s.stft.n_fft = a.n_fft;
    }
    if given(m, "mel") {
        s.stft.mel_bands = a.mel;
    }
    if given(m, "fmin") {
        s.stft.fmin_hz = a.fmin;
    }
    if given(m, "fmax") {
        s.stft.fmax_hz = a.fmax;
    }
    if given(m, "height") {
        s.image.height = a.height;
    }
    if given(m, "width") {
        s.image.width = a.width;
    }
    if given(m, "colormap") {
        s.image.colormap = a.colormap;
    }
    if given(m, "fixed_time") {
        s.image.time_axis = TimeAxis::Fixed;
    }
    if given(m, "top_db") {
        s.image.top_db = a.top_db;
    }
}
