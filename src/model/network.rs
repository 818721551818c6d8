//! The network on a backend: parameters, optimizer state and every activation buffer allocated once
//! for the largest batch, then forward, loss, backward and optimizer update (RMSProp or AdamW)
//! driven through the
//! [`Backend`] contract, so the same code runs on the CPU reference, the emulated device and CUDA.
//!
//! # Training and evaluation
//! [`Network::forward`] (and [`Network::train_step`]) run in TRAINING mode: batch norm normalises
//! with the batch's statistics and updates its running averages, dropout drops. The evaluation
//! entry points, [`Network::forward_logits`] and [`Network::evaluate`], run in EVALUATION mode:
//! batch norm uses the running averages and dropout is the identity; a backward pass after them is
//! refused. For networks without batch norm and dropout the two modes compute the same bits.
//!
//! # State
//! Besides the trained parameters a network has state that training changes but no gradient does:
//! batch norm's running mean and variance (`bnK.running_mean`, `bnK.running_var`). It travels with
//! the parameters in [`Network::export_params`] / [`Network::import_params`], so checkpoints save
//! and restore it exactly. Dropout's mask is a function of (seed, step, layer): the seed given to
//! [`Network::new`], the step count restored with the optimizer state, so a resumed run draws the
//! masks the uninterrupted run would have drawn.

use super::init;
use super::memory::MemoryPlan;
use super::plan::{InputShape, Plan, PlannedOp};
use super::spec::ArchSpec;
use crate::backends::geometry::{AdamWConfig, RmsPropConfig};
use crate::backends::{Backend, InputGrad};
use crate::backends::{DropoutParams, XentGeom, XentStats};
use crate::tensor::Real;
use crate::{config_err, shape_err, Result};

/// A named host tensor: how parameters and optimizer state leave and enter a network (checkpoints).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor<T> {
    /// e.g. "conv1.weight", "fc2.bias", "classifier.weight".
    pub name: String,
    /// Row-major dimensions: conv weights (C_out, C_in, K_h, K_w), dense weights (OUT, IN), biases (C).
    pub dims: Vec<usize>,
    pub data: Vec<T>,
}

/// The optimizer's state, tensors named like their parameters: the number of updates applied so
/// far (which sets the learning rate, and AdamW's bias correction), the running mean square of
/// every parameter's gradient (RMSProp's r, AdamW's second moment v: the same recurrence with their
/// own rates) and, for AdamW only, the first moment m (empty for RMSProp).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<T> {
    pub step: u64,
    pub mean_square: Vec<NamedTensor<T>>,
    pub first_moment: Vec<NamedTensor<T>>,
}

/// The update a training step applies: RMSProp, or AdamW with the run's length (its learning-rate
/// schedule is a function of the step and the total).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    RmsProp(RmsPropConfig),
    AdamW { cfg: AdamWConfig, total_steps: u64 },
}

impl From<&RmsPropConfig> for Optimizer {
    fn from(cfg: &RmsPropConfig) -> Self {
        Optimizer::RmsProp(*cfg)
    }
}

impl Optimizer {
    fn uses_first_moment(&self) -> bool {
        matches!(self, Optimizer::AdamW { .. })
    }
    fn name(uses_first_moment: bool) -> &'static str {
        if uses_first_moment {
            "AdamW"
        } else {
            "RMSProp"
        }
    }
}

struct Param<B: Backend> {
    name: String,
    dims: Vec<usize>,
    value: B::Buf,
    grad: B::Buf,
    mean_square: B::Buf,
    /// AdamW's first moment: empty until the first AdamW update or an import of AdamW's state
    /// allocates it (RMSProp never needs it).
    first_moment: B::Buf,
}

/// Where a network is in its step, so pieces are called in an order that makes sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Idle,
    /// Activations hold a forward pass of `n` samples (in training mode or not).
    Forward {
        n: usize,
        training: bool,
    },
    /// ... and the logits' gradient holds the loss gradient.
    Loss {
        n: usize,
        training: bool,
    },
    /// Parameter gradients are ready for an update.
    Gradients,
}

/// A network built from a [`Plan`] on backend `B`.
///
/// All buffers — parameters, their gradients, optimizer state, the activation and gradient buffers
/// of the [`MemoryPlan`], max-pool argmaxes, labels and per-sample losses — are allocated once in
/// [`Network::new`] for `max_batch` samples (AdamW's first moments at its first update); a training
/// step after the first allocates no buffer (inputs and labels are written into the existing ones). What a backend does inside an op is its
/// own business: the CPU reference reuses a scratch pool, though the GEMM crate it calls allocates
/// small packing buffers per call.
/// Any batch of 1 to `max_batch` samples can be run.
pub struct Network<B: Backend> {
    plan: Plan,
    max_batch: usize,
    params: Vec<Param<B>>,
    /// For each planned layer with parameters, the index of its weight in `params` (bias follows;
    /// batch norm: γ, then β).
    layer_params: Vec<Option<usize>>,
    /// Non-trained state (batch norm's running mean, then variance); `grad` and the moments are
    /// empty.
    state: Vec<Param<B>>,
    /// For each batch norm layer, the index of its running mean in `state`.
    layer_state: Vec<Option<usize>>,
    /// For each batch norm layer, the (μ, 1/σ) of its last training forward pass, (2, C).
    bn_saved: Vec<Option<B::Buf>>,
    /// Capacity of each pool layer's argmax buffer (they grow with the input width).
    argmax_len: Vec<usize>,
    /// Seeds the dropout masks (with the step and the layer index).
    seed: u64,
    /// The buffers of the memory plan: node k's activation is `bufs[k]`; gradients live where
    /// `memory.gradient` says (see [`MemoryPlan`]).
    bufs: Vec<B::Buf>,
    memory: MemoryPlan,
    argmax: Vec<Option<B::Idx>>,
    labels: B::Idx,
    /// Soft targets (max_batch, classes) and class weights (classes) of [`Network::loss_soft`].
    targets: B::Buf,
    class_weights: B::Buf,
    losses: B::Buf,
    /// Per layer: for a ReLU convolution whose output only the next max-pool reads, and for that
    /// pool, the convolution's layer index. Their backward is fused: the pool WRITES the masked
    /// gradient and the convolution's bias gradient, the convolution runs without ReLU and bias.
    fused_relu_pool: Vec<Option<usize>>,
    /// Per layer: a convolution that is the only producer of its input's gradient (its input feeds
    /// no other layer and is no shortcut's source), so its backward WRITES that gradient, which is
    /// then not zeroed.
    conv_writes_dx: Vec<bool>,
    step: u64,
    /// Which optimizer's state the moments hold once updates were applied or imported (`Some(true)`:
    /// AdamW's, `Some(false)`: RMSProp's, `None`: fresh): the other optimizer would misread them.
    moments_of: Option<bool>,
    stage: Stage,
}

/// Which layers take the fused pool backward ([`Backend::maxpool_relu_backward`]): a max-pool whose
/// input node is written by a ReLU convolution and read by nothing but this pool (no other layer, no
/// shortcut from or into it) — marked, with the convolution's layer index, at the pool and at the
/// convolution.
pub(super) fn fused_relu_pools(plan: &Plan) -> Vec<Option<usize>> {
    let mut fused = vec![None; plan.layers.len()];
    let uses = |node: usize| {
        plan.layers
            .iter()
            .filter(|l| match l.op {
                PlannedOp::Conv { input, .. }
                | PlannedOp::Pool { input, .. }
                | PlannedOp::Dense { input, .. }
                | PlannedOp::BatchNorm { input, .. }
                | PlannedOp::StatsPool { input, .. }
                | PlannedOp::Dropout { input, .. } => input == node,
                PlannedOp::Shortcut { source, target, .. } => source == node || target == node,
                PlannedOp::Concat { input, side, .. } => input == node || side == node,
            })
            .count()
    };
    for (pi, pool) in plan.layers.iter().enumerate() {
        let PlannedOp::Pool { input, .. } = pool.op else {
            continue;
        };
        let producer = plan.layers.iter().position(
            |l| matches!(l.op, PlannedOp::Conv { geom, output, .. } if output == input && geom.relu != 0),
        );
        if let (Some(ci), 1) = (producer, uses(input)) {
            fused[ci] = Some(ci);
            fused[pi] = Some(ci);
        }
    }
    fused
}

/// Which convolutions write their input's gradient ([`InputGrad::Write`]): those whose input node has
/// a gradient (not the network's input) and is read by no other layer and by no shortcut as its
/// source, so no other backward adds into that gradient. Its readers (the node's producer, shortcuts
/// into it) must come before the convolution, so that the reverse pass runs the write first.
fn convs_writing_dx(plan: &Plan) -> Vec<bool> {
    let producers = |node: usize| {
        plan.layers
            .iter()
            .filter(|l| match l.op {
                PlannedOp::Conv { input, .. }
                | PlannedOp::Pool { input, .. }
                | PlannedOp::Dense { input, .. }
                | PlannedOp::BatchNorm { input, .. }
                | PlannedOp::StatsPool { input, .. }
                | PlannedOp::Dropout { input, .. } => input == node,
                PlannedOp::Shortcut { source, .. } => source == node,
                PlannedOp::Concat { input, side, .. } => input == node || side == node,
            })
            .count()
    };
    let read_later = |node: usize, after: usize| {
        plan.layers[after + 1..]
            .iter()
            .any(|l| matches!(l.op, PlannedOp::Shortcut { target, .. } if target == node))
    };
    plan.layers
        .iter()
        .enumerate()
        .map(|(li, l)| {
            matches!(l.op, PlannedOp::Conv { input, .. }
                if input != 0 && producers(input) == 1 && !read_later(input, li))
        })
        .collect()
}

/// `(&v[read], &mut v[write])` for two different indices.
fn read_write<T>(v: &mut [T], read: usize, write: usize) -> (&T, &mut T) {
    assert_ne!(read, write);
    if read < write {
        let (a, b) = v.split_at_mut(write);
        (&a[read], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(read);
        (&b[0], &mut a[write])
    }
}

/// Shared references to `v[read[..]]` and exclusive ones to `v[write[..]]`: the write indices
/// distinct and none of them read (the read indices may repeat).
fn split<T, const R: usize, const W: usize>(
    v: &mut [T],
    read: [usize; R],
    write: [usize; W],
) -> ([&T; R], [&mut T; W]) {
    let mut reads: [Option<&T>; R] = [None; R];
    let mut writes: [Option<&mut T>; W] = std::array::from_fn(|_| None);
    for (i, item) in v.iter_mut().enumerate() {
        if let Some(k) = write.iter().position(|&j| j == i) {
            assert!(!read.contains(&i), "buffer {i} is both read and written");
            writes[k] = Some(item);
        } else if read.contains(&i) {
            let item: &T = item;
            for (k, _) in read.iter().enumerate().filter(|&(_, &j)| j == i) {
                reads[k] = Some(item);
            }
        }
    }
    (
        reads.map(|r| r.expect("read index in range")),
        writes.map(|w| w.expect("write indices distinct and in range")),
    )
}

/// Which nodes' gradients their first backward op WRITES rather than accumulates into: the logits'
/// (the loss), a fused pool's input, and a convolution's input when it is the sole producer.
fn written_gradients(plan: &Plan, fused: &[Option<usize>], conv_writes_dx: &[bool]) -> Vec<bool> {
    let mut written = vec![false; plan.nodes.len()];
    written[plan.logits_node()] = true;
    for (li, layer) in plan.layers.iter().enumerate() {
        match layer.op {
            PlannedOp::Pool { input, .. } if fused[li].is_some() => written[input] = true,
            PlannedOp::Conv { input, .. } if conv_writes_dx[li] => written[input] = true,
            _ => {}
        }
    }
    written
}

/// The memory plan of `plan` as a network lays it out (see [`MemoryPlan`]).
pub fn memory_plan(plan: &Plan) -> MemoryPlan {
    let fused = fused_relu_pools(plan);
    MemoryPlan::new(
        plan,
        &written_gradients(plan, &fused, &convs_writing_dx(plan)),
    )
}

/// `(&mut v[lo], &mut v[hi])` for lo < hi.
fn both_mut<T>(v: &mut [T], lo: usize, hi: usize) -> (&mut T, &mut T) {
    assert!(lo < hi);
    let (a, b) = v.split_at_mut(hi);
    (&mut a[lo], &mut b[0])
}

impl<B: Backend> Network<B> {
    /// Build the network `spec` for `input` images and `classes` classes, able to run batches of up
    /// to `max_batch`, with He-initialised weights drawn from `seed` (the same on every backend).
    pub fn new(
        backend: &B,
        spec: &ArchSpec,
        input: InputShape,
        classes: usize,
        max_batch: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::from_plan(backend, Plan::new(spec, input, classes)?, max_batch, seed)
    }

    /// The network of an already built `plan` (see [`Network::new`]).
    pub fn from_plan(backend: &B, plan: Plan, max_batch: usize, seed: u64) -> Result<Self> {
        if max_batch == 0 {
            return Err(config_err!("the maximum batch size must be at least 1"));
        }
        let logits = plan.logits_node();
        let mut params = Vec::new();
        let mut layer_params = Vec::with_capacity(plan.layers.len());
        let mut state = Vec::new();
        let mut layer_state = Vec::with_capacity(plan.layers.len());
        let mut bn_saved = Vec::with_capacity(plan.layers.len());
        for layer in &plan.layers {
            let named = layer.state();
            layer_state.push((!named.is_empty()).then_some(state.len()));
            for (name, dims) in named {
                // Running mean 0, running variance 1: evaluation before any training step is the
                // identity normalisation.
                let start = if name.ends_with(".running_var") {
                    B::Elem::ONE
                } else {
                    B::Elem::ZERO
                };
                let len: usize = dims.iter().product();
                state.push(Param {
                    name,
                    dims,
                    value: backend.upload(&vec![start; len])?,
                    grad: backend.zeros(0)?,
                    mean_square: backend.zeros(0)?,
                    first_moment: backend.zeros(0)?,
                });
            }
            bn_saved.push(match layer.op {
                PlannedOp::BatchNorm { geom, .. } => Some(backend.zeros(2 * geom.c as usize)?),
                _ => None,
            });
            let named = layer.params();
            if named.is_empty() {
                layer_params.push(None);
                continue;
            }
            layer_params.push(Some(params.len()));
            if let PlannedOp::BatchNorm { .. } = layer.op {
                // γ = 1, β = 0: the layer starts as a plain normalisation.
                for (k, (name, dims)) in named.into_iter().enumerate() {
                    let len: usize = dims.iter().product();
                    let v = if k == 0 { B::Elem::ONE } else { B::Elem::ZERO };
                    params.push(Param {
                        name,
                        dims,
                        value: backend.upload(&vec![v; len])?,
                        grad: backend.zeros(len)?,
                        mean_square: backend.zeros(len)?,
                        first_moment: backend.zeros(0)?,
                    });
                }
                continue;
            }
            let is_classifier =
                matches!(layer.op, PlannedOp::Dense { output, .. } if output == logits);
            let fan_in = layer
                .fan_in()
                .expect("layers with parameters have a fan-in") as f64;
            let std = if is_classifier {
                (1.0 / fan_in).sqrt()
            } else {
                (2.0 / fan_in).sqrt()
            };
            for (k, (name, dims)) in named.into_iter().enumerate() {
                let len: usize = dims.iter().product();
                let host: Vec<B::Elem> = if k == 0 {
                    init::normal(seed, params.len() as u64, len, std)
                        .into_iter()
                        .map(B::Elem::from_f64)
                        .collect()
                } else {
                    vec![B::Elem::ZERO; len]
                };
                params.push(Param {
                    name,
                    dims,
                    value: backend.upload(&host)?,
                    grad: backend.zeros(len)?,
                    mean_square: backend.zeros(len)?,
                    first_moment: backend.zeros(0)?,
                });
            }
        }
        let memory = memory_plan(&plan);
        let bufs = memory
            .buffers
            .iter()
            .map(|&per_sample| backend.zeros(max_batch * per_sample))
            .collect::<Result<Vec<_>>>()?;
        let argmax_len: Vec<usize> = plan
            .layers
            .iter()
            .map(|l| match l.op {
                PlannedOp::Pool { geom, .. } => max_batch * geom.output().len(),
                _ => 0,
            })
            .collect();
        let argmax = plan
            .layers
            .iter()
            .zip(&argmax_len)
            .map(|(l, &len)| match l.op {
                PlannedOp::Pool { .. } => backend.zeros_idx(len).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Network {
            fused_relu_pool: fused_relu_pools(&plan),
            conv_writes_dx: convs_writing_dx(&plan),
            labels: backend.zeros_idx(max_batch)?,
            targets: backend.zeros(max_batch * plan.classes)?,
            class_weights: backend.zeros(plan.classes)?,
            losses: backend.zeros(max_batch)?,
            plan,
            max_batch,
            params,
            layer_params,
            state,
            layer_state,
            bn_saved,
            argmax_len,
            seed,
            bufs,
            memory,
            argmax,
            step: 0,
            moments_of: None,
            stage: Stage::Idle,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    /// The layer table (see [`Plan::summary`]).
    pub fn summary(&self) -> String {
        self.plan.summary()
    }
    pub fn param_count(&self) -> usize {
        self.plan.param_count()
    }
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
    pub fn input_shape(&self) -> InputShape {
        self.plan.input
    }
    pub fn classes(&self) -> usize {
        self.plan.classes
    }
    /// Number of RMSProp updates applied so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Lay the network out for inputs `width` columns wide (same channels and height), keeping every
    /// parameter and state value. Only networks whose parameters do not depend on the width accept
    /// this: those with statistics pooling (`stats`) before their dense layers. Activation buffers
    /// grow when the new width needs more (still for `max_batch` samples); they never shrink, so
    /// going back to a width used before allocates nothing. E.g. train on fixed crops, then evaluate
    /// each whole utterance with batch 1 at its own width.
    pub fn set_input_width(&mut self, backend: &B, width: usize) -> Result<()> {
        if width == self.plan.input.width {
            return Ok(());
        }
        self.stage = Stage::Idle;
        let input = InputShape {
            width,
            ..self.plan.input
        };
        let plan = Plan::new(&self.plan.spec, input, self.plan.classes)?;
        let same_params = plan.layers.len() == self.plan.layers.len()
            && plan
                .layers
                .iter()
                .zip(&self.plan.layers)
                .all(|(a, b)| a.params() == b.params());
        if !same_params {
            return Err(config_err!(
                "architecture `{}` takes inputs {} columns wide only (its dense layers' input size depends on the width; put `stats` before the fc layers to make it width-independent); {width} columns were asked for",
                self.plan.spec,
                self.plan.input.width
            ));
        }
        let memory = memory_plan(&plan);
        for (i, &per_sample) in memory.buffers.iter().enumerate() {
            let need = self.max_batch * per_sample;
            match self.bufs.get_mut(i) {
                Some(b) if backend.len(b) >= need => {}
                Some(b) => *b = backend.zeros(need)?,
                None => self.bufs.push(backend.zeros(need)?),
            }
        }
        self.memory = memory;
        for (li, l) in plan.layers.iter().enumerate() {
            if let PlannedOp::Pool { geom, .. } = l.op {
                let need = self.max_batch * geom.output().len();
                if self.argmax_len[li] < need {
                    self.argmax[li] = Some(backend.zeros_idx(need)?);
                    self.argmax_len[li] = need;
                }
            }
        }
        self.plan = plan;
        Ok(())
    }

    /// One training step on a batch of `labels.len()` samples: forward, loss, backward, optimizer
    /// update (`&RmsPropConfig` or an [`Optimizer`]), step counter + 1. `inputs` holds the batch's
    /// images, N·C·H·W values in NCHW order.
    pub fn train_step(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        labels: &[u32],
        optimizer: impl Into<Optimizer>,
    ) -> Result<XentStats> {
        self.train_step_with_side(backend, inputs, None, labels, optimizer)
    }

    /// Forward pass in training mode of `n` samples (1 ≤ n ≤ max batch) from host images (N·C·H·W
    /// values). Updates batch norm's running statistics.
    pub fn forward(&mut self, backend: &B, inputs: &[B::Elem], n: usize) -> Result<()> {
        self.run_forward(backend, inputs, None, n, true)
    }

    /// [`Network::forward`] with the side input of a network with a `vec` layer: N × D values
    /// (D = [`InputShape::side`]), row n belonging to image n. `None` for a network without one.
    pub fn forward_with_side(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        side: Option<&[B::Elem]>,
        n: usize,
    ) -> Result<()> {
        self.run_forward(backend, inputs, side, n, true)
    }

    /// [`Network::train_step`] with a side input (see [`Network::forward_with_side`]).
    pub fn train_step_with_side(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        side: Option<&[B::Elem]>,
        labels: &[u32],
        optimizer: impl Into<Optimizer>,
    ) -> Result<XentStats> {
        self.forward_with_side(backend, inputs, side, labels.len())?;
        let stats = self.loss(backend, labels)?;
        self.backward(backend)?;
        self.apply_update(backend, optimizer)?;
        Ok(stats)
    }

    /// Check the side input against the plan and write it into its node.
    fn write_side_input(&mut self, backend: &B, side: Option<&[B::Elem]>, n: usize) -> Result<()> {
        let width = self.plan.input.side;
        match (self.plan.side_input, side) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(config_err!(
                "architecture `{}` has no vec layer, so it takes no side input (utterance vector)",
                self.plan.spec
            )),
            (Some(_), None) => Err(config_err!(
                "architecture `{}` appends the utterance vector (vec): it needs a side input of {n} × {width} values",
                self.plan.spec
            )),
            (Some(node), Some(v)) => {
                if v.len() != n * width {
                    return Err(shape_err!(
                        "{n} samples with a side input of {width} values each need {} values, got {}",
                        n * width,
                        v.len()
                    ));
                }
                backend.write(&mut self.bufs[node], v)
            }
        }
    }

    fn run_forward(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        side: Option<&[B::Elem]>,
        n: usize,
        training: bool,
    ) -> Result<()> {
        self.stage = Stage::Idle;
        if n == 0 || n > self.max_batch {
            return Err(config_err!(
                "batch of {n} samples: this network runs 1 to {} at a time",
                self.max_batch
            ));
        }
        let per = self.plan.input.len();
        if inputs.len() != n * per {
            return Err(shape_err!(
                "{n} input images of {}×{}×{} need {} values, got {}",
                self.plan.input.channels,
                self.plan.input.height,
                self.plan.input.width,
                n * per,
                inputs.len()
            ));
        }
        backend.write(&mut self.bufs[0], inputs)?;
        self.write_side_input(backend, side, n)?;
        for (li, layer) in self.plan.layers.iter().enumerate() {
            match layer.op {
                PlannedOp::Conv {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("conv has parameters");
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    backend.conv2d_forward(
                        &geom.with_batch(n),
                        x,
                        &self.params[p].value,
                        &self.params[p + 1].value,
                        y,
                    )?;
                }
                PlannedOp::Pool {
                    geom,
                    input,
                    output,
                } => {
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    let am = self.argmax[li].as_mut().expect("pool has an argmax buffer");
                    backend.maxpool_forward(&geom.with_batch(n), x, y, am)?;
                }
                PlannedOp::Shortcut {
                    geom,
                    source,
                    target,
                    ..
                } => {
                    let (src, dst) = read_write(&mut self.bufs, source, target);
                    backend.shortcut_forward(&geom.with_batch(n), src, dst)?;
                }
                PlannedOp::Dense {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("dense has parameters");
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    backend.dense_forward(
                        &geom.with_batch(n),
                        x,
                        &self.params[p].value,
                        &self.params[p + 1].value,
                        y,
                    )?;
                }
                PlannedOp::BatchNorm {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("batch norm has parameters");
                    let st = self.layer_state[li].expect("batch norm has state");
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    let (gamma, beta) = (&self.params[p].value, &self.params[p + 1].value);
                    let g = geom.with_batch(n);
                    if training {
                        let (rm, rv) = both_mut(&mut self.state, st, st + 1);
                        let saved = self.bn_saved[li].as_mut().expect("batch norm saves");
                        backend.batchnorm_forward_train(
                            &g,
                            x,
                            gamma,
                            beta,
                            y,
                            saved,
                            &mut rm.value,
                            &mut rv.value,
                        )?;
                    } else {
                        let (rm, rv) = (&self.state[st].value, &self.state[st + 1].value);
                        backend.batchnorm_forward_eval(&g, x, gamma, beta, rm, rv, y)?;
                    }
                }
                PlannedOp::StatsPool {
                    geom,
                    input,
                    output,
                } => {
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    backend.statspool_forward(&geom.with_batch(n), x, y)?;
                }
                PlannedOp::Dropout {
                    rate,
                    per_sample,
                    input,
                    output,
                } => {
                    let params = self.dropout_params(li, rate, n * per_sample, training)?;
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    backend.dropout_forward(&params, x, y)?;
                }
                PlannedOp::Concat {
                    geom,
                    input,
                    side,
                    output,
                } => {
                    let ([a, b], [y]) = split(&mut self.bufs, [input, side], [output]);
                    backend.concat_forward(&geom.with_batch(n), a, b, y)?;
                }
            }
        }
        self.stage = Stage::Forward { n, training };
        Ok(())
    }

    /// Dropout's parameters for layer `li` at the current step (the identity in evaluation).
    fn dropout_params(
        &self,
        li: usize,
        rate: f64,
        len: usize,
        training: bool,
    ) -> Result<DropoutParams> {
        if training {
            DropoutParams::new(len, rate, self.seed, self.step, li as u64)
        } else {
            DropoutParams::identity(len)
        }
    }

    /// Softmax cross-entropy of the last forward pass against `labels` (one per sample, each below
    /// the number of classes); leaves the loss gradient ready for [`Network::backward`].
    pub fn loss(&mut self, backend: &B, labels: &[u32]) -> Result<XentStats> {
        let (n, training) = match self.stage {
            Stage::Forward { n, training } | Stage::Loss { n, training } => (n, training),
            _ => return Err(config_err!("loss needs a forward pass first")),
        };
        if labels.len() != n {
            return Err(shape_err!(
                "the forward pass ran {n} samples but {} labels were given",
                labels.len()
            ));
        }
        let classes = self.plan.classes;
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(config_err!(
                "label {l} of sample {i} is not one of the {classes} classes"
            ));
        }
        backend.write_idx(&mut self.labels, labels)?;
        let logits = self.plan.logits_node();
        let d_logits = self.memory.gradient[logits].expect("logits have a gradient buffer");
        let (logits, d_logits) = read_write(&mut self.bufs, logits, d_logits);
        let stats = backend.softmax_xent(
            &XentGeom::new(n, classes)?,
            logits,
            &self.labels,
            &mut self.losses,
            d_logits,
        )?;
        self.stage = Stage::Loss { n, training };
        Ok(stats)
    }

    /// Softmax cross-entropy of the last forward pass against soft targets (one row of `classes`
    /// probabilities per sample: label smoothing, mixup), with optional per-class weights; leaves the
    /// loss gradient ready for [`Network::backward`]. Targets must be finite, non-negative and sum to
    /// 1 per row (within 1e-3); weights finite and positive. `correct` counts rows whose predicted
    /// class is the target's largest entry.
    pub fn loss_soft(
        &mut self,
        backend: &B,
        targets: &[B::Elem],
        class_weights: Option<&[B::Elem]>,
    ) -> Result<XentStats> {
        let (n, training) = match self.stage {
            Stage::Forward { n, training } | Stage::Loss { n, training } => (n, training),
            _ => return Err(config_err!("loss_soft needs a forward pass first")),
        };
        let classes = self.plan.classes;
        if targets.len() != n * classes {
            return Err(shape_err!(
                "the forward pass ran {n} samples of {classes} classes, so the soft targets need {} values, got {}",
                n * classes,
                targets.len()
            ));
        }
        for (i, row) in targets.chunks(classes).enumerate() {
            let sum: f64 = row.iter().map(|v| v.to_f64()).sum();
            if row
                .iter()
                .any(|v| !v.to_f64().is_finite() || v.to_f64() < 0.0)
                || (sum - 1.0).abs() > 1e-3
            {
                return Err(config_err!(
                    "soft targets of sample {i} must be non-negative probabilities summing to 1, got {:?}",
                    row.iter().map(|v| v.to_f64()).collect::<Vec<_>>()
                ));
            }
        }
        if let Some(w) = class_weights {
            if w.len() != classes
                || w.iter()
                    .any(|v| !(v.to_f64().is_finite() && v.to_f64() > 0.0))
            {
                return Err(config_err!(
                    "class weights must be {classes} finite positive values, got {:?}",
                    w.iter().map(|v| v.to_f64()).collect::<Vec<_>>()
                ));
            }
            backend.write(&mut self.class_weights, w)?;
        }
        backend.write(&mut self.targets, targets)?;
        let logits = self.plan.logits_node();
        let d_logits = self.memory.gradient[logits].expect("logits have a gradient buffer");
        let (logits, d_logits) = read_write(&mut self.bufs, logits, d_logits);
        let stats = backend.softmax_xent_soft(
            &XentGeom::new(n, classes)?,
            logits,
            &self.targets,
            class_weights.is_some().then_some(&self.class_weights),
            &mut self.losses,
            d_logits,
        )?;
        self.stage = Stage::Loss { n, training };
        Ok(stats)
    }

    /// Backward pass from the loss gradient: WRITES every parameter gradient (of the mean loss).
    pub fn backward(&mut self, backend: &B) -> Result<()> {
        let n = match self.stage {
            Stage::Loss { n, training: true } => n,
            Stage::Loss {
                training: false, ..
            } => {
                return Err(config_err!(
                    "backward needs a training-mode forward pass (forward), not an evaluation one"
                ))
            }
            _ => return Err(config_err!("backward needs forward and loss first")),
        };
        let layers = self.plan.layers.len();
        for (li, layer) in self.plan.layers.iter().enumerate().rev() {
            // Zero only the gradients that are accumulated into, just before their first use (their
            // buffer may have held another gradient until then): not the logits' (written by the
            // loss), not those a fused pool backward or a convolution writes.
            for &b in &self.memory.zero_before[layers - li] {
                backend.fill_zero(&mut self.bufs[b])?;
            }
            let grad = |node: usize| self.memory.gradient[node].expect("node has a gradient");
            match layer.op {
                PlannedOp::Shortcut {
                    geom,
                    source,
                    target,
                    ..
                } => {
                    if source == 0 {
                        continue; // the input needs no gradient
                    }
                    let (d_dst, d_src) = read_write(&mut self.bufs, grad(target), grad(source));
                    backend.shortcut_backward(&geom.with_batch(n), d_dst, d_src)?;
                }
                PlannedOp::Pool {
                    geom,
                    input,
                    output,
                } => {
                    if input == 0 {
                        continue;
                    }
                    let (dy, dx) = read_write(&mut self.bufs, grad(output), grad(input));
                    let am = self.argmax[li].as_ref().expect("pool has an argmax buffer");
                    if let Some(conv) = self.fused_relu_pool[li] {
                        // dx takes the buffer of x, the convolution's output: the argmax holds its
                        // ReLU mask.
                        let bias = self.layer_params[conv].expect("conv has parameters") + 1;
                        let db = &mut self.params[bias].grad;
                        backend.maxpool_relu_backward(&geom.with_batch(n), dy, am, dx, db)?;
                    } else {
                        backend.maxpool_backward(&geom.with_batch(n), dy, am, dx)?;
                    }
                }
                PlannedOp::Conv {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("conv has parameters");
                    let (w, b) = both_mut(&mut self.params, p, p + 1);
                    let mut g = geom.with_batch(n);
                    let fused = self.fused_relu_pool[li].is_some();
                    // Fused: dy is already the pre-activation gradient and db written (the pool did
                    // both), so y is not read; its buffer holds dy, and x stands in for it.
                    let y = if fused { input } else { output };
                    if fused {
                        g.relu = 0;
                    }
                    let dx = self.memory.gradient[input];
                    let (x, y, dy, dx) = match dx {
                        None => {
                            let ([x, y], [dy]) = split(&mut self.bufs, [input, y], [grad(output)]);
                            (x, y, dy, InputGrad::None)
                        }
                        Some(dx) => {
                            let ([x, y], [dy, dx]) =
                                split(&mut self.bufs, [input, y], [grad(output), dx]);
                            let dx = if self.conv_writes_dx[li] {
                                InputGrad::Write(dx)
                            } else {
                                InputGrad::Add(dx)
                            };
                            (x, y, dy, dx)
                        }
                    };
                    backend.conv2d_backward(
                        &g,
                        x,
                        &w.value,
                        y,
                        dy,
                        dx,
                        &mut w.grad,
                        (!fused).then_some(&mut b.grad),
                    )?;
                }
                PlannedOp::Dense {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("dense has parameters");
                    let (w, b) = both_mut(&mut self.params, p, p + 1);
                    let (x, y, dy, dx) = match self.memory.gradient[input] {
                        None => {
                            let ([x, y], [dy]) =
                                split(&mut self.bufs, [input, output], [grad(output)]);
                            (x, y, dy, None)
                        }
                        Some(dx) => {
                            let ([x, y], [dy, dx]) =
                                split(&mut self.bufs, [input, output], [grad(output), dx]);
                            (x, y, dy, Some(dx))
                        }
                    };
                    backend.dense_backward(
                        &geom.with_batch(n),
                        x,
                        &w.value,
                        y,
                        dy,
                        dx,
                        &mut w.grad,
                        &mut b.grad,
                    )?;
                }
                PlannedOp::BatchNorm {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("batch norm has parameters");
                    let (gamma, beta) = both_mut(&mut self.params, p, p + 1);
                    let (x, y, dy, dx) = match self.memory.gradient[input] {
                        None => {
                            let ([x, y], [dy]) =
                                split(&mut self.bufs, [input, output], [grad(output)]);
                            (x, y, dy, None)
                        }
                        Some(dx) => {
                            let ([x, y], [dy, dx]) =
                                split(&mut self.bufs, [input, output], [grad(output), dx]);
                            (x, y, dy, Some(dx))
                        }
                    };
                    backend.batchnorm_backward(
                        &geom.with_batch(n),
                        x,
                        &gamma.value,
                        y,
                        self.bn_saved[li].as_ref().expect("batch norm saves"),
                        dy,
                        dx,
                        &mut gamma.grad,
                        &mut beta.grad,
                    )?;
                }
                PlannedOp::StatsPool {
                    geom,
                    input,
                    output,
                } => {
                    if input == 0 {
                        continue;
                    }
                    let ([x, y, dy], [dx]) =
                        split(&mut self.bufs, [input, output, grad(output)], [grad(input)]);
                    backend.statspool_backward(&geom.with_batch(n), x, y, dy, dx)?;
                }
                PlannedOp::Dropout {
                    rate,
                    per_sample,
                    input,
                    output,
                } => {
                    // The image or the side input: no gradient.
                    let Some(dx) = self.memory.gradient[input] else {
                        continue;
                    };
                    // The same parameters as the forward pass: the step has not moved since.
                    let params = self.dropout_params(li, rate, n * per_sample, true)?;
                    let (dy, dx) = read_write(&mut self.bufs, grad(output), dx);
                    backend.dropout_backward(&params, dy, dx)?;
                }
                PlannedOp::Concat {
                    geom,
                    input,
                    side,
                    output,
                } => {
                    // The raw side input has no gradient (nothing upstream of it needs one); the
                    // features have none when they are the image itself.
                    let g = geom.with_batch(n);
                    let dy = grad(output);
                    match (self.memory.gradient[input], self.memory.gradient[side]) {
                        (Some(da), Some(db)) => {
                            let ([dy], [da, db]) = split(&mut self.bufs, [dy], [da, db]);
                            backend.concat_backward(&g, dy, Some(da), Some(db))?;
                        }
                        (Some(da), None) => {
                            let (dy, da) = read_write(&mut self.bufs, dy, da);
                            backend.concat_backward(&g, dy, Some(da), None)?;
                        }
                        (None, Some(db)) => {
                            let (dy, db) = read_write(&mut self.bufs, dy, db);
                            backend.concat_backward(&g, dy, None, Some(db))?;
                        }
                        (None, None) => backend.concat_backward(&g, &self.bufs[dy], None, None)?,
                    }
                }
            }
        }
        self.stage = Stage::Gradients;
        Ok(())
    }

    /// One optimizer update of every parameter from the gradients of the last backward pass, at the
    /// current step count (which then goes up by one): RMSProp at its time-decayed rate, or AdamW
    /// with the scheduled rate and the bias correction of update number step + 1.
    pub fn apply_update(&mut self, backend: &B, optimizer: impl Into<Optimizer>) -> Result<()> {
        let optimizer = optimizer.into();
        if self.stage != Stage::Gradients {
            return Err(config_err!("apply_update needs a backward pass first"));
        }
        let adamw = optimizer.uses_first_moment();
        if let Some(held) = self.moments_of.filter(|&held| held != adamw) {
            return Err(config_err!(
                "the optimizer state is {}'s; a {} update cannot continue it",
                Optimizer::name(held),
                Optimizer::name(adamw)
            ));
        }
        match optimizer {
            Optimizer::RmsProp(cfg) => {
                for p in &mut self.params {
                    backend.rmsprop_update(
                        &cfg,
                        self.step,
                        &mut p.value,
                        &p.grad,
                        &mut p.mean_square,
                    )?;
                }
            }
            Optimizer::AdamW { cfg, total_steps } => {
                let step = cfg.step(self.step, total_steps);
                self.allocate_first_moments(backend)?;
                for p in &mut self.params {
                    backend.adamw_update(
                        &step,
                        &mut p.value,
                        &p.grad,
                        &mut p.first_moment,
                        &mut p.mean_square,
                    )?;
                }
            }
        }
        self.moments_of = Some(adamw);
        self.step += 1;
        self.stage = Stage::Idle;
        Ok(())
    }

    /// AdamW's first moments, zero, where not allocated yet (the first AdamW update allocates them).
    fn allocate_first_moments(&mut self, backend: &B) -> Result<()> {
        for p in &mut self.params {
            let len = backend.len(&p.value);
            if backend.len(&p.first_moment) < len {
                p.first_moment = backend.zeros(len)?;
            }
        }
        Ok(())
    }

    /// Logits (n × classes, row-major) of `n` host images, for evaluation and prediction.
    pub fn forward_logits(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        n: usize,
    ) -> Result<Vec<B::Elem>> {
        self.forward_logits_with_side(backend, inputs, None, n)
    }

    /// Mean loss and number of correct predictions on a batch, without training.
    pub fn evaluate(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        labels: &[u32],
    ) -> Result<XentStats> {
        self.evaluate_with_side(backend, inputs, None, labels)
    }

    /// [`Network::forward_logits`] with a side input (see [`Network::forward_with_side`]).
    pub fn forward_logits_with_side(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        side: Option<&[B::Elem]>,
        n: usize,
    ) -> Result<Vec<B::Elem>> {
        self.run_forward(backend, inputs, side, n, false)?;
        let mut logits = backend.download(&self.bufs[self.plan.logits_node()])?;
        logits.truncate(n * self.plan.classes);
        Ok(logits)
    }

    /// [`Network::evaluate`] with a side input (see [`Network::forward_with_side`]).
    pub fn evaluate_with_side(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        side: Option<&[B::Elem]>,
        labels: &[u32],
    ) -> Result<XentStats> {
        self.run_forward(backend, inputs, side, labels.len(), false)?;
        let stats = self.loss(backend, labels)?;
        self.stage = Stage::Idle;
        Ok(stats)
    }

    fn export(
        &self,
        backend: &B,
        pick: impl Fn(&Param<B>) -> &B::Buf,
    ) -> Result<Vec<NamedTensor<B::Elem>>> {
        self.params
            .iter()
            .map(|p| {
                Ok(NamedTensor {
                    name: p.name.clone(),
                    dims: p.dims.clone(),
                    data: backend.download(pick(p))?,
                })
            })
            .collect()
    }

    /// The state tensors (batch norm's running statistics), exported with the parameters.
    fn export_state(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        self.state
            .iter()
            .map(|p| {
                Ok(NamedTensor {
                    name: p.name.clone(),
                    dims: p.dims.clone(),
                    data: backend.download(&p.value)?,
                })
            })
            .collect()
    }

    /// Write `tensors` into the parameters (and, `with_state`, the state tensors) through `pick`.
    /// The set of names and their dimensions must match exactly.
    fn import(
        &mut self,
        backend: &B,
        what: &str,
        tensors: &[NamedTensor<B::Elem>],
        with_state: bool,
        pick: impl Fn(&mut Param<B>) -> &mut B::Buf,
    ) -> Result<()> {
        let state_len = if with_state { self.state.len() } else { 0 };
        let targets: Vec<&Param<B>> = self.params.iter().chain(&self.state[..state_len]).collect();
        for t in tensors {
            if !targets.iter().any(|p| p.name == t.name) {
                return Err(config_err!(
                    "{what}: unexpected tensor `{}` (this network has {})",
                    t.name,
                    targets
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for p in targets {
            let t = tensors.iter().find(|t| t.name == p.name);
            let Some(t) = t else {
                return Err(config_err!("{what}: tensor `{}` is missing", p.name));
            };
            if t.dims != p.dims || t.data.len() != p.dims.iter().product::<usize>() {
                return Err(shape_err!(
                    "{what}: tensor `{}` has dimensions {:?} ({} values) but the network needs {:?}",
                    t.name,
                    t.dims,
                    t.data.len(),
                    p.dims
                ));
            }
        }
        for p in self.params.iter_mut().chain(&mut self.state[..state_len]) {
            let t = tensors
                .iter()
                .find(|t| t.name == p.name)
                .expect("checked above");
            backend.write(pick(p), &t.data)?;
        }
        self.stage = Stage::Idle;
        Ok(())
    }

    /// The activations of the last forward pass, one tensor per node with dimensions (N, C, H, W):
    /// "input", then each conv, pool (including the shortcuts added to it), dense layer and finally
    /// "classifier" (the logits), named like their layers. For diagnostics and tests.
    pub fn export_activations(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        let n = match self.stage {
            Stage::Forward { n, .. } | Stage::Loss { n, .. } => n,
            _ => return Err(config_err!("export_activations needs a forward pass first")),
        };
        let mut names = vec!["input".to_string(); self.plan.nodes.len()];
        for l in &self.plan.layers {
            if !matches!(l.op, PlannedOp::Shortcut { .. }) {
                names[l.output()] = l.name.clone();
            }
        }
        self.plan
            .nodes
            .iter()
            .zip(names)
            .zip(&self.bufs)
            .map(|((s, name), buf)| {
                let mut data = backend.download(buf)?;
                data.truncate(n * s.per_sample());
                Ok(NamedTensor {
                    name,
                    dims: vec![n, s.c, s.h, s.w],
                    data,
                })
            })
            .collect()
    }

    /// Every parameter as a named host tensor, followed by the state tensors (batch norm's running
    /// statistics, `bnK.running_mean` and `bnK.running_var`): everything a checkpoint must hold to
    /// reproduce the network's outputs.
    pub fn export_params(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        let mut out = self.export(backend, |p| &p.value)?;
        out.extend(self.export_state(backend)?);
        Ok(out)
    }

    /// Replace every parameter and state tensor. The set of names and their dimensions must match
    /// [`Network::export_params`] exactly.
    pub fn import_params(&mut self, backend: &B, tensors: &[NamedTensor<B::Elem>]) -> Result<()> {
        self.import(backend, "import_params", tensors, true, |p| &mut p.value)
    }

    /// The parameter gradients of the last backward pass (for gradient checks and diagnostics).
    pub fn export_grads(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        self.export(backend, |p| &p.grad)
    }

    /// The optimizer's step count and moments (AdamW's first moments only once AdamW updated the
    /// network or its state was imported).
    pub fn export_optimizer_state(&self, backend: &B) -> Result<OptimizerState<B::Elem>> {
        Ok(OptimizerState {
            step: self.step,
            mean_square: self.export(backend, |p| &p.mean_square)?,
            first_moment: if self.moments_of == Some(true) {
                self.export(backend, |p| &p.first_moment)?
            } else {
                Vec::new()
            },
        })
    }

    /// Restore the optimizer's state (names and dimensions must match the parameters exactly; no
    /// first moments means RMSProp's).
    pub fn import_optimizer_state(
        &mut self,
        backend: &B,
        state: &OptimizerState<B::Elem>,
    ) -> Result<()> {
        self.import(
            backend,
            "import_optimizer_state",
            &state.mean_square,
            false,
            |p| &mut p.mean_square,
        )?;
        let adamw = !state.first_moment.is_empty();
        if adamw {
            self.allocate_first_moments(backend)?;
            self.import(
                backend,
                "import_optimizer_state (first moments)",
                &state.first_moment,
                false,
                |p| &mut p.first_moment,
            )?;
        }
        self.step = state.step;
        self.moments_of = (adamw || state.step > 0).then_some(adamw);
        Ok(())
    }
}
