//! The forward pass and the loss: every layer in plan order, in training or evaluation mode, then
//! softmax cross-entropy against hard labels or soft targets, leaving the logits' gradient for the
//! backward pass.

use super::borrow::{both_mut, read_write, split};
use super::{Network, Stage};
use crate::backends::{
    Backend, BatchNormEvalIo, BatchNormTrainIo, ConcatForwardIo, ConvForwardIo, DenseForwardIo,
    DropoutParams, SoftXentIo, XentGeom, XentIo, XentStats,
};
use crate::model::layer::PlannedOp;
use crate::tensor::Real;
use crate::{config_err, shape_err, Result};

impl<B: Backend> Network<B> {
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

    pub(super) fn run_forward(
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
                    let p = self.params.of_layer[li].expect("conv has parameters");
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    backend.conv2d_forward(
                        &geom.with_batch(n),
                        ConvForwardIo {
                            x,
                            w: &self.params.trained[p].value,
                            b: &self.params.trained[p + 1].value,
                            y,
                        },
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
                    let p = self.params.of_layer[li].expect("dense has parameters");
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    backend.dense_forward(
                        &geom.with_batch(n),
                        DenseForwardIo {
                            x,
                            w: &self.params.trained[p].value,
                            b: &self.params.trained[p + 1].value,
                            y,
                        },
                    )?;
                }
                PlannedOp::BatchNorm {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.params.of_layer[li].expect("batch norm has parameters");
                    let st = self.params.state_of_layer[li].expect("batch norm has state");
                    let (x, y) = read_write(&mut self.bufs, input, output);
                    let (gamma, beta) = (
                        &self.params.trained[p].value,
                        &self.params.trained[p + 1].value,
                    );
                    let g = geom.with_batch(n);
                    if training {
                        let (rm, rv) = both_mut(&mut self.params.state, st, st + 1);
                        let saved = self.bn_saved[li].as_mut().expect("batch norm saves");
                        backend.batchnorm_forward_train(
                            &g,
                            BatchNormTrainIo {
                                x,
                                gamma,
                                beta,
                                y,
                                saved,
                                running_mean: &mut rm.value,
                                running_var: &mut rv.value,
                            },
                        )?;
                    } else {
                        let (rm, rv) = (
                            &self.params.state[st].value,
                            &self.params.state[st + 1].value,
                        );
                        backend.batchnorm_forward_eval(
                            &g,
                            BatchNormEvalIo {
                                x,
                                gamma,
                                beta,
                                running_mean: rm,
                                running_var: rv,
                                y,
                            },
                        )?;
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
                    whole_samples,
                    input,
                    output,
                } => {
                    let params =
                        self.dropout_params(li, rate, n, per_sample, whole_samples, training)?;
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
                    backend.concat_forward(&geom.with_batch(n), ConcatForwardIo { a, b, y })?;
                }
            }
        }
        self.stage = Stage::Forward { n, training };
        Ok(())
    }

    /// Dropout's parameters for layer `li` over `n` samples of `per_sample` values at the current
    /// step (the identity in evaluation).
    pub(super) fn dropout_params(
        &self,
        li: usize,
        rate: f64,
        n: usize,
        per_sample: usize,
        whole_samples: bool,
        training: bool,
    ) -> Result<DropoutParams> {
        let len = n * per_sample;
        if !training {
            return DropoutParams::identity(len);
        }
        let params = DropoutParams::new(len, rate, self.seed, self.step, li as u64)?;
        if whole_samples {
            // A sample's vector is present at its own scale or absent, as at test time it is
            // present at its own scale: rescaling the kept ones by 1 / (1 − rate) would train the
            // network on vectors larger than it is then given.
            Ok(params.in_groups(per_sample)?.without_rescaling())
        } else {
            Ok(params)
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
            XentIo {
                logits,
                labels: &self.labels,
                losses: &mut self.losses,
                d_logits,
            },
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
            SoftXentIo {
                logits,
                targets: &self.targets,
                class_weights: class_weights.is_some().then_some(&self.class_weights),
                losses: &mut self.losses,
                d_logits,
            },
        )?;
        self.stage = Stage::Loss { n, training };
        Ok(stats)
    }
}
