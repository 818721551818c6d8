//! A whole run: the run directory, the corpus and its features, the splits, the device (chosen once,
//! then the folds on the one backend type it names, [`super::folds`]), the report; and sweeps of
//! runs.
//!
//! The run directory's layout is in [`super::run_dir`].

use std::path::{Path, PathBuf};

use super::config::{SweepKind, TrainConfig};
use super::device::on_device;
use super::folds::{FoldsJob, FoldsOutcome};
use super::prepare::{load_corpus, make_splits};
use super::report::{self, RunResult};
use super::run_dir::{files, lay_out_folds, read_json, sweep_member_dir, write_status, RunLock};
use super::sweep::{sweep_markdown, sweep_members, SweepMember, SweepRow};
use super::trainer::RunControl;
use crate::data::{CacheOptions, Corpus, FeatureStore};
use crate::model::ArchSpec;
use crate::prosody::{ProsodyConfig, ProsodyStore};
use crate::{config_err, Error, Result};

/// How a run ended.
#[derive(Clone, Debug)]
pub enum RunOutcome {
    Complete {
        dir: PathBuf,
        result: Box<RunResult>,
    },
    Interrupted {
        dir: PathBuf,
        fold: String,
        step: u64,
        total: u64,
    },
    SweepComplete {
        dir: PathBuf,
        rows: Vec<SweepRow>,
        table: PathBuf,
    },
}

/// Start a new run in `out` (which must not exist or be empty), holding its [`RunLock`].
pub fn start(cfg: &TrainConfig, out: &Path, control: &RunControl) -> Result<RunOutcome> {
    cfg.validate()?;
    crate::fsutil::create_dir_all(out)?;
    let _lock = RunLock::acquire(out)?;
    prepare_new_dir(out)?;
    // What the run uses is what config.toml says: written, then read back.
    let path = out.join(files::CONFIG);
    crate::fsutil::write_atomic(&path, cfg.to_toml().as_bytes())?;
    let cfg = TrainConfig::load_toml(&path)?;
    guarded(out, || execute(&cfg, out, control))
}

/// Continue the run in `dir` from its checkpoints, with its own configuration.
pub fn resume(dir: &Path, control: &RunControl) -> Result<RunOutcome> {
    let path = dir.join(files::CONFIG);
    if !path.exists() {
        return Err(Error::data(
            dir,
            format!(
                "is not a rescnn run directory (no {}); give the folder a run was started in",
                files::CONFIG
            ),
        ));
    }
    let cfg = TrainConfig::load_toml(&path)?;
    cfg.validate()?;
    let _lock = RunLock::acquire(dir)?;
    // Under the lock nobody else writes here: what temporaries there are, a killed writer left.
    let stale = crate::fsutil::remove_stale_temporaries(dir)?;
    if !stale.is_empty() {
        println!(
            "removed {} temporary file(s) left by an interrupted write",
            stale.len()
        );
    }
    guarded(dir, || execute(&cfg, dir, control))
}

/// Check that `out` (existing, locked by this process) holds nothing but its lock.
fn prepare_new_dir(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .find(|e| e.as_ref().map_or(true, |e| e.file_name() != files::LOCK))
            .is_none();
        if !empty {
            return Err(config_err!(
                "the run directory {} already exists and is not empty: continue it with --resume {} or choose another --out",
                out.display(),
                out.display()
            ));
        }
    }
    crate::fsutil::create_dir_all(out)
}

/// Run `f`, recording in STATUS how it ended.
fn guarded(dir: &Path, f: impl FnOnce() -> Result<RunOutcome>) -> Result<RunOutcome> {
    write_status(dir, "running")?;
    match f() {
        Ok(outcome) => {
            let text = match &outcome {
                RunOutcome::Interrupted {
                    fold, step, total, ..
                } => format!(
                    "interrupted: {fold} at step {step} of {total}; continue with: rescnn-train --resume {}",
                    dir.display()
                ),
                _ => "complete".to_string(),
            };
            write_status(dir, &text)?;
            Ok(outcome)
        }
        Err(e) => {
            let text = match &e {
                Error::Diverged { .. } => format!("failed: {e}"),
                _ => format!("failed (no results; the report is incomplete): {e}"),
            };
            let _ = write_status(dir, &text);
            Err(e)
        }
    }
}

fn execute(cfg: &TrainConfig, dir: &Path, control: &RunControl) -> Result<RunOutcome> {
    if let Some(kind) = cfg.sweep {
        return sweep(cfg, kind, dir, control);
    }
    if dir.join(files::SUMMARY).exists() && dir.join(files::RESULT).exists() {
        let result: RunResult = read_json(&dir.join(files::RESULT))?;
        println!("{} is complete already", dir.display());
        return Ok(RunOutcome::Complete {
            dir: dir.to_path_buf(),
            result: Box::new(result),
        });
    }
    let (device, why) = super::device::resolve(cfg.device)?;
    println!("run directory: {}", dir.display());
    let corpus = load_corpus(cfg)?;
    println!("{}", corpus.summary());
    let splits = make_splits(cfg, &corpus)?;
    check_splits(&splits)?;
    let store = FeatureStore::build(
        &corpus,
        &cfg.spectrogram.stft,
        &CacheOptions {
            dir: cfg
                .feature_cache
                .then(crate::data::cache::default_cache_dir),
            progress: control.progress,
            variants: cfg.waveform_variants.clone(),
        },
    )?;
    let folds = lay_out_folds(dir, &corpus, &splits)?;
    let spec = ArchSpec::from_name_or_spec(&cfg.arch)?;
    let vectors = run_vectors(cfg, &spec, &corpus)?;
    let job = FoldsJob {
        cfg,
        spec,
        corpus: &corpus,
        store: &store,
        vectors: vectors.as_ref(),
        control,
        folds: &folds,
        why: &why,
    };
    let results = match on_device(device, job)? {
        FoldsOutcome::Done(results) => results,
        FoldsOutcome::Interrupted { fold, step, total } => {
            return Ok(RunOutcome::Interrupted {
                dir: dir.to_path_buf(),
                fold,
                step,
                total,
            })
        }
    };
    let result = report::run_result(cfg, results);
    if folds.len() > 1 {
        report::write_multi_fold_report(dir, cfg, &corpus, &result)?;
    } else {
        report::write_run_result(dir, &result)?;
    }
    Ok(RunOutcome::Complete {
        dir: dir.to_path_buf(),
        result: Box::new(result),
    })
}

/// The utterance vectors of the corpus, built once for every fold of the run, when the prosody
/// branch (`prosody_weight` > 0) or the network's `vec` layer reads them.
fn run_vectors(
    cfg: &TrainConfig,
    spec: &ArchSpec,
    corpus: &Corpus,
) -> Result<Option<ProsodyStore>> {
    if !(cfg.prosody_weight > 0.0 || spec.side_input().is_some()) {
        return Ok(None);
    }
    let opts = CacheOptions {
        dir: cfg
            .feature_cache
            .then(crate::data::cache::default_cache_dir),
        progress: false,
        variants: Vec::new(),
    };
    let set = ProsodyConfig {
        set: cfg.prosody_set,
        ..Default::default()
    };
    ProsodyStore::build(corpus, &set, cfg.spectrogram.stft.sample_rate, &opts).map(Some)
}

/// Every split must have utterances to train on and to report a result on.
fn check_splits(splits: &[crate::data::Split]) -> Result<()> {
    for s in splits {
        for (set, empty) in [
            ("training", s.train.is_empty()),
            ("test", s.test.is_empty()),
        ] {
            if empty {
                return Err(config_err!(
                    "{}: the {set} set is empty, so no result can be reported (with --protocol \
                     random, --test-fraction and --val-fraction must leave utterances for both \
                     training and testing)",
                    s.name()
                ));
            }
        }
    }
    Ok(())
}

fn sweep(
    cfg: &TrainConfig,
    kind: SweepKind,
    dir: &Path,
    control: &RunControl,
) -> Result<RunOutcome> {
    let members = sweep_members(cfg, kind)?;
    println!(
        "sweep {kind:?}: {} networks under protocol {}",
        members.len(),
        cfg.protocol
    );
    let mut rows = Vec::new();
    for (k, m) in members.into_iter().enumerate() {
        let SweepMember {
            name,
            spec,
            paper_accuracy: paper,
            certainty,
        } = m;
        let sub = sweep_member_dir(dir, k, &name);
        let sub_cfg = TrainConfig {
            arch: spec.clone(),
            sweep: None,
            ..cfg.clone()
        };
        println!("\n=== {name}: {spec} → {}", sub.display());
        let outcome = if sub.join(files::CONFIG).exists() {
            resume(&sub, control)?
        } else {
            start(&sub_cfg, &sub, control)?
        };
        match outcome {
            RunOutcome::Complete { result, .. } => rows.push(SweepRow {
                name,
                spec,
                paper_accuracy: paper,
                certainty,
                result: *result,
            }),
            RunOutcome::Interrupted {
                fold, step, total, ..
            } => {
                return Ok(RunOutcome::Interrupted {
                    dir: dir.to_path_buf(),
                    fold: format!("{name} {fold}"),
                    step,
                    total,
                })
            }
            RunOutcome::SweepComplete { .. } => unreachable!("sub-runs are not sweeps"),
        }
    }
    let title = match kind {
        SweepKind::Table4 => "Table IV: the paper's structures, our numbers beside the paper's",
        SweepKind::Shortcuts => {
            "Every placement of input shortcuts (Table IV's lost rows included)"
        }
    };
    let table = dir.join(match kind {
        SweepKind::Table4 => "table4.md",
        SweepKind::Shortcuts => "shortcuts.md",
    });
    let md = sweep_markdown(title, cfg, &rows);
    crate::fsutil::write_atomic(&table, md.as_bytes())?;
    crate::fsutil::write_atomic(&dir.join(files::SUMMARY), md.as_bytes())?;
    Ok(RunOutcome::SweepComplete {
        dir: dir.to_path_buf(),
        rows,
        table,
    })
}
