//! A whole run: the run directory, the corpus and its features, the splits, the device (chosen once,
//! then one generic [`run_folds`] per backend type), every fold, the report; and sweeps of runs.
//!
//! The run directory's layout is in [`super::run_dir`].

use std::path::{Path, PathBuf};

use super::config::{SweepKind, TrainConfig};
use super::device::{on_device, BackendJob, DeviceMemory};
use super::ensemble::{self, EnsembleResult, Predictions};
use super::prepare::{load_corpus, make_splits};
use super::report::{self, RunResult};
use super::run_dir::{
    files, lay_out_folds, read_json, read_metrics, write_status, Fold, FoldOutcome, FoldResult,
    RunLock,
};
use super::sweep::{sweep_markdown, sweep_members, SweepMember, SweepRow};
use super::trainer::{weight_seed, RunControl, TestProbabilities, Trainer};
use crate::backends::Backend;
use crate::data::{CacheOptions, Corpus, FeatureStore};
use crate::model::{ArchSpec, Network, Plan};
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

/// How the folds of a run ended.
enum FoldsOutcome {
    Done(Vec<FoldResult>),
    Interrupted { fold: String, step: u64, total: u64 },
}

/// Every fold of a run, on the backend the device choice names: the architecture is parsed once
/// per run, each fold's plan and network built once and handed to its [`Trainer`], and each
/// finished fold's report written here.
struct FoldsJob<'a> {
    cfg: &'a TrainConfig,
    spec: ArchSpec,
    corpus: &'a Corpus,
    store: &'a FeatureStore,
    vectors: Option<&'a ProsodyStore>,
    control: &'a RunControl,
    folds: &'a [Fold<'a>],
    why: &'a str,
}

/// How one network's training on a fold ended: its result and, when it was trained now rather
/// than read back, its test probabilities.
enum Trained {
    Done(Box<FoldResult>, Option<TestProbabilities>),
    Interrupted { name: String, step: u64, total: u64 },
}

/// The file an ensemble member keeps its test probabilities in (the ensemble is their average).
const MEMBER_PROBABILITIES: &str = "test-probabilities.json";

impl FoldsJob<'_> {
    /// Train (or resume, or read back the finished result of) one network on `fold` with `cfg`,
    /// in `fold.dir`, and write its fold report there.
    fn train_network<B: Backend<Elem = f32>>(
        &self,
        backend: &B,
        memory: &DeviceMemory,
        fold: &Fold<'_>,
        cfg: &TrainConfig,
        described: &mut bool,
    ) -> Result<Trained> {
        let result_path = fold.dir.join(files::FOLD_RESULT);
        if result_path.exists() && fold.dir.join(files::SUMMARY).exists() {
            return Ok(Trained::Done(read_json(&result_path)?, None));
        }
        let input = cfg.network_input(&self.spec);
        let plan = Plan::new(&self.spec, input, self.corpus.classes.len())?;
        if !*described {
            if let Some(free) = memory.free {
                super::device::check_run_memory(cfg, &plan, free, &memory.name)?;
            }
            println!("device: {} ({})", backend.name(), self.why);
            println!(
                "network `{}`: {} parameters, {:.2} GFLOP per training image\n{}",
                cfg.arch,
                plan.param_count(),
                plan.train_flops() / 1e9,
                plan.summary()
            );
            *described = true;
        }
        println!("{}", fold.split.describe(self.corpus));
        let net = Network::from_plan(backend, plan, cfg.batch, weight_seed(cfg.seed, fold.index))?;
        let name = fold.name.clone();
        let mut trainer = Trainer::new(
            backend,
            cfg,
            self.corpus,
            self.store,
            self.vectors,
            fold.clone(),
            net,
            true,
        )?;
        if trainer.state().step > 0 {
            println!("{name}: resuming at step {}", trainer.state().step);
        }
        match trainer.run(self.control)? {
            FoldOutcome::Done(r) => {
                let metrics = read_metrics(&fold.dir.join(files::METRICS))?;
                report::write_fold_report(&fold.dir, cfg, self.corpus, &r, &metrics)?;
                println!(
                    "{name}: test WA {:.2} % UAR {:.2} % (selected, step {}); last WA {:.2} % UAR {:.2} %",
                    100.0 * r.selected.wa,
                    100.0 * r.selected.uar,
                    r.selected_step,
                    100.0 * r.last.wa,
                    100.0 * r.last.uar
                );
                if let Some(p) = &r.parts {
                    println!(
                        "{name}: last weights' parts: network alone WA {:.2} % UAR {:.2} %, \
                         prosody branch alone WA {:.2} % UAR {:.2} %",
                        100.0 * p.network.wa,
                        100.0 * p.network.uar,
                        100.0 * p.branch.wa,
                        100.0 * p.branch.uar
                    );
                }
                Ok(Trained::Done(r, trainer.test_probabilities().cloned()))
            }
            FoldOutcome::Interrupted { step, total } => {
                Ok(Trained::Interrupted { name, step, total })
            }
        }
    }

    /// The `ensemble` members of `fold`, each trained from its own seed in its own folder of the
    /// fold's (`seed-N`, resumable like a fold), then the fold's result: the ensemble's evaluation
    /// of their averaged test probabilities, beside each member's.
    fn train_ensemble<B: Backend<Elem = f32>>(
        &self,
        backend: &B,
        memory: &DeviceMemory,
        fold: &Fold<'_>,
        described: &mut bool,
    ) -> Result<Trained> {
        let result_path = fold.dir.join(files::FOLD_RESULT);
        if result_path.exists() && fold.dir.join(files::SUMMARY).exists() {
            return Ok(Trained::Done(read_json(&result_path)?, None));
        }
        let cfg = self.cfg;
        let seeds: Vec<u64> = (0..cfg.ensemble as u64).map(|k| cfg.seed + k).collect();
        let mut members = Vec::with_capacity(seeds.len());
        let mut probabilities = Vec::with_capacity(seeds.len());
        for &seed in &seeds {
            let member = Fold {
                name: format!("{} seed {seed}", fold.name),
                dir: fold.dir.join(format!("seed-{seed}")),
                ..fold.clone()
            };
            crate::fsutil::create_dir_all(&member.dir)?;
            let member_cfg = TrainConfig {
                seed,
                ..cfg.clone()
            };
            let saved = member.dir.join(MEMBER_PROBABILITIES);
            match self.train_network(backend, memory, &member, &member_cfg, described)? {
                Trained::Done(r, Some(p)) => {
                    // Before the member's report: a member with a summary has its probabilities.
                    crate::fsutil::write_atomic(
                        &saved,
                        serde_json::to_string(&p)
                            .expect("probabilities serialise")
                            .as_bytes(),
                    )?;
                    members.push(*r);
                    probabilities.push(p);
                }
                Trained::Done(r, None) => {
                    members.push(*r);
                    probabilities.push(read_json(&saved)?);
                }
                interrupted @ Trained::Interrupted { .. } => return Ok(interrupted),
            }
        }
        let classes = self.corpus.classes.len();
        let evaluate = |pick: fn(&TestProbabilities) -> &Predictions| {
            let each: Vec<Predictions> = probabilities.iter().map(|p| pick(p).clone()).collect();
            ensemble::report(&each, self.corpus, classes, None)
        };
        let ensemble = EnsembleResult {
            seeds,
            selected: evaluate(|p| &p.selected)?,
            last: evaluate(|p| &p.last)?,
        };
        let first = &members[0];
        let wall_s: f64 = members.iter().map(|m| m.wall_s).sum();
        let train_images: u64 = members.iter().map(|m| m.train_images).sum();
        let r = FoldResult {
            name: fold.name.clone(),
            test_speakers: first.test_speakers.clone(),
            train_utterances: first.train_utterances,
            val_utterances: first.val_utterances,
            test_utterances: first.test_utterances,
            // Each member selects its own weights (see the members' steps in the report).
            selected_step: first.last_step,
            selected_val: None,
            selected: ensemble.selected.ensemble.clone(),
            last_step: first.last_step,
            last: ensemble.last.ensemble.clone(),
            parts: None,
            device: first.device.clone(),
            wall_s,
            train_images,
            images_per_s: train_images as f64 / wall_s.max(1e-9),
            ensemble: Some(ensemble),
        };
        report::write_ensemble_fold_report(&fold.dir, cfg, self.corpus, &r, &members)?;
        println!(
            "{}: ensemble of {}: test WA {:.2} % UAR {:.2} % (selected); last WA {:.2} % UAR {:.2} %",
            fold.name,
            members.len(),
            100.0 * r.selected.wa,
            100.0 * r.selected.uar,
            100.0 * r.last.wa,
            100.0 * r.last.uar
        );
        Ok(Trained::Done(Box::new(r), None))
    }
}

impl BackendJob for FoldsJob<'_> {
    type Output = FoldsOutcome;

    fn run<B: Backend<Elem = f32>>(
        self,
        backend: &B,
        memory: &DeviceMemory,
    ) -> Result<FoldsOutcome> {
        let mut described = false;
        let mut results = Vec::with_capacity(self.folds.len());
        for fold in self.folds {
            let trained = if self.cfg.ensemble > 1 {
                self.train_ensemble(backend, memory, fold, &mut described)?
            } else {
                self.train_network(backend, memory, fold, self.cfg, &mut described)?
            };
            match trained {
                Trained::Done(r, _) => results.push(*r),
                Trained::Interrupted { name, step, total } => {
                    return Ok(FoldsOutcome::Interrupted {
                        fold: name,
                        step,
                        total,
                    })
                }
            }
        }
        Ok(FoldsOutcome::Done(results))
    }
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
        let sub = dir.join(format!("{:02}-{}", k + 1, sanitize(&name)));
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

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.trim_matches('_').to_string()
}
