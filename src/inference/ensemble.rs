//! A fold's model as its report scored it: one trained network, or the members of an
//! `--ensemble K` fold (its `seed-N/` folders), each predicting as a [`TrainedModel`] does, their
//! probabilities averaged per utterance the way the trainer averaged them.

use std::path::{Path, PathBuf};

use super::model_dir::{ModelPredictions, SpeakerSource, TrainedModel, Weights};
use crate::data::{Corpus, FeatureStore};
use crate::evaluation::ensemble::average;
use crate::prosody::ProsodyStore;
use crate::training::config::DeviceChoice;
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
        if let Some(other) = members.iter().find(|m| {
            m.config.spectrogram != first.config.spectrogram
                || m.classes() != first.classes()
                || m.input_norm_mode() != first.input_norm_mode()
                || m.utterance().map(|u| (&u.features, u.sample_rate))
                    != first.utterance().map(|u| (&u.features, u.sample_rate))
        }) {
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

    /// Class probabilities of `indices` of `corpus`: each member's (normalised from `source` as
    /// [`TrainedModel::inputs`] does, predicted as [`TrainedModel::predict`] does), then the
    /// members' network and fused probabilities averaged with equal weights, as the trainer
    /// averages its members' test probabilities. The prosody branch is fitted once per fold, the
    /// same in every member, and is taken from the first.
    pub fn predict(
        &self,
        device: DeviceChoice,
        corpus: &Corpus,
        store: &FeatureStore,
        vectors: Option<&ProsodyStore>,
        source: SpeakerSource<'_>,
        indices: &[usize],
    ) -> Result<ModelPredictions> {
        let mut each = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let inputs = m.inputs(corpus, store, vectors, source)?;
            each.push(m.predict(device, store, vectors, &inputs, indices)?);
        }
        Ensemble::combine(each)
    }

    /// The members' predictions of the same utterances (in member order) as the ensemble's: see
    /// [`Ensemble::predict`].
    pub fn combine(mut each: Vec<ModelPredictions>) -> Result<ModelPredictions> {
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
