//! `rescnn predict --model RUN_DIR FILE.wav...`: each file's emotion and class probabilities, with the
//! spectrogram settings and input normalisation the model was trained with.

use std::path::PathBuf;

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
    /// WAV files (any rate, any channel count).
    #[arg(required = true, value_name = "FILE.wav")]
    pub files: Vec<PathBuf>,
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

pub fn run(args: &Args) -> Result<()> {
    let model = TrainedModel::load(&args.model, args.weights)?;
    if model.input_norm_mode() == InputNormMode::Speaker {
        eprintln!("{}", speaker_note(args.files.len()));
    }
    let predictions = predict(&model, &args.files, args.device)?;
    if args.json {
        let json: Vec<serde_json::Value> = predictions
            .iter()
            .map(|p| {
                let probs: serde_json::Map<String, serde_json::Value> = p
                    .probabilities
                    .iter()
                    .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                    .collect();
                serde_json::json!({"file": p.file, "emotion": p.emotion, "probabilities": probs})
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
            println!("{}: {}  ({})", p.file, p.emotion, probs.join(", "));
        }
    }
    Ok(())
}
