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

use super::checkpoint::{Checkpoint, ModelInfo, TrainerState};
use super::config::{drop_short_batch, TrainConfig};
use super::run_dir::{append_metrics, describe_line, files, truncate_metrics, Fold, FoldOutcome};
use crate::backends::Backend;
use crate::data::{BatchConfig, Batcher, Corpus, FeatureStore, Normalization};
use crate::evaluation::model_file::{self, ModelFile};
use crate::evaluation::predict::{side_rows, Predictions, SideInput};
use crate::model::{Network, Optimizer};
use crate::prosody::branch::ProsodyBranch;
use crate::prosody::{ProsodyNorm, ProsodyStore};
use crate::{config_err, Error, Result};

mod evaluate;
mod setup;

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
    /// The run's utterance vectors, when the prosody branch or the network's `vec` layer reads
    /// them.
    vectors: Option<&'a ProsodyStore>,
    /// The prosody branch fused with the network's probabilities (`prosody_weight` > 0).
    prosody: Option<Arc<ProsodyBranch>>,
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
            (Some(store), Some(norm)) => Some(SideInput::given(store, norm)),
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
    ) -> Result<crate::backends::XentStats> {
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
}
