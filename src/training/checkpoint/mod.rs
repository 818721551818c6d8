//! Checkpoints as safetensors files: the weights (`param.<name>`), the optimizer's moments (full
//! checkpoints only: RMSProp's mean squares `rmsprop.<name>`, or AdamW's first and second moments
//! `adamw_m.<name>` and `adamw_v.<name>`), and in the header's metadata everything needed to
//! continue training or to use the model on its own: the effective configuration, the class names,
//! the input normalisation (mode, and the training statistics in `training` mode), the architecture and input shape, and the trainer's state (step, data
//! position, selection record, the running training statistics).
//!
//! The metadata is one entry, `rescnn`, holding a JSON object (format tag, writer, model, state).
//! The data order and augmentation are pure functions of (seed, epoch, position in the epoch)
//! (see [`crate::data::batch`]), so the step alone says where the data stream resumes.
//! Files are written atomically ([`crate::fsutil::write_atomic`]): a reader never sees a partial one.
//!
//! The metadata also holds a CRC-32 of the tensors (names, shapes and bytes, in name order), checked
//! on load, so flipped bytes are refused rather than predicted with. A file without one (written
//! before the checksum existed) still loads, with a note that it cannot be verified. Loading also
//! refuses non-finite tensors (a diverged run) and input normalisation deviations that are not
//! positive, naming the tensor.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{InputNorm, InputNormMode};
use crate::model::{NamedTensor, OptimizerState};
use crate::{Error, Result};

mod encoding;

/// The format tag written into every checkpoint's metadata.
pub const FORMAT: &str = "rescnn-checkpoint/1";

/// The safetensors metadata key holding the checkpoint's header (everything but the tensors) as
/// JSON.
pub const METADATA_KEY: &str = "rescnn";

/// The first non-finite value among `tensors`: (tensor name, index, value).
pub fn first_non_finite<'t>(
    tensors: impl IntoIterator<Item = (&'t str, &'t [f32])>,
) -> Option<(String, usize, f32)> {
    tensors.into_iter().find_map(|(name, data)| {
        data.iter()
            .position(|v| !v.is_finite())
            .map(|i| (name.to_string(), i, data[i]))
    })
}

/// The best validation evaluation so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    pub step: u64,
    pub val_wa: f64,
    pub val_uar: f64,
    pub val_loss: f64,
}

/// Where the training loop is: enough to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Updates applied so far.
    pub step: u64,
    /// The training length this run resolved to.
    pub total_steps: u64,
    pub batches_per_epoch: u64,
    /// Seed of the training data stream (order and augmentation).
    pub data_seed: u64,
    pub best: Option<BestRecord>,
    /// Training loss and accuracy summed since the last evaluation (the curves' training points).
    pub interval_loss_sum: f64,
    pub interval_correct: u64,
    pub interval_samples: u64,
    /// Training wall time so far (seconds, across resumptions).
    pub elapsed_s: f64,
    /// Images trained on so far.
    pub images: u64,
}

impl TrainerState {
    pub fn epoch(&self) -> u64 {
        self.step / self.batches_per_epoch.max(1)
    }
    pub fn batch_in_epoch(&self) -> u64 {
        self.step % self.batches_per_epoch.max(1)
    }
}

/// What a checkpoint says about the model, besides its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The architecture spec text.
    pub arch: String,
    /// (channels, height, width) of one input.
    pub input_shape: (usize, usize, usize),
    pub classes: Vec<String>,
    /// How inputs are normalised. With [`InputNormMode::Speaker`] the statistics come from the data
    /// being classified (each speaker's own), so nothing speaker-specific is stored and
    /// `input_norm` is the identity. Checkpoints written before the mode existed read as
    /// `training`.
    #[serde(default)]
    pub input_norm_mode: InputNormMode,
    /// The per-channel statistics of the training utterances (`training` mode).
    pub input_norm: InputNorm,
    /// The effective training configuration (JSON), including the spectrogram settings.
    pub config: serde_json::Value,
    /// Values per sample of the side input (the utterance vector a `vec` layer appends); 0 for a
    /// network without one and in checkpoints written before side inputs existed.
    #[serde(default)]
    pub side_input_len: usize,
}

/// A checkpoint in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub model: ModelInfo,
    pub params: Vec<NamedTensor<f32>>,
    /// `None` in a weights-only checkpoint (the selected model).
    pub optimizer: Option<OptimizerState<f32>>,
    pub state: TrainerState,
    /// The rescnn version and commit that wrote it.
    pub written_by: String,
}

/// "rescnn 0.1.0 (abc1234)".
pub fn version_string() -> String {
    format!(
        "rescnn {} ({})",
        env!("CARGO_PKG_VERSION"),
        option_env!("RESCNN_GIT_COMMIT").unwrap_or("unknown commit")
    )
}

impl Checkpoint {
    /// Write atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, &self.to_bytes()?)
    }

    /// Read a checkpoint; every problem names the file and says what to do.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::data(
                path,
                format!("cannot read the checkpoint ({e}); is this a rescnn run directory?"),
            )
        })?;
        let (checkpoint, verified) = Self::from_bytes(&bytes).map_err(|m| {
            Error::data(
                path,
                format!("{m}; the file is damaged or not a rescnn checkpoint (retrain, or resume from another run)"),
            )
        })?;
        if !verified {
            eprintln!(
                "note: {}: this checkpoint carries no checksum (written by {}), so damage to its \
                 tensors cannot be detected",
                path.display(),
                checkpoint.written_by
            );
        }
        Ok(checkpoint)
    }
}
