//! The host side of a training step on the kernel-running devices: once the first step has grown the
//! scratch buffers and built the convolutions' K tables, later steps (full and short batches, hard
//! and soft targets) allocate no device memory and launch no `conv2d_gather_table`.

#[allow(unused_macros)] // backend_tests!: these bodies need the device, not just the op contract
mod common;

use std::collections::HashSet;

use common::Rng;
use rescnn::backends::cost::{CostDevice, EventKind};
use rescnn::backends::device::Device;
use rescnn::backends::kernel_backend::KernelBackend;
use rescnn::model::RmsPropConfig;
use rescnn::model::{ArchSpec, InputShape, Network, Plan, PlannedOp};

/// Every op family of a training step: convolutions (three of one shape, so K tables are shared, and
/// a strided one), max-pool (with the fused ReLU backward), a shortcut, batch norm, statistics
/// pooling, dropout and dense layers.
const SPEC: &str = "c4k3 c4k3 c4k3 p2 +0 c6k3 bn p2 +1 c6k3s2 bn stats drop0.25 fc8";
const CLASSES: usize = 4;
const MAX_BATCH: usize = 4;

fn input() -> InputShape {
    InputShape::new(3, 12, 16)
}

fn network<D: Device>(backend: &KernelBackend<D>) -> Network<KernelBackend<D>> {
    let spec = ArchSpec::parse(SPEC).unwrap();
    Network::new(backend, &spec, input(), CLASSES, MAX_BATCH, 5).unwrap()
}

/// Step `step` of the schedule the test runs: a batch of 4, 3 or 2 samples (the trainer's last batch
/// of an epoch is short) and, on odd steps, the trainer's path with soft targets and class weights
/// instead of `train_step`'s hard labels. Returns the mean loss.
fn run_step<D: Device>(
    backend: &KernelBackend<D>,
    net: &mut Network<KernelBackend<D>>,
    rng: &mut Rng,
    step: usize,
) -> f64 {
    let n = [MAX_BATCH, 3, 2][step % 3];
    let images = rng.vec(n * input().len(), 0.0, 1.0);
    let labels: Vec<u32> = (0..n).map(|i| ((i + step) % CLASSES) as u32).collect();
    let cfg = RmsPropConfig::default();
    if step % 2 == 0 {
        return net
            .train_step(backend, &images, &labels, &cfg)
            .unwrap()
            .mean_loss;
    }
    let mut targets = vec![0.1 / (CLASSES - 1) as f32; n * CLASSES];
    for (i, &l) in labels.iter().enumerate() {
        targets[i * CLASSES + l as usize] = 0.9;
    }
    let weights: Vec<f32> = (0..CLASSES).map(|c| 0.5 + c as f32 / 4.0).collect();
    net.forward(backend, &images, n).unwrap();
    let stats = net.loss_soft(backend, &targets, Some(&weights)).unwrap();
    net.backward(backend).unwrap();
    net.apply_update(backend, &cfg).unwrap();
    stats.mean_loss
}

/// The K tables a step of `plan` needs, by what each depends on (see `conv2d_gather_table`):
/// forward over (C_in, H_in, W_in, window) of every convolution, backward-data over (C_out, H_out,
/// W_out, window) of every convolution but one reading the input image (it needs no dx).
fn distinct_tables(plan: &Plan) -> usize {
    let mut keys = HashSet::new();
    for layer in &plan.layers {
        if let PlannedOp::Conv { geom: g, input, .. } = layer.op {
            keys.insert((false, g.c_in, g.h_in, g.w_in, g.k_h, g.k_w));
            if input != 0 {
                keys.insert((true, g.c_out, g.h_out, g.w_out, g.k_h, g.k_w));
            }
        }
    }
    keys.len()
}

fn steady_state_steps_allocate_nothing<D: Device>(backend: &KernelBackend<D>) {
    let dev = backend.device();
    let mut rng = Rng::new(11);
    let mut net = network(backend);
    let before = dev.allocations();
    let first = run_step(backend, &mut net, &mut rng, 0);
    // The counter counts: the first step grows the GEMM scratch and builds the K tables.
    assert!(
        dev.allocations() > before,
        "the first step allocated nothing: is the counter kept?"
    );
    assert!(first.is_finite(), "step 1 loss {first}");
    let tables = backend.gather_tables();
    assert_eq!(tables, distinct_tables(net.plan()), "K tables after step 1");
    for step in 1..10 {
        let before = dev.allocations();
        let loss = run_step(backend, &mut net, &mut rng, step);
        assert_eq!(
            dev.allocations() - before,
            0,
            "step {} (batch {}, {} targets) made device allocations on {}",
            step + 1,
            [MAX_BATCH, 3, 2][step % 3],
            if step % 2 == 0 { "hard" } else { "soft" },
            dev.name()
        );
        assert!(loss.is_finite(), "step {} loss {loss}", step + 1);
    }
    assert_eq!(backend.gather_tables(), tables, "K tables after step 10");
}

#[test]
fn emulated_forward_steady_state_steps_allocate_nothing() {
    steady_state_steps_allocate_nothing(&common::emulated(
        rescnn::backends::emu::ThreadOrder::Forward,
    ));
}

#[test]
fn emulated_reverse_steady_state_steps_allocate_nothing() {
    steady_state_steps_allocate_nothing(&common::emulated(
        rescnn::backends::emu::ThreadOrder::Reverse,
    ));
}

#[test]
#[cfg_attr(
    not(all(rescnn_gpu, rescnn_nvrtc)),
    ignore = "needs a CUDA GPU and the kernels NVRTC compiles"
)]
fn cuda_steady_state_steps_allocate_nothing() {
    steady_state_steps_allocate_nothing(&common::cuda());
}

/// On the recording device: the first step launches `conv2d_gather_table` once per distinct table
/// (fewer than the convolutions' forward and backward-data launches, which share), later steps never.
#[test]
fn gather_tables_are_built_once_per_shape() {
    let backend = KernelBackend::new(CostDevice::new()).unwrap();
    let mut net = network(&backend);
    let mut rng = Rng::new(3);
    let table_launches = |backend: &KernelBackend<CostDevice>| {
        let events = backend.device().take_events();
        let count = |name: &str| {
            events
                .iter()
                .filter(
                    |e| matches!(e.kind, EventKind::Launch { kernel, .. } if kernel.name == name),
                )
                .count()
        };
        (
            count("conv2d_gather_table"),
            count("conv2d_forward") + count("conv2d_forward_m32"),
        )
    };
    backend.device().take_events();
    run_step(&backend, &mut net, &mut rng, 0);
    let (tables, forwards) = table_launches(&backend);
    let want = distinct_tables(net.plan());
    assert_eq!(tables, want, "table launches in step 1");
    assert_eq!(forwards, 5, "the spec has five convolutions");
    assert!(want < 2 * forwards - 1, "the spec should share tables");
    for step in 1..4 {
        run_step(&backend, &mut net, &mut rng, step);
        let (tables, forwards) = table_launches(&backend);
        assert_eq!(tables, 0, "table launches in step {}", step + 1);
        assert_eq!(forwards, 5, "conv forwards in step {}", step + 1);
    }
}
