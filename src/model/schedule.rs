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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchSpec, InputShape, Plan};

    fn layer(plan: &Plan, name: &str) -> usize {
        plan.layers.iter().position(|l| l.name == name).unwrap()
    }

    fn input_of(plan: &Plan, name: &str) -> usize {
        plan.layers[layer(plan, name)].inputs()[0]
    }

    #[test]
    fn shortcut_sources_make_convolutions_accumulate_and_batch_norm_unfuses_the_pool() {
        // conv1 reads the image; pool1's output feeds conv2 AND is the source of `+1`, so conv2
        // must add into its gradient; pool2's output feeds conv3 only (`+1` adds INTO it, earlier
        // in the reverse pass), so conv3 writes. bn takes conv3's ReLU, so pool3 is not fused.
        let spec = ArchSpec::parse("c8k3 p2 +0 c8k3 p2 +1 c8k3 bn p2 fc5").unwrap();
        let plan = Plan::new(&spec, InputShape::new(1, 16, 16), 4).unwrap();
        let s = plan.schedule();
        let writes: Vec<(&str, bool)> = plan
            .layers
            .iter()
            .zip(&s.conv_writes_dx)
            .filter(|(l, _)| matches!(l.op, PlannedOp::Conv { .. }))
            .map(|(l, &w)| (l.name.as_str(), w))
            .collect();
        assert_eq!(
            writes,
            [("conv1", false), ("conv2", false), ("conv3", true)]
        );
        let (conv1, conv2, conv3) = (
            layer(&plan, "conv1"),
            layer(&plan, "conv2"),
            layer(&plan, "conv3"),
        );
        let (pool1, pool2, pool3) = (
            layer(&plan, "pool1"),
            layer(&plan, "pool2"),
            layer(&plan, "pool3"),
        );
        for (li, want) in [
            (conv1, Some(conv1)),
            (pool1, Some(conv1)),
            (conv2, Some(conv2)),
            (pool2, Some(conv2)),
            (conv3, None),
            (pool3, None),
        ] {
            assert_eq!(s.fused_relu_pool[li], want, "{}", plan.layers[li].name);
        }
        let fused = s.fused_relu_pool.iter().filter(|f| f.is_some()).count();
        assert_eq!(fused, 4, "only the two conv-pool pairs fuse: {s:?}");
        // Written gradients: the logits, the fused pools' inputs (conv1's and conv2's outputs) and
        // conv3's input; conv2's input (pool1's output) is accumulated by conv2 and `+1`.
        let written: Vec<usize> = (0..plan.nodes.len()).filter(|&n| s.written[n]).collect();
        let mut want = vec![
            input_of(&plan, "pool1"),
            input_of(&plan, "pool2"),
            input_of(&plan, "conv3"),
            plan.logits_node(),
        ];
        want.sort();
        assert_eq!(written, want);
        assert!(!s.written[input_of(&plan, "conv2")]);
        assert!(plan.needs_gradient(input_of(&plan, "conv2")));
        assert!(!plan.needs_gradient(input_of(&plan, "conv1")));
    }

    #[test]
    fn the_side_input_needs_no_gradient_and_a_dropout_between_conv_and_pool_unfuses_it() {
        let spec = ArchSpec::parse("c8k3 drop0.2 p2 c8k3 stats vec fc5").unwrap();
        let input = InputShape::new(1, 8, 8).with_side(3);
        let plan = Plan::new(&spec, input, 4).unwrap();
        let s = plan.schedule();
        assert!(s.fused_relu_pool.iter().all(Option::is_none), "{s:?}");
        // conv2 is the only reader of pool1's output.
        assert!(s.conv_writes_dx[layer(&plan, "conv2")]);
        let side = plan.side_input.unwrap();
        assert!(!plan.needs_gradient(side) && !s.written[side]);
    }
}
