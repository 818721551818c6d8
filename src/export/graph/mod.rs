//! A planned network with its weights as one ONNX graph: the spectrogram image in, the class
//! probabilities out, with the input normalisation at the front.
//!
//! Each planned op maps onto standard ONNX ops with rescnn's exact semantics:
//!
//! | rescnn | ONNX |
//! |---|---|
//! | input normalisation, per channel | `Sub` mean (1, C, 1, 1), `Mul` by 1/std (1, C, 1, 1), the reciprocal taken in f32 as the CPU reference takes it |
//! | input normalisation, per speaker | `Sub` the graph input `speaker_mean` (C, H, 1), `Mul` by `Reciprocal(speaker_std)` |
//! | conv, TensorFlow SAME | `Conv` with explicit `pads` (top, left, bottom, right): even kernels pad one more after than before, which `auto_pad=SAME_UPPER` would also do, but explicit pads leave nothing to a runtime's reading of `auto_pad`; then `Relu` |
//! | max-pool, floor mode | `MaxPool` (`ceil_mode` 0, no padding) |
//! | shortcut | `AveragePool` r×r, stride r (skipped for r = 1), `Gather` along channels with indices c mod C_src (skipped when the channels already agree), `Add` into the target |
//! | dense, classifier | `Flatten` (once, after the last 4-D map), `Gemm` with `transB` (w is (OUT, IN)), `Relu` |
//! | batch norm (evaluation) | `BatchNormalization` (`training_mode` 0) with the running mean and variance, `Relu` |
//! | statistics pooling | `ReduceMean` over H, then the mean over W and `Sqrt`(`ReduceMean` of the squared deviations + eps), `Concat` [means, stds] |
//! | dropout | nothing (the identity at inference) |
//! | `vec` (utterance vector) | a second graph input `utterance_vector` (N, D), already normalised as in training; its projection a `Gemm` + `Relu`; `Concat` after the features along axis 1 |
//! | softmax | `Softmax` over axis 1 |
//! | prosody branch | the utterance vector: `Sub` mean, `Mul` by 1/std (constants, or the speaker's as inputs), `Gemm` with the logistic regression (`transB`), `Softmax` |
//! | late fusion | `Mul` each probability matrix by its weight, `Add` |
//!
//! The batch dimension is symbolic (`N`) and the height fixed by the plan. So is the width, except
//! for a network that works alike at every width ([`Plan::any_width`]: statistics pooling, no
//! strided convolution), whose graph takes the width as the symbolic `W`: no op of such a graph
//! depends on it, so the graph classifies an image of any width the network accepts.

mod layers;

use super::onnx::{
    self, attr_int, node, tensor_f32, value_info, Dim, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto,
};
use crate::backends::ConvGeom;
use crate::data::InputNorm;
use crate::model::{NamedTensor, Plan};
use crate::{config_err, shape_err, Result};

/// The graph's input: the spectrogram image (N, C, H, W), planar f32 in [0, 1], exactly what
/// `rescnn spectrogram --npy` writes.
pub const INPUT: &str = "spectrogram";
/// The graph's output: class probabilities (N, classes), in the model's class order.
pub const OUTPUT: &str = "probabilities";
/// Extra inputs of a speaker-normalised model: its speaker's mean and standard deviation per
/// (channel, image row), shape (C, H, 1).
pub const SPEAKER_MEAN: &str = "speaker_mean";
pub const SPEAKER_STD: &str = "speaker_std";
/// The extra input of a model with a `vec` layer: each sample's utterance vector (N, D), normalised
/// as in training (per speaker or with the training set's statistics, as the model's input norm).
pub const UTTERANCE_VECTOR: &str = "normalised_utterance_vector";
/// The second input of a model with a prosody branch: the raw utterance vector (N, D).
pub const VECTOR_INPUT: &str = "utterance_vector";
/// Extra inputs of a speaker-normalised branch: the speaker's vector mean and standard
/// deviation, shape (D).
pub const SPEAKER_VECTOR_MEAN: &str = "speaker_vector_mean";
pub const SPEAKER_VECTOR_STD: &str = "speaker_vector_std";
/// Extra outputs of a model with a prosody branch: the network's and the branch's probabilities
/// before the fusion, (N, classes).
pub const NETWORK_OUTPUT: &str = "network_probabilities";
pub const BRANCH_OUTPUT: &str = "prosody_probabilities";

/// How the graph normalises the utterance vector.
#[derive(Clone, Debug, PartialEq)]
pub enum VectorNorm<'a> {
    /// `v ← (v − mean) · (1/std)` with the training statistics as constants.
    Constants { mean: &'a [f64], std: &'a [f64] },
    /// The speaker's statistics as two more graph inputs.
    SpeakerInputs,
}

/// The raw utterance vector [`VECTOR_INPUT`] and its normalisation inside the graph: what the
/// prosody branch classifies and a joint network's `vec` layer reads (the same normalised vector).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphVector<'a> {
    pub norm: VectorNorm<'a>,
    /// D, the vector's length.
    pub dims: usize,
}

/// The late-fused prosody branch: a logistic regression on the normalised utterance vector,
/// `(1 − w) · network + w · branch`.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphBranch<'a> {
    /// One row per class: the weights, then the bias.
    pub rows: &'a [Vec<f64>],
    pub fusion_weight: f64,
}

/// How the graph normalises its input.
#[derive(Clone, Debug, PartialEq)]
pub enum GraphNorm<'a> {
    /// `x ← (x − mean[c]) · (1/std[c])` with constants from training.
    PerChannel(&'a InputNorm),
    /// `x ← (x − speaker_mean[c, row]) · (1/speaker_std[c, row])` with the speaker's statistics
    /// given as two more graph inputs.
    PerSpeakerInputs,
}

/// Everything that goes into an exported model.
pub struct GraphSpec<'a> {
    pub plan: &'a Plan,
    pub params: &'a [NamedTensor<f32>],
    /// Whether the input's width is the symbolic dimension `W` (a plan for which
    /// [`Plan::any_width`] holds), else the plan's width.
    pub any_width: bool,
    pub norm: GraphNorm<'a>,
    /// The utterance vector, if the model has a branch or a `vec` layer.
    pub vector: Option<GraphVector<'a>>,
    /// The prosody branch fused with the network, if the model has one (it needs `vector`).
    pub branch: Option<GraphBranch<'a>>,
    /// `metadata_props` of the model, in order.
    pub metadata: Vec<(String, String)>,
    /// `producer_version` (rescnn's version).
    pub producer_version: String,
    pub doc: String,
}

/// An ONNX-safe version of a layer name: "shortcut 0→pool3" → "shortcut0_to_pool3".
fn tensor_prefix(layer: &str) -> String {
    layer
        .replace('→', "_to_")
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The (top, left, bottom, right) padding of a planned convolution. The geometry stores the
/// padding before; the padding after is whatever the output size needs beyond the input (SAME pads
/// ⌊total/2⌋ before and the rest after; rows the last window does not reach need none).
pub fn conv_pads(g: &ConvGeom) -> [usize; 4] {
    let after = |out: i32, k: i32, input: i32, before: i32| {
        ((out - 1) * g.stride + k - input - before).max(0) as usize
    };
    [
        g.pad_top as usize,
        g.pad_left as usize,
        after(g.h_out, g.k_h, g.h_in, g.pad_top),
        after(g.w_out, g.k_w, g.w_in, g.pad_left),
    ]
}

struct Builder<'a> {
    params: &'a [NamedTensor<f32>],
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Builder<'_> {
    /// The checked tensors `wanted` (names and dimensions from the plan) of `layer`, as
    /// initializers named after the ONNX prefix.
    fn tensors(
        &mut self,
        layer: &crate::model::PlannedLayer,
        prefix: &str,
        wanted: Vec<(String, Vec<usize>)>,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for (name, dims) in wanted {
            let t = self.params.iter().find(|t| t.name == name).ok_or_else(|| {
                config_err!(
                    "cannot export layer `{}`: its tensor `{name}` is not in the checkpoint",
                    layer.name
                )
            })?;
            if t.dims != dims || t.data.len() != dims.iter().product::<usize>() {
                return Err(shape_err!(
                    "cannot export layer `{}`: `{name}` has dimensions {:?}, the plan needs {dims:?}",
                    layer.name,
                    t.dims
                ));
            }
            let suffix = name.rsplit('.').next().unwrap_or("param");
            let onnx_name = format!("{prefix}.{suffix}");
            self.initializers
                .push(tensor_f32(&onnx_name, &dims, &t.data));
            names.push(onnx_name);
        }
        Ok(names)
    }

    /// The checked weight and bias of a conv or dense `layer`.
    fn weights(
        &mut self,
        layer: &crate::model::PlannedLayer,
        prefix: &str,
    ) -> Result<(String, String)> {
        let names = self.tensors(layer, prefix, layer.params())?;
        let [w, b]: [String; 2] = names.try_into().map_err(|_| {
            config_err!(
                "cannot export layer `{}`: expected a weight and a bias",
                layer.name
            )
        })?;
        Ok((w, b))
    }

    fn push(&mut self, n: NodeProto) {
        self.nodes.push(n);
    }
}

/// The tensor holding the normalised utterance vector, which the branch classifies and a joint
/// network takes as its side input.
const NORMALISED_VECTOR: &str = "vector.normalised";

/// The raw utterance vector [`VECTOR_INPUT`] normalised into [`NORMALISED_VECTOR`], emitted
/// before the network, whose `vec` layer may read it.
fn add_vector_norm(
    b: &mut Builder<'_>,
    inputs: &mut Vec<onnx::ValueInfoProto>,
    vector: &GraphVector<'_>,
) -> Result<()> {
    let dims = vector.dims;
    let batch = Dim::Named("N");
    inputs.push(value_info(
        VECTOR_INPUT,
        &[batch.clone(), Dim::Fixed(dims)],
        "the raw utterance (prosody) vector (N, D) as `rescnn spectrogram --vector-npy` writes it; \
         see metadata `rescnn.utterance_vector`",
    ));
    let (mean, inv_std) = match &vector.norm {
        VectorNorm::Constants { mean, std } => {
            if mean.len() != dims || std.len() != dims {
                return Err(shape_err!(
                    "cannot export the utterance vector's normaliser: {} means and {} deviations for {dims} entries",
                    mean.len(),
                    std.len()
                ));
            }
            let m: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
            let inv: Vec<f32> = std.iter().map(|&v| (1.0 / v) as f32).collect();
            b.initializers
                .push(tensor_f32("vector_norm.mean", &[dims], &m));
            b.initializers
                .push(tensor_f32("vector_norm.inv_std", &[dims], &inv));
            (
                "vector_norm.mean".to_string(),
                "vector_norm.inv_std".to_string(),
            )
        }
        VectorNorm::SpeakerInputs => {
            inputs.push(value_info(
                SPEAKER_VECTOR_MEAN,
                &[Dim::Fixed(dims)],
                "the speaker's utterance-vector mean per entry",
            ));
            inputs.push(value_info(
                SPEAKER_VECTOR_STD,
                &[Dim::Fixed(dims)],
                "the speaker's utterance-vector standard deviation per entry (1 where below 1e-6 of the entry's scale)",
            ));
            b.push(node(
                "Reciprocal",
                "vector_norm.reciprocal",
                &[SPEAKER_VECTOR_STD],
                &["vector_norm.inv_std"],
                vec![],
            ));
            (
                SPEAKER_VECTOR_MEAN.to_string(),
                "vector_norm.inv_std".to_string(),
            )
        }
    };
    b.push(node(
        "Sub",
        "vector_norm.sub",
        &[VECTOR_INPUT, &mean],
        &["vector.centred"],
        vec![],
    ));
    b.push(node(
        "Mul",
        "vector_norm.scale",
        &["vector.centred", &inv_std],
        &[NORMALISED_VECTOR],
        vec![],
    ));
    Ok(())
}

/// The prosody branch and the fusion: `Gemm` of the normalised vector (of `dims` entries) with the
/// regression's rows and biases, `Softmax`, then `(1 − w) · network + w · branch` into [`OUTPUT`].
fn add_branch(
    b: &mut Builder<'_>,
    outputs: &mut Vec<onnx::ValueInfoProto>,
    branch: &GraphBranch<'_>,
    classes: usize,
    dims: usize,
) -> Result<()> {
    let stride = dims + 1;
    if branch.rows.len() != classes || branch.rows.iter().any(|r| r.len() != stride) {
        return Err(shape_err!(
            "cannot export the prosody branch: {} rows for {classes} classes of {dims} inputs",
            branch.rows.len()
        ));
    }
    let batch = Dim::Named("N");
    let w: Vec<f32> = branch
        .rows
        .iter()
        .flat_map(|r| r[..dims].iter().map(|&v| v as f32))
        .collect();
    let bias: Vec<f32> = branch.rows.iter().map(|r| r[dims] as f32).collect();
    b.initializers
        .push(tensor_f32("prosody.weight", &[classes, dims], &w));
    b.initializers
        .push(tensor_f32("prosody.bias", &[classes], &bias));
    b.push(node(
        "Gemm",
        "prosody",
        &[NORMALISED_VECTOR, "prosody.weight", "prosody.bias"],
        &["prosody.scores"],
        vec![attr_int("transB", 1)],
    ));
    b.push(node(
        "Softmax",
        "prosody.softmax",
        &["prosody.scores"],
        &[BRANCH_OUTPUT],
        vec![attr_int("axis", 1)],
    ));
    let wt = branch.fusion_weight;
    b.initializers.push(tensor_f32(
        "fusion.network_weight",
        &[],
        &[(1.0 - wt) as f32],
    ));
    b.initializers
        .push(tensor_f32("fusion.prosody_weight", &[], &[wt as f32]));
    b.push(node(
        "Mul",
        "fusion.network",
        &[NETWORK_OUTPUT, "fusion.network_weight"],
        &["fusion.network_part"],
        vec![],
    ));
    b.push(node(
        "Mul",
        "fusion.prosody",
        &[BRANCH_OUTPUT, "fusion.prosody_weight"],
        &["fusion.prosody_part"],
        vec![],
    ));
    b.push(node(
        "Add",
        "fusion",
        &["fusion.network_part", "fusion.prosody_part"],
        &[OUTPUT],
        vec![],
    ));
    for (name, doc) in [
        (
            NETWORK_OUTPUT,
            "the network's class probabilities alone (N, classes)",
        ),
        (
            BRANCH_OUTPUT,
            "the prosody branch's class probabilities alone (N, classes)",
        ),
    ] {
        outputs.push(value_info(name, &[batch.clone(), Dim::Fixed(classes)], doc));
    }
    Ok(())
}

/// Build the ONNX model of `spec`.
pub fn build(spec: &GraphSpec<'_>) -> Result<ModelProto> {
    let plan = spec.plan;
    let input = plan.input;
    let mut b = Builder {
        params: spec.params,
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    let batch = Dim::Named("N");
    let mut inputs = vec![value_info(
        INPUT,
        &[
            batch.clone(),
            Dim::Fixed(input.channels),
            Dim::Fixed(input.height),
            if spec.any_width {
                Dim::Named("W")
            } else {
                Dim::Fixed(input.width)
            },
        ],
        "spectrogram image (N, C, H, W), planar f32 in [0, 1] as `rescnn spectrogram --npy` writes it",
    )];

    // Node 0 (the input) enters the network normalised.
    let normalised = match &spec.norm {
        GraphNorm::PerChannel(norm) => {
            if norm.mean.len() != input.channels || norm.std.len() != input.channels {
                return Err(shape_err!(
                    "cannot export the input normalisation: it has {} means and {} standard deviations for {} channel(s)",
                    norm.mean.len(),
                    norm.std.len(),
                    input.channels
                ));
            }
            // The CPU reference multiplies by the f32 reciprocal (data::batch::InputNorm::apply).
            let inv: Vec<f32> = norm.std.iter().map(|s| 1.0 / s).collect();
            let dims = [1, input.channels, 1, 1];
            b.initializers
                .push(tensor_f32("input_norm.mean", &dims, &norm.mean));
            b.initializers
                .push(tensor_f32("input_norm.inv_std", &dims, &inv));
            normalise_input(&mut b, "input_norm.mean")
        }
        GraphNorm::PerSpeakerInputs => {
            let dims = [
                Dim::Fixed(input.channels),
                Dim::Fixed(input.height),
                Dim::Fixed(1),
            ];
            inputs.push(value_info(
                SPEAKER_MEAN,
                &dims,
                "the speaker's mean per (channel, image row)",
            ));
            inputs.push(value_info(
                SPEAKER_STD,
                &dims,
                "the speaker's floored standard deviation per (channel, image row)",
            ));
            b.push(node(
                "Reciprocal",
                "input_norm.reciprocal",
                &[SPEAKER_STD],
                &["input_norm.inv_std"],
                vec![],
            ));
            normalise_input(&mut b, SPEAKER_MEAN)
        }
    };

    // The ONNX tensor currently holding each plan node (a shortcut replaces its target's).
    let mut current: Vec<String> = vec![String::new(); plan.nodes.len()];
    current[0] = normalised;
    // Whether node i is still a 4-D map (dense layers make it 2-D).
    let mut flattened = vec![false; plan.nodes.len()];
    if let Some(vector) = &spec.vector {
        add_vector_norm(&mut b, &mut inputs, vector)?;
    }
    let vector_dims = spec.vector.as_ref().map(|v| v.dims);
    if let Some(node) = plan.side_input {
        current[node] = match vector_dims {
            // The graph's normaliser is the one the joint network was trained with.
            Some(dims) if dims == input.side => NORMALISED_VECTOR.to_string(),
            Some(dims) => {
                return Err(shape_err!(
                    "cannot export: the network takes vectors of {} values, the graph's vector has {dims}",
                    input.side
                ))
            }
            None => {
                inputs.push(value_info(
                    UTTERANCE_VECTOR,
                    &[batch.clone(), Dim::Fixed(input.side)],
                    "each sample's utterance vector (N, D), normalised as the model was trained",
                ));
                UTTERANCE_VECTOR.to_string()
            }
        };
        flattened[node] = true;
    }
    let logits = plan.logits_node();
    for layer in &plan.layers {
        b.layer(layer, &mut current, &mut flattened)?;
    }
    if !flattened[logits] {
        return Err(config_err!(
            "cannot export `{}`: the network does not end in a dense classifier",
            plan.spec
        ));
    }
    let network_out = if spec.branch.is_some() {
        NETWORK_OUTPUT
    } else {
        OUTPUT
    };
    b.push(node(
        "Softmax",
        "softmax",
        &[&current[logits]],
        &[network_out],
        vec![attr_int("axis", 1)],
    ));
    let mut outputs = vec![value_info(
        OUTPUT,
        &[batch.clone(), Dim::Fixed(plan.classes)],
        "class probabilities (N, classes) in the order of metadata `rescnn.classes`",
    )];
    match (&spec.branch, vector_dims) {
        (Some(branch), Some(dims)) => add_branch(&mut b, &mut outputs, branch, plan.classes, dims)?,
        (Some(_), None) => {
            return Err(config_err!(
                "cannot export a prosody branch without its utterance vector"
            ))
        }
        (None, _) => {}
    }
    Ok(ModelProto {
        ir_version: onnx::IR_VERSION,
        producer_name: "rescnn".into(),
        producer_version: spec.producer_version.clone(),
        domain: String::new(),
        model_version: 1,
        doc_string: spec.doc.clone(),
        graph: Some(GraphProto {
            node: b.nodes,
            name: "rescnn".into(),
            initializer: b.initializers,
            doc_string: format!("rescnn network `{}`", plan.spec),
            input: inputs,
            output: outputs,
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: onnx::OPSET,
        }],
        metadata_props: spec
            .metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    })
}

/// The nodes that normalise the graph input: (input − `mean`) · `input_norm.inv_std`, whichever
/// tensors hold them (initializers or graph inputs). Returns the normalised value's name.
fn normalise_input(b: &mut Builder, mean: &str) -> String {
    b.push(node(
        "Sub",
        "input_norm.sub",
        &[INPUT, mean],
        &["input.centred"],
        vec![],
    ));
    b.push(node(
        "Mul",
        "input_norm.scale",
        &["input.centred", "input_norm.inv_std"],
        &["input.normalised"],
        vec![],
    ));
    "input.normalised".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Padding;
    use crate::tensor::Shape;

    #[test]
    fn pads_put_the_extra_row_after_for_even_kernels() {
        let g = |k, s, size| {
            ConvGeom::new(
                Shape::new(1, 1, size, size),
                1,
                (k, k),
                s,
                Padding::Same,
                true,
            )
            .unwrap()
        };
        // k = 4: total 3 → 1 before, 2 after; k = 10: 4 and 5; k = 3: 1 and 1.
        assert_eq!(conv_pads(&g(4, 1, 16)), [1, 1, 2, 2]);
        assert_eq!(conv_pads(&g(10, 1, 16)), [4, 4, 5, 5]);
        assert_eq!(conv_pads(&g(3, 1, 16)), [1, 1, 1, 1]);
        // Stride 2 on 16 with k = 4: out 8, total (7·2 + 4) − 16 = 2 → 1 and 1.
        assert_eq!(conv_pads(&g(4, 2, 16)), [1, 1, 1, 1]);
        // Stride 4, k = 1 on 10: out 3, the last window ends at row 8, nothing to pad.
        assert_eq!(conv_pads(&g(1, 4, 10)), [0, 0, 0, 0]);
    }

    #[test]
    fn layer_names_become_ascii_tensor_names() {
        assert_eq!(tensor_prefix("shortcut 0→pool3"), "shortcut0_to_pool3");
        assert_eq!(tensor_prefix("conv1"), "conv1");
    }
}
