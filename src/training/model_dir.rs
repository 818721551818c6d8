//! A trained model as `rescnn predict` and `rescnn eval` use it: found from a run directory (or a fold
//! folder, or a checkpoint file), with the spectrogram settings, class names and input normalisation
//! it was trained with, so new audio goes through exactly the training path (without augmentation).

use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::config::DeviceChoice;
use super::config::TrainConfig;
use super::device::{on_device, resolve, BackendJob, DeviceMemory};
use super::run_dir::files;
use crate::backends::Backend;
use crate::data::{
    BatchConfig, Batcher, CacheOptions, Corpus, FeatureStore, InputNormMode, Normalization, Source,
    SpeakerNorm, Utterance,
};
use crate::model::{ArchSpec, InputShape, Network};
use crate::{Error, Result};

/// Which weights of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// The weights selected on validation.
    Best,
    /// The weights after the last step.
    Last,
}

/// The checkpoint file `model` names: a `.safetensors` file, or a run / fold directory's
/// `checkpoints/{best,last}.safetensors`.
pub fn locate(model: &Path, which: Weights) -> Result<PathBuf> {
    if model.is_file() {
        return Ok(model.to_path_buf());
    }
    if !model.is_dir() {
        return Err(Error::data(
            model,
            "does not exist: give a run directory of rescnn-train (or a checkpoint .safetensors file)",
        ));
    }
    let file = model.join(match which {
        Weights::Best => files::BEST,
        Weights::Last => files::LAST,
    });
    if file.is_file() {
        return Ok(file);
    }
    let mut subruns: Vec<String> = std::fs::read_dir(model)
        .map_err(|e| Error::io(model, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(files::CONFIG).exists() || e.path().join("checkpoints").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    subruns.sort();
    if !subruns.is_empty() {
        return Err(Error::data(
            model,
            format!(
                "holds {} models (one per fold, sweep or ensemble member: {}); give one of those folders, e.g. {}",
                subruns.len(),
                subruns.join(", "),
                model.join(&subruns[0]).display()
            ),
        ));
    }
    Err(Error::data(
        model,
        format!(
            "has no {}: not a rescnn run directory, or the run stopped before its first validation",
            file.strip_prefix(model).unwrap_or(&file).display()
        ),
    ))
}

/// A trained model loaded from its checkpoint.
pub struct TrainedModel {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
    pub config: TrainConfig,
}

impl TrainedModel {
    pub fn load(model: &Path, which: Weights) -> Result<Self> {
        let path = locate(model, which)?;
        let checkpoint = Checkpoint::load(&path)?;
        let config: TrainConfig = serde_json::from_value(checkpoint.model.config.clone())
            .map_err(|e| Error::data(&path, format!("its configuration cannot be read: {e}")))?;
        Ok(TrainedModel {
            path,
            checkpoint,
            config,
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.checkpoint.model.classes
    }

    /// The network with the checkpoint's weights, able to run `max_batch` inputs at a time.
    pub fn network<B: Backend<Elem = f32>>(
        &self,
        backend: &B,
        max_batch: usize,
    ) -> Result<Network<B>> {
        let m = &self.checkpoint.model;
        let spec = ArchSpec::parse(&m.arch)?;
        let (c, h, w) = m.input_shape;
        let mut net = Network::new(
            backend,
            &spec,
            InputShape::new(c, h, w).with_side(m.side_input_len),
            m.classes.len(),
            max_batch.max(1),
            0,
        )?;
        net.import_params(backend, &self.checkpoint.params)
            .map_err(|e| {
                Error::data(
                    &self.path,
                    format!("the weights do not match the network: {e}"),
                )
            })?;
        Ok(net)
    }

    /// Class probabilities of every utterance `batcher` yields (see
    /// [`super::inference::predict_all`]), on the device `device` resolves to.
    pub fn probabilities(
        &self,
        device: DeviceChoice,
        batcher: &Batcher<'_>,
        max_batch: usize,
    ) -> Result<Vec<(usize, Vec<f64>)>> {
        if self.checkpoint.model.side_input_len > 0 {
            return Err(Error::data(
                &self.path,
                format!(
                    "is a joint model (architecture `{}` appends the utterance vector), and predict/eval do                      not compute utterance vectors: score the test-predictions.json its training wrote instead",
                    self.checkpoint.model.arch
                ),
            ));
        }
        struct Probabilities<'m, 'b> {
            model: &'m TrainedModel,
            batcher: &'m Batcher<'b>,
            max_batch: usize,
        }
        impl BackendJob for Probabilities<'_, '_> {
            type Output = Vec<(usize, Vec<f64>)>;
            fn run<B: Backend<Elem = f32>>(
                self,
                backend: &B,
                _memory: &DeviceMemory,
            ) -> Result<Self::Output> {
                let mut net = self.model.network(backend, self.max_batch)?;
                super::inference::predict_all(backend, &mut net, self.batcher)
            }
        }
        let (device, _why) = resolve(device)?;
        on_device(
            device,
            Probabilities {
                model: self,
                batcher,
                max_batch,
            },
        )
    }

    /// Spectrograms of `corpus` with the model's settings (in memory).
    pub fn features(&self, corpus: &Corpus) -> Result<FeatureStore> {
        FeatureStore::build(
            corpus,
            &self.config.spectrogram.stft,
            &CacheOptions::in_memory(),
        )
    }

    /// How the model normalises its inputs (from the checkpoint; `training` for old ones).
    pub fn input_norm_mode(&self) -> InputNormMode {
        self.checkpoint.model.input_norm_mode
    }

    /// The input normalisation for `corpus` (whose spectrograms `store` holds): the training
    /// statistics stored in the checkpoint, or, for a speaker-normalised model, each speaker's own
    /// statistics over all of its utterances in `corpus`.
    pub fn normalization(&self, corpus: &Corpus, store: &FeatureStore) -> Result<Normalization> {
        match self.input_norm_mode() {
            InputNormMode::Training => Ok(self.checkpoint.model.input_norm.clone().into()),
            InputNormMode::Speaker => {
                let speakers: Vec<&str> = corpus
                    .utterances
                    .iter()
                    .map(|u| u.speaker.as_str())
                    .collect();
                Ok(
                    SpeakerNorm::from_store(store, &self.config.spectrogram.image, &speakers)?
                        .into(),
                )
            }
        }
    }

    /// Batches of `indices` of `corpus` (spectrograms in `store`), rendered and normalised as in
    /// training (no augmentation; see [`TrainedModel::normalization`]).
    pub fn batcher<'a>(
        &self,
        corpus: &Corpus,
        store: &'a FeatureStore,
        indices: &[usize],
        batch: usize,
    ) -> Result<Batcher<'a>> {
        Batcher::new(
            store,
            &self.config.spectrogram.image,
            indices,
            BatchConfig::evaluation(batch),
            self.normalization(corpus, store)?,
        )
    }
}

/// WAV files as a corpus of unknown labels (for prediction); each file is read once here, so a bad
/// one is reported by name before anything else runs. All files get one speaker, `-` (a
/// speaker-normalised model normalises them with their joint statistics).
pub fn files_corpus(paths: &[PathBuf], classes: &[String]) -> Result<Corpus> {
    let mut utterances = Vec::with_capacity(paths.len());
    for p in paths {
        let audio = crate::audio::read_wav(p)?;
        utterances.push(Utterance {
            id: p.display().to_string(),
            duration_s: audio.duration_s(),
            source: Source::File(p.clone()),
            label: 0,
            speaker: "-".into(),
        });
    }
    Ok(Corpus {
        name: "files".into(),
        classes: classes.to_vec(),
        utterances,
    })
}
