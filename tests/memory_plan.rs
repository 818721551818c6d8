//! The memory plan changes where values live, never what they are: a training step of the network
//! (activation gradients sharing buffers, a fused convolution's gradient written over its output,
//! the ReLU mask read from the pool's argmax, zeroing just before first use, AdamW's first moments
//! allocated at its first update) gives the same loss, parameter gradients, updated parameters and
//! optimizer state as a straightforward step kept here, which gives every activation and every
//! gradient a buffer of its own and zeroes all gradients up front. Equal means equal as IEEE values
//! (`==`): the reference adds into zeroed gradients where the network writes, which can only change
//! the sign of a zero.
//!
//! And the memory check's figure is what the network allocates: on the recording device (which
//! allocates but computes nothing) the bytes alive after building a network and after its first
//! step equal [`MemoryPlan::bytes`] plus the backend's own scratch.

#[allow(unused_macros)]
mod common;

use common::Rng;
use rescnn::backends::cost::CostDevice;
use rescnn::backends::device::Device;
use rescnn::backends::emu::ThreadOrder;
use rescnn::backends::kernel_backend::KernelBackend;
use rescnn::backends::{
    AdamWIo, Backend, BatchNormBackwardIo, BatchNormTrainIo, ConcatBackwardIo, ConcatForwardIo,
    ConvBackwardIo, ConvForwardIo, DenseBackwardIo, DenseForwardIo, DropoutParams, InputGrad,
    MaxPoolReluBackwardIo, RmsPropIo, StatsPoolBackwardIo, XentGeom, XentIo,
};
use rescnn::model::{
    memory_plan, AdamWConfig, ArchSpec, InputShape, NamedTensor, Network, Optimizer, Plan,
    PlannedOp, RmsPropConfig,
};
use rescnn::training::device::estimate_memory;

/// Every op family, a shortcut from a pooled map (its gradient flows through the shortcut) and one
/// from the input, fused and unfused pools.
const SPEC: &str = "c4k3 c4k3 p2 +0 c6k3 bn p2 +1 c6k3 p2 c6k3s2 bn stats drop0.25 fc8";
/// The paper's layout, small.
const PAPER: &str = "c4k4 p2 +0 c6k3 p2 +0 c6k3 p2 fc12 fc12";
/// Joint networks: the side input appended after statistics pooling, dropped out, and projected or
/// appended raw.
const JOINT_PROJECTED: &str = "c4k3 p2 c6k3 bn stats drop0.25 vec0.5fc16 fc8";
const JOINT_RAW: &str = "c4k3 p2 c6k3 bn stats drop0.25 vec0.5w0.3 fc8";
/// Side input values per sample of the joint networks.
const SIDE: usize = 10;
const CLASSES: usize = 4;
const SEED: u64 = 5;

/// What a step leaves behind.
#[derive(Debug)]
struct StepResult {
    loss: f64,
    grads: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
    mean_square: Vec<Vec<f32>>,
    first_moment: Vec<Vec<f32>>,
}

/// The straightforward step: every node's activation and gradient in a buffer of its own, all
/// gradients zeroed before the backward pass, data gradients accumulated, the fused pool backward
/// where the network takes it (a ReLU convolution read only by the next pool).
fn reference_step<B: Backend<Elem = f32>>(
    b: &B,
    plan: &Plan,
    start: &[NamedTensor<f32>],
    images: &[f32],
    side: Option<&[f32]>,
    labels: &[u32],
    optimizer: Optimizer,
) -> StepResult {
    let n = labels.len();
    let tensor = |name: &str| {
        let t = start.iter().find(|t| t.name == name).unwrap();
        b.upload(&t.data).unwrap()
    };
    let mut acts: Vec<B::Buf> = plan
        .nodes
        .iter()
        .map(|s| b.zeros(n * s.per_sample()).unwrap())
        .collect();
    let mut grads: Vec<Option<B::Buf>> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, s)| (i > 0).then(|| b.zeros(n * s.per_sample()).unwrap()))
        .collect();
    b.write(&mut acts[0], images).unwrap();
    if let (Some(node), Some(side)) = (plan.side_input, side) {
        b.write(&mut acts[node], side).unwrap();
    }
    // Per layer: (weight, bias) or (γ, β) values, their gradients, running stats, saved stats.
    let mut values: Vec<Vec<B::Buf>> = Vec::new();
    let mut pgrads: Vec<Vec<B::Buf>> = Vec::new();
    let mut running: Vec<Vec<B::Buf>> = Vec::new();
    let mut saved: Vec<Option<B::Buf>> = Vec::new();
    let mut argmax: Vec<Option<B::Idx>> = Vec::new();
    for l in &plan.layers {
        values.push(l.params().iter().map(|(name, _)| tensor(name)).collect());
        pgrads.push(
            l.params()
                .iter()
                .map(|(_, d)| b.zeros(d.iter().product()).unwrap())
                .collect(),
        );
        running.push(l.state().iter().map(|(name, _)| tensor(name)).collect());
        saved.push(match l.op {
            PlannedOp::BatchNorm { geom, .. } => Some(b.zeros(2 * geom.c as usize).unwrap()),
            _ => None,
        });
        argmax.push(match l.op {
            PlannedOp::Pool { geom, .. } => Some(b.zeros_idx(n * geom.output().len()).unwrap()),
            _ => None,
        });
    }
    let readers = |node: usize| {
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
    // The convolution a pool fuses with, by layer index.
    let fused_conv = |pool_input: usize| {
        plan.layers.iter().position(|l| {
            matches!(l.op, PlannedOp::Conv { geom, output, .. } if output == pool_input && geom.relu != 0)
        })
        .filter(|_| readers(pool_input) == 1)
    };
    let dropout = |li: usize, rate: f64, n: usize, per_sample: usize, whole_samples: bool| {
        let p = DropoutParams::new(n * per_sample, rate, SEED, 0, li as u64).unwrap();
        if whole_samples {
            p.in_groups(per_sample).unwrap().without_rescaling()
        } else {
            p
        }
    };

    for (li, l) in plan.layers.iter().enumerate() {
        let (lo, hi) = acts.split_at_mut(l.output().max(1));
        match l.op {
            PlannedOp::Conv { geom, input, .. } => b
                .conv2d_forward(
                    &geom.with_batch(n),
                    ConvForwardIo {
                        x: &lo[input],
                        w: &values[li][0],
                        b: &values[li][1],
                        y: &mut hi[0],
                    },
                )
                .unwrap(),
            PlannedOp::Pool { geom, input, .. } => b
                .maxpool_forward(
                    &geom.with_batch(n),
                    &lo[input],
                    &mut hi[0],
                    argmax[li].as_mut().unwrap(),
                )
                .unwrap(),
            PlannedOp::Shortcut { geom, source, .. } => b
                .shortcut_forward(&geom.with_batch(n), &lo[source], &mut hi[0])
                .unwrap(),
            PlannedOp::Dense { geom, input, .. } => b
                .dense_forward(
                    &geom.with_batch(n),
                    DenseForwardIo {
                        x: &lo[input],
                        w: &values[li][0],
                        b: &values[li][1],
                        y: &mut hi[0],
                    },
                )
                .unwrap(),
            PlannedOp::BatchNorm { geom, input, .. } => {
                let (rm, rv) = running[li].split_at_mut(1);
                b.batchnorm_forward_train(
                    &geom.with_batch(n),
                    BatchNormTrainIo {
                        x: &lo[input],
                        gamma: &values[li][0],
                        beta: &values[li][1],
                        y: &mut hi[0],
                        saved: saved[li].as_mut().unwrap(),
                        running_mean: &mut rm[0],
                        running_var: &mut rv[0],
                    },
                )
                .unwrap()
            }
            PlannedOp::StatsPool { geom, input, .. } => b
                .statspool_forward(&geom.with_batch(n), &lo[input], &mut hi[0])
                .unwrap(),
            PlannedOp::Dropout {
                rate,
                per_sample,
                whole_samples,
                input,
                ..
            } => {
                let p = dropout(li, rate, n, per_sample, whole_samples);
                b.dropout_forward(&p, &lo[input], &mut hi[0]).unwrap()
            }
            PlannedOp::Concat {
                geom, input, side, ..
            } => b
                .concat_forward(
                    &geom.with_batch(n),
                    ConcatForwardIo {
                        a: &lo[input],
                        b: &lo[side],
                        y: &mut hi[0],
                    },
                )
                .unwrap(),
        }
    }
    let logits = plan.logits_node();
    let mut label_buf = b.zeros_idx(n).unwrap();
    b.write_idx(&mut label_buf, labels).unwrap();
    let mut losses = b.zeros(n).unwrap();
    let stats = b
        .softmax_xent(
            &XentGeom::new(n, plan.classes).unwrap(),
            XentIo {
                logits: &acts[logits],
                labels: &label_buf,
                losses: &mut losses,
                d_logits: grads[logits].as_mut().unwrap(),
            },
        )
        .unwrap();

    for (li, l) in plan.layers.iter().enumerate().rev() {
        match l.op {
            PlannedOp::Shortcut {
                geom,
                source,
                target,
                ..
            } => {
                if source == 0 {
                    continue;
                }
                let d_dst = grads[target].take().unwrap();
                b.shortcut_backward(&geom.with_batch(n), &d_dst, grads[source].as_mut().unwrap())
                    .unwrap();
                grads[target] = Some(d_dst);
            }
            PlannedOp::Pool {
                geom,
                input,
                output,
            } => {
                if input == 0 {
                    continue;
                }
                let dy = grads[output].take().unwrap();
                let am = argmax[li].as_ref().unwrap();
                let dx = grads[input].as_mut().unwrap();
                match fused_conv(input) {
                    Some(conv) => b
                        .maxpool_relu_backward(
                            &geom.with_batch(n),
                            MaxPoolReluBackwardIo {
                                dy: &dy,
                                argmax: am,
                                dx,
                                db: &mut pgrads[conv][1],
                            },
                        )
                        .unwrap(),
                    None => b
                        .maxpool_backward(&geom.with_batch(n), &dy, am, dx)
                        .unwrap(),
                }
                grads[output] = Some(dy);
            }
            PlannedOp::Conv {
                geom,
                input,
                output,
            } => {
                let fused = plan.layers.iter().enumerate().any(|(pi, p)| {
                    pi > li && matches!(p.op, PlannedOp::Pool { input: i, .. } if i == output)
                }) && fused_conv(output) == Some(li);
                let mut g = geom.with_batch(n);
                if fused {
                    g.relu = 0;
                }
                let mut dy = grads[output].take().unwrap();
                let dx = match grads[input].as_mut() {
                    Some(dx) => InputGrad::Add(dx),
                    None => InputGrad::None,
                };
                let (dw, db) = pgrads[li].split_at_mut(1);
                b.conv2d_backward(
                    &g,
                    ConvBackwardIo {
                        x: &acts[input],
                        w: &values[li][0],
                        y: &acts[output],
                        dy: &mut dy,
                        dx,
                        dw: &mut dw[0],
                        db: (!fused).then_some(&mut db[0]),
                    },
                )
                .unwrap();
                grads[output] = Some(dy);
            }
            PlannedOp::Dense {
                geom,
                input,
                output,
            } => {
                let mut dy = grads[output].take().unwrap();
                let (dw, db) = pgrads[li].split_at_mut(1);
                b.dense_backward(
                    &geom.with_batch(n),
                    DenseBackwardIo {
                        x: &acts[input],
                        w: &values[li][0],
                        y: &acts[output],
                        dy: &mut dy,
                        dx: grads[input].as_mut(),
                        dw: &mut dw[0],
                        db: &mut db[0],
                    },
                )
                .unwrap();
                grads[output] = Some(dy);
            }
            PlannedOp::BatchNorm {
                geom,
                input,
                output,
            } => {
                let mut dy = grads[output].take().unwrap();
                let (dg, dbeta) = pgrads[li].split_at_mut(1);
                b.batchnorm_backward(
                    &geom.with_batch(n),
                    BatchNormBackwardIo {
                        x: &acts[input],
                        gamma: &values[li][0],
                        y: &acts[output],
                        saved: saved[li].as_ref().unwrap(),
                        dy: &mut dy,
                        dx: grads[input].as_mut(),
                        dgamma: &mut dg[0],
                        dbeta: &mut dbeta[0],
                    },
                )
                .unwrap();
                grads[output] = Some(dy);
            }
            PlannedOp::StatsPool {
                geom,
                input,
                output,
            } => {
                if input == 0 {
                    continue;
                }
                let dy = grads[output].take().unwrap();
                b.statspool_backward(
                    &geom.with_batch(n),
                    StatsPoolBackwardIo {
                        x: &acts[input],
                        y: &acts[output],
                        dy: &dy,
                        dx: grads[input].as_mut().unwrap(),
                    },
                )
                .unwrap();
                grads[output] = Some(dy);
            }
            PlannedOp::Dropout {
                rate,
                per_sample,
                whole_samples,
                input,
                output,
            } => {
                if input == 0 {
                    continue;
                }
                let dy = grads[output].take().unwrap();
                b.dropout_backward(
                    &dropout(li, rate, n, per_sample, whole_samples),
                    &dy,
                    grads[input].as_mut().unwrap(),
                )
                .unwrap();
                grads[output] = Some(dy);
            }
            PlannedOp::Concat {
                geom,
                input,
                side,
                output,
            } => {
                let dy = grads[output].take().unwrap();
                let (lo, hi) = grads.split_at_mut(side);
                // The raw side input's gradient is not taken (its dropout's and projection's are).
                let db = if Some(side) == plan.side_input {
                    None
                } else {
                    hi[0].as_mut()
                };
                b.concat_backward(
                    &geom.with_batch(n),
                    ConcatBackwardIo {
                        dy: &dy,
                        da: lo[input].as_mut(),
                        db,
                    },
                )
                .unwrap();
                grads[output] = Some(dy);
            }
        }
    }

    let mut result = StepResult {
        loss: stats.mean_loss,
        grads: Vec::new(),
        params: Vec::new(),
        mean_square: Vec::new(),
        first_moment: Vec::new(),
    };
    for (li, l) in plan.layers.iter().enumerate() {
        for k in 0..l.params().len() {
            let len = b.len(&values[li][k]);
            let mut r = b.zeros(len).unwrap();
            let w = &mut values[li][k];
            let g = &pgrads[li][k];
            match optimizer {
                Optimizer::RmsProp(cfg) => b
                    .rmsprop_update(&cfg.step(0), RmsPropIo { w, g, r: &mut r })
                    .unwrap(),
                Optimizer::AdamW { cfg, total_steps } => {
                    let mut m = b.zeros(len).unwrap();
                    b.adamw_update(
                        &cfg.step(0, total_steps),
                        AdamWIo {
                            w,
                            g,
                            m: &mut m,
                            v: &mut r,
                        },
                    )
                    .unwrap();
                    result.first_moment.push(b.download(&m).unwrap());
                }
            }
            result.grads.push(b.download(g).unwrap());
            result.params.push(b.download(w).unwrap());
            result.mean_square.push(b.download(&r).unwrap());
        }
    }
    for l in running.iter().flatten() {
        result.params.push(b.download(l).unwrap());
    }
    result
}

fn network_step<B: Backend<Elem = f32>>(
    b: &B,
    net: &mut Network<B>,
    images: &[f32],
    side: Option<&[f32]>,
    labels: &[u32],
    optimizer: Optimizer,
) -> StepResult {
    let stats = net
        .train_step_with_side(b, images, side, labels, optimizer)
        .unwrap();
    let state = net.export_optimizer_state(b).unwrap();
    let data = |t: Vec<NamedTensor<f32>>| t.into_iter().map(|t| t.data).collect();
    StepResult {
        loss: stats.mean_loss,
        grads: data(net.export_grads(b).unwrap()),
        params: data(net.export_params(b).unwrap()),
        mean_square: data(state.mean_square),
        first_moment: data(state.first_moment),
    }
}

fn assert_same(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{what}: tensor count");
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what} {t}: length");
        if let Some(i) = (0..g.len()).find(|&i| g[i] != w[i]) {
            panic!("{what} {t}[{i}]: network {} vs reference {}", g[i], w[i]);
        }
    }
}

fn same_step<B: Backend<Elem = f32>>(b: &B, spec: &str, input: InputShape, optimizer: Optimizer) {
    let spec = ArchSpec::parse(spec).unwrap();
    let batch = 3;
    let mut net = Network::new(b, &spec, input, CLASSES, batch, SEED).unwrap();
    let start = net.export_params(b).unwrap();
    let mut rng = Rng::new(17);
    let images = rng.vec(batch * input.len(), -0.5, 1.0);
    let side = (input.side > 0).then(|| rng.vec(batch * input.side, -1.0, 1.0));
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % CLASSES as u32).collect();
    let got = network_step(b, &mut net, &images, side.as_deref(), &labels, optimizer);
    let want = reference_step(
        b,
        net.plan(),
        &start,
        &images,
        side.as_deref(),
        &labels,
        optimizer,
    );
    let what = format!("{spec} on {}", b.name());
    assert_eq!(got.loss, want.loss, "{what}: loss");
    assert_same(&format!("{what}: gradient"), &got.grads, &want.grads);
    assert_same(&format!("{what}: parameter"), &got.params, &want.params);
    assert_same(
        &format!("{what}: mean square"),
        &got.mean_square,
        &want.mean_square,
    );
    assert_same(
        &format!("{what}: first moment"),
        &got.first_moment,
        &want.first_moment,
    );
    assert!(
        got.grads.iter().flatten().any(|&v| v != 0.0),
        "{what}: all gradients zero"
    );
}

fn optimizers() -> [Optimizer; 2] {
    [
        Optimizer::RmsProp(RmsPropConfig::default()),
        Optimizer::AdamW {
            cfg: AdamWConfig::default(),
            total_steps: 10,
        },
    ]
}

fn joint_input() -> InputShape {
    InputShape::new(3, 12, 16).with_side(SIDE)
}

#[test]
fn a_step_with_the_memory_plan_matches_the_all_buffers_reference_on_the_cpu() {
    for opt in optimizers() {
        same_step(&common::reference(), SPEC, InputShape::new(3, 12, 16), opt);
        same_step(&common::reference(), PAPER, InputShape::new(3, 16, 16), opt);
        for joint in [JOINT_PROJECTED, JOINT_RAW] {
            same_step(&common::reference(), joint, joint_input(), opt);
        }
    }
}

#[test]
fn a_step_with_the_memory_plan_matches_the_all_buffers_reference_on_the_emulator() {
    let emu = common::emulated(ThreadOrder::Forward);
    for opt in optimizers() {
        same_step(&emu, SPEC, InputShape::new(3, 12, 16), opt);
        same_step(&emu, PAPER, InputShape::new(3, 16, 16), opt);
        for joint in [JOINT_PROJECTED, JOINT_RAW] {
            same_step(&emu, joint, joint_input(), opt);
        }
    }
}

#[test]
fn the_network_allocates_what_its_memory_plan_says() {
    for (spec, input) in [
        (SPEC, InputShape::new(3, 12, 16)),
        (PAPER, InputShape::new(3, 16, 16)),
        ("paper", InputShape::new(3, 64, 64)),
        ("recipe", InputShape::new(3, 32, 48)),
        (JOINT_PROJECTED, joint_input()),
        (JOINT_RAW, joint_input()),
    ] {
        let spec = ArchSpec::from_name_or_spec(spec).unwrap();
        for (adamw, opt) in [false, true].into_iter().zip(optimizers()) {
            let b = KernelBackend::new(CostDevice::new()).unwrap();
            let meter = b.device().memory();
            let backend_own = meter.live_bytes();
            let batch = 5;
            let plan = Plan::new(&spec, input, CLASSES).unwrap();
            let mut net = Network::from_plan(&b, plan.clone(), batch, 1).unwrap();
            // Built: the plan's buffers, no first moments before an AdamW update.
            let no_moments = memory_plan(&plan).bytes(&plan, batch, false);
            assert_eq!(
                meter.live_bytes() - backend_own,
                no_moments.total(),
                "{spec}: built"
            );
            let images = vec![0.5f32; batch * input.len()];
            let side = (input.side > 0).then(|| vec![0.25f32; batch * input.side]);
            let labels = vec![1u32; batch];
            for _ in 0..2 {
                net.train_step_with_side(&b, &images, side.as_deref(), &labels, opt)
                    .unwrap();
            }
            // Stepped: the trainer's estimate is the peak, to the byte (the backend's scratch
            // included: it only grows, so its largest size coexists with every other buffer).
            let estimate = estimate_memory(&plan, batch, adamw);
            assert_eq!(
                meter.peak_bytes(),
                estimate.allocated(),
                "{spec} adamw={adamw}: measured peak vs estimate {estimate:?}"
            );
            assert_eq!(
                meter.live_bytes(),
                meter.peak_bytes(),
                "{spec}: freed memory"
            );
        }
    }
}
