//! `rescnn eval --model RUN_DIR --data DIR [--corpus KIND]`: a trained model's metrics and confusion
//! matrix on a corpus (or one part of a split file), evaluated exactly as the trainer evaluates its
//! test set (the model's evaluation mode, the prosody branch and its fusion); a multi-fold run is
//! evaluated fold by fold on each fold's own test speakers and pooled, as its report is, and an
//! `--ensemble K` fold as the mean of its members ([`crate::inference::ensemble`]).
//! `--enroll K,...` gives the enrollment table instead ([`crate::inference::enrollment`]).

use std::path::{Path, PathBuf};

use crate::data::{Corpus, CorpusSpec, EvalTime, InputNormMode, LoadOptions, Split};
use crate::evaluation::metrics::EvalReport;
use crate::evaluation::predict::score;
use crate::evaluation::predict::Predictions;
use crate::inference::enrollment::{
    enrollment_markdown, evaluate_enrollment, EnrollmentSettings, FoldModel,
};
use crate::inference::ensemble::{holds_model, Ensemble};
use crate::inference::model_dir::{ModelPredictions, SpeakerSource};
use crate::training::report::pool;
use crate::training::run_dir::files;
use crate::training::DeviceChoice;
use crate::{config_err, Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: super::ModelChoice,
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
    /// Instead of one evaluation, the enrollment table: each test speaker's statistics from K of
    /// their utterances (comma-separated list of K), the rest scored; beside all of the speaker's
    /// utterances and the training statistics.
    #[arg(long, value_name = "K,K,...", value_delimiter = ',')]
    pub enroll: Option<Vec<usize>>,
    /// Random enrollment draws per K (with --enroll).
    #[arg(long, default_value_t = 5)]
    pub draws: usize,
    /// Seed of the enrollment draws (with --enroll).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate each utterance this way instead of as the model was trained to (its `eval_time`):
    /// `first` (the first training width of frames), `whole` (the whole utterance in one image) or
    /// `crops` (the mean of the class probabilities over crops of the training width).
    #[arg(long, value_enum, value_name = "MODE", conflicts_with = "enroll")]
    pub eval_time: Option<EvalTime>,
    /// With `--eval-time crops`: frames between crop starts (0: half the training width).
    #[arg(long, value_name = "FRAMES", requires = "eval_time")]
    pub eval_hop: Option<usize>,
    /// Evaluate a joint network (a `vec` layer) with every utterance vector absent, as whole-vector
    /// dropout (`vec<P>w<Q>`) leaves it in training: what its convolutional path gives alone. The
    /// prosody branch still reads the vectors, so the fusion is this network's with the branch.
    #[arg(long, conflicts_with = "enroll")]
    pub without_vector: bool,
}

/// The corpus `args` names, and the map from its labels to `classes`.
fn load_corpus(args: &Args, classes: &[String]) -> Result<(Corpus, Vec<usize>)> {
    let spec: CorpusSpec = format!("{}:{}", args.corpus, args.data.display()).parse()?;
    crate::training::prepare::check_data_location(&spec)?;
    let corpus = spec.load(&LoadOptions {
        skip_bad: args.skip_bad,
    })?;
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
    Ok((corpus, label_map))
}

/// The fold folders of a multi-fold run directory (each with a `split.json` and checkpoints, its
/// own or its ensemble members'), in name order; empty for a single model.
pub fn fold_dirs(model: &Path) -> Result<Vec<PathBuf>> {
    if !model.is_dir() || model.join(files::BEST).is_file() || model.join(files::LAST).is_file() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(model)
        .map_err(|e| Error::io(model, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(files::SPLIT).is_file() && holds_model(p))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// A model's (or a multi-fold run's) predictions on the utterances `args` selects, with what
/// they score.
pub struct Evaluation {
    /// The models' classes.
    pub classes: Vec<String>,
    pub corpus: Corpus,
    pub label_map: Vec<usize>,
    /// Per fold (one for a single model): its name and predictions (corpus indices; an ensemble
    /// fold's members averaged).
    pub folds: Vec<(String, ModelPredictions)>,
    /// The folds' fused predictions scored and pooled (the report's figures).
    pub report: EvalReport,
    /// What the model folders lack (older rescnn versions), one line each.
    pub missing: Vec<String>,
}

/// Evaluate the model(s) `args` names: one model on the corpus (or one part of `--split`), or every
/// fold of a multi-fold run on its own test speakers, pooled as the run's report pools them.
pub fn evaluate(args: &Args) -> Result<Evaluation> {
    let folds = fold_dirs(&args.model.dir)?;
    let mut models: Vec<(String, Ensemble)> = if folds.is_empty() {
        vec![(args.model.dir.display().to_string(), args.model.load()?)]
    } else {
        if args.split.is_some() {
            return Err(config_err!(
                "--split: {} is a run of {} folds, each evaluated on its own split.json; give one fold's folder to use --split",
                args.model.dir.display(),
                folds.len()
            ));
        }
        folds
            .iter()
            .map(|d| {
                let name = d
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                Ok((name, Ensemble::load(d, args.model.weights)?))
            })
            .collect::<Result<_>>()?
    };
    for model in models.iter_mut().flat_map(|(_, e)| &mut e.members) {
        if let Some(time) = args.eval_time {
            model.config.eval_time = time;
        }
        if let Some(hop) = args.eval_hop {
            model.config.eval_hop = hop;
        }
        if args.without_vector {
            if model.checkpoint.model.side_input_len == 0 {
                return Err(config_err!(
                    "--without-vector: {} is not a joint network (its architecture has no `vec` \
                     layer, so it reads no utterance vector)",
                    model.path.display()
                ));
            }
            model.without_vector = true;
        }
    }
    let first = models[0].1.first();
    if let Some((name, _)) = models.iter().find(|(_, e)| !e.first().reads_like(first)) {
        return Err(config_err!(
            "{name}: its feature settings or classes differ from the first fold's"
        ));
    }
    let (corpus, label_map) = load_corpus(args, first.classes())?;
    let store = first.features(&corpus)?;
    let vectors = first.vectors(&corpus)?;
    let mut out = Vec::with_capacity(models.len());
    let mut reports = Vec::with_capacity(models.len());
    let mut missing = Vec::new();
    for (k, (name, model)) in models.iter().enumerate() {
        let indices: Vec<usize> = if folds.is_empty() {
            match &args.split {
                None => (0..corpus.len()).collect(),
                Some(path) => {
                    let s = Split::load(&corpus, path)?;
                    match args.part.as_str() {
                        "train" => s.train,
                        "val" => s.val,
                        _ => s.test,
                    }
                }
            }
        } else {
            Split::load(&corpus, folds[k].join(files::SPLIT))?.test
        };
        if indices.is_empty() {
            return Err(config_err!(
                "{name}: nothing to evaluate: the selected utterances are empty"
            ));
        }
        // A speaker-normalised model takes each speaker's statistics over all of its utterances in
        // the corpus, whichever part of --split is evaluated (as in training).
        let p = model.predict(
            args.device,
            &corpus,
            &store,
            vectors.as_ref(),
            SpeakerSource::Corpus,
            &indices,
        )?;
        reports.push(score(
            model.classes().len(),
            p.fused.clone(),
            &corpus,
            Some(&label_map),
        ));
        missing.extend(model.missing().cloned());
        out.push((name.clone(), p));
    }
    let report = if reports.len() == 1 {
        reports.pop().expect("one")
    } else {
        pool(&reports.iter().collect::<Vec<_>>())
    };
    Ok(Evaluation {
        classes: models[0].1.classes().to_vec(),
        corpus,
        label_map,
        folds: out,
        report,
        missing,
    })
}

/// `predictions.json` of `--out`: per utterance its id, label and class probabilities (the
/// network's, the prosody branch's when there is one, and the model's fused output).
fn predictions_json(e: &Evaluation) -> serde_json::Value {
    let folds: Vec<serde_json::Value> = e
        .folds
        .iter()
        .map(|(name, p)| {
            fn rows(v: &Predictions) -> Vec<&Vec<f64>> {
                v.iter().map(|(_, r)| r).collect()
            }
            serde_json::json!({
                "fold": name,
                "ids": p.fused.iter().map(|(i, _)| &e.corpus.utterances[*i].id).collect::<Vec<_>>(),
                "labels": p.fused.iter().map(|(i, _)| e.label_map[e.corpus.utterances[*i].label]).collect::<Vec<_>>(),
                "network": rows(&p.network),
                "prosody": p.branch.as_ref().map(rows),
                "fused": rows(&p.fused),
            })
        })
        .collect();
    serde_json::json!({ "folds": folds })
}

fn text(model: &Path, classes: &[String], corpus: &str, r: &EvalReport) -> String {
    let mut out = format!(
        "# {} on {corpus}\n\n{} utterances: WA {:.2} %, UAR {:.2} %, macro-F1 {:.2} %, loss {:.4}\n\n",
        model.display(),
        r.confusion.total(),
        100.0 * r.wa,
        100.0 * r.uar,
        100.0 * r.macro_f1,
        r.loss
    );
    crate::training::report::eval_tables(&mut out, r, classes);
    out
}

pub fn run(args: &Args) -> Result<()> {
    if let Some(ks) = &args.enroll {
        return run_enrollment(args, ks);
    }
    let e = evaluate(args)?;
    for line in &e.missing {
        eprintln!("note: {line}");
    }
    if let Some(time) = args.eval_time {
        eprintln!(
            "note: every utterance evaluated with eval_time = {time}{}, not the model's own setting",
            args.eval_hop.map(|h| format!(", hop {h}")).unwrap_or_default()
        );
    }
    if args.without_vector {
        eprintln!("note: the network evaluated with every utterance vector absent (zeros)");
    }
    let classes = e.classes.clone();
    if let Some(out) = &args.out {
        crate::fsutil::create_dir_all(out)?;
        let names: Vec<&str> = classes.iter().map(String::as_str).collect();
        crate::fsutil::write_atomic(
            &out.join("confusion.svg"),
            crate::training::plots::confusion_svg(
                &format!("{} on {}", args.model.dir.display(), e.corpus.name),
                &e.report.confusion,
                &names,
            )
            .as_bytes(),
        )?;
        crate::fsutil::write_atomic(
            &out.join("eval.json"),
            serde_json::to_string_pretty(&e.report)
                .expect("JSON")
                .as_bytes(),
        )?;
        crate::fsutil::write_atomic(
            &out.join("eval.md"),
            text(&args.model.dir, &classes, &e.corpus.name, &e.report).as_bytes(),
        )?;
        crate::fsutil::write_atomic(
            &out.join("predictions.json"),
            serde_json::to_string(&predictions_json(&e))
                .expect("JSON")
                .as_bytes(),
        )?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e.report).map_err(|e| Error::Config(e.to_string()))?
        );
    } else {
        print!(
            "{}",
            text(
                &args.model.dir,
                &classes,
                &args.data.display().to_string(),
                &e.report
            )
        );
    }
    Ok(())
}

/// `--enroll`: the enrollment table of the run (see [`crate::inference::enrollment`]).
fn run_enrollment(args: &Args, ks: &[usize]) -> Result<()> {
    let folds = fold_dirs(&args.model.dir)?;
    let dirs = if folds.is_empty() {
        vec![args.model.dir.clone()]
    } else {
        folds.clone()
    };
    let models: Vec<Ensemble> = dirs
        .iter()
        .map(|d| Ensemble::load(d, args.model.weights))
        .collect::<Result<_>>()?;
    if models[0].first().input_norm_mode() != InputNormMode::Speaker {
        eprintln!(
            "note: {} normalises with the training statistics: speaker statistics change nothing, \
             so every row is the same",
            args.model.dir.display()
        );
    }
    for m in &models {
        for line in m.missing() {
            eprintln!("note: {line}");
        }
    }
    let (corpus, label_map) = load_corpus(args, models[0].classes())?;
    let mut fold_models = Vec::with_capacity(models.len());
    for (k, model) in models.into_iter().enumerate() {
        let split = if folds.is_empty() {
            let path = args
                .split
                .clone()
                .unwrap_or_else(|| dirs[0].join(files::SPLIT));
            Split::load(&corpus, &path)?
        } else {
            Split::load(&corpus, dirs[k].join(files::SPLIT))?
        };
        fold_models.push(FoldModel {
            name: dirs[k].display().to_string(),
            model,
            test: split.test,
            train: split.train,
        });
    }
    let settings = EnrollmentSettings {
        ks: ks.to_vec(),
        draws: args.draws,
        seed: args.seed,
        device: args.device,
    };
    let rows = evaluate_enrollment(&fold_models, &corpus, &label_map, &settings)?;
    let md = format!(
        "# Enrollment: {} ({} folds) on {}\n\nEach test speaker's normalisation statistics from k of \
         their utterances drawn at random (seed {}), the rest classified with them (the enrollment \
         utterances are never scored), pooled over the test speakers; mean ± std over {} draws. The \
         first two rows score every test utterance.\n\n{}",
        args.model.dir.display(),
        fold_models.len(),
        corpus.name,
        args.seed,
        args.draws,
        enrollment_markdown(&rows)
    );
    if let Some(out) = &args.out {
        crate::fsutil::create_dir_all(out)?;
        crate::fsutil::write_atomic(&out.join("enrollment.md"), md.as_bytes())?;
    }
    print!("{md}");
    Ok(())
}
