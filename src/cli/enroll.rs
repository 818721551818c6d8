//! `rescnn enroll --model RUN_DIR --speaker NAME FILE.wav... -o STATS.json`: a speaker's
//! normalisation statistics from some of their utterances, for `rescnn predict --speaker-stats`
//! (see [`crate::inference::enrollment::speaker_stats`]).

use std::path::PathBuf;

use crate::data::InputNormMode;
use crate::inference::enrollment::speaker_stats;
use crate::inference::model_dir::files_corpus_of;
use crate::{config_err, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: super::ModelChoice,
    /// The speaker's name, saved with the statistics.
    #[arg(long)]
    pub speaker: String,
    /// The statistics file to write.
    #[arg(short, long, value_name = "STATS.json")]
    pub output: PathBuf,
    /// The speaker's WAV files (any labels; none are read).
    #[arg(required = true, value_name = "FILE.wav")]
    pub files: Vec<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    // An ensemble's members read the same spectrograms and vectors, so one member's statistics
    // serve them all.
    let ensemble = args.model.load()?;
    let model = ensemble.first();
    if model.input_norm_mode() != InputNormMode::Speaker {
        return Err(config_err!(
            "{}: this model normalises with its training statistics, so speaker statistics would not \
             be used (enroll speakers for a model trained with --input-norm speaker)",
            args.model.dir.display()
        ));
    }
    let corpus = files_corpus_of(&args.files, model.classes(), |_| Ok(args.speaker.clone()))?;
    let store = model.features(&corpus)?;
    let vectors = model.vectors(&corpus)?;
    let all: Vec<usize> = (0..corpus.len()).collect();
    let prior = model.parts.enrollment_prior.as_ref();
    if prior.is_none() {
        eprintln!(
            "note: {} has no enrollment prior (written by an older rescnn): the statistics are the \
             utterances' own, which from fewer than about ten utterances do worse than none",
            args.model.dir.display()
        );
    }
    let stats = speaker_stats(model, prior, &args.speaker, &store, vectors.as_ref(), &all)?;
    stats.save(&args.output)?;
    println!(
        "{}: statistics of speaker '{}' from {} utterance(s){}",
        args.output.display(),
        args.speaker,
        stats.utterances,
        if stats.vector.is_some() {
            " (image and utterance vector)"
        } else {
            " (image)"
        }
    );
    Ok(())
}
