//! `rescnn predict --model RUN_DIR FILE.wav...`: each file's emotion and class probabilities, with the
//! spectrogram settings and input normalisation the model was trained with.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::InputNormMode;
use crate::training::inference::argmax;
use crate::training::model_dir::{files_corpus, TrainedModel, Weights};
use crate::training::DeviceChoice;
use crate::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run directory of rescnn-train (a single split, or one fold's folder), or a checkpoint file.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Which weights: those selected on validation, or the last.
    #[arg(long, value_enum, default_value = "best")]
    pub weights: Weights,
    /// Compute device (as rescnn-train's --device).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Predict the readable files and leave out (with a warning) those that cannot be read;
    /// without it, any bad file stops the command after naming every bad one.
    #[arg(long)]
    pub skip_bad: bool,
    /// WAV files (any rate, any channel count).
    #[arg(required = true, value_name = "FILE.wav")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub timeline: super::timeline::TimelineArgs,
}

/// One file's prediction.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Prediction {
    pub file: String,
    pub emotion: String,
    /// (class, probability) in the model's class order; the probabilities sum to 1.
    pub probabilities: Vec<(String, f64)>,
}

/// Predict every file with the model on `device`. A speaker-normalised model treats all `files` as
/// one speaker and normalises them with their joint statistics.
pub fn predict(
    model: &TrainedModel,
    files: &[PathBuf],
    device: DeviceChoice,
) -> Result<Vec<Prediction>> {
    let classes = model.classes().to_vec();
    let corpus = files_corpus(files, &classes)?;
    let store = model.features(&corpus)?;
    let batch = corpus.len().clamp(1, 32);
    let indices: Vec<usize> = (0..corpus.len()).collect();
    let batcher = model.batcher(&corpus, &store, &indices, batch)?;
    let mut out: Vec<Prediction> = model
        .probabilities(device, &batcher, batch)?
        .into_iter()
        .map(|(u, probs)| Prediction {
            file: corpus.utterances[u].id.clone(),
            emotion: classes[argmax(&probs)].clone(),
            probabilities: classes.iter().cloned().zip(probs).collect(),
        })
        .collect();
    out.sort_by_key(|p| files.iter().position(|f| f.display().to_string() == p.file));
    Ok(out)
}

/// What `predict` says on stderr about a speaker-normalised model.
pub fn speaker_note(files: usize) -> String {
    format!(
        "note: this model normalises each speaker with that speaker's own statistics; the {files} \
         file(s) given are treated as one speaker and normalised together (give several utterances \
         of one speaker per call: a single short file gives poor statistics)"
    )
}

/// Shorter input than this (in seconds) gets no label: a few frames say nothing of an emotion.
pub const MIN_LABEL_S: f64 = 0.25;

/// Peak amplitudes at or below one 16-bit step are digital silence: nothing to label.
const SILENCE_PEAK: f32 = 1.0 / 32_768.0;

/// Why a readable file gets no label: too short, or digital silence.
fn unlabelable(audio: &crate::audio::Audio) -> Option<String> {
    let seconds = audio.duration_s();
    if seconds < MIN_LABEL_S {
        return Some(format!(
            "only {seconds:.3} s long (under {MIN_LABEL_S} s): too short to label"
        ));
    }
    let peak = audio.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    (peak <= SILENCE_PEAK).then(|| "digital silence (no sample above one 16-bit step)".to_string())
}

/// What reading the files found: the readable ones, the bad ones with their problem, and the
/// readable ones that get no label with the reason.
struct Screened {
    good: Vec<PathBuf>,
    bad: Vec<(PathBuf, String)>,
    unlabelable: Vec<(PathBuf, String)>,
}

/// Read every file once (only the header with `header_only`, as the timeline streams the rest),
/// collecting every problem rather than stopping at the first.
fn screen(files: &[PathBuf], header_only: bool) -> Screened {
    let mut out = Screened {
        good: Vec::new(),
        bad: Vec::new(),
        unlabelable: Vec::new(),
    };
    for f in files {
        let read = if header_only {
            crate::audio::wav_info(f).map(|_| None)
        } else {
            crate::audio::check_whole_file_length(f, "rescnn predict")
                .and_then(|()| crate::audio::read_wav(f))
                .map(|audio| unlabelable(&audio))
        };
        match read {
            Ok(why) => {
                if let Some(why) = why {
                    out.unlabelable.push((f.clone(), why));
                }
                out.good.push(f.clone());
            }
            Err(e) => out.bad.push((f.clone(), without_path(&e, f))),
        }
    }
    out
}

/// An error's message without its leading file name (the list prints it).
fn without_path(e: &crate::Error, f: &Path) -> String {
    let text = e.to_string();
    let prefix = format!("{}: ", f.display());
    text.strip_prefix(&prefix).unwrap_or(&text).to_string()
}

/// Keep the good files, or fail naming every bad one (`--skip-bad` leaves them out with a warning).
fn good_files(screened: &Screened, total: usize, skip_bad: bool) -> Result<()> {
    if screened.bad.is_empty() {
        return Ok(());
    }
    let list: String = screened
        .bad
        .iter()
        .map(|(f, why)| format!("\n  {}: {why}", f.display()))
        .collect();
    if skip_bad && !screened.good.is_empty() {
        eprintln!(
            "warning: left out {} of {total} file(s) (--skip-bad):{list}",
            screened.bad.len()
        );
        return Ok(());
    }
    let hint = if skip_bad {
        "no file is left to predict"
    } else {
        "pass --skip-bad to predict the others"
    };
    Err(crate::config_err!(
        "{} of {total} file(s) cannot be read ({hint}):{list}",
        screened.bad.len()
    ))
}

pub fn run(args: &Args) -> Result<()> {
    let model = TrainedModel::load(&args.model, args.weights)?;
    let screened = screen(&args.files, args.timeline.timeline);
    good_files(&screened, args.files.len(), args.skip_bad)?;
    let files = &screened.good;
    if args.timeline.timeline {
        return super::timeline::run(&model, files, &args.timeline, args.json, args.device);
    }
    if model.input_norm_mode() == InputNormMode::Speaker {
        eprintln!("{}", speaker_note(files.len()));
    }
    for (f, why) in &screened.unlabelable {
        eprintln!("warning: {}: {why}; no label given", f.display());
    }
    let no_label = |file: &str| {
        screened
            .unlabelable
            .iter()
            .find(|(f, _)| f.display().to_string() == file)
            .map(|(_, why)| why.clone())
    };
    let predictions = predict(&model, files, args.device)?;
    if args.json {
        let json: Vec<serde_json::Value> = predictions
            .iter()
            .map(|p| {
                let probs: serde_json::Map<String, serde_json::Value> = p
                    .probabilities
                    .iter()
                    .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                    .collect();
                match no_label(&p.file) {
                    Some(why) => serde_json::json!({"file": p.file, "emotion": null,
                        "warning": why, "probabilities": probs}),
                    None => serde_json::json!({"file": p.file, "emotion": p.emotion,
                        "probabilities": probs}),
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json).expect("JSON"));
    } else {
        for p in &predictions {
            let probs: Vec<String> = p
                .probabilities
                .iter()
                .map(|(c, v)| format!("{c} {:.3}", v))
                .collect();
            match no_label(&p.file) {
                Some(why) => println!("{}: no label ({why})  ({})", p.file, probs.join(", ")),
                None => println!("{}: {}  ({})", p.file, p.emotion, probs.join(", ")),
            }
        }
    }
    Ok(())
}
