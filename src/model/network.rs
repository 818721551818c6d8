//! The network on a backend: parameters, optimizer state and every activation buffer allocated once
//! for the largest batch, then forward, loss, backward and RMSProp update driven through the
//! [`Backend`] contract, so the same code runs on the CPU reference, the emulated device and CUDA.

use super::init;
use super::plan::{InputShape, Plan, PlannedOp};
use super::spec::ArchSpec;
use crate::backends::geometry::{RmsPropConfig, XentGeom, XentStats};
use crate::backends::Backend;
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

/// RMSProp's state: the running mean square r of every parameter (named like the parameter) and
/// the number of updates applied so far (which sets the time-decayed learning rate).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<T> {
    pub step: u64,
    pub mean_square: Vec<NamedTensor<T>>,
}

struct Param<B: Backend> {
    name: String,
    dims: Vec<usize>,
    value: B::Buf,
    grad: B::Buf,
    mean_square: B::Buf,
}

/// Where a network is in its step, so pieces are called in an order that makes sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Idle,
    /// Activations hold a forward pass of `n` samples.
    Forward(usize),
    /// ... and the logits' gradient holds the loss gradient.
    Loss(usize),
    /// Parameter gradients are ready for an update.
    Gradients,
}

/// A network built from a [`Plan`] on backend `B`.
///
/// All buffers — parameters, their gradients, RMSProp state, one activation and one
/// activation-gradient buffer per node, max-pool argmaxes, labels and per-sample losses — are
/// allocated once in [`Network::new`] for `max_batch` samples; a training step allocates no buffer
/// (inputs and labels are written into the existing ones). What a backend does inside an op is its
/// own business: the CPU reference reuses a scratch pool, though the GEMM crate it calls allocates
/// small packing buffers per call.
/// Any batch of 1 to `max_batch` samples can be run.
pub struct Network<B: Backend> {
    plan: Plan,
    max_batch: usize,
    params: Vec<Param<B>>,
    /// For each planned layer with parameters, the index of its weight in `params` (bias follows).
    layer_params: Vec<Option<usize>>,
    acts: Vec<B::Buf>,
    /// Gradient of each node; none for the input, which needs no gradient.
    grads: Vec<Option<B::Buf>>,
    argmax: Vec<Option<B::Idx>>,
    labels: B::Idx,
    losses: B::Buf,
    step: u64,
    stage: Stage,
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
        for layer in &plan.layers {
            let named = layer.params();
            if named.is_empty() {
                layer_params.push(None);
                continue;
            }
            layer_params.push(Some(params.len()));
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
                });
            }
        }
        let acts = plan
            .nodes
            .iter()
            .map(|s| backend.zeros(max_batch * s.per_sample()))
            .collect::<Result<Vec<_>>>()?;
        let grads = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    Ok(None)
                } else {
                    backend.zeros(max_batch * s.per_sample()).map(Some)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let argmax = plan
            .layers
            .iter()
            .map(|l| match l.op {
                PlannedOp::Pool { geom, .. } => {
                    backend.zeros_idx(max_batch * geom.output().len()).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Network {
            labels: backend.zeros_idx(max_batch)?,
            losses: backend.zeros(max_batch)?,
            plan,
            max_batch,
            params,
            layer_params,
            acts,
            grads,
            argmax,
            step: 0,
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

    /// One training step on a batch of `labels.len()` samples: forward, loss, backward, RMSProp
    /// update, step counter + 1. `inputs` holds the batch's images, N·C·H·W values in NCHW order.
    pub fn train_step(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        labels: &[u32],
        cfg: &RmsPropConfig,
    ) -> Result<XentStats> {
        self.forward(backend, inputs, labels.len())?;
        let stats = self.loss(backend, labels)?;
        self.backward(backend)?;
        self.apply_update(backend, cfg)?;
        Ok(stats)
    }

    /// Forward pass of `n` samples (1 ≤ n ≤ max batch) from host images (N·C·H·W values).
    pub fn forward(&mut self, backend: &B, inputs: &[B::Elem], n: usize) -> Result<()> {
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
        backend.write(&mut self.acts[0], inputs)?;
        for (li, layer) in self.plan.layers.iter().enumerate() {
            match layer.op {
                PlannedOp::Conv {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("conv has parameters");
                    let (x, y) = read_write(&mut self.acts, input, output);
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
                    let (x, y) = read_write(&mut self.acts, input, output);
                    let am = self.argmax[li].as_mut().expect("pool has an argmax buffer");
                    backend.maxpool_forward(&geom.with_batch(n), x, y, am)?;
                }
                PlannedOp::Shortcut {
                    geom,
                    source,
                    target,
                    ..
                } => {
                    let (src, dst) = read_write(&mut self.acts, source, target);
                    backend.shortcut_forward(&geom.with_batch(n), src, dst)?;
                }
                PlannedOp::Dense {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("dense has parameters");
                    let (x, y) = read_write(&mut self.acts, input, output);
                    backend.dense_forward(
                        &geom.with_batch(n),
                        x,
                        &self.params[p].value,
                        &self.params[p + 1].value,
                        y,
                    )?;
                }
            }
        }
        self.stage = Stage::Forward(n);
        Ok(())
    }

    /// Softmax cross-entropy of the last forward pass against `labels` (one per sample, each below
    /// the number of classes); leaves the loss gradient ready for [`Network::backward`].
    pub fn loss(&mut self, backend: &B, labels: &[u32]) -> Result<XentStats> {
        let n = match self.stage {
            Stage::Forward(n) | Stage::Loss(n) => n,
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
        let d_logits = self.grads[logits]
            .as_mut()
            .expect("logits have a gradient buffer");
        let stats = backend.softmax_xent(
            &XentGeom::new(n, classes)?,
            &self.acts[logits],
            &self.labels,
            &mut self.losses,
            d_logits,
        )?;
        self.stage = Stage::Loss(n);
        Ok(stats)
    }

    /// Backward pass from the loss gradient: WRITES every parameter gradient (of the mean loss).
    pub fn backward(&mut self, backend: &B) -> Result<()> {
        let Stage::Loss(n) = self.stage else {
            return Err(config_err!("backward needs forward and loss first"));
        };
        let logits = self.plan.logits_node();
        for (i, g) in self.grads.iter_mut().enumerate() {
            if let (Some(g), false) = (g, i == logits) {
                backend.fill_zero(g)?;
            }
        }
        for (li, layer) in self.plan.layers.iter().enumerate().rev() {
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
                    let (d_dst, d_src) = read_write(&mut self.grads, target, source);
                    let (d_dst, d_src) =
                        (d_dst.as_ref().expect("grad"), d_src.as_mut().expect("grad"));
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
                    let (dy, dx) = read_write(&mut self.grads, output, input);
                    let am = self.argmax[li].as_ref().expect("pool has an argmax buffer");
                    backend.maxpool_backward(
                        &geom.with_batch(n),
                        dy.as_ref().expect("grad"),
                        am,
                        dx.as_mut().expect("grad"),
                    )?;
                }
                PlannedOp::Conv {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("conv has parameters");
                    let (dx, dy) = both_mut(&mut self.grads, input, output);
                    let (w, b) = both_mut(&mut self.params, p, p + 1);
                    backend.conv2d_backward(
                        &geom.with_batch(n),
                        &self.acts[input],
                        &w.value,
                        &self.acts[output],
                        dy.as_mut().expect("grad"),
                        dx.as_mut(),
                        &mut w.grad,
                        &mut b.grad,
                    )?;
                }
                PlannedOp::Dense {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.layer_params[li].expect("dense has parameters");
                    let (dx, dy) = both_mut(&mut self.grads, input, output);
                    let (w, b) = both_mut(&mut self.params, p, p + 1);
                    backend.dense_backward(
                        &geom.with_batch(n),
                        &self.acts[input],
                        &w.value,
                        &self.acts[output],
                        dy.as_mut().expect("grad"),
                        dx.as_mut(),
                        &mut w.grad,
                        &mut b.grad,
                    )?;
                }
            }
        }
        self.stage = Stage::Gradients;
        Ok(())
    }

    /// One RMSProp update of every parameter from the gradients of the last backward pass, at the
    /// current step count (which then goes up by one).
    pub fn apply_update(&mut self, backend: &B, cfg: &RmsPropConfig) -> Result<()> {
        if self.stage != Stage::Gradients {
            return Err(config_err!("apply_update needs a backward pass first"));
        }
        for p in &mut self.params {
            backend.rmsprop_update(cfg, self.step, &mut p.value, &p.grad, &mut p.mean_square)?;
        }
        self.step += 1;
        self.stage = Stage::Idle;
        Ok(())
    }

    /// Logits (n × classes, row-major) of `n` host images, for evaluation and prediction.
    pub fn forward_logits(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        n: usize,
    ) -> Result<Vec<B::Elem>> {
        self.forward(backend, inputs, n)?;
        let mut logits = backend.download(&self.acts[self.plan.logits_node()])?;
        logits.truncate(n * self.plan.classes);
        Ok(logits)
    }

    /// Mean loss and number of correct predictions on a batch, without training.
    pub fn evaluate(
        &mut self,
        backend: &B,
        inputs: &[B::Elem],
        labels: &[u32],
    ) -> Result<XentStats> {
        self.forward(backend, inputs, labels.len())?;
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

    fn import(
        &mut self,
        backend: &B,
        what: &str,
        tensors: &[NamedTensor<B::Elem>],
        pick: impl Fn(&mut Param<B>) -> &mut B::Buf,
    ) -> Result<()> {
        for t in tensors {
            if !self.params.iter().any(|p| p.name == t.name) {
                return Err(config_err!(
                    "{what}: unexpected tensor `{}` (this network has {})",
                    t.name,
                    self.name_list()
                ));
            }
        }
        for p in &self.params {
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
        for p in &mut self.params {
            let t = tensors
                .iter()
                .find(|t| t.name == p.name)
                .expect("checked above");
            backend.write(pick(p), &t.data)?;
        }
        self.stage = Stage::Idle;
        Ok(())
    }

    fn name_list(&self) -> String {
        self.params
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The activations of the last forward pass, one tensor per node with dimensions (N, C, H, W):
    /// "input", then each conv, pool (including the shortcuts added to it), dense layer and finally
    /// "classifier" (the logits), named like their layers. For diagnostics and tests.
    pub fn export_activations(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        let n = match self.stage {
            Stage::Forward(n) | Stage::Loss(n) => n,
            _ => return Err(config_err!("export_activations needs a forward pass first")),
        };
        let mut names = vec!["input".to_string(); self.plan.nodes.len()];
        for l in &self.plan.layers {
            match l.op {
                PlannedOp::Conv { output, .. }
                | PlannedOp::Pool { output, .. }
                | PlannedOp::Dense { output, .. } => {
                    names[output] = l.name.clone();
                }
                PlannedOp::Shortcut { .. } => {}
            }
        }
        self.plan
            .nodes
            .iter()
            .zip(names)
            .zip(&self.acts)
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

    /// Every parameter as a named host tensor.
    pub fn export_params(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        self.export(backend, |p| &p.value)
    }

    /// Replace every parameter. The set of names and their dimensions must match exactly.
    pub fn import_params(&mut self, backend: &B, tensors: &[NamedTensor<B::Elem>]) -> Result<()> {
        self.import(backend, "import_params", tensors, |p| &mut p.value)
    }

    /// The parameter gradients of the last backward pass (for gradient checks and diagnostics).
    pub fn export_grads(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        self.export(backend, |p| &p.grad)
    }

    /// RMSProp's running mean squares and step count.
    pub fn export_optimizer_state(&self, backend: &B) -> Result<OptimizerState<B::Elem>> {
        Ok(OptimizerState {
            step: self.step,
            mean_square: self.export(backend, |p| &p.mean_square)?,
        })
    }

    /// Restore RMSProp's state (names and dimensions must match the parameters exactly).
    pub fn import_optimizer_state(
        &mut self,
        backend: &B,
        state: &OptimizerState<B::Elem>,
    ) -> Result<()> {
        self.import(backend, "import_optimizer_state", &state.mean_square, |p| {
            &mut p.mean_square
        })?;
        self.step = state.step;
        Ok(())
    }
}
