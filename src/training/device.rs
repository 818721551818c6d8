//! Which device runs a network (training, `rescnn predict`, `rescnn eval`): the choice resolved
//! once ([`resolve`]), then the work handed to the one backend type it names ([`on_device`]); and
//! whether the network fits in its memory.
//!
//! `auto` picks CUDA when the binary carries the compiled kernels of every op family and a GPU
//! opens, else the CPU reference (never the emulated device: it runs the CUDA kernels faithfully but
//! hundreds of times slower than the reference, so it is only chosen by name).
//!
//! The memory check is a pure function of the [`Plan`], the batch and the free memory
//! ([`check_memory`]), so it is tested without a GPU: a batch that does not fit is refused before
//! anything is allocated, with the largest batch that does.

use serde::{Deserialize, Serialize};

use crate::backends::Backend;
use crate::model::{Plan, PlannedOp};
use crate::{config_err, Error, Result};

/// Which compute device runs the network (`--device` of rescnn-train, predict and eval).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when a GPU and the compiled kernels are there, else the CPU reference.
    Auto,
    /// The CUDA device (GPU 0).
    Cuda,
    /// The emulated device: the CUDA kernels run on the CPU (slow; for checking kernels).
    Emu,
    /// The CPU reference backend.
    Cpu,
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Emu => "emu",
            DeviceChoice::Cpu => "cpu",
        })
    }
}

/// The kernel files (`kernels/<name>.cu`) the network needs on a kernel-running device.
pub const REQUIRED_KERNEL_MODULES: [&str; 8] = [
    "conv2d",
    "dense",
    "maxpool",
    "shortcut",
    "softmax_xent",
    "rmsprop",
    "adamw",
    "concat",
];

/// Kernel modules the network needs that are missing from `present`.
pub fn missing_kernel_modules<'a>(present: impl IntoIterator<Item = &'a str>) -> Vec<&'static str> {
    let present: Vec<&str> = present.into_iter().collect();
    REQUIRED_KERNEL_MODULES
        .iter()
        .copied()
        .filter(|m| !present.contains(m))
        .collect()
}

/// Missing kernel modules of the emulated device's build.
pub fn emu_missing_kernels() -> Vec<&'static str> {
    missing_kernel_modules(
        crate::backends::emu::product_kernels()
            .iter()
            .map(|k| k.module),
    )
}

/// Missing kernel modules of the CUDA build (all of them when NVRTC was absent at build time).
pub fn cuda_missing_kernels() -> Vec<&'static str> {
    missing_kernel_modules(
        crate::backends::cuda::embedded::KERNELS
            .modules
            .iter()
            .map(|m| m.module),
    )
}

/// The device `choice` resolves to, and for `auto` why (printed at the start of a run).
pub fn resolve(choice: DeviceChoice) -> Result<(DeviceChoice, String)> {
    match choice {
        DeviceChoice::Cpu => Ok((DeviceChoice::Cpu, "asked for".into())),
        DeviceChoice::Emu => {
            let missing = emu_missing_kernels();
            if !missing.is_empty() {
                return Err(Error::Device(format!(
                    "the emulated device cannot train: this build has no {} kernels (kernels/{}.cu); \
                     use --device cpu",
                    missing.join(", "),
                    missing[0]
                )));
            }
            Ok((DeviceChoice::Emu, "asked for".into()))
        }
        DeviceChoice::Cuda => {
            let missing = cuda_missing_kernels();
            if !missing.is_empty() {
                return Err(Error::Device(format!(
                    "the CUDA device cannot run: this build has no compiled {} kernels (was NVRTC \
                     found at build time? see `rescnn info`); use --device cpu",
                    missing.join(", ")
                )));
            }
            let problem = match crate::backends::cuda::list_gpus() {
                Ok(gpus) if !gpus.is_empty() => {
                    return Ok((DeviceChoice::Cuda, "asked for".into()))
                }
                Ok(_) => "the driver lists none".to_string(),
                Err(e) => e.to_string(),
            };
            Err(Error::Device(format!(
                "--device cuda needs an NVIDIA GPU, and none is available ({problem}); use \
                 --device cpu or --device auto"
            )))
        }
        DeviceChoice::Auto => {
            let missing = cuda_missing_kernels();
            if !missing.is_empty() {
                return Ok((
                    DeviceChoice::Cpu,
                    format!(
                        "no CUDA: the build has no compiled {} kernels",
                        missing.join(", ")
                    ),
                ));
            }
            match crate::backends::cuda::list_gpus() {
                Ok(gpus) if !gpus.is_empty() => {
                    Ok((DeviceChoice::Cuda, format!("GPU found: {}", gpus[0].name)))
                }
                Ok(_) => Ok((DeviceChoice::Cpu, "no CUDA GPU found".into())),
                Err(e) => Ok((DeviceChoice::Cpu, format!("no CUDA: {e}"))),
            }
        }
    }
}

/// Free memory of the device a job runs on, when known, and its name for messages.
#[derive(Clone, Debug)]
pub struct DeviceMemory {
    pub free: Option<u64>,
    pub name: String,
}

/// Work generic over the backend, run by [`on_device`] on the backend a device choice names.
pub trait BackendJob {
    type Output;
    fn run<B: Backend<Elem = f32>>(
        self,
        backend: &B,
        memory: &DeviceMemory,
    ) -> Result<Self::Output>;
}

/// Run `job` on the backend of `device` (a choice [`resolve`] returned; `auto` runs on the CPU).
pub fn on_device<J: BackendJob>(device: DeviceChoice, job: J) -> Result<J::Output> {
    let host = || DeviceMemory {
        free: host_available_memory(),
        name: "host memory".into(),
    };
    match device {
        DeviceChoice::Cpu | DeviceChoice::Auto => {
            job.run(&crate::backends::cpu::CpuBackend::<f32>::new(), &host())
        }
        DeviceChoice::Emu => {
            use crate::backends::emu::{EmuDevice, ThreadOrder};
            use crate::backends::kernel_backend::KernelBackend;
            let backend = KernelBackend::new(EmuDevice::new(ThreadOrder::Forward)?)?;
            job.run(&backend, &host())
        }
        DeviceChoice::Cuda => {
            use crate::backends::cuda::CudaDevice;
            use crate::backends::kernel_backend::KernelBackend;
            let dev = CudaDevice::new(0)?;
            let memory = DeviceMemory {
                free: dev.context().mem_get_info().ok().map(|(f, _)| f as u64),
                name: format!("{} GPU memory", dev.info().name),
            };
            job.run(&KernelBackend::new(dev)?, &memory)
        }
    }
}

/// What a network of a plan needs in device memory for a batch, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Weights, their gradients and the optimizer's two moments (RMSProp's mean square; AdamW's first
    /// and second moments), all allocated whichever optimizer trains: 4 × parameters.
    pub params: u64,
    /// Activations and their gradients, max-pool argmaxes, labels and losses for the batch.
    pub activations: u64,
    /// Working space of the backend (im2col / GEMM scratch, driver context): a reserve.
    pub reserve: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.params + self.activations + self.reserve
    }
}

/// The reserve added to every estimate for what the network does not allocate itself: the
/// backend's scratch (the largest convolution's lowered input for a few images) and, on a GPU, the
/// driver context. A fixed 256 MiB plus a tenth of the activations.
const FIXED_RESERVE: u64 = 256 << 20;

/// Bytes the network of `plan` allocates for `batch` samples (mirrors [`crate::model::Network::new`]:
/// f32 values, u32 indices).
pub fn estimate_memory(plan: &Plan, batch: usize) -> MemoryEstimate {
    let b = batch as u64;
    let params = 4 * 4 * plan.param_count() as u64;
    let per_sample_nodes: u64 = plan.nodes.iter().map(|s| s.per_sample() as u64).sum();
    let input = plan.nodes[0].per_sample() as u64;
    // Every node has an activation; every node but the input has a gradient.
    let mut per_sample = 2 * per_sample_nodes - input;
    for l in &plan.layers {
        if let PlannedOp::Pool { geom, .. } = l.op {
            per_sample += geom.output().len() as u64;
        }
    }
    per_sample += 2; // label and loss
    let activations = 4 * b * per_sample;
    MemoryEstimate {
        params,
        activations,
        reserve: FIXED_RESERVE + activations / 10,
    }
}

/// The largest batch (up to `limit`) whose estimate fits in `free_bytes`; 0 if none does.
pub fn largest_fitting_batch(plan: &Plan, free_bytes: u64, limit: usize) -> usize {
    let (mut lo, mut hi) = (0usize, limit);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if estimate_memory(plan, mid).total() <= free_bytes {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Refuse a batch whose estimate exceeds `free_bytes` of `device`, saying what fits.
pub fn check_memory(
    plan: &Plan,
    batch: usize,
    free_bytes: u64,
    device: &str,
) -> Result<MemoryEstimate> {
    let need = estimate_memory(plan, batch);
    if need.total() <= free_bytes {
        return Ok(need);
    }
    let fits = largest_fitting_batch(plan, free_bytes, batch);
    let advice = if fits > 0 {
        format!("use --batch {fits} or less (or a smaller image size)")
    } else {
        "even batch 1 does not fit: use a smaller image size or network".to_string()
    };
    Err(config_err!(
        "batch {batch} does not fit in {device}: the network needs about {:.2} GiB ({:.2} GiB \
         parameters and optimizer state, {:.2} GiB activations and gradients, {:.2} GiB working \
         space) but {:.2} GiB is free; {advice}",
        gib(need.total()),
        gib(need.params),
        gib(need.activations),
        gib(need.reserve),
        gib(free_bytes)
    ))
}

/// Memory the operating system says is available (`MemAvailable` of /proc/meminfo), if known.
pub fn host_available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArchSpec, InputShape};

    fn paper_plan(size: usize) -> Plan {
        Plan::new(
            &ArchSpec::from_name_or_spec("paper").unwrap(),
            InputShape::new(3, size, size),
            7,
        )
        .unwrap()
    }

    #[test]
    fn estimate_counts_what_the_network_allocates() {
        // A tiny plan counted by hand: input 1×4×4, conv 2 filters 3×3 (SAME) → 2×4×4, pool → 2×2×2,
        // classifier 8 → 2.
        let plan = Plan::new(
            &ArchSpec::parse("c2k3 p2").unwrap(),
            InputShape::new(1, 4, 4),
            2,
        )
        .unwrap();
        let e = estimate_memory(&plan, 3);
        // params: conv 2·1·9 + 2 = 20, classifier 2·8 + 2 = 18 → 38 values × 4 copies (value,
        // gradient, two moments) × 4 bytes.
        assert_eq!(e.params, 38 * 4 * 4);
        // per sample: acts 16 + 32 + 8 + 2 = 58, grads 58 − 16 = 42, argmax 8, label + loss 2 → 110.
        assert_eq!(e.activations, 3 * 110 * 4);

        // The same with the utterance vector (5 values) appended: side input 5, concatenation
        // 8 + 5 = 13, classifier 13 → 2.
        let plan = Plan::new(
            &ArchSpec::parse("c2k3 p2 vec").unwrap(),
            InputShape::new(1, 4, 4).with_side(5),
            2,
        )
        .unwrap();
        let e = estimate_memory(&plan, 3);
        // params: conv 20, classifier 2·13 + 2 = 28 → 48 values.
        assert_eq!(e.params, 48 * 4 * 4);
        // per sample: acts 16 + 32 + 8 + 5 + 13 + 2 = 76, grads 76 − 16 = 60 (the side input's
        // buffer is allocated like every node's), argmax 8, label + loss 2 → 146.
        assert_eq!(e.activations, 3 * 146 * 4);
    }

    #[test]
    fn the_papers_batch_fits_an_h100_but_not_a_small_card_and_the_advice_fits() {
        let plan = paper_plan(512);
        let gib = 1u64 << 30;
        assert!(check_memory(&plan, 50, 78 * gib, "H100").is_ok());
        let err = check_memory(&plan, 50, 4 * gib, "a 4 GiB GPU")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch 50 does not fit in a 4 GiB GPU"),
            "{err}"
        );
        let fits = largest_fitting_batch(&plan, 4 * gib, 50);
        assert!(fits > 0 && fits < 50, "{fits}");
        assert!(err.contains(&format!("--batch {fits} or less")), "{err}");
        assert!(estimate_memory(&plan, fits).total() <= 4 * gib);
        assert!(estimate_memory(&plan, fits + 1).total() > 4 * gib);
        let none = check_memory(&plan, 50, 64 << 20, "a tiny GPU")
            .unwrap_err()
            .to_string();
        assert!(none.contains("even batch 1 does not fit"), "{none}");
    }

    #[test]
    fn missing_modules_are_listed() {
        assert_eq!(
            missing_kernel_modules(["maxpool", "shortcut", "softmax_xent", "rmsprop"]),
            vec!["conv2d", "dense", "adamw", "concat"]
        );
        assert!(missing_kernel_modules(REQUIRED_KERNEL_MODULES).is_empty());
    }
}
