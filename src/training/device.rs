//! Which device trains, and whether the network fits in its memory.
//!
//! `auto` picks CUDA when the binary carries the compiled kernels of every op family and a GPU
//! opens, else the CPU reference (never the emulated device: it runs the CUDA kernels faithfully but
//! hundreds of times slower than the reference, so it is only chosen by name).
//!
//! The memory check is a pure function of the [`Plan`], the batch and the free memory
//! ([`check_memory`]), so it is tested without a GPU: a batch that does not fit is refused before
//! anything is allocated, with the largest batch that does.

use crate::model::{Plan, PlannedOp};
use crate::{config_err, Error, Result};

use super::config::DeviceChoice;

/// The kernel files (`kernels/<name>.cu`) the network needs on a kernel-running device.
pub const REQUIRED_KERNEL_MODULES: [&str; 6] = [
    "conv2d",
    "dense",
    "maxpool",
    "shortcut",
    "softmax_xent",
    "rmsprop",
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
                    "the CUDA device cannot train: this build has no compiled {} kernels (was NVRTC \
                     found at build time? see `rescnn info`); use --device cpu",
                    missing.join(", ")
                )));
            }
            Ok((DeviceChoice::Cuda, "asked for".into()))
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

/// What a network of a plan needs in device memory for a batch, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Weights, their gradients and RMSProp's mean squares: 3 × parameters.
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
    let params = 3 * 4 * plan.param_count() as u64;
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
        // params: conv 2·1·9 + 2 = 20, classifier 2·8 + 2 = 18 → 38 values × 3 copies × 4 bytes.
        assert_eq!(e.params, 38 * 3 * 4);
        // per sample: acts 16 + 32 + 8 + 2 = 58, grads 58 − 16 = 42, argmax 8, label + loss 2 → 110.
        assert_eq!(e.activations, 3 * 110 * 4);
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
            vec!["conv2d", "dense"]
        );
        assert!(missing_kernel_modules(REQUIRED_KERNEL_MODULES).is_empty());
    }
}
