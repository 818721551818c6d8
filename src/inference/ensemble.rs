//! A fold's model as its report scored it: one trained network, or the members of an
//! `--ensemble K` fold (its `seed-N/` folders), each predicting as a [`TrainedModel`] does, their
//! probabilities averaged per utterance the way the trainer averaged them.

use std::path::{Path, PathBuf};

use super::model_dir::{ModelPredictions, SpeakerSource, TrainedModel, Weights};
use crate::backends::Backend;
use crate::data::{Corpus, FeatureStore};
use crate::evaluation::ensemble::average;
use crate::model::Network;
use crate::prosody::ProsodyStore;
use crate::training::config::DeviceChoice;
use crate::training::device::{on_device, resolve, BackendJob, DeviceMemory};
use crate::training::run_dir::{files, member_dirs};
use crate::{Error, Result};

/// The models whose probabilities are averaged: one for a plain fold, K for an ensemble fold.
pub struct Ensemble {
    /// The folder (or checkpoint file) the ensemble was loaded from.
    pub path: PathBuf,
    /// In seed order; never empty.
    pub members: Vec<TrainedModel>,
}

impl From<TrainedModel> for Ensemble {
    fn from(model: TrainedModel) -> Self {
        Ensemble {
            path: model.path.clone(),
            members: vec![model],
        }
    }
}

/// The member folders of `dir` when it is an ensemble fold (no checkpoint of its own, members with
/// checkpoints), in seed order; empty otherwise.
fn ensemble_members(dir: &Path) -> Vec<PathBuf> {
    let own = [files::BEST, files::LAST]
        .iter()
        .any(|f| dir.join(f).is_file());
    if own || !dir.is_dir() {
        return Vec::new();
    }
    member_dirs(dir, |p| p.join("checkpoints").is_dir())
}

/// Whether `dir` holds a model [`Ensemble::load`] reads: its own checkpoints, or ensemble members.
pub fn holds_model(dir: &Path) -> bool {
    dir.join("checkpoints").is_dir() || !ensemble_members(dir).is_empty()
}

impl Ensemble {
    /// The model `model` names (see [`TrainedModel::load`]), or, for an ensemble fold's folder, all
    /// of its members with the weights `which` names. The members must read the same features and
    /// know the same classes.
    pub fn load(model: &Path, which: Weights) -> Result<Self> {
        let dirs = ensemble_members(model);
        if dirs.is_empty() {
            return TrainedModel::load(model, which).map(Ensemble::from);
        }
        let members = dirs
            .iter()
            .map(|d| TrainedModel::load(d, which))
            .collect::<Result<Vec<_>>>()?;
        let first = &members[0];
        // Fewer members than the run trained: its training stopped part-way. (More are fine: seed
        // runs laid out as one ensemble by scripts/ensemble-of-runs.sh each say 1.)
        if members.len() < first.config.ensemble {
            return Err(Error::data(
                model,
                format!(
                    "holds {} trained members of an ensemble of {}: finish its training \
                     (rescnn-train --resume) before using it",
                    members.len(),
                    first.config.ensemble
                ),
            ));
        }
        if let Some(other) = members
            .iter()
            .find(|m| !m.reads_like(first) || m.input_norm_mode() != first.input_norm_mode())
        {
            return Err(Error::data(
                &other.path,
                format!(
                    "its feature settings, input normalisation or classes differ from those of \
                     {}: the members of one ensemble must read the same inputs",
                    first.path.display()
                ),
            ));
        }
        Ok(Ensemble {
            path: model.to_path_buf(),
            members,
        })
    }

    /// The first member, whose features, vectors and classes every member shares.
    pub fn first(&self) -> &TrainedModel {
        &self.members[0]
    }

    pub fn classes(&self) -> &[String] {
        self.first().classes()
    }

    /// What the members' folders lack (see [`TrainedModel::missing`]), one line each.
    pub fn missing(&self) -> impl Iterator<Item = &String> {
        self.members.iter().flat_map(|m| &m.missing)
    }

    /// Every member's network with its weights on `backend`, each able to run its evaluation
    /// batch (see [`TrainedModel::network`]).
    pub fn networks<B: Backend<Elem = f32>>(&self, backend: &B) -> Result<Vec<Network<B>>> {
        (self.members.iter())
            .map(|m| m.network(backend, m.eval_mode().batch))
            .collect()
    }

    /// Class probabilities of `indices` of `corpus` on the device `device` resolves to: see
    /// [`Ensemble::predict_on`].
    pub fn predict(
        &self,
        device: DeviceChoice,
        corpus: &Corpus,
        store: &FeatureStore,
        vectors: Option<&ProsodyStore>,
        source: SpeakerSource<'_>,
        indices: &[usize],
    ) -> Result<ModelPredictions> {
        struct Job<'e, 'b> {
            ensemble: &'e Ensemble,
            corpus: &'b Corpus,
            store: &'b FeatureStore,
            vectors: Option<&'b ProsodyStore>,
            source: SpeakerSource<'b>,
            indices: &'b [usize],
        }
        impl BackendJob for Job<'_, '_> {
            type Output = ModelPredictions;
            fn run<B: Backend<Elem = f32>>(
                self,
                backend: &B,
                _memory: &DeviceMemory,
            ) -> Result<Self::Output> {
                let mut nets = self.ensemble.networks(backend)?;
                let e = self.ensemble;
                e.predict_on(
                    backend,
                    &mut nets,
                    self.corpus,
                    self.store,
                    self.vectors,
                    self.source,
                    self.indices,
                )
            }
        }
        let (device, _why) = resolve(device)?;
        on_device(
            device,
            Job {
                ensemble: self,
                corpus,
                store,
                vectors,
                source,
                indices,
            },
        )
    }

    /// Class probabilities of `indices` of `corpus` with the members' networks `nets` (from
    /// [`Ensemble::networks`]): each member's (normalised from `source` as [`TrainedModel::inputs`]
    /// does, predicted as [`TrainedModel::predict_on`] does), then the members' network and fused
    /// probabilities averaged with equal weights, as the trainer averages its members' test
    /// probabilities. The prosody branch is fitted once per fold, the same in every member, and is
    /// taken from the first.
    #[allow(clippy::too_many_arguments)]
    pub fn predict_on<B: Backend<Elem = f32>>(
        &self,
        backend: &B,
        nets: &mut [Network<B>],
        corpus: &Corpus,
        store: &FeatureStore,
        vectors: Option<&ProsodyStore>,
        source: SpeakerSource<'_>,
        indices: &[usize],
    ) -> Result<ModelPredictions> {
        let mut each = Vec::with_capacity(self.members.len());
        for (m, net) in self.members.iter().zip(nets) {
            let inputs = m.inputs(corpus, store, vectors, source)?;
            each.push(m.predict_on(backend, net, store, vectors, &inputs, indices)?);
        }
        if each.len() == 1 {
            return Ok(each.pop().expect("one member"));
        }
        let networks: Vec<_> = each.iter().map(|p| p.network.clone()).collect();
        let fused: Vec<_> = each.iter().map(|p| p.fused.clone()).collect();
        Ok(ModelPredictions {
            network: average(&networks, None)?,
            fused: average(&fused, None)?,
            branch: each.swap_remove(0).branch,
        })
    }
}
