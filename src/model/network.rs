//! The network on a backend: parameters, optimizer state and every activation buffer allocated once
//! for the largest batch, then forward, loss ([`forward`]), backward ([`backward`]) and optimizer
//! update ([`update`]) driven through the [`Backend`] contract, so the same code runs on the CPU reference, the
//! emulated device and CUDA.
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

mod backward;
mod borrow;
mod forward;
mod update;

use super::init::Parameters;
use super::layer::PlannedOp;
use super::memory::{memory_plan, MemoryPlan};
use super::optimizer::{Optimizer, OptimizerKind};
use super::plan::{InputShape, Plan};
use super::spec::ArchSpec;
use super::tensors::{NamedTensor, OptimizerState};
use crate::backends::Backend;
use crate::backends::XentStats;
use crate::{config_err, Result};

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
/// step after the first allocates no buffer (inputs and labels are written into the existing ones).
/// What a backend does inside an op is its own business: the CPU reference reuses a scratch pool,
/// though the GEMM crate it calls allocates small packing buffers per call.
/// Any batch of 1 to `max_batch` samples can be run.
pub struct Network<B: Backend> {
    plan: Plan,
    max_batch: usize,
    params: Parameters<B>,
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
    step: u64,
    /// Whose state the moments hold once updates were applied or imported (`None`: fresh).
    moments_of: Option<OptimizerKind>,
    stage: Stage,
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
        let params = Parameters::new(backend, &plan, seed)?;
        let bn_saved = plan
            .layers
            .iter()
            .map(|layer| match layer.op {
                PlannedOp::BatchNorm { geom, .. } => backend.zeros(2 * geom.c as usize).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
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
            labels: backend.zeros_idx(max_batch)?,
            targets: backend.zeros(max_batch * plan.classes)?,
            class_weights: backend.zeros(plan.classes)?,
            losses: backend.zeros(max_batch)?,
            plan,
            max_batch,
            params,
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
    /// Number of optimizer updates applied so far.
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
        let plan = self.plan.with_width(width)?;
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
        let mut out = self.params.export(backend, |p| &p.value)?;
        out.extend(self.params.export_state(backend)?);
        Ok(out)
    }

    /// Replace every parameter and state tensor. The set of names and their dimensions must match
    /// [`Network::export_params`] exactly.
    pub fn import_params(&mut self, backend: &B, tensors: &[NamedTensor<B::Elem>]) -> Result<()> {
        self.params
            .import(backend, "import_params", tensors, true, |p| &mut p.value)?;
        self.stage = Stage::Idle;
        Ok(())
    }

    /// The parameter gradients of the last backward pass (for gradient checks and diagnostics).
    pub fn export_grads(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        self.params.export(backend, |p| &p.grad)
    }

    /// The optimizer's step count and moments (AdamW's first moments only once AdamW updated the
    /// network or its state was imported).
    pub fn export_optimizer_state(&self, backend: &B) -> Result<OptimizerState<B::Elem>> {
        Ok(OptimizerState {
            step: self.step,
            mean_square: self.params.export(backend, |p| &p.mean_square)?,
            first_moment: if self.moments_of == Some(OptimizerKind::AdamW) {
                self.params.export(backend, |p| &p.first_moment)?
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
        self.params.import(
            backend,
            "import_optimizer_state",
            &state.mean_square,
            false,
            |p| &mut p.mean_square,
        )?;
        self.stage = Stage::Idle;
        let kind = if state.first_moment.is_empty() {
            OptimizerKind::RmsProp
        } else {
            self.allocate_first_moments(backend)?;
            self.params.import(
                backend,
                "import_optimizer_state (first moments)",
                &state.first_moment,
                false,
                |p| &mut p.first_moment,
            )?;
            OptimizerKind::AdamW
        };
        self.step = state.step;
        self.moments_of = (kind == OptimizerKind::AdamW || state.step > 0).then_some(kind);
        Ok(())
    }
}
