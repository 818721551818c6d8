//! Setting a fold up: its input normalisation, the utterance vectors and what is fitted on them
//! (the prosody branch, the side input's normaliser), `model.json`'s parts, and the state resumed
//! from the last checkpoint when there is one.

use std::sync::Arc;

use super::{derive_seed, Trainer};
use crate::backends::Backend;
use crate::data::{
    Corpus, FeatureStore, InputNorm, InputNormMode, Normalization, SpeakerNorm, Split,
};
use crate::evaluation::model_file::{ModelFile, Stats, UtteranceModel};
use crate::evaluation::speaker_prior::fit_prior;
use crate::model::Network;
use crate::prosody::branch::ProsodyBranch;
use crate::prosody::{ProsodyNorm, ProsodyStore};
use crate::training::checkpoint::{Checkpoint, ModelInfo, TrainerState};
use crate::training::config::{batches_per_epoch, TrainConfig};
use crate::training::run_dir::{files, Fold};
use crate::{config_err, Error, Result};

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

impl<'a, B: Backend<Elem = f32>> Trainer<'a, B> {
    /// A new fold, training `net` (built with fresh weights by the caller, see [`weight_seed`]) or,
    /// when `dir/checkpoints/last.safetensors` exists and `resume` is set, the fold as its last
    /// checkpoint left it. `vectors` are the run's utterance vectors, needed when the prosody
    /// branch or the network's `vec` layer reads them (built once per run, see
    /// [`crate::training::run`]). `fold_branch` is the fold's prosody branch when another network
    /// on the same split (an ensemble member) has fitted it; otherwise it is fitted here and left
    /// there for the next.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backend: &'a B,
        cfg: &'a TrainConfig,
        corpus: &'a Corpus,
        store: &'a FeatureStore,
        vectors: Option<&'a ProsodyStore>,
        fold: Fold<'a>,
        mut net: Network<B>,
        resume: bool,
        fold_branch: &mut Option<Arc<ProsodyBranch>>,
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
            Some(vectors.ok_or_else(|| {
                config_err!(
                    "{}: the prosody branch or the vec layer needs the utterance vectors",
                    fold.name
                )
            })?)
        } else {
            None
        };
        // Both pure functions of the corpus and the split: refitted identically on resume, and
        // the branch fitted once for every network trained on the split.
        let prosody = match (&vectors, &fold_branch) {
            (Some(_), Some(fitted)) if cfg.prosody_weight > 0.0 => Some(fitted.clone()),
            (Some(store), None) if cfg.prosody_weight > 0.0 => {
                let fitted = ProsodyBranch::fit(store, corpus, cfg.input_norm, &fold.split.train)?;
                Some(fold_branch.insert(Arc::new(fitted)).clone())
            }
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
                (Some(store), Some(branch)) => Some(UtteranceModel::for_branch(
                    branch,
                    store,
                    cfg.spectrogram.stft.sample_rate,
                    cfg.prosody_weight,
                )),
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
                vectors,
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
}
