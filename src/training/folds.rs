//! The folds of a run on the backend the device choice names: each fold's network (or ensemble of
//! networks from several seeds) trained, resumed or read back when finished, and each finished
//! fold's report written.

use std::sync::Arc;

use super::config::TrainConfig;
use super::device::{BackendJob, DeviceMemory};
use super::report;
use super::run_dir::{
    files, member_dir, read_json, read_metrics, Fold, FoldOutcome, FoldResult, Parts,
    TestPredictions,
};
use super::trainer::{weight_seed, RunControl, TestProbabilities, Trainer};
use crate::backends::Backend;
use crate::data::{Corpus, FeatureStore};
use crate::evaluation::ensemble::{self, EnsembleResult};
use crate::evaluation::predict::Predictions;
use crate::model::{ArchSpec, Network, Plan};
use crate::prosody::branch::ProsodyBranch;
use crate::prosody::ProsodyStore;
use crate::{config_err, Result};

/// How the folds of a run ended.
pub(super) enum FoldsOutcome {
    Done(Vec<FoldResult>),
    Interrupted { fold: String, step: u64, total: u64 },
}

/// Every fold of a run, on the backend the device choice names: the architecture is parsed once
/// per run, each fold's plan and network built once and handed to its [`Trainer`], and each
/// finished fold's report written here.
pub(super) struct FoldsJob<'a> {
    pub(super) cfg: &'a TrainConfig,
    pub(super) spec: ArchSpec,
    pub(super) corpus: &'a Corpus,
    pub(super) store: &'a FeatureStore,
    pub(super) vectors: Option<&'a ProsodyStore>,
    pub(super) control: &'a RunControl,
    pub(super) folds: &'a [Fold<'a>],
    pub(super) why: &'a str,
}

/// How one network's training on a fold ended: its result and, when it was trained now rather
/// than read back, its test probabilities.
enum Trained {
    Done(Box<FoldResult>, Option<TestProbabilities>),
    Interrupted { name: String, step: u64, total: u64 },
}

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
        fold_branch: &mut Option<Arc<ProsodyBranch>>,
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
            fold_branch,
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
        // The members train on one split, so the first to need the prosody branch fits it for all.
        let mut fold_branch = None;
        for &seed in &seeds {
            let member = Fold {
                name: format!("{} seed {seed}", fold.name),
                dir: member_dir(&fold.dir, seed),
                ..fold.clone()
            };
            crate::fsutil::create_dir_all(&member.dir)?;
            let member_cfg = TrainConfig {
                seed,
                ..cfg.clone()
            };
            let saved = member.dir.join(files::MEMBER_PROBABILITIES);
            match self.train_network(
                backend,
                memory,
                &member,
                &member_cfg,
                described,
                &mut fold_branch,
            )? {
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
        // The ensemble's parts, from the members' `test-predictions.json` (rows in the order of
        // their test probabilities): the networks averaged, and the branch (one fit per fold, the
        // same in every member).
        let mut networks = Vec::with_capacity(probabilities.len());
        let mut branch = None;
        for (&seed, p) in ensemble.seeds.iter().zip(&probabilities) {
            let dir = member_dir(&fold.dir, seed);
            let saved = TestPredictions::load(&dir)?;
            let in_order = saved.ids.len() == p.last.len()
                && p.last
                    .iter()
                    .zip(&saved.ids)
                    .all(|((u, _), id)| self.corpus.utterances[*u].id == *id);
            if !in_order {
                return Err(config_err!(
                    "{}: its test utterances are not those of the member's probabilities",
                    dir.join(files::TEST_PREDICTIONS).display()
                ));
            }
            let rows = |rows: Vec<Vec<f64>>| -> Predictions {
                p.last.iter().map(|(u, _)| *u).zip(rows).collect()
            };
            networks.push(rows(saved.network_last));
            branch = branch.or(saved.prosody.map(rows));
        }
        let parts = match branch {
            Some(branch) => Some(Parts {
                network: ensemble::evaluate_predictions(
                    &ensemble::average(&networks, None)?,
                    self.corpus,
                    classes,
                    None,
                ),
                branch: ensemble::evaluate_predictions(&branch, self.corpus, classes, None),
                prosody_weight: cfg.prosody_weight,
            }),
            None => None,
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
            parts,
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
                self.train_network(backend, memory, fold, self.cfg, &mut described, &mut None)?
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
