//! The cost model of a whole training step: a [`Network`] built on the recording
//! [`CostDevice`](crate::backends::cost::CostDevice) runs its real `train_step`, so the launch list is
//! the one the CUDA device would receive, with every wrapper's stated cost (see
//! [`crate::backends::cost`]).

use super::network::Network;
use super::optimizer::{Optimizer, RmsPropConfig};
use super::plan::InputShape;
use super::spec::ArchSpec;
use crate::backends::cost::{self, CostDevice, Event};
use crate::backends::device::Device;
use crate::backends::kernel_backend::KernelBackend;
use crate::Result;

/// The events of one steady-state training step of `spec` on `input` images, batch `batch`:
/// the second step of a fresh network (the first also grows the scratch buffers), and the number of
/// device allocations that step made.
pub fn train_step_events(
    spec: &ArchSpec,
    input: InputShape,
    classes: usize,
    batch: usize,
) -> Result<(Vec<Event>, usize)> {
    let backend = KernelBackend::new(CostDevice::new())?;
    let mut net = Network::new(&backend, spec, input, classes, batch, 1)?;
    let images = vec![0.0f32; batch * input.len()];
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
    let cfg = RmsPropConfig::default();
    net.train_step(&backend, &images, &labels, &cfg)?;
    backend.device().take_events();
    let before = backend.device().allocations();
    net.train_step(&backend, &images, &labels, &cfg)?;
    let allocations = backend.device().allocations() - before;
    Ok((backend.device().take_events(), allocations))
}

/// The report of the `paper` net's step at 512 × 512, batch 50, 7 classes (the reference point of
/// the GPU memory and traffic budgets).
pub fn paper_step_report() -> Result<String> {
    let spec = ArchSpec::from_name_or_spec("paper")?;
    let (events, _) = train_step_events(&spec, InputShape::new(3, 512, 512), 7, 50)?;
    Ok(cost::report(
        "cost model: one training step of the `paper` net, 3x512x512, batch 50, 7 classes (launches recorded from the real step; see src/backends/cost.rs for the traffic model)",
        &events,
        None,
    ))
}

/// Device memory of a real training step, counted by the recording device (which allocates like
/// the CUDA device but computes nothing, so the paper's step at 512 × 512 takes seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeasuredMemory {
    /// Bytes alive once the network is built, before any step (the backend's own buffers included).
    pub built: u64,
    /// The most bytes alive at once over two training steps.
    pub peak: u64,
}

/// Build `spec` for `input` images (and side inputs, all zero) and batches of `batch` on the
/// recording device, run two training steps with `optimizer` and report what was allocated.
pub fn measure_step_memory(
    spec: &ArchSpec,
    input: InputShape,
    classes: usize,
    batch: usize,
    optimizer: Optimizer,
) -> Result<MeasuredMemory> {
    let backend = KernelBackend::new(CostDevice::new())?;
    let mut net = Network::new(&backend, spec, input, classes, batch, 1)?;
    let built = backend.device().memory().live_bytes();
    let images = vec![0.0f32; batch * input.len()];
    let side = (net.plan().side_input.is_some()).then(|| vec![0.0f32; batch * input.side]);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
    for _ in 0..2 {
        net.train_step_with_side(&backend, &images, side.as_deref(), &labels, optimizer)?;
        backend.device().take_events();
    }
    Ok(MeasuredMemory {
        built,
        peak: backend.device().memory().peak_bytes(),
    })
}
