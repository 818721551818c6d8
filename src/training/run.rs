//! A whole run: the run directory, the corpus and its features, the splits, the device (chosen once,
//! then one generic [`run_folds`] per backend type), every fold, the report; and sweeps of runs.
//!
//! A run directory (see the README's "Run directory" section):
//! ```text
//! config.toml   the effective configuration (written first)
//! STATUS        running / interrupted (with the resume command) / failed (with the error) / complete
//! split.json, metrics.jsonl, checkpoints/{last,best}.safetensors, accuracy.svg, loss.svg,
//! confusion.svg, confusion-last.svg, result.json, summary.md   (single split)
//! fold-NN-SPEAKER/ with the same files per fold, and the pooled report at the top (LOSO)
//! ```

use std::path::{Path, PathBuf};

use super::config::{DeviceChoice, ProtocolChoice, SweepKind, TrainConfig};
use super::report::{self, RunResult, SweepRow};
use super::trainer::{files, write_status, Fold, FoldOutcome, FoldResult, RunControl, Trainer};
use crate::backends::cpu::CpuBackend;
use crate::backends::Backend;
use crate::data::split::{self, SplitOptions};
use crate::data::{CacheOptions, Corpus, CorpusSpec, FeatureStore, LoadOptions, Split};
use crate::model::{ArchSpec, InputShape, Plan};
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

/// Start a new run in `out` (which must not exist or be empty).
pub fn start(cfg: &TrainConfig, out: &Path, control: &RunControl) -> Result<RunOutcome> {
    cfg.validate()?;
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
    guarded(dir, || execute(&cfg, dir, control))
}

fn prepare_new_dir(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
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
            let _ = write_status(
                dir,
                &format!("failed (no results; the report is incomplete): {e}"),
            );
            Err(e)
        }
    }
}

fn execute(cfg: &TrainConfig, dir: &Path, control: &RunControl) -> Result<RunOutcome> {
    if let Some(kind) = cfg.sweep {
        return sweep(cfg, kind, dir, control);
    }
    if dir.join(files::SUMMARY).exists() && dir.join(files::RESULT).exists() {
        let result: RunResult = report::read_json(&dir.join(files::RESULT))?;
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
    let splits = make_splits(cfg, &corpus)?;
    let folds = lay_out_folds(dir, &corpus, &splits)?;
    let ctx = Context {
        cfg,
        corpus: &corpus,
        store: &store,
        control,
    };
    let results = match device {
        DeviceChoice::Cpu | DeviceChoice::Auto => {
            let host = super::device::host_available_memory();
            run_folds(
                &CpuBackend::<f32>::new(),
                host,
                "host memory",
                &why,
                &ctx,
                &folds,
            )?
        }
        DeviceChoice::Emu => {
            use crate::backends::emu::{EmuDevice, ThreadOrder};
            use crate::backends::kernel_backend::KernelBackend;
            let backend = KernelBackend::new(EmuDevice::new(ThreadOrder::Forward)?)?;
            let host = super::device::host_available_memory();
            run_folds(&backend, host, "host memory", &why, &ctx, &folds)?
        }
        DeviceChoice::Cuda => {
            use crate::backends::cuda::CudaDevice;
            use crate::backends::kernel_backend::KernelBackend;
            let dev = CudaDevice::new(0)?;
            let free = dev.context().mem_get_info().ok().map(|(f, _)| f as u64);
            let gpu = format!("{} GPU memory", dev.info().name);
            let backend = KernelBackend::new(dev)?;
            run_folds(&backend, free, &gpu, &why, &ctx, &folds)?
        }
    };
    let results = match results {
        Ok(r) => r,
        Err(interrupted) => return Ok(interrupted.with_dir(dir)),
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

impl RunOutcome {
    fn with_dir(self, dir: &Path) -> Self {
        match self {
            RunOutcome::Interrupted {
                fold, step, total, ..
            } => RunOutcome::Interrupted {
                dir: dir.to_path_buf(),
                fold,
                step,
                total,
            },
            other => other,
        }
    }
}

/// Load the configured corpus, checking first that its folder or file is there and holds audio.
pub fn load_corpus(cfg: &TrainConfig) -> Result<Corpus> {
    let spec: CorpusSpec = cfg.corpus.parse()?;
    check_data_location(&spec)?;
    spec.load(&LoadOptions {
        skip_bad: cfg.skip_bad,
    })
}

/// One clear message for a data folder (or manifest) that is missing or holds no audio.
pub fn check_data_location(spec: &CorpusSpec) -> Result<()> {
    let (dir, kind, example) = match spec {
        CorpusSpec::Synthetic(_) => return Ok(()),
        CorpusSpec::Emodb(d) => (
            d,
            "EMO-DB",
            "03a01Wa.wav (speaker, text, emotion letter, version)",
        ),
        CorpusSpec::Ravdess { dir, .. } => (dir, "RAVDESS", "03-01-05-01-02-01-12.wav"),
        CorpusSpec::Folders(d) => (d, "folder-per-class", "anger/x.wav, sadness/y.wav"),
        CorpusSpec::Manifest(file) => {
            if !file.is_file() {
                return Err(Error::data(
                    file,
                    "the manifest file does not exist: give a CSV with a path,label,speaker header",
                ));
            }
            return Ok(());
        }
    };
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            format!(
                "the data folder does not exist: point --data at the folder holding the {kind} .wav files"
            ),
        ));
    }
    if crate::data::wav_files(dir)?.is_empty() {
        return Err(Error::data(
            dir,
            format!(
                "the data folder holds no .wav files (searched recursively): expected {kind} files such as {example}"
            ),
        ));
    }
    Ok(())
}

/// The splits of the configured protocol (one for random / speakers, one per speaker for LOSO).
pub fn make_splits(cfg: &TrainConfig, corpus: &Corpus) -> Result<Vec<Split>> {
    let opts = SplitOptions {
        val_fraction: cfg.val_fraction,
        val_speakers: cfg.val_speakers,
        seed: cfg.seed,
    };
    Ok(match cfg.protocol_choice()? {
        ProtocolChoice::Random => vec![split::random(corpus, cfg.test_fraction, &opts)?],
        ProtocolChoice::Speakers(s) => vec![split::held_out_speakers(corpus, &s, &opts)?],
        ProtocolChoice::Loso => split::leave_one_speaker_out(corpus, &opts)?,
    })
}

/// Fold folders (the run directory itself for a single split) with their split files. An existing
/// split file (a resumed run) must be the same split.
fn lay_out_folds<'s>(dir: &Path, corpus: &Corpus, splits: &'s [Split]) -> Result<Vec<Fold<'s>>> {
    splits
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let fold_dir = if splits.len() == 1 {
                dir.to_path_buf()
            } else {
                let speaker = match &s.protocol {
                    split::Protocol::LeaveOneSpeakerOut { test_speaker, .. } => test_speaker.clone(),
                    _ => format!("{k}"),
                };
                dir.join(format!("fold-{:02}-{speaker}", k + 1))
            };
            crate::fsutil::create_dir_all(&fold_dir)?;
            let path = fold_dir.join(files::SPLIT);
            if path.exists() {
                let saved = Split::load(corpus, &path)?;
                if saved.train != s.train || saved.val != s.val || saved.test != s.test {
                    return Err(Error::data(
                        &path,
                        "differs from the split the configuration gives now (has the corpus changed?)",
                    ));
                }
            } else {
                s.save(corpus, &path)?;
            }
            Ok(Fold {
                name: s.name(),
                index: k as u64,
                split: s,
                dir: fold_dir,
            })
        })
        .collect()
}

struct Context<'a> {
    cfg: &'a TrainConfig,
    corpus: &'a Corpus,
    store: &'a FeatureStore,
    control: &'a RunControl,
}

/// Train every fold on backend `B`: the device is chosen once, then everything is generic.
/// `Ok(Err(outcome))` is an interrupted run.
fn run_folds<B: Backend<Elem = f32>>(
    backend: &B,
    free_memory: Option<u64>,
    memory_name: &str,
    why: &str,
    ctx: &Context<'_>,
    folds: &[Fold<'_>],
) -> Result<std::result::Result<Vec<FoldResult>, RunOutcome>> {
    let cfg = ctx.cfg;
    let spec = ArchSpec::from_name_or_spec(&cfg.arch)?;
    let (c, h, w) = cfg.spectrogram.input_shape();
    let plan = Plan::new(&spec, InputShape::new(c, h, w), ctx.corpus.classes.len())?;
    if let Some(free) = free_memory {
        super::device::check_memory(&plan, cfg.batch, free, memory_name)?;
    }
    println!("device: {} ({why})", backend.name());
    println!(
        "network `{}`: {} parameters, {:.2} GFLOP per training image\n{}",
        cfg.arch,
        plan.param_count(),
        plan.train_flops() / 1e9,
        plan.summary()
    );
    let mut results = Vec::with_capacity(folds.len());
    for fold in folds {
        let result_path = fold.dir.join(files::FOLD_RESULT);
        if result_path.exists() && fold.dir.join(files::SUMMARY).exists() {
            results.push(report::read_json(&result_path)?);
            continue;
        }
        println!("{}", fold.split.describe(ctx.corpus));
        let fold = Fold {
            name: fold.name.clone(),
            index: fold.index,
            split: fold.split,
            dir: fold.dir.clone(),
        };
        let name = fold.name.clone();
        let mut trainer = Trainer::new(backend, cfg, ctx.corpus, ctx.store, fold, true)?;
        if trainer.state().step > 0 {
            println!("{name}: resuming at step {}", trainer.state().step);
        }
        match trainer.run(ctx.control)? {
            FoldOutcome::Done(r) => {
                println!(
                    "{name}: test WA {:.2} % UAR {:.2} % (selected, step {}); last WA {:.2} % UAR {:.2} %",
                    100.0 * r.selected.wa,
                    100.0 * r.selected.uar,
                    r.selected_step,
                    100.0 * r.last.wa,
                    100.0 * r.last.uar
                );
                results.push(*r);
            }
            FoldOutcome::Interrupted { step, total } => {
                return Ok(Err(RunOutcome::Interrupted {
                    dir: PathBuf::new(),
                    fold: name,
                    step,
                    total,
                }))
            }
        }
    }
    Ok(Ok(results))
}

/// One network of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepMember {
    pub name: String,
    pub spec: String,
    /// The paper's accuracy for this structure, when it is one of Table IV's rows.
    pub paper_accuracy: Option<f64>,
    pub certainty: Option<String>,
}

/// The networks a sweep trains.
pub fn sweep_members(cfg: &TrainConfig, kind: SweepKind) -> Result<Vec<SweepMember>> {
    Ok(match kind {
        SweepKind::Table4 => crate::model::table4()
            .map(|p| SweepMember {
                name: p.name.to_string(),
                spec: p.spec.to_string(),
                paper_accuracy: Some(p.paper_accuracy),
                certainty: Some(p.certainty.as_str().to_string()),
            })
            .collect(),
        SweepKind::Shortcuts => {
            let base = ArchSpec::from_name_or_spec(&cfg.arch)?;
            crate::model::input_shortcut_sweep(&base)
                .into_iter()
                .map(|(into, spec)| {
                    let text = spec.to_string();
                    let paper = crate::model::table4().find(|p| p.spec == text);
                    let name = if into.is_empty() {
                        "no shortcut".to_string()
                    } else {
                        format!(
                            "input → pools {}",
                            into.iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    };
                    SweepMember {
                        name: paper.map_or(name.clone(), |p| format!("{name} ({})", p.name)),
                        spec: text,
                        paper_accuracy: paper.map(|p| p.paper_accuracy),
                        certainty: paper.map(|p| p.certainty.as_str().to_string()),
                    }
                })
                .collect()
        }
    })
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
    let md = report::sweep_markdown(title, cfg, &rows);
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
