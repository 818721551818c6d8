//! The backward pass's schedule, decided from a plan's layers alone: which max-pools take the fused
//! ReLU backward, and which gradients their first backward op WRITES rather than accumulates into
//! (so they need no zeroing). Every [`Plan`](super::Plan) carries its schedule; the network's
//! backward pass and its memory plan both read it, and a test checks it without a backend.

use super::layer::{PlannedLayer, PlannedOp};

/// The backward schedule of one plan (see the module docs); every vector is indexed as the plan's
/// layers or nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackwardSchedule {
    /// Per layer: for a ReLU convolution whose output only the next max-pool reads, and for that
    /// pool, the convolution's layer index. Their backward is fused: the pool WRITES the masked
    /// gradient and the convolution's bias gradient, the convolution runs without ReLU and bias.
    pub fused_relu_pool: Vec<Option<usize>>,
    /// Per layer: a convolution that is the only producer of its input's gradient (its input feeds
    /// no other layer and is no shortcut's source), so its backward WRITES that gradient
    /// ([`InputGrad::Write`](crate::backends::InputGrad::Write)), which is then not zeroed.
    pub conv_writes_dx: Vec<bool>,
    /// Per node: its gradient is written by its first backward op (the logits' by the loss, a fused
    /// pool's input, a writing convolution's input) rather than zeroed and accumulated into.
    pub written: Vec<bool>,
}

impl BackwardSchedule {
    /// The schedule of `layers` over `nodes` activation nodes (the last one the logits).
    pub fn new(layers: &[PlannedLayer], nodes: usize) -> Self {
        let fused_relu_pool = fused_relu_pools(layers);
        let conv_writes_dx = convs_writing_dx(layers);
        let written = written_gradients(layers, nodes, &fused_relu_pool, &conv_writes_dx);
        BackwardSchedule {
            fused_relu_pool,
            conv_writes_dx,
            written,
        }
    }
}

/// Which layers take the fused pool backward
/// ([`Backend::maxpool_relu_backward`](crate::backends::Backend::maxpool_relu_backward)): a max-pool
/// whose input node is written by a ReLU convolution and read by nothing but this pool (no other
/// layer, no shortcut from or into it), marked, with the convolution's layer index, at the pool and
/// at the convolution.
fn fused_relu_pools(layers: &[PlannedLayer]) -> Vec<Option<usize>> {
    let mut fused = vec![None; layers.len()];
    let uses = |node: usize| {
        layers
            .iter()
            .filter(|l| {
                l.inputs().contains(&node)
                    || matches!(l.op, PlannedOp::Shortcut { target, .. } if target == node)
            })
            .count()
    };
    for (pi, pool) in layers.iter().enumerate() {
        let PlannedOp::Pool { input, .. } = pool.op else {
            continue;
        };
        let producer = layers.iter().position(
            |l| matches!(l.op, PlannedOp::Conv { geom, output, .. } if output == input && geom.relu != 0),
        );
        if let (Some(ci), 1) = (producer, uses(input)) {
            fused[ci] = Some(ci);
            fused[pi] = Some(ci);
        }
    }
    fused
}

/// Which convolutions write their input's gradient: those whose input node has a gradient (not the
/// network's input) and is read by no other layer and by no shortcut as its source, so no other
/// backward adds into that gradient. Its readers (the node's producer, shortcuts into it) must come
/// before the convolution, so that the reverse pass runs the write first.
fn convs_writing_dx(layers: &[PlannedLayer]) -> Vec<bool> {
    let readers = |node: usize| layers.iter().filter(|l| l.inputs().contains(&node)).count();
    let read_later = |node: usize, after: usize| {
        layers[after + 1..]
            .iter()
            .any(|l| matches!(l.op, PlannedOp::Shortcut { target, .. } if target == node))
    };
    layers
        .iter()
        .enumerate()
        .map(|(li, l)| {
            matches!(l.op, PlannedOp::Conv { input, .. }
                if input != 0 && readers(input) == 1 && !read_later(input, li))
        })
        .collect()
}

/// Which nodes' gradients their first backward op writes (see [`BackwardSchedule::written`]).
fn written_gradients(
    layers: &[PlannedLayer],
    nodes: usize,
    fused: &[Option<usize>],
    conv_writes_dx: &[bool],
) -> Vec<bool> {
    let mut written = vec![false; nodes];
    written[nodes - 1] = true;
    for (li, layer) in layers.iter().enumerate() {
        match layer.op {
            PlannedOp::Pool { input, .. } if fused[li].is_some() => written[input] = true,
            PlannedOp::Conv { input, .. } if conv_writes_dx[li] => written[input] = true,
            _ => {}
        }
    }
    written
}
