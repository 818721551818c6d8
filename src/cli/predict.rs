//! `rescnn predict --model RUN_DIR FILE.wav...`: each file's emotion and class probabilities, with the
//! spectrogram settings, input normalisation, evaluation mode and prosody branch the model was
//! trained with (what its report scored).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::InputNormMode;
use crate::evaluation::model_file::SpeakerStats;
use crate::evaluation::predict::argmax;
use crate::inference::ensemble::Ensemble;
use crate::inference::model_dir::{files_corpus, files_corpus_of, SpeakerOf, SpeakerSource};
use crate::training::DeviceChoice;
use crate::{config_err, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: super::ModelChoice,
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
    /// Group the files by speaker (for a speaker-normalised model): `folder` (one folder per
    /// speaker), `chars:START-END` (characters of the file name, EMO-DB: chars:0-2) or
    /// `field:SEP:K` (field K of the name split at SEP, RAVDESS: field:-:6). Each speaker is
    /// normalised with the statistics of their files given here.
    #[arg(long, value_name = "HOW")]
    pub speaker_from: Option<SpeakerOf>,
    /// A speaker's saved statistics (`rescnn enroll`); repeat for several speakers (then with
    /// --speaker-from naming each file's speaker).
    #[arg(long, value_name = "STATS.json")]
    pub speaker_stats: Vec<PathBuf>,
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
    /// The speaker the file was normalised as (`-` when files are not grouped).
    pub speaker: String,
    pub emotion: String,
    /// (class, probability) in the model's class order; the probabilities sum to 1. With a
    /// prosody branch, the fusion of the network's and the branch's.
    pub probabilities: Vec<(String, f64)>,
    /// The network's probabilities alone.
    pub network: Vec<f64>,
    /// The prosody branch's probabilities alone, for a model with one.
    pub prosody: Option<Vec<f64>>,
}

/// Where the files' speakers and their statistics come from.
#[derive(Clone, Debug, Default)]
pub struct Speakers {
    /// How files are grouped by speaker; `None`: all files are one speaker.
    pub from: Option<SpeakerOf>,
    /// Saved statistics (`rescnn enroll`), one per speaker.
    pub stats: Vec<SpeakerStats>,
}

impl Speakers {
    /// The statistics a speaker-normalised model uses: saved ones, else each speaker's own over the
    /// files given (when grouped), else the training statistics.
    fn source(&self) -> SpeakerSource<'_> {
        if !self.stats.is_empty() {
            SpeakerSource::Given(&self.stats)
        } else if self.from.is_some() {
            SpeakerSource::Corpus
        } else {
            SpeakerSource::Training
        }
    }

    /// The note `predict` prints for a speaker-normalised model.
    pub fn note(&self) -> Option<String> {
        match self.source() {
            SpeakerSource::Given(_) => None,
            SpeakerSource::Corpus => Some(
                "note: each speaker is normalised with the statistics of their files given here \
                 (give several utterances per speaker: one short file gives poor statistics)"
                    .into(),
            ),
            SpeakerSource::Training => Some(
                "note: this model normalises each speaker with their own statistics and none were \
                 given: using the training speakers' statistics, which is less accurate (save a \
                 speaker's with `rescnn enroll` and pass --speaker-stats, or group several files per \
                 speaker with --speaker-from)"
                    .into(),
            ),
        }
    }
}

/// Predict every file with the model on `device`; a speaker-normalised model uses the training
/// statistics (see [`predict_speakers`]).
pub fn predict(
    model: &Ensemble,
    files: &[PathBuf],
    device: DeviceChoice,
) -> Result<Vec<Prediction>> {
    predict_speakers(model, files, &Speakers::default(), device)
}

/// Predict every file with the model on `device`: the network evaluated as in training, fused with
/// the prosody branch when the model has one; each file's speaker and statistics from `speakers`.
pub fn predict_speakers(
    model: &Ensemble,
    files: &[PathBuf],
    speakers: &Speakers,
    device: DeviceChoice,
) -> Result<Vec<Prediction>> {
    let classes = model.classes().to_vec();
    let corpus = match (&speakers.from, speakers.stats.as_slice()) {
        (Some(of), _) => files_corpus_of(files, &classes, |p| of.speaker(p))?,
        (None, [one]) => files_corpus_of(files, &classes, |_| Ok(one.speaker.clone()))?,
        (None, []) => files_corpus(files, &classes)?,
        (None, many) => {
            return Err(config_err!(
                "--speaker-stats: {} files of statistics given; say whose file is whose with --speaker-from",
                many.len()
            ))
        }
    };
    let store = model.first().features(&corpus)?;
    let vectors = model.first().vectors(&corpus)?;
    let indices: Vec<usize> = (0..corpus.len()).collect();
    let p = model.predict(
        device,
        &corpus,
        &store,
        vectors.as_ref(),
        speakers.source(),
        &indices,
    )?;
    let mut out = Vec::with_capacity(files.len());
    for (k, (u, probs)) in p.fused.into_iter().enumerate() {
        out.push(Prediction {
            file: corpus.utterances[u].id.clone(),
            speaker: corpus.utterances[u].speaker.clone(),
            emotion: classes[argmax(&probs)].clone(),
            probabilities: classes.iter().cloned().zip(probs).collect(),
            network: p.network[k].1.clone(),
            prosody: p.branch.as_ref().map(|b| b[k].1.clone()),
        });
    }
    out.sort_by_key(|p| files.iter().position(|f| f.display().to_string() == p.file));
    Ok(out)
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
    let model = args.model.load()?;
    let screened = screen(&args.files, args.timeline.timeline);
    good_files(&screened, args.files.len(), args.skip_bad)?;
    let files = &screened.good;
    for line in model.missing() {
        eprintln!("note: {line}");
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
    let speakers = Speakers {
        from: args.speaker_from.clone(),
        stats: args
            .speaker_stats
            .iter()
            .map(|p| SpeakerStats::load(p))
            .collect::<Result<_>>()?,
    };
    if args.timeline.timeline {
        if speakers.stats.len() > 1 {
            return Err(crate::config_err!(
                "--timeline takes one --speaker-stats file (the recording's speaker), {} were given",
                speakers.stats.len()
            ));
        }
        if speakers.from.is_some() {
            return Err(crate::config_err!(
                "--timeline takes no --speaker-from: a recording is one speaker (give their \
                 statistics with --speaker-stats)"
            ));
        }
        return super::timeline::run(
            &model,
            files,
            &args.timeline,
            speakers.stats.first(),
            args.json,
            args.device,
        );
    }
    if model.first().input_norm_mode() == InputNormMode::Speaker {
        if let Some(note) = speakers.note() {
            eprintln!("{note}");
        }
    } else if !speakers.stats.is_empty() {
        eprintln!(
            "note: this model normalises with its training statistics; --speaker-stats is not used"
        );
    }
    let predictions = predict_speakers(&model, files, &speakers, args.device)?;
    if args.json {
        let json: Vec<serde_json::Value> = predictions
            .iter()
            .map(|p| {
                let probs: serde_json::Map<String, serde_json::Value> = p
                    .probabilities
                    .iter()
                    .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                    .collect();
                let warning = no_label(&p.file);
                serde_json::json!({
                    "file": p.file,
                    "speaker": p.speaker,
                    "emotion": if warning.is_some() { serde_json::Value::Null } else { serde_json::json!(p.emotion) },
                    "warning": warning,
                    "probabilities": probs,
                    "network": p.network,
                    "prosody": p.prosody,
                })
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
