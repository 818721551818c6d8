//! The memory plan of a network: which device buffers it allocates for a batch, and which of them
//! the activations and the activation gradients share. [`Network`](super::Network) allocates from
//! it, and the trainer's memory check ([`MemoryPlan::bytes`]) sums the same list, so the two cannot
//! disagree.
//!
//! What the backward pass reads decides what is kept:
//! - Every activation is kept: the backward pass reads a layer's input (weight gradients) or its
//!   output (ReLU masks, batch norm, statistics pooling).
//! - A ReLU convolution whose output only a max-pool reads (the fused pair of
//!   [`Backend::maxpool_relu_backward`](crate::backends::Backend::maxpool_relu_backward)) is not read
//!   again after the pool's forward pass: the pool keeps the ReLU mask in its argmax. The gradient of
//!   that output is written into the same buffer.
//! - Every other activation gradient lives only from the first backward op that touches it to the
//!   last; gradients whose lifetimes do not overlap share a buffer, sized for the largest.
//! - The network's inputs, the image and the side input of a `vec` layer, have no gradient.
//! - The optimizer's first moment exists for AdamW only.

use std::collections::HashSet;

use super::layer::PlannedOp;
use super::plan::Plan;
use crate::backends::ops::{
    conv2d::kernel as conv2d, dense::kernel as dense, maxpool::kernel as maxpool,
};

/// Bytes of one value (f32) and one index (u32) on a device.
const VALUE_BYTES: u64 = 4;
const INDEX_BYTES: u64 = 4;

/// The buffers of the activations and their gradients. Buffer `k < nodes` is node k's activation;
/// the buffers after them hold gradients only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Values per sample of each buffer (a network allocates `max_batch` times this).
    pub buffers: Vec<usize>,
    /// Per node, the buffer of its gradient (`None`: the image or the side input, or a node no
    /// backward op touches).
    pub gradient: Vec<Option<usize>>,
    /// Per backward step (0: the loss; `layers - li`: the backward of layer li), the gradient
    /// buffers first touched there by an accumulating op: zeroed just before that step.
    pub zero_before: Vec<Vec<usize>>,
}

/// What a network of a plan allocates, in bytes (see [`MemoryPlan::bytes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryBytes {
    /// Weights, their gradients and the optimizer state (RMSProp: the mean square; AdamW: both
    /// moments), batch norm's running statistics.
    pub params: u64,
    /// Activations, activation gradients, max-pool argmaxes, batch norm's saved statistics, labels,
    /// soft targets and per-sample losses.
    pub activations: u64,
}

impl MemoryBytes {
    pub fn total(&self) -> u64 {
        self.params + self.activations
    }
}

/// The memory plan of `plan` as a network lays it out. The gradients its backward schedule marks
/// as written ([`BackwardSchedule::written`](super::schedule::BackwardSchedule::written)) are not
/// zeroed; every other gradient is zeroed before its first use.
pub fn memory_plan(plan: &Plan) -> MemoryPlan {
    let schedule = plan.schedule();
    let nodes = plan.nodes.len();
    let layers = plan.layers.len();
    let mut buffers: Vec<usize> = plan.nodes.iter().map(|s| s.per_sample()).collect();
    let mut gradient = vec![None; nodes];
    for (li, l) in plan.layers.iter().enumerate() {
        if let PlannedOp::Conv { output, .. } = l.op {
            if schedule.fused_relu_pool[li].is_some() {
                gradient[output] = Some(output);
            }
        }
    }
    // Lifetimes over the backward steps. A layer's backward touches the gradient of its output
    // and, unless that is the network's input, of its input.
    let mut life: Vec<Option<(usize, usize)>> = vec![None; nodes];
    let mut touch = |node: usize, step: usize| {
        if plan.needs_gradient(node) {
            let l = life[node].get_or_insert((step, step));
            *l = (l.0.min(step), l.1.max(step));
        }
    };
    touch(plan.logits_node(), 0);
    for (li, l) in plan.layers.iter().enumerate() {
        touch(l.output(), layers - li);
        for read in l.inputs() {
            touch(read, layers - li);
        }
    }
    // Interval colouring in order of first use: a gradient takes the free buffer closest to its
    // size from above (else the largest free one, grown), or a new buffer.
    let mut order: Vec<usize> = (1..nodes)
        .filter(|&n| gradient[n].is_none() && life[n].is_some())
        .collect();
    order.sort_by_key(|&n| (life[n].map(|l| l.0), n));
    // (buffer, last step it is used at)
    let mut shared: Vec<(usize, usize)> = Vec::new();
    for n in order {
        let (first, last) = life[n].expect("filtered");
        let need = plan.nodes[n].per_sample();
        let free = shared
            .iter()
            .enumerate()
            .filter(|(_, &(_, until))| until < first)
            .map(|(i, &(b, _))| (i, buffers[b]));
        let pick = free
            .clone()
            .filter(|&(_, len)| len >= need)
            .min_by_key(|&(_, len)| len)
            .or_else(|| free.max_by_key(|&(_, len)| len))
            .map(|(i, _)| i);
        let slot = match pick {
            Some(i) => i,
            None => {
                buffers.push(0);
                shared.push((buffers.len() - 1, 0));
                shared.len() - 1
            }
        };
        let b = shared[slot].0;
        buffers[b] = buffers[b].max(need);
        shared[slot].1 = last;
        gradient[n] = Some(b);
    }
    let mut zero_before = vec![Vec::new(); layers + 1];
    for n in 1..nodes {
        if let (Some(b), Some((first, _)), false) = (gradient[n], life[n], schedule.written[n]) {
            zero_before[first].push(b);
        }
    }
    MemoryPlan {
        buffers,
        gradient,
        zero_before,
    }
}

impl MemoryPlan {
    /// Everything a network of `plan` allocates for batches of up to `batch` samples, trained by
    /// AdamW (`adamw`) or RMSProp: the list [`Network::from_plan`](super::Network::from_plan)
    /// allocates, summed. Working space inside the ops (the backend's scratch) is not included.
    pub fn bytes(&self, plan: &Plan, batch: usize, adamw: bool) -> MemoryBytes {
        let b = batch as u64;
        let moments = if adamw { 2 } else { 1 };
        let mut params = (2 + moments) * VALUE_BYTES * plan.param_count() as u64;
        let mut activations = 0;
        for l in &plan.layers {
            for (_, dims) in l.state() {
                params += VALUE_BYTES * dims.iter().product::<usize>() as u64;
            }
            match l.op {
                PlannedOp::BatchNorm { geom, .. } => activations += VALUE_BYTES * 2 * geom.c as u64,
                PlannedOp::Pool { geom, .. } => {
                    activations += INDEX_BYTES * b * geom.output().len() as u64
                }
                _ => {}
            }
        }
        activations += VALUE_BYTES * b * self.buffers.iter().sum::<usize>() as u64;
        // Labels, per-sample losses, soft targets and class weights.
        let classes = plan.classes as u64;
        activations += INDEX_BYTES * b + VALUE_BYTES * (b + b * classes + classes);
        MemoryBytes {
            params,
            activations,
        }
    }
}

/// Bytes the kernel backend's working space holds for a step of `plan` at batch `batch`: its one
/// scratch buffer, grown to the largest split-K or partial-sum request of any op, the
/// convolutions' K tables (one per distinct gather) and the loss's two counters. From the same
/// functions the op wrappers size their requests with.
pub fn kernel_scratch_bytes(plan: &Plan, batch: usize) -> u64 {
    let fused = &plan.schedule().fused_relu_pool;
    let mut scratch = 0usize;
    let mut tables = HashSet::new();
    let mut table_bytes = 0usize;
    for (li, l) in plan.layers.iter().enumerate() {
        let len = match l.op {
            PlannedOp::Conv { geom, input, .. } => {
                let g = geom.with_batch(batch);
                for backward_data in [false, true] {
                    if backward_data && !plan.needs_gradient(input) {
                        continue;
                    }
                    let (key, bytes) = conv2d::gather_table_bytes(&g, backward_data);
                    if tables.insert(key) {
                        table_bytes += bytes;
                    }
                }
                conv2d::backward_scratch_len(&g, fused[li].is_none())
            }
            PlannedOp::Pool { geom, .. } if fused[li].is_some() => {
                maxpool::relu_backward_scratch_len(&geom.with_batch(batch))
            }
            PlannedOp::Dense { geom, input, .. } => {
                dense::scratch_len(&geom.with_batch(batch), plan.needs_gradient(input))
            }
            _ => 0,
        };
        scratch = scratch.max(len);
    }
    (VALUE_BYTES as usize * scratch + table_bytes + 2 * INDEX_BYTES as usize) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchSpec, InputShape};

    fn plan(spec: &str, input: InputShape) -> Plan {
        Plan::new(&ArchSpec::from_name_or_spec(spec).unwrap(), input, 7).unwrap()
    }

    #[test]
    fn fused_convolutions_keep_their_gradient_in_their_output_and_the_rest_share() {
        let p = plan("paper", InputShape::new(3, 64, 64));
        let m = memory_plan(&p);
        // conv1..conv4 write nodes 1, 3, 5, 7; each is pooled only, so its gradient is its output.
        for conv in [1, 3, 5, 7] {
            assert_eq!(m.gradient[conv], Some(conv));
        }
        // The pools' and dense layers' gradients form one chain: two buffers alternate.
        let shared: Vec<usize> = (1..p.nodes.len())
            .filter(|&n| m.gradient[n] != Some(n))
            .map(|n| m.gradient[n].unwrap())
            .collect();
        let mut distinct = shared.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 2, "{m:?}");
        assert_eq!(m.buffers.len(), p.nodes.len() + 2);
        // The larger holds pool1's gradient (32 × 32 × 32 per sample).
        assert_eq!(
            m.buffers[p.nodes.len()..].iter().max(),
            Some(&(32 * 32 * 32))
        );
        assert!(m.gradient[0].is_none());
        // No two gradients alive at the same step share a buffer: the backward of every layer
        // reads and writes different ones.
        for l in &p.layers {
            let w = l.output();
            for r in l.inputs().into_iter().filter(|&r| r != 0) {
                assert_ne!(m.gradient[r], m.gradient[w], "{}", l.name);
            }
        }
    }
}
