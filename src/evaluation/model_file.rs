//! `model.json` of a fold folder: what a prediction needs besides the network's checkpoint (which
//! holds the weights, the configuration with the feature settings and evaluation mode, the class
//! names and the training input statistics). The trainer writes it, atomically, when a fold starts
//! (everything in it is fitted before the first step); the trained model of `rescnn predict` and
//! `rescnn eval` reads it.
//!
//! It holds the utterance-vector path ([`UtteranceModel`]: the vector's settings, its normaliser
//! and, for the late-fused prosody branch, the fitted logistic regression and the fusion weight)
//! and, for a speaker-normalised network, the training utterances' per-(channel, row) image
//! statistics: the fallback when a new speaker comes without statistics of their own.
//!
//! A network that takes the utterance vector as a second input uses the same [`UtteranceModel`]
//! with its normaliser and no classifier.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::InputNormMode;
use crate::prosody::branch::ProsodyBranch;
use crate::prosody::store::vector_stats;
use crate::prosody::{ProsodyConfig, ProsodyStore};
use crate::{Error, Result};

/// The format tag of `model.json`.
pub const FORMAT: &str = "rescnn-model/1";
/// Its file name in a fold folder.
pub const FILE: &str = "model.json";

/// Per-entry statistics (mean, standard deviation) of some set of utterances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats<T> {
    pub mean: Vec<T>,
    pub std: Vec<T>,
}

/// The late-fused classifier of the utterance vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BranchClassifier {
    /// One row per class (the model's class order): the weights on the normalised vector, then the
    /// bias; probabilities are the softmax of the rows' scores.
    pub rows: Vec<Vec<f64>>,
    /// The L2 strength chosen on the training speakers.
    pub l2: f64,
    /// Fused probabilities = (1 − w) · network + w · branch.
    pub fusion_weight: f64,
}

/// The utterance vector and what the model does with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UtteranceModel {
    /// The vector's settings (which functionals, the pitch tracker).
    pub features: ProsodyConfig,
    /// The rate the audio is resampled to before analysis.
    pub sample_rate: u32,
    /// How the vector is normalised: with `training` statistics, or each speaker's own.
    pub norm: InputNormMode,
    /// The training utterances' statistics: the normaliser in `training` mode, the fallback for a
    /// speaker without statistics in `speaker` mode.
    pub training: Stats<f64>,
    /// The late-fused classifier; `None` when the vector feeds the network instead.
    pub classifier: Option<BranchClassifier>,
}

impl UtteranceModel {
    /// The second input of a joint network: the vector of `store` (computed at `sample_rate`),
    /// normalised as `norm` says, with the `train` utterances' statistics as the training
    /// normaliser (the fallback for a speaker without statistics in `speaker` mode).
    pub fn for_network_input(
        store: &ProsodyStore,
        sample_rate: u32,
        norm: InputNormMode,
        train: &[usize],
    ) -> Self {
        let (mean, std) = vector_stats(store, train);
        UtteranceModel {
            features: store.config().clone(),
            sample_rate,
            norm,
            training: Stats { mean, std },
            classifier: None,
        }
    }

    /// The late-fused prosody branch `branch` of the vectors of `store` (computed at
    /// `sample_rate`), fused at `fusion_weight`.
    pub fn for_branch(
        branch: &ProsodyBranch,
        store: &ProsodyStore,
        sample_rate: u32,
        fusion_weight: f64,
    ) -> Self {
        let (mean, std) = branch.training_stats();
        UtteranceModel {
            features: store.config().clone(),
            sample_rate,
            norm: branch.mode(),
            training: Stats {
                mean: mean.to_vec(),
                std: std.to_vec(),
            },
            classifier: Some(BranchClassifier {
                rows: branch.rows(),
                l2: branch.l2,
                fusion_weight,
            }),
        }
    }
}

/// Per-entry prior of a speaker's statistics, from the training speakers: the mean of their
/// speaker means, the mean of their speaker variances, and the prior's weight in utterances (the
/// within-speaker variance of utterance means over the between-speaker variance of speaker means).
/// A speaker enrolled with k utterances gets `(k · own + weight · prior) / (k + weight)` for the
/// mean and for the variance: an empirical-Bayes estimate, close to the training speakers' with
/// one utterance, close to the speaker's own with many.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prior<T> {
    pub mean: Vec<T>,
    pub var: Vec<T>,
    pub weight: Vec<T>,
}

/// The priors of a speaker-normalised model's statistics: the image's per (channel, row), indexed
/// like [`ModelFile::training_rows`], and the utterance vector's per entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentPrior {
    pub image: Prior<f32>,
    pub vector: Option<Prior<f64>>,
}

/// `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    /// For a speaker-normalised network: the training utterances' image statistics per (channel,
    /// row), indexed `c * height + row` (all training speakers together).
    pub training_rows: Option<Stats<f32>>,
    pub utterance: Option<UtteranceModel>,
    /// For a speaker-normalised network: what `rescnn enroll` shrinks a few utterances'
    /// statistics toward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_prior: Option<EnrollmentPrior>,
}

impl ModelFile {
    pub fn new(training_rows: Option<Stats<f32>>, utterance: Option<UtteranceModel>) -> Self {
        ModelFile {
            format: FORMAT.into(),
            training_rows,
            utterance,
            enrollment_prior: None,
        }
    }

    /// Write atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("model.json serialises");
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    /// Read `path`; `Ok(None)` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let head: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::data(path, format!("is not JSON ({e})")))?;
        let format = head.get("format").and_then(|f| f.as_str()).unwrap_or("?");
        if format != FORMAT {
            return Err(Error::data(
                path,
                format!("has format `{format}`, this rescnn reads `{FORMAT}`"),
            ));
        }
        let file: ModelFile = serde_json::from_value(head)
            .map_err(|e| Error::data(path, format!("cannot be read ({e})")))?;
        if let Some(c) = file.utterance.as_ref().and_then(|u| u.classifier.as_ref()) {
            if !(0.0..=1.0).contains(&c.fusion_weight) {
                return Err(Error::data(
                    path,
                    format!("fusion weight {} is not in [0, 1]", c.fusion_weight),
                ));
            }
        }
        Ok(Some(file))
    }
}

/// A speaker's normalisation statistics, saved by `rescnn enroll` and read by `rescnn predict
/// --speaker-stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeakerStats {
    pub format: String,
    pub speaker: String,
    /// How many utterances the statistics come from.
    pub utterances: usize,
    /// Image statistics per (channel, row), indexed `c * height + row`.
    pub image: Stats<f32>,
    /// Utterance-vector statistics, for a model with an utterance-vector path.
    pub vector: Option<Stats<f64>>,
}

/// The format tag of a speaker statistics file.
pub const SPEAKER_FORMAT: &str = "rescnn-speaker-stats/1";

impl SpeakerStats {
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("statistics serialise");
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let s: SpeakerStats = serde_json::from_str(&text).map_err(|e| {
            Error::data(
                path,
                format!("is not a speaker statistics file of `rescnn enroll` ({e})"),
            )
        })?;
        if s.format != SPEAKER_FORMAT {
            return Err(Error::data(
                path,
                format!(
                    "has format `{}`, this rescnn reads `{SPEAKER_FORMAT}`",
                    s.format
                ),
            ));
        }
        Ok(s)
    }
}
