//! A trained model as `rescnn predict` and `rescnn eval` use it: found from a run directory (or a fold
//! folder, or a checkpoint file), with the spectrogram settings, class names and input normalisation
//! it was trained with, so new audio goes through exactly the training path (without augmentation).

use std::path::{Path, PathBuf};

use crate::backends::Backend;
use crate::data::{
    CacheOptions, Corpus, FeatureStore, InputNormMode, Normalization, Source, SpeakerNorm,
    Utterance,
};
use crate::evaluation::eval_mode::{predict_with, EvalMode, NetworkInputs};
use crate::evaluation::model_file::{self, ModelFile, SpeakerStats, UtteranceModel};
use crate::evaluation::predict::Predictions;
use crate::evaluation::predict::SideInput;
use crate::model::{ArchSpec, InputShape, Network, Plan};
use crate::prosody::branch::{branch_predictions, fuse};
use crate::prosody::linear::SoftmaxRegression;
use crate::prosody::{ProsodyConfig, ProsodyNorm, ProsodyStore};
use crate::training::checkpoint::Checkpoint;
use crate::training::config::TrainConfig;
use crate::training::run_dir::files;
use crate::{config_err, Error, Result};

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

/// Where a speaker-normalised model gets each speaker's statistics.
#[derive(Clone, Copy, Debug)]
pub enum SpeakerSource<'a> {
    /// Each speaker's own statistics over all of its utterances in the corpus being classified
    /// (as the trainer normalises every speaker, test speakers included).
    Corpus,
    /// Saved statistics (`rescnn enroll`), one per speaker of the corpus.
    Given(&'a [SpeakerStats]),
    /// The training utterances' statistics, for every speaker.
    Training,
}

/// The normalisations of one corpus: the image's and, for a model with an utterance-vector path,
/// the vector's.
pub struct Inputs {
    pub image: Normalization,
    pub vector: Option<ProsodyNorm>,
}

/// Class probabilities of a set of utterances: the network's, the prosody branch's (if the model
/// has one) and their fusion (the model's output: the network's when there is no branch).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelPredictions {
    pub network: Predictions,
    pub branch: Option<Predictions>,
    pub fused: Predictions,
}

/// A trained model loaded from its folder: the checkpoint and `model.json`.
pub struct TrainedModel {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
    pub config: TrainConfig,
    /// `model.json` (empty for folders written before it existed; see [`TrainedModel::missing`]).
    pub parts: ModelFile,
    /// What this model's folder lacks, one line each (folders of older rescnn versions).
    pub missing: Vec<String>,
    /// A joint network evaluated with every utterance vector absent ([`SideInput::absent`]): what
    /// its convolutional path gives alone. The prosody branch still reads the vectors. Off when
    /// loaded; `rescnn eval --without-vector` sets it.
    pub without_vector: bool,
}

impl TrainedModel {
    pub fn load(model: &Path, which: Weights) -> Result<Self> {
        let path = locate(model, which)?;
        let checkpoint = Checkpoint::load(&path)?;
        let config: TrainConfig = serde_json::from_value(checkpoint.model.config.clone())
            .map_err(|e| Error::data(&path, format!("its configuration cannot be read: {e}")))?;
        // A checkpoint lives in `<fold>/checkpoints/`; a loose checkpoint file has no folder parts.
        let fold = path
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "checkpoints"))
            .and_then(Path::parent);
        let file = match fold {
            Some(f) => ModelFile::load(&f.join(model_file::FILE))?,
            None => None,
        };
        let mut missing = Vec::new();
        let where_ = fold.map_or(path.clone(), |f| f.join(model_file::FILE));
        if config.prosody_weight > 0.0
            && file
                .as_ref()
                .is_none_or(|f| f.utterance.as_ref().is_none_or(|u| u.classifier.is_none()))
        {
            missing.push(format!(
                "{}: no saved prosody branch (written by an older rescnn): predictions are the \
                 network's alone, not the fusion at weight {} that the report scored",
                where_.display(),
                config.prosody_weight
            ));
        }
        if checkpoint.model.side_input_len > 0
            && file.as_ref().is_none_or(|f| f.utterance.is_none())
        {
            missing.push(format!(
                "{}: no saved utterance-vector normaliser (written by an older rescnn): this joint \
                 network's second input cannot be built, so it cannot predict",
                where_.display()
            ));
        }
        if checkpoint.model.input_norm_mode == InputNormMode::Speaker
            && file.as_ref().is_none_or(|f| f.training_rows.is_none())
        {
            missing.push(format!(
                "{}: no training-set statistics (written by an older rescnn): speakers need \
                 statistics of their own (grouped files or --speaker-stats)",
                where_.display()
            ));
        }
        Ok(TrainedModel {
            path,
            checkpoint,
            config,
            parts: file.unwrap_or_else(|| ModelFile::new(None, None)),
            missing,
            without_vector: false,
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.checkpoint.model.classes
    }

    /// Whether `other` computes its inputs from audio as this model does (the same spectrogram
    /// and utterance-vector settings) and knows the same classes, so one feature store serves both.
    pub fn reads_like(&self, other: &TrainedModel) -> bool {
        fn vector(u: &UtteranceModel) -> (&ProsodyConfig, u32) {
            (&u.features, u.sample_rate)
        }
        self.config.spectrogram == other.config.spectrogram
            && self.classes() == other.classes()
            && self.utterance().map(vector) == other.utterance().map(vector)
    }

    /// How the model evaluates an utterance: the trainer's `eval_time` and `eval_hop`, in batches
    /// of the training batch size (the batch changes how the device sums, so the trainer's exact
    /// probabilities need its batch).
    pub fn eval_mode(&self) -> EvalMode {
        EvalMode {
            time: self.config.eval_time,
            hop: self.config.eval_hop,
            batch: self.config.batch.max(1),
        }
    }

    /// The utterance-vector path, if the model has one.
    pub fn utterance(&self) -> Option<&UtteranceModel> {
        self.parts.utterance.as_ref()
    }

    /// The network's layout at its training width.
    pub fn plan(&self) -> Result<Plan> {
        let m = &self.checkpoint.model;
        let (c, h, w) = m.input_shape;
        let input = InputShape::new(c, h, w).with_side(m.side_input_len);
        Plan::new(&ArchSpec::parse(&m.arch)?, input, m.classes.len())
    }

    /// The image width this model classifies an utterance of `frames` frames at: the whole
    /// utterance's (see [`Plan::whole_width`]) when it evaluates whole utterances, else its
    /// training width (the first frames, or crops of that width).
    pub fn eval_width(&self, frames: usize) -> Result<usize> {
        let plan = self.plan()?;
        match self.config.eval_time {
            crate::data::EvalTime::Whole => plan.whole_width(frames.max(plan.input.width)),
            _ => Ok(plan.input.width),
        }
    }

    /// The network with the checkpoint's weights, able to run `max_batch` inputs at a time.
    pub fn network<B: Backend<Elem = f32>>(
        &self,
        backend: &B,
        max_batch: usize,
    ) -> Result<Network<B>> {
        let m = &self.checkpoint.model;
        if m.side_input_len > 0 && self.utterance().is_none() {
            return Err(Error::data(
                &self.path,
                format!(
                    "is a joint model (architecture `{}` takes the utterance vector) without the \
                     vector's normaliser in {} (written by an older rescnn): score the \
                     test-predictions.json its training wrote (rescnn score) instead",
                    m.arch,
                    model_file::FILE
                ),
            ));
        }
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

    /// Spectrograms of `corpus` with the model's settings (in memory).
    pub fn features(&self, corpus: &Corpus) -> Result<FeatureStore> {
        FeatureStore::build(
            corpus,
            &self.config.spectrogram.stft,
            &CacheOptions::in_memory(),
        )
    }

    /// Utterance vectors of `corpus` with the model's settings, for a model with an
    /// utterance-vector path (the disk cache as in training).
    pub fn vectors(&self, corpus: &Corpus) -> Result<Option<ProsodyStore>> {
        let opts = CacheOptions {
            dir: self
                .config
                .feature_cache
                .then(crate::data::cache::default_cache_dir),
            progress: false,
            variants: Vec::new(),
        };
        self.vectors_with(corpus, &opts)
    }

    /// [`TrainedModel::vectors`] with the cache `opts` says.
    pub fn vectors_with(
        &self,
        corpus: &Corpus,
        opts: &CacheOptions,
    ) -> Result<Option<ProsodyStore>> {
        let Some(u) = self.utterance() else {
            return Ok(None);
        };
        ProsodyStore::build(corpus, &u.features, u.sample_rate, opts).map(Some)
    }

    /// How the model normalises its inputs (from the checkpoint; `training` for old ones).
    pub fn input_norm_mode(&self) -> InputNormMode {
        self.checkpoint.model.input_norm_mode
    }

    /// The normalisations of `corpus` (spectrograms in `store`, vectors in `vectors`): the
    /// training statistics for a training-normalised model; for a speaker-normalised one, each
    /// speaker's statistics from `source`.
    pub fn inputs(
        &self,
        corpus: &Corpus,
        store: &FeatureStore,
        vectors: Option<&ProsodyStore>,
        source: SpeakerSource<'_>,
    ) -> Result<Inputs> {
        let speakers: Vec<&str> = corpus
            .utterances
            .iter()
            .map(|u| u.speaker.as_str())
            .collect();
        let image_cfg = &self.config.spectrogram.image;
        let (c, h, _) = self.checkpoint.model.input_shape;
        let no_training = || {
            config_err!(
                "{}: this model has no training-set statistics (its folder predates them); give \
                 the speaker's statistics (--speaker-stats) or several files per speaker",
                self.path.display()
            )
        };
        let image: Normalization = match (self.input_norm_mode(), source) {
            (InputNormMode::Training, _) => self.checkpoint.model.input_norm.clone().into(),
            (InputNormMode::Speaker, SpeakerSource::Corpus) => {
                SpeakerNorm::from_store(store, image_cfg, &speakers)?.into()
            }
            (InputNormMode::Speaker, SpeakerSource::Given(stats)) => SpeakerNorm::from_stats(
                (c, h),
                stats
                    .iter()
                    .map(|s| (s.speaker.clone(), s.image.mean.clone(), s.image.std.clone()))
                    .collect(),
                &speakers,
            )?
            .into(),
            (InputNormMode::Speaker, SpeakerSource::Training) => {
                let rows = self.parts.training_rows.as_ref().ok_or_else(no_training)?;
                SpeakerNorm::from_stats(
                    (c, h),
                    vec![("training".into(), rows.mean.clone(), rows.std.clone())],
                    &vec!["training"; corpus.len()],
                )?
                .into()
            }
        };
        let vector = match (self.utterance(), vectors) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(config_err!(
                "the model takes an utterance vector: compute the vectors (TrainedModel::vectors)"
            ))
            }
            (Some(u), Some(vectors)) => {
                let training = || {
                    ProsodyNorm::from_stats(
                        vec![0; corpus.len()],
                        vec![(u.training.mean.clone(), u.training.std.clone())],
                    )
                };
                Some(match (u.norm, source) {
                    (InputNormMode::Training, _)
                    | (InputNormMode::Speaker, SpeakerSource::Training) => training()?,
                    (InputNormMode::Speaker, SpeakerSource::Corpus) => {
                        ProsodyNorm::for_training(InputNormMode::Speaker, vectors, &speakers, &[])?
                    }
                    (InputNormMode::Speaker, SpeakerSource::Given(stats)) => {
                        let mut names: Vec<&str> =
                            stats.iter().map(|s| s.speaker.as_str()).collect();
                        names.sort();
                        let group = speakers
                            .iter()
                            .map(|s| {
                                names
                                    .binary_search(s)
                                    .map_err(|_| config_err!("no statistics for speaker '{s}'"))
                            })
                            .collect::<Result<Vec<usize>>>()?;
                        let mut sorted: Vec<&SpeakerStats> = stats.iter().collect();
                        sorted.sort_by(|a, b| a.speaker.cmp(&b.speaker));
                        let groups = sorted
                            .iter()
                            .map(|s| {
                                let v = s.vector.as_ref().ok_or_else(|| {
                                    config_err!(
                                        "the statistics of speaker '{}' have no utterance-vector part, \
                                         which this model needs: enroll the speaker with this model",
                                        s.speaker
                                    )
                                })?;
                                Ok((v.mean.clone(), v.std.clone()))
                            })
                            .collect::<Result<Vec<_>>>()?;
                        ProsodyNorm::from_stats(group, groups)?
                    }
                })
            }
        };
        Ok(Inputs { image, vector })
    }

    /// Class probabilities of `indices` (spectrograms in `store`, vectors in `vectors`, normalised
    /// by `inputs`) with the model's network `net` (from [`TrainedModel::network`]) on `backend`:
    /// the network evaluated as the trainer evaluates it ([`predict_with`] with
    /// [`TrainedModel::eval_mode`], the utterance vector as a joint network's second input), the
    /// prosody branch, and their fusion at the model's weight.
    pub fn predict_on<B: Backend<Elem = f32>>(
        &self,
        backend: &B,
        net: &mut Network<B>,
        store: &FeatureStore,
        vectors: Option<&ProsodyStore>,
        inputs: &Inputs,
        indices: &[usize],
    ) -> Result<ModelPredictions> {
        let side = if self.checkpoint.model.side_input_len > 0 {
            match (vectors, inputs.vector.as_ref()) {
                (Some(store), Some(norm)) => Some(SideInput {
                    store,
                    norm,
                    absent: self.without_vector,
                }),
                _ => {
                    return Err(config_err!(
                        "{}: the joint network takes the utterance vector: compute the vectors \
                         (TrainedModel::vectors) and their normalisation (TrainedModel::inputs)",
                        self.path.display()
                    ))
                }
            }
        } else {
            None
        };
        let shown = NetworkInputs {
            store,
            image: &self.config.spectrogram.image,
            norm: &inputs.image,
            side,
        };
        let network = predict_with(backend, net, shown, indices, &self.eval_mode())?;
        self.finish(network, vectors, inputs, indices)
    }

    /// The branch's predictions and the fusion, given the network's.
    pub fn finish(
        &self,
        network: Predictions,
        vectors: Option<&ProsodyStore>,
        inputs: &Inputs,
        indices: &[usize],
    ) -> Result<ModelPredictions> {
        let classifier = self
            .utterance()
            .and_then(|u| u.classifier.as_ref())
            .zip(vectors)
            .zip(inputs.vector.as_ref());
        let Some(((c, vectors), norm)) = classifier else {
            return Ok(ModelPredictions {
                fused: network.clone(),
                network,
                branch: None,
            });
        };
        let model = SoftmaxRegression::from_rows(&c.rows)?;
        if model.classes() != self.classes().len() || model.dims() != vectors.config().vector_len()
        {
            return Err(Error::data(
                &self.path,
                format!(
                    "the saved prosody branch has {} classes and {} inputs, the model {} classes and \
                     vectors of {} values",
                    model.classes(),
                    model.dims(),
                    self.classes().len(),
                    vectors.config().vector_len()
                ),
            ));
        }
        let branch = branch_predictions(&model, norm, vectors, indices);
        let fused = fuse(network.clone(), branch.clone(), c.fusion_weight)?;
        Ok(ModelPredictions {
            network,
            branch: Some(branch),
            fused,
        })
    }
}

/// How files given for prediction are grouped by speaker (`--speaker-from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpeakerOf {
    /// The name of the folder holding the file (one folder per speaker).
    Folder,
    /// Characters `start..end` of the file name (EMO-DB: `chars:0-2`).
    Chars(usize, usize),
    /// Field `k` (from 0) of the file name without its extension, split at `sep` (RAVDESS:
    /// `field:-:6`).
    Field(char, usize),
}

impl std::str::FromStr for SpeakerOf {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            config_err!(
                "--speaker-from '{s}': expected folder, chars:START-END (e.g. chars:0-2) or \
                 field:SEP:K (e.g. field:-:6)"
            )
        };
        if s == "folder" {
            return Ok(SpeakerOf::Folder);
        }
        if let Some(range) = s.strip_prefix("chars:") {
            let (a, b) = range.split_once('-').ok_or_else(bad)?;
            let (a, b): (usize, usize) =
                (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            return if a < b {
                Ok(SpeakerOf::Chars(a, b))
            } else {
                Err(bad())
            };
        }
        if let Some(rest) = s.strip_prefix("field:") {
            let mut chars = rest.chars();
            let sep = chars.next().ok_or_else(bad)?;
            let k = chars.as_str().strip_prefix(':').ok_or_else(bad)?;
            return Ok(SpeakerOf::Field(sep, k.parse().map_err(|_| bad())?));
        }
        Err(bad())
    }
}

impl SpeakerOf {
    /// The speaker of `path`.
    pub fn speaker(&self, path: &Path) -> Result<String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = match self {
            SpeakerOf::Folder => path
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned()),
            SpeakerOf::Chars(a, b) => {
                let chars: Vec<char> = name.chars().collect();
                (chars.len() >= *b).then(|| chars[*a..*b].iter().collect())
            }
            SpeakerOf::Field(sep, k) => {
                let stem = crate::fsutil::file_stem_lossy(path);
                stem.split(*sep).nth(*k).map(str::to_string)
            }
        };
        found.filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::data(
                path,
                format!("has no speaker name where --speaker-from says ({self:?})"),
            )
        })
    }
}

/// WAV files as a corpus of unknown labels (for prediction); each file is read once here, so a bad
/// one is reported by name before anything else runs. Each file's speaker is `speaker(file)`.
pub fn files_corpus_of(
    paths: &[PathBuf],
    classes: &[String],
    speaker: impl Fn(&Path) -> Result<String>,
) -> Result<Corpus> {
    let mut utterances = Vec::with_capacity(paths.len());
    for p in paths {
        let audio = crate::audio::read_wav(p)?;
        utterances.push(Utterance {
            id: p.display().to_string(),
            duration_s: audio.duration_s(),
            source: Source::File(p.clone()),
            label: 0,
            speaker: speaker(p)?,
        });
    }
    Ok(Corpus {
        name: "files".into(),
        classes: classes.to_vec(),
        utterances,
    })
}

/// [`files_corpus_of`] with every file of one speaker, `-`.
pub fn files_corpus(paths: &[PathBuf], classes: &[String]) -> Result<Corpus> {
    files_corpus_of(paths, classes, |_| Ok("-".into()))
}
