//! The backward pass: every layer in reverse plan order, following the plan's backward schedule
//! (which pools fuse the ReLU, which gradients are written rather than accumulated) and the memory
//! plan (where each gradient lives, which buffers are zeroed before their first use).

use super::borrow::{backward_bufs, both_mut, read_write, split};
use super::{Network, Stage};
use crate::backends::{
    Backend, BatchNormBackwardIo, ConcatBackwardIo, ConvBackwardIo, DenseBackwardIo, InputGrad,
    MaxPoolReluBackwardIo, StatsPoolBackwardIo,
};
use crate::model::layer::PlannedOp;
use crate::{config_err, Result};

impl<B: Backend> Network<B> {
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
        let schedule = self.plan.schedule();
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
                    if let Some(conv) = schedule.fused_relu_pool[li] {
                        // dx takes the buffer of x, the convolution's output: the argmax holds its
                        // ReLU mask.
                        let bias = self.params.of_layer[conv].expect("conv has parameters") + 1;
                        let db = &mut self.params.trained[bias].grad;
                        backend.maxpool_relu_backward(
                            &geom.with_batch(n),
                            MaxPoolReluBackwardIo {
                                dy,
                                argmax: am,
                                dx,
                                db,
                            },
                        )?;
                    } else {
                        backend.maxpool_backward(&geom.with_batch(n), dy, am, dx)?;
                    }
                }
                PlannedOp::Conv {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.params.of_layer[li].expect("conv has parameters");
                    let (w, b) = both_mut(&mut self.params.trained, p, p + 1);
                    let mut g = geom.with_batch(n);
                    let fused = schedule.fused_relu_pool[li].is_some();
                    // Fused: dy is already the pre-activation gradient and db written (the pool did
                    // both), so y is not read; its buffer holds dy, and x stands in for it.
                    let y = if fused { input } else { output };
                    if fused {
                        g.relu = 0;
                    }
                    let (x, y, dy, dx) =
                        backward_bufs(&mut self.bufs, &self.memory.gradient, input, y, output);
                    let dx = match dx {
                        None => InputGrad::None,
                        Some(dx) if schedule.conv_writes_dx[li] => InputGrad::Write(dx),
                        Some(dx) => InputGrad::Add(dx),
                    };
                    backend.conv2d_backward(
                        &g,
                        ConvBackwardIo {
                            x,
                            w: &w.value,
                            y,
                            dy,
                            dx,
                            dw: &mut w.grad,
                            db: (!fused).then_some(&mut b.grad),
                        },
                    )?;
                }
                PlannedOp::Dense {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.params.of_layer[li].expect("dense has parameters");
                    let (w, b) = both_mut(&mut self.params.trained, p, p + 1);
                    let (x, y, dy, dx) =
                        backward_bufs(&mut self.bufs, &self.memory.gradient, input, output, output);
                    backend.dense_backward(
                        &geom.with_batch(n),
                        DenseBackwardIo {
                            x,
                            w: &w.value,
                            y,
                            dy,
                            dx,
                            dw: &mut w.grad,
                            db: &mut b.grad,
                        },
                    )?;
                }
                PlannedOp::BatchNorm {
                    geom,
                    input,
                    output,
                } => {
                    let p = self.params.of_layer[li].expect("batch norm has parameters");
                    let (gamma, beta) = both_mut(&mut self.params.trained, p, p + 1);
                    let (x, y, dy, dx) =
                        backward_bufs(&mut self.bufs, &self.memory.gradient, input, output, output);
                    backend.batchnorm_backward(
                        &geom.with_batch(n),
                        BatchNormBackwardIo {
                            x,
                            gamma: &gamma.value,
                            y,
                            saved: self.bn_saved[li].as_ref().expect("batch norm saves"),
                            dy,
                            dx,
                            dgamma: &mut gamma.grad,
                            dbeta: &mut beta.grad,
                        },
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
                    backend.statspool_backward(
                        &geom.with_batch(n),
                        StatsPoolBackwardIo { x, y, dy, dx },
                    )?;
                }
                PlannedOp::Dropout {
                    rate,
                    per_sample,
                    whole_samples,
                    input,
                    output,
                } => {
                    // The image or the side input: no gradient.
                    let Some(dx) = self.memory.gradient[input] else {
                        continue;
                    };
                    // The same parameters as the forward pass: the step has not moved since.
                    let params =
                        self.dropout_params(li, rate, n, per_sample, whole_samples, true)?;
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
                            backend.concat_backward(
                                &g,
                                ConcatBackwardIo {
                                    dy,
                                    da: Some(da),
                                    db: Some(db),
                                },
                            )?;
                        }
                        (Some(da), None) => {
                            let (dy, da) = read_write(&mut self.bufs, dy, da);
                            backend.concat_backward(
                                &g,
                                ConcatBackwardIo {
                                    dy,
                                    da: Some(da),
                                    db: None,
                                },
                            )?;
                        }
                        (None, Some(db)) => {
                            let (dy, db) = read_write(&mut self.bufs, dy, db);
                            backend.concat_backward(
                                &g,
                                ConcatBackwardIo {
                                    dy,
                                    da: None,
                                    db: Some(db),
                                },
                            )?;
                        }
                        (None, None) => backend.concat_backward(
                            &g,
                            ConcatBackwardIo {
                                dy: &self.bufs[dy],
                                da: None,
                                db: None,
                            },
                        )?,
                    }
                }
            }
        }
        self.stage = Stage::Gradients;
        Ok(())
    }
}
