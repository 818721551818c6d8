//! `rescnn eval --model RUN_DIR --data DIR [--corpus KIND]`: a trained model's metrics and confusion
//! matrix on another corpus (or one part of a split file).

use std::path::PathBuf;

use crate::data::{CorpusSpec, LoadOptions, Split};
use crate::training::inference::score;
use crate::training::metrics::EvalReport;
use crate::training::model_dir::{TrainedModel, Weights};
use crate::training::DeviceChoice;
use crate::{config_err, Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run directory of rescnn-train (a single split, or one fold's folder), or a checkpoint file.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Which weights: those selected on validation, or the last.
    #[arg(long, value_enum, default_value = "best")]
    pub weights: Weights,
    /// Data folder (or manifest file) of the corpus to evaluate on.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Corpus kind: emodb, ravdess, ravdess8, folders, manifest.
    #[arg(long, default_value = "emodb")]
    pub corpus: String,
    /// Evaluate only one part of a split file (e.g. a run's split.json).
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
    /// The part of --split to evaluate.
    #[arg(long, default_value = "test", value_parser = ["train", "val", "test"])]
    pub part: String,
    /// Leave unreadable audio files out instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Also write eval.md, eval.json and confusion.svg into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Compute device (as rescnn-train's --device).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Evaluate `model` on the corpus `args` names.
pub fn evaluate_on(args: &Args, model: &TrainedModel) -> Result<EvalReport> {
    let spec: CorpusSpec = format!("{}:{}", args.corpus, args.data.display()).parse()?;
    crate::training::prepare::check_data_location(&spec)?;
    let corpus = spec.load(&LoadOptions {
        skip_bad: args.skip_bad,
    })?;
    let classes = model.classes();
    let label_map = corpus
        .classes
        .iter()
        .map(|c| {
            classes.iter().position(|m| m == c).ok_or_else(|| {
                config_err!(
                    "class '{c}' of {} is not one the model knows ({})",
                    corpus.name,
                    classes.join(", ")
                )
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let indices: Vec<usize> = match &args.split {
        None => (0..corpus.len()).collect(),
        Some(path) => {
            let s = Split::load(&corpus, path)?;
            match args.part.as_str() {
                "train" => s.train,
                "val" => s.val,
                _ => s.test,
            }
        }
    };
    if indices.is_empty() {
        return Err(config_err!(
            "nothing to evaluate: the selected utterances are empty"
        ));
    }
    let store = model.features(&corpus)?;
    let batch = 32.min(indices.len());
    // A speaker-normalised model takes each speaker's statistics over all of its utterances in the
    // corpus, whichever part of --split is evaluated (as in training).
    let batcher = model.batcher(&corpus, &store, &indices, batch)?;
    let probabilities = model.probabilities(args.device, &batcher, batch)?;
    let report = score(classes.len(), probabilities, &corpus, Some(&label_map));
    if let Some(out) = &args.out {
        crate::fsutil::create_dir_all(out)?;
        let names: Vec<&str> = classes.iter().map(String::as_str).collect();
        crate::fsutil::write_atomic(
            &out.join("confusion.svg"),
            crate::training::plots::confusion_svg(
                &format!("{} on {}", model.path.display(), corpus.name),
                &report.confusion,
                &names,
            )
            .as_bytes(),
        )?;
        crate::fsutil::write_atomic(
            &out.join("eval.json"),
            serde_json::to_string_pretty(&report)
                .expect("JSON")
                .as_bytes(),
        )?;
        crate::fsutil::write_atomic(
            &out.join("eval.md"),
            text(model, &corpus.name, &report).as_bytes(),
        )?;
    }
    Ok(report)
}

fn text(model: &TrainedModel, corpus: &str, r: &EvalReport) -> String {
    let mut out = format!(
        "# {} on {corpus}\n\n{} utterances: WA {:.2} %, UAR {:.2} %, macro-F1 {:.2} %, loss {:.4}\n\n",
        model.path.display(),
        r.confusion.total(),
        100.0 * r.wa,
        100.0 * r.uar,
        100.0 * r.macro_f1,
        r.loss
    );
    crate::training::report::eval_tables(&mut out, r, model.classes());
    out
}

pub fn run(args: &Args) -> Result<()> {
    let model = TrainedModel::load(&args.model, args.weights)?;
    let report = evaluate_on(args, &model)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        print!(
            "{}",
            text(&model, &args.data.display().to_string(), &report)
        );
    }
    Ok(())
}
