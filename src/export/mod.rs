//! Trained models outside rescnn: the network as an ONNX graph ([`graph`], encoded by [`onnx`]), and
//! the network's exact input as a NumPy `.npy` array ([`npy`]).
//!
//! [`export_model`] turns a [`TrainedModel`] into one ONNX model whose input is exactly what
//! `rescnn spectrogram --npy` renders with the model's settings (planar f32 in [0, 1]) and whose
//! output is the class probabilities. The input normalisation is inside the graph:
//!
//! - `training` models carry their per-channel training statistics as constants;
//! - `speaker` models cannot carry them (each speaker has their own), so the graph takes the
//!   speaker's per-(channel, row) mean and standard deviation as two more inputs,
//!   `speaker_mean` and `speaker_std` of shape (C, H, 1); how to compute them is in the model's
//!   metadata (`rescnn.input_norm`) and in the README.
//!
//! The metadata (`metadata_props`) also holds the class names, the spectrogram settings and the
//! rescnn version, so the input can be rebuilt in any language.

pub mod ensemble;
pub mod graph;
pub mod npy;
pub mod onnx;

use std::path::Path;

use crate::data::{InputNormMode, SpeakerNorm};
use crate::inference::ensemble::Ensemble;
use crate::inference::model_dir::TrainedModel;
use crate::model::ArchSpec;
use crate::training::checkpoint::version_string;
use crate::Result;

pub use graph::{GraphNorm, GraphSpec};
pub use onnx::ModelProto;

/// Metadata keys of an exported model.
pub mod keys {
    pub const VERSION: &str = "rescnn.version";
    pub const CLASSES: &str = "rescnn.classes";
    pub const SPECTROGRAM: &str = "rescnn.spectrogram";
    pub const ARCH: &str = "rescnn.arch";
    pub const INPUT: &str = "rescnn.input";
    pub const INPUT_NORM: &str = "rescnn.input_norm";
    pub const CHECKPOINT: &str = "rescnn.checkpoint_written_by";
    pub const UTTERANCE_VECTOR: &str = "rescnn.utterance_vector";
    pub const EVAL: &str = "rescnn.eval";
    pub const ENSEMBLE: &str = "rescnn.ensemble";
}

/// What the input normalisation metadata says for a speaker-normalised model.
fn speaker_norm_doc() -> String {
    format!(
        "per speaker: the graph inputs `speaker_mean` and `speaker_std`, shape (C, H, 1), are the mean and \
         standard deviation of each (channel, image row) over all pixels of that speaker's plain \
         spectrogram images (every utterance you have of the speaker; population std); then, per channel, \
         each row's std is floored at {} × sqrt(mean over the rows of their variances) (and at 1e-6)",
        SpeakerNorm::STD_FLOOR
    )
}

/// The ONNX model of `model` (see the module documentation).
pub fn export_model(model: &TrainedModel) -> Result<ModelProto> {
    let m = &model.checkpoint.model;
    let spec = ArchSpec::parse(&m.arch)?;
    let (c, h, w) = m.input_shape;
    let plan = model.plan()?;
    let spectrogram = &model.config.spectrogram;
    let any_width = plan.any_width();
    let (norm, norm_meta) = match m.input_norm_mode {
        InputNormMode::Training => (
            GraphNorm::PerChannel(&m.input_norm),
            serde_json::json!({
                "mode": "training",
                "applied": "inside the graph: x = (x - mean[c]) * (1 / std[c])",
                "mean": m.input_norm.mean,
                "std": m.input_norm.std,
            }),
        ),
        InputNormMode::Speaker => (
            GraphNorm::PerSpeakerInputs,
            serde_json::json!({
                "mode": "speaker",
                "applied": "inside the graph: x = (x - speaker_mean[c, row]) * (1 / speaker_std[c, row])",
                "statistics": speaker_norm_doc(),
                "std_floor": SpeakerNorm::STD_FLOOR,
            }),
        ),
    };
    let width = if any_width {
        format!("W (any width the network accepts, at least {w})")
    } else {
        w.to_string()
    };
    let input_doc = format!(
        "`spectrogram`: float32 (N, {c}, {h}, {width}), planar (channel-major), values in [0, 1]: the \
         spectrogram image of `rescnn.spectrogram` (time on the width, row 0 = highest frequency, \
         {} colour map), exactly what `rescnn spectrogram --npy` writes; the PNG is this rounded to 8 bits",
        spectrogram.image.colormap.name()
    );
    let metadata = vec![
        (keys::VERSION.to_string(), version_string()),
        (
            keys::CLASSES.to_string(),
            serde_json::to_string(&m.classes).expect("JSON"),
        ),
        (
            keys::SPECTROGRAM.to_string(),
            serde_json::to_string(spectrogram).expect("JSON"),
        ),
        (keys::ARCH.to_string(), spec.to_string()),
        (keys::INPUT.to_string(), input_doc),
        (keys::INPUT_NORM.to_string(), norm_meta.to_string()),
        (
            keys::CHECKPOINT.to_string(),
            model.checkpoint.written_by.clone(),
        ),
    ];
    let mut metadata = metadata;
    metadata.push((keys::EVAL.to_string(), eval_doc(model, w, any_width)));
    let mut vector = None;
    let mut branch = None;
    let reads_vector = |u: &&crate::evaluation::model_file::UtteranceModel| {
        u.classifier.is_some() || m.side_input_len > 0
    };
    if let Some(u) = model.utterance().filter(reads_vector) {
        let (vnorm, applied) = match u.norm {
            InputNormMode::Training => (
                graph::VectorNorm::Constants {
                    mean: &u.training.mean,
                    std: &u.training.std,
                },
                "inside the graph: v = (v - mean) * (1 / std), the training utterances' statistics",
            ),
            InputNormMode::Speaker => (
                graph::VectorNorm::SpeakerInputs,
                "inside the graph: v = (v - speaker_vector_mean) * (1 / speaker_vector_std), the \
                 mean and population standard deviation of each entry over the speaker's \
                 utterances (1 where the deviation is below 1e-6 · max(|mean|, 1))",
            ),
        };
        let mut doc = serde_json::json!({
            "input": graph::VECTOR_INPUT,
            "raw": true,
            "applied": applied,
            "normalisation": u.norm,
            "entries": u.features.names(),
            "features": u.features,
            "sample_rate": u.sample_rate,
            "computed_by": "rescnn spectrogram --model RUN --vector-npy OUT.npy FILE.wav",
            "network": if m.side_input_len > 0 {
                "the network's `vec` layer reads the normalised vector"
            } else {
                "the network does not read the vector"
            },
        });
        if let Some(c) = &u.classifier {
            doc["classifier"] = "logistic regression: Softmax(Gemm(v, W, b, transB))".into();
            doc["fusion"] = format!(
                "probabilities = {} * network_probabilities + {} * prosody_probabilities",
                1.0 - c.fusion_weight,
                c.fusion_weight
            )
            .into();
            doc["fusion_weight"] = c.fusion_weight.into();
            branch = Some(graph::GraphBranch {
                rows: &c.rows,
                fusion_weight: c.fusion_weight,
            });
        }
        metadata.push((keys::UTTERANCE_VECTOR.to_string(), doc.to_string()));
        vector = Some(graph::GraphVector {
            norm: vnorm,
            dims: u.features.vector_len(),
        });
    }
    graph::build(&GraphSpec {
        plan: &plan,
        params: &model.checkpoint.params,
        any_width,
        norm,
        vector,
        branch,
        metadata,
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        doc: format!(
            "rescnn speech emotion model `{}` from {}",
            spec,
            model.path.display()
        ),
    })
}

/// What metadata `rescnn.eval` says: how rescnn classifies an utterance with this model, and so
/// what the graph reproduces.
fn eval_doc(model: &TrainedModel, width: usize, any_width: bool) -> String {
    use crate::data::EvalTime;
    let how = match model.config.eval_time {
        EvalTime::First => format!(
            "first: the utterance's first {width} frames (padded when shorter), one image: the graph's \
             output is rescnn's prediction"
        ),
        EvalTime::Crops => format!(
            "crops: rescnn averages the class probabilities of crops of {width} frames every {} frames; \
             run the graph on each crop's image and average the network's probabilities",
            model.eval_mode().hop_for(&model.config.spectrogram.image)
        ),
        EvalTime::Whole if any_width => format!(
            "whole: rescnn classifies each utterance in one image of its own width (its frames, at \
             least {width}, rounded up to the first width the network's shortcuts accept; the extra \
             columns are padding), which `rescnn spectrogram --model` writes; the graph's width is \
             symbolic, so its output for that image is rescnn's prediction"
        ),
        EvalTime::Whole => format!(
            "whole: rescnn classifies each utterance in one image of its own width; this graph \
             takes {width} frames, so its network output is the first-frames evaluation, not rescnn's"
        ),
    };
    serde_json::json!({ "eval_time": model.config.eval_time, "how": how }).to_string()
}

/// Export `model` (one network, or an ensemble fold's members as one graph: see [`ensemble`]) to
/// the file `out`, atomically.
pub fn write_model(model: &Ensemble, out: &Path) -> Result<ModelProto> {
    let proto = ensemble::export_ensemble(model)?;
    crate::fsutil::write_atomic(out, &proto.to_bytes())?;
    Ok(proto)
}
