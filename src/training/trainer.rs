//! The training loop of one split (a "fold"), generic over the backend: batches, optimizer steps,
//! periodic validation with model selection on the validation set only, checkpoints, Ctrl-C, and
//! at the end the test evaluation of both the selected and the last weights, returned as a
//! [`FoldResult`]. The network comes built from the run level ([`super::run`]), which also writes
//! the reports; the trainer writes only its checkpoints and `metrics.jsonl`.
//!
//! Everything random is a pure function of the seed: initial weights of (seed, fold), the data
//! order of (seed, fold, epoch) and each augmented image of (seed, fold, epoch, position), so a run
//! resumed from a checkpoint (which records only the step and the running statistics) continues
//! exactly as the uninterrupted run would have; on the CPU backend, bit for bit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::checkpoint::{BestRecord, Checkpoint, ModelInfo, TrainerState};
use super::config::{batches_per_epoch, drop_short_batch, Selection, TrainConfig};
use super::crop_eval::{predict_with, EvalMode};
use super::enrollment::fit_prior;
use super::ensemble::Predictions;
use super::inference::{score, side_rows, SideInput};
use super::metrics::EvalReport;
use super::model_file::{self, ModelFile, Stats, UtteranceModel};
use super::prosody_branch::{fuse, ProsodyBranch};
use super::run_dir::{
    append_metrics, describe_line, files, truncate_metrics, Fold, FoldOutcome, FoldResult,
    MetricsLine, Parts,
};
use crate::backends::Backend;
use crate::data::{
    BatchConfig, Batcher, CacheOptions, Corpus, FeatureStore, InputNorm, InputNormMode,
    Normalization, ProsodyNorm, ProsodyStore, SpeakerNorm, Split,
};
use crate::model::{Network, Optimizer};
use crate::{config_err, Error, Result};

/// How a run is driven from outside: the stop flag (Ctrl-C), a planned stop, the progress bar.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Set (by the Ctrl-C handler) to stop after the current step, checkpoint and exit.
    pub stop: Arc<AtomicBool>,
    /// Stop as if interrupted once this many steps are done (`--stop-at`).
    pub stop_at: Option<u64>,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

impl RunControl {
    fn should_stop(&self, step: u64) -> bool {
        self.stop.load(Ordering::SeqCst) || self.stop_at.is_some_and(|s| step >= s)
    }
}

/// A mean training loss above this (in nats) stops the run as diverged. Cross-entropy at chance is
/// ln(classes) (ln 7 ≈ 1.95); a trained network's loss stays within a few nats, and a confidently
/// wrong one within about 100 (near f32's smallest probabilities). Only logits blown up by runaway
/// updates go past 1000, and from there the run does not recover.
pub const DIVERGED_LOSS: f64 = 1e3;

/// The seed of fold `fold`'s initial weights.
pub fn weight_seed(seed: u64, fold: u64) -> u64 {
    derive_seed(seed, 1, fold)
}

/// SplitMix64 of (seed, tag, fold): independent streams for weights and data per fold.
pub fn derive_seed(seed: u64, tag: u64, fold: u64) -> u64 {
    let mut z =
        seed ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ fold.wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn is_better(sel: Selection, val: &EvalReport, best: Option<&BestRecord>) -> bool {
    let Some(b) = best else { return true };
    match sel {
        Selection::Uar => val.uar > b.val_uar || (val.uar == b.val_uar && val.loss < b.val_loss),
        Selection::Wa => val.wa > b.val_wa || (val.wa == b.val_wa && val.loss < b.val_loss),
        Selection::Loss => val.loss < b.val_loss,
    }
}

/// The fold's input normalisation as `cfg.input_norm` asks (see [`Normalization::for_training`]).
fn fold_norm(
    cfg: &TrainConfig,
    corpus: &Corpus,
    store: &FeatureStore,
    split: &Split,
) -> Result<Normalization> {
    let speakers: Vec<&str> = corpus
        .utterances
        .iter()
        .map(|u| u.speaker.as_str())
        .collect();
    Normalization::for_training(
        cfg.input_norm,
        store,
        &cfg.spectrogram.image,
        &speakers,
        &split.train,
    )
}

/// The training utterances' image statistics per (channel, row), all training speakers together:
/// what a speaker-normalised model falls back on for a speaker without statistics.
fn training_rows(cfg: &TrainConfig, store: &FeatureStore, split: &Split) -> Result<Stats<f32>> {
    let mut group = vec!["rest"; store.len()];
    for &i in &split.train {
        group[i] = "train";
    }
    let norm = SpeakerNorm::from_store(store, &cfg.spectrogram.image, &group)?;
    let (mean, std) = norm.stats("train").expect("the training set is not empty");
    Ok(Stats {
        mean: mean.to_vec(),
        std: std.to_vec(),
    })
}

/// The trained network of a fold, with everything needed to continue.
pub struct Trainer<'a, B: Backend<Elem = f32>> {
    backend: &'a B,
    cfg: &'a TrainConfig,
    corpus: &'a Corpus,
    store: &'a FeatureStore,
    fold: Fold<'a>,
    net: Network<B>,
    norm: Normalization,
    state: TrainerState,
    model: ModelInfo,
    device: String,
    /// The utterance vectors, when the prosody branch or the network's `vec` layer reads them.
    vectors: Option<ProsodyStore>,
    /// The prosody branch fused with the network's probabilities (`prosody_weight` > 0).
    prosody: Option<ProsodyBranch>,
    /// The normalisation of the network's side input (an architecture with `vec`), fitted as the
    /// branch fits its own: on the fold's training utterances or per speaker, as `input_norm` says.
    side_norm: Option<ProsodyNorm>,
    /// The test set's class probabilities once the fold is finished (what its results score).
    test_probabilities: Option<TestProbabilities>,
    /// What a prediction needs besides the checkpoint (`model.json`).
    model_file: ModelFile,
}

/// The test utterances' class probabilities (fused with the prosody branch when there is one)
/// from the selected and the last weights: what a fold's test results score, and what an ensemble
/// averages.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestProbabilities {
    pub selected: Predictions,
    pub last: Predictions,
}

impl<'a, B: Backend<Elem = f32>> Trainer<'a, B> {
    /// A new fold, training `net` (built with fresh weights by the caller, see [`weight_seed`]) or,
    /// when `dir/checkpoints/last.safetensors` exists and `resume` is set, the fold as its last
    /// checkpoint left it.
    pub fn new(
        backend: &'a B,
        cfg: &'a TrainConfig,
        corpus: &'a Corpus,
        store: &'a FeatureStore,
        fold: Fold<'a>,
        mut net: Network<B>,
        resume: bool,
    ) -> Result<Self> {
        let (c, h, w) = cfg.spectrogram.input_shape();
        let train_len = fold.split.train.len();
        if train_len == 0 {
            return Err(config_err!("{}: the training set is empty", fold.name));
        }
        let last = fold.dir.join(files::LAST);
        let config_json = serde_json::to_value(cfg).expect("config serialises");
        let (norm, state) = if resume && last.exists() {
            let ck = Checkpoint::load(&last)?;
            // Compared as configurations, not JSON: a checkpoint written before a setting existed
            // lacks its key, which reads as the setting's default.
            let same_config = serde_json::from_value::<TrainConfig>(ck.model.config.clone())
                .is_ok_and(|c| c == *cfg);
            if !same_config || ck.model.classes != corpus.classes {
                return Err(Error::data(
                    &last,
                    "this checkpoint was written with a different configuration or class list than \
                     the run's config.toml; resume the run it belongs to",
                ));
            }
            net.import_params(backend, &ck.params)
                .map_err(|e| Error::data(&last, format!("does not match the network: {e}")))?;
            let opt = ck.optimizer.as_ref().ok_or_else(|| {
                Error::data(
                    &last,
                    "holds weights only (no optimizer state); cannot resume from it",
                )
            })?;
            net.import_optimizer_state(backend, opt)
                .map_err(|e| Error::data(&last, format!("does not match the network: {e}")))?;
            if ck.model.input_norm_mode != cfg.input_norm {
                return Err(Error::data(
                    &last,
                    format!(
                        "was trained with input_norm = \"{}\", the run's config.toml says \"{}\"",
                        ck.model.input_norm_mode, cfg.input_norm
                    ),
                ));
            }
            let norm: Normalization = match cfg.input_norm {
                InputNormMode::Training => ck.model.input_norm.into(),
                // A pure function of the corpus: recomputed, the same bits as before.
                InputNormMode::Speaker => fold_norm(cfg, corpus, store, fold.split)?,
            };
            (norm, ck.state)
        } else {
            let norm = fold_norm(cfg, corpus, store, fold.split)?;
            let bpe = batches_per_epoch(train_len, cfg.batch) as u64;
            let state = TrainerState {
                step: 0,
                total_steps: cfg.total_iterations(train_len),
                batches_per_epoch: bpe,
                data_seed: derive_seed(cfg.seed, 2, fold.index),
                best: None,
                interval_loss_sum: 0.0,
                interval_correct: 0,
                interval_samples: 0,
                elapsed_s: 0.0,
                images: 0,
            };
            (norm, state)
        };
        let model = ModelInfo {
            arch: net.plan().spec.text().to_string(),
            input_shape: (c, h, w),
            classes: corpus.classes.clone(),
            input_norm_mode: norm.mode(),
            input_norm: match &norm {
                Normalization::Global(n) => n.clone(),
                Normalization::PerSpeaker(_) => InputNorm::identity(c),
            },
            config: config_json,
            side_input_len: net.plan().input.side,
        };
        let takes_vector = net.plan().side_input.is_some();
        let vectors = if cfg.prosody_weight > 0.0 || takes_vector {
            let opts = CacheOptions {
                dir: cfg
                    .feature_cache
                    .then(crate::data::cache::default_cache_dir),
                progress: false,
                variants: Vec::new(),
            };
            let store = ProsodyStore::build(
                corpus,
                &crate::features::prosody::ProsodyConfig {
                    set: cfg.prosody_set,
                    ..Default::default()
                },
                cfg.spectrogram.stft.sample_rate,
                &opts,
            )?;
            Some(store)
        } else {
            None
        };
        // Both pure functions of the corpus and the split: refitted identically on resume.
        let prosody = match &vectors {
            Some(store) if cfg.prosody_weight > 0.0 => Some(ProsodyBranch::fit(
                store,
                corpus,
                cfg.input_norm,
                &fold.split.train,
            )?),
            _ => None,
        };
        let side_norm = match &vectors {
            Some(store) if takes_vector => {
                let width = store.config().vector_len();
                if width != net.plan().input.side {
                    return Err(config_err!(
                        "the network's vec layer was laid out for {} values per utterance, but the `{}` utterance vector has {width}",
                        net.plan().input.side,
                        cfg.prosody_set
                    ));
                }
                let speakers: Vec<&str> = corpus
                    .utterances
                    .iter()
                    .map(|u| u.speaker.as_str())
                    .collect();
                Some(ProsodyNorm::for_training(
                    cfg.input_norm,
                    store,
                    &speakers,
                    &fold.split.train,
                )?)
            }
            _ => None,
        };
        let mut model_file = ModelFile::new(
            match cfg.input_norm {
                InputNormMode::Training => None,
                InputNormMode::Speaker => Some(training_rows(cfg, store, fold.split)?),
            },
            match (&vectors, &prosody) {
                (Some(store), Some(branch)) => {
                    Some(branch.saved(store, cfg.spectrogram.stft.sample_rate, cfg.prosody_weight))
                }
                (Some(store), None) if takes_vector => Some(UtteranceModel::for_network_input(
                    store,
                    cfg.spectrogram.stft.sample_rate,
                    cfg.input_norm,
                    &fold.split.train,
                )),
                _ => None,
            },
        );
        if cfg.input_norm == InputNormMode::Speaker {
            let speakers: Vec<&str> = corpus
                .utterances
                .iter()
                .map(|u| u.speaker.as_str())
                .collect();
            model_file.enrollment_prior = Some(fit_prior(
                store,
                &cfg.spectrogram.image,
                vectors.as_ref(),
                &speakers,
                &fold.split.train,
            )?);
        }
        Ok(Trainer {
            model_file,
            vectors,
            prosody,
            side_norm,
            test_probabilities: None,
            device: backend.name(),
            backend,
            cfg,
            corpus,
            store,
            fold,
            net,
            norm,
            state,
            model,
        })
    }

    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The test probabilities the finished fold's results score (`None` before the end).
    pub fn test_probabilities(&self) -> Option<&TestProbabilities> {
        self.test_probabilities.as_ref()
    }

    /// The run's divergence at `step`, with `what` diverged.
    fn diverged(&self, step: u64, what: String) -> Error {
        Error::Diverged {
            step,
            what,
            hint: format!(
                "lower the learning rate (--lr, now {}); the checkpoints written before it are kept",
                self.cfg.optimizer.lr()
            ),
        }
    }

    /// The current weights, refused (as a divergence) when any is not finite.
    fn finite_params(&self) -> Result<Vec<crate::model::NamedTensor<f32>>> {
        let params = self.net.export_params(self.backend)?;
        let bad = super::checkpoint::first_non_finite(
            params.iter().map(|t| (t.name.as_str(), t.data.as_slice())),
        );
        match bad {
            Some((name, i, v)) => Err(self.diverged(
                self.state.step,
                format!("weight `{name}` is {v} at index {i}"),
            )),
            None => Ok(params),
        }
    }

    /// A checkpoint of the current state; never one holding a non-finite tensor (the run has
    /// diverged then, and the previous checkpoint stays as it is).
    fn checkpoint(&self, full: bool) -> Result<Checkpoint> {
        let params = self.finite_params()?;
        let optimizer = if full {
            let opt = self.net.export_optimizer_state(self.backend)?;
            let bad = super::checkpoint::first_non_finite(
                opt.mean_square
                    .iter()
                    .chain(&opt.first_moment)
                    .map(|t| (t.name.as_str(), t.data.as_slice())),
            );
            if let Some((name, i, v)) = bad {
                return Err(self.diverged(
                    self.state.step,
                    format!("optimizer moment of `{name}` is {v} at index {i}"),
                ));
            }
            Some(opt)
        } else {
            None
        };
        Ok(Checkpoint {
            model: self.model.clone(),
            params,
            optimizer,
            state: self.state.clone(),
            written_by: super::checkpoint::version_string(),
        })
    }

    /// The side input source of an architecture with `vec`.
    fn side_input(&self) -> Option<SideInput<'_>> {
        match (&self.vectors, &self.side_norm) {
            (Some(store), Some(norm)) => Some(SideInput { store, norm }),
            _ => None,
        }
    }

    /// One training step on soft targets: label smoothing, then mixup of inputs and targets with
    /// one λ ~ Beta(α, α) and a random partner per sample, both drawn from a generator seeded by
    /// (data seed, step), so a resumed run mixes as the uninterrupted one.
    fn soft_target_step(
        &mut self,
        batch: &mut crate::data::Batch,
        optimizer: Optimizer,
    ) -> Result<crate::backends::geometry::XentStats> {
        use rand::SeedableRng;
        let classes = self.net.classes();
        let n = batch.labels.len();
        let mut side = side_rows(self.side_input(), &batch.utterances);
        let mut targets = crate::data::mixup::smoothed_targets(
            &batch.labels,
            classes,
            self.cfg.label_smoothing as f32,
        )?;
        if self.cfg.mixup_alpha > 0.0 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(
                self.state.data_seed,
                3,
                self.state.step,
            ));
            let plan = crate::data::mixup::MixPlan::draw(n, self.cfg.mixup_alpha as f32, &mut rng)?;
            let per = batch.inputs.data.len() / n;
            plan.mix(&mut batch.inputs.data, per);
            plan.mix(&mut targets, classes);
            // The side input mixes with the same partners and λ as its image.
            if let Some(side) = side.as_mut() {
                plan.mix(side, self.net.plan().input.side);
            }
        }
        self.net
            .forward_with_side(self.backend, &batch.inputs.data, side.as_deref(), n)?;
        let stats = self.net.loss_soft(self.backend, &targets, None)?;
        self.net.backward(self.backend)?;
        self.net.apply_update(self.backend, optimizer)?;
        Ok(stats)
    }

    /// The network's class probabilities on `indices`, evaluated as `eval_time` says.
    fn network_predictions(&mut self, indices: &[usize]) -> Result<Predictions> {
        let mode = EvalMode {
            time: self.cfg.eval_time,
            hop: self.cfg.eval_hop,
            batch: self.cfg.batch,
        };
        let side = match (&self.vectors, &self.side_norm) {
            (Some(store), Some(norm)) => Some(SideInput { store, norm }),
            _ => None,
        };
        predict_with(
            self.backend,
            &mut self.net,
            self.store,
            &self.cfg.spectrogram.image,
            &self.norm,
            indices,
            &mode,
            side,
        )
    }

    /// The network's probabilities fused with the prosody branch's, when there is one.
    fn fused(&self, network: Predictions, indices: &[usize]) -> Result<Predictions> {
        match (&self.vectors, &self.prosody) {
            (Some(store), Some(branch)) => fuse(
                network,
                branch.predict(store, indices),
                self.cfg.prosody_weight,
            ),
            _ => Ok(network),
        }
    }

    /// Class probabilities on `indices`, evaluated as `eval_time` says, fused with the prosody
    /// branch when there is one.
    fn predictions_on(&mut self, indices: &[usize]) -> Result<Predictions> {
        let p = self.network_predictions(indices)?;
        self.fused(p, indices)
    }

    fn score(&self, p: Predictions) -> EvalReport {
        score(self.net.classes(), p, self.corpus, None)
    }

    /// Evaluate on `indices` as [`Trainer::predictions_on`] predicts.
    fn evaluate_on(&mut self, indices: &[usize]) -> Result<EvalReport> {
        let p = self.predictions_on(indices)?;
        Ok(self.score(p))
    }

    /// `test-predictions.json`: the test utterances' class probabilities from the network's last
    /// and selected weights and, with a prosody branch, from the branch alone, so that fusion
    /// weights, ensembles and the branch's ablation can be scored afterwards without retraining;
    /// and what the fold's results score (`selected`, `last`: fused when there is a branch).
    /// Returns the branch's probabilities.
    fn write_test_predictions(
        &self,
        indices: &[usize],
        network: &Predictions,
        network_selected: &Predictions,
        scored: &TestProbabilities,
    ) -> Result<Option<Predictions>> {
        let prosody = match (&self.vectors, &self.prosody) {
            (Some(store), Some(branch)) => Some(branch.predict(store, indices)),
            _ => None,
        };
        let ids: Vec<&str> = indices
            .iter()
            .map(|&i| self.corpus.utterances[i].id.as_str())
            .collect();
        let labels: Vec<usize> = indices
            .iter()
            .map(|&i| self.corpus.utterances[i].label)
            .collect();
        let rows =
            |p: &Predictions| -> Vec<Vec<f64>> { p.iter().map(|(_, v)| v.clone()).collect() };
        let json = serde_json::json!({
            "classes": self.corpus.classes,
            "ids": ids,
            "labels": labels,
            "network_last": rows(network),
            "network_selected": rows(network_selected),
            "last": rows(&scored.last),
            "selected": rows(&scored.selected),
            "prosody": prosody.as_ref().map(rows),
            "prosody_weight": self.cfg.prosody_weight,
            "prosody_l2": self.prosody.as_ref().map(|b| b.l2),
        });
        crate::fsutil::write_atomic(
            &self.fold.dir.join("test-predictions.json"),
            serde_json::to_string(&json)
                .expect("predictions serialise")
                .as_bytes(),
        )?;
        Ok(prosody)
    }

    /// Train to the end (or until stopped), then evaluate the test set.
    pub fn run(&mut self, control: &RunControl) -> Result<FoldOutcome> {
        let dir = self.fold.dir.clone();
        crate::fsutil::create_dir_all(&dir.join("checkpoints"))?;
        self.model_file.save(&dir.join(model_file::FILE))?;
        let metrics_path = dir.join(files::METRICS);
        truncate_metrics(&metrics_path, self.state.step)?;
        let split = self.fold.split;
        let augment = (self.cfg.augment != crate::data::AugmentConfig::none())
            .then(|| self.cfg.augment.clone());
        let train_batcher = Batcher::new(
            self.store,
            &self.cfg.spectrogram.image,
            &split.train,
            BatchConfig {
                batch_size: self.cfg.batch,
                seed: self.state.data_seed,
                shuffle: true,
                augment,
                balanced: self.cfg.balanced,
                drop_last: drop_short_batch(split.train.len(), self.cfg.batch),
            },
            self.norm.clone(),
        )?;
        let total = self.state.total_steps;
        let optimizer = self.cfg.optimizer.for_run(total);

        let bar = if control.progress {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {bar:25} {pos}/{len} it  {per_sec}  ETA {eta}  {msg}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(self.fold.name.clone());
        bar.set_position(self.state.step);
        bar.reset_eta();

        let mut order: Option<(u64, Vec<usize>)> = None;
        let mut segment_start = Instant::now();
        let mut segment_base = self.state.elapsed_s;
        while self.state.step < total {
            if control.should_stop(self.state.step) {
                self.state.elapsed_s = segment_base + segment_start.elapsed().as_secs_f64();
                self.checkpoint(true)?.save(&dir.join(files::LAST))?;
                bar.abandon();
                return Ok(FoldOutcome::Interrupted {
                    step: self.state.step,
                    total,
                });
            }
            let (epoch, index) = (self.state.epoch(), self.state.batch_in_epoch());
            let epoch_order = match order.take() {
                Some((e, o)) if e == epoch => o,
                _ => train_batcher.epoch_order(epoch),
            };
            let batch = train_batcher.batch_at(epoch, &epoch_order, index as usize);
            order = Some((epoch, epoch_order));
            let Some(mut batch) = batch else {
                return Err(config_err!(
                    "{}: epoch {epoch} has no batch {index} ({} training utterances, batch {})",
                    self.fold.name,
                    split.train.len(),
                    self.cfg.batch
                ));
            };
            let stats = if self.cfg.mixup_alpha > 0.0 || self.cfg.label_smoothing > 0.0 {
                self.soft_target_step(&mut batch, optimizer)?
            } else {
                let side = side_rows(self.side_input(), &batch.utterances);
                self.net.train_step_with_side(
                    self.backend,
                    &batch.inputs.data,
                    side.as_deref(),
                    &batch.labels,
                    optimizer,
                )?
            };
            if !stats.mean_loss.is_finite() || stats.mean_loss > DIVERGED_LOSS {
                let what = format!("loss {}", stats.mean_loss);
                return Err(self.diverged(self.state.step + 1, what));
            }
            let n = batch.labels.len() as u64;
            self.state.step += 1;
            self.state.images += n;
            self.state.interval_loss_sum += stats.mean_loss * n as f64;
            self.state.interval_correct += stats.correct as u64;
            self.state.interval_samples += n;
            bar.set_position(self.state.step);
            bar.set_message(format!(
                "loss {:.3} acc {:.0}%",
                stats.mean_loss,
                100.0 * stats.correct as f64 / n as f64
            ));
            if self.state.step % self.cfg.eval_every == 0 || self.state.step == total {
                // Before validating: a diverged network must not be evaluated, selected or saved.
                self.finite_params()?;
                self.state.elapsed_s = segment_base + segment_start.elapsed().as_secs_f64();
                let line = self.validate()?;
                append_metrics(&metrics_path, &line)?;
                bar.suspend(|| println!("{}", describe_line(&self.fold.name, &line, total)));
                // Checkpoint after the metrics line, so a checkpoint never lacks its evaluations.
                self.state.elapsed_s = segment_base + segment_start.elapsed().as_secs_f64();
                self.checkpoint(true)?.save(&dir.join(files::LAST))?;
                segment_base = self.state.elapsed_s;
                segment_start = Instant::now();
            }
        }
        bar.finish_and_clear();
        self.finish().map(|r| FoldOutcome::Done(Box::new(r)))
    }

    /// Validation evaluation: a metrics line, and the selected checkpoint updated when it improves.
    fn validate(&mut self) -> Result<MetricsLine> {
        let st = &mut self.state;
        let samples = st.interval_samples.max(1) as f64;
        let mut line = MetricsLine {
            step: st.step,
            epoch: st.step as f64 / st.batches_per_epoch.max(1) as f64,
            lr: self.cfg.optimizer.lr_at(st.step, st.total_steps),
            train_loss: st.interval_loss_sum / samples,
            train_acc: st.interval_correct as f64 / samples,
            val_loss: None,
            val_wa: None,
            val_uar: None,
            val_f1: None,
            elapsed_s: st.elapsed_s,
            images_per_s: st.images as f64 / st.elapsed_s.max(1e-9),
        };
        st.interval_loss_sum = 0.0;
        st.interval_correct = 0;
        st.interval_samples = 0;
        if !self.fold.split.val.is_empty() {
            let val = self.evaluate_on(&self.fold.split.val.clone())?;
            line.val_loss = Some(val.loss);
            line.val_wa = Some(val.wa);
            line.val_uar = Some(val.uar);
            line.val_f1 = Some(val.macro_f1);
            if is_better(self.cfg.select_by, &val, self.state.best.as_ref()) {
                self.state.best = Some(BestRecord {
                    step: self.state.step,
                    val_wa: val.wa,
                    val_uar: val.uar,
                    val_loss: val.loss,
                });
                self.checkpoint(false)?
                    .save(&self.fold.dir.join(files::BEST))?;
            }
        }
        Ok(line)
    }

    /// Test evaluation of the last and the selected weights.
    fn finish(&mut self) -> Result<FoldResult> {
        let dir = self.fold.dir.clone();
        let split = self.fold.split;
        let network_last = self.network_predictions(&split.test)?;
        let last_p = self.fused(network_last.clone(), &split.test)?;
        let last = self.score(last_p.clone());
        let (selected_step, network_selected) = match self.state.best.clone() {
            Some(b) if b.step != self.state.step => {
                let best_path = dir.join(files::BEST);
                let ck = Checkpoint::load(&best_path)?;
                let last_params = self.net.export_params(self.backend)?;
                self.net.import_params(self.backend, &ck.params)?;
                let p = self.network_predictions(&split.test)?;
                self.net.import_params(self.backend, &last_params)?;
                (b.step, p)
            }
            Some(b) => (b.step, network_last.clone()),
            None => {
                // No validation set: the last weights are the selected ones.
                self.checkpoint(false)?.save(&dir.join(files::BEST))?;
                (self.state.step, network_last.clone())
            }
        };
        let selected_p = self.fused(network_selected.clone(), &split.test)?;
        let selected = self.score(selected_p.clone());
        let scored = TestProbabilities {
            selected: selected_p,
            last: last_p,
        };
        let prosody_p =
            self.write_test_predictions(&split.test, &network_last, &network_selected, &scored)?;
        let parts = prosody_p.map(|branch| Parts {
            network: self.score(network_last.clone()),
            branch: self.score(branch),
            prosody_weight: self.cfg.prosody_weight,
        });
        self.test_probabilities = Some(scored);
        let test_speakers = {
            let mut s: Vec<String> = split
                .test
                .iter()
                .map(|&i| self.corpus.utterances[i].speaker.clone())
                .collect();
            s.sort();
            s.dedup();
            s
        };
        let result = FoldResult {
            name: self.fold.name.clone(),
            test_speakers,
            train_utterances: split.train.len(),
            val_utterances: split.val.len(),
            test_utterances: split.test.len(),
            selected_step,
            selected_val: self.state.best.clone(),
            selected,
            last_step: self.state.step,
            last,
            device: self.device.clone(),
            wall_s: self.state.elapsed_s,
            train_images: self.state.images,
            images_per_s: self.state.images as f64 / self.state.elapsed_s.max(1e-9),
            ensemble: None,
            parts,
        };
        Ok(result)
    }
}
