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

use super::config::{DeviceChoice, TrainConfig};
use crate::backends::Backend;
use crate::model::Plan;
use crate::{config_err, Error, Result};

/// The kernel files (`kernels/<name>.cu`) the network needs on a kernel-running device: one per op
/// folder.
pub const REQUIRED_KERNEL_MODULES: &[&str] = crate::backends::ops::ALL;

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
    /// Weights, their gradients and the optimizer's state (RMSProp's mean square; AdamW's first and
    /// second moments), batch norm's running statistics.
    pub params: u64,
    /// Activations and the activation gradients' shared buffers, max-pool argmaxes, labels and
    /// losses for the batch (see [`MemoryPlan`](crate::model::MemoryPlan)).
    pub activations: u64,
    /// The kernel backend's working space: split-K partial sums and the convolutions' K tables.
    pub scratch: u64,
    /// Room left for what no count sees: the allocator's rounding and fragmentation.
    pub reserve: u64,
}

impl MemoryEstimate {
    /// What the network and the backend allocate: the figure a measured peak is compared with.
    pub fn allocated(&self) -> u64 {
        self.params + self.activations + self.scratch
    }
    /// What must be free: the allocations and the reserve.
    pub fn total(&self) -> u64 {
        self.allocated() + self.reserve
    }
}

/// The reserve of every estimate: the allocator's rounding of each buffer and fragmentation. (The
/// CUDA context is not in it: the free memory is read once the context exists.)
const RESERVE: u64 = 256 << 20;

/// Bytes a network of `plan` and its kernel backend allocate for `batch` samples, trained by AdamW
/// (`adamw`) or RMSProp: the network's buffers from the [`MemoryPlan`](crate::model::MemoryPlan)
/// it allocates from, and the backend's scratch for the plan's largest request.
pub fn estimate_memory(plan: &Plan, batch: usize, adamw: bool) -> MemoryEstimate {
    let bytes = crate::model::memory_plan(plan).bytes(plan, batch, adamw);
    MemoryEstimate {
        params: bytes.params,
        activations: bytes.activations,
        scratch: crate::model::memory::kernel_scratch_bytes(plan, batch),
        reserve: RESERVE,
    }
}

/// The largest batch (up to `limit`) whose estimate fits in `free_bytes`; 0 if none does.
pub fn largest_fitting_batch(plan: &Plan, free_bytes: u64, limit: usize, adamw: bool) -> usize {
    let (mut lo, mut hi) = (0usize, limit);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if estimate_memory(plan, mid, adamw).total() <= free_bytes {
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
    adamw: bool,
    free_bytes: u64,
    device: &str,
) -> Result<MemoryEstimate> {
    let need = estimate_memory(plan, batch, adamw);
    if need.total() <= free_bytes {
        return Ok(need);
    }
    let fits = largest_fitting_batch(plan, free_bytes, batch, adamw);
    let advice = if fits > 0 {
        format!("use --batch {fits} or less (or a smaller image size)")
    } else {
        "even batch 1 does not fit: use a smaller image size or network".to_string()
    };
    Err(config_err!(
        "batch {batch} does not fit in {device}: the network needs about {:.2} GiB ({:.2} GiB \
         parameters and optimizer state, {:.2} GiB activations and gradients, {:.2} GiB working \
         space, {:.2} GiB reserve) but {:.2} GiB is free; {advice}",
        gib(need.total()),
        gib(need.params),
        gib(need.activations),
        gib(need.scratch),
        gib(need.reserve),
        gib(free_bytes)
    ))
}

/// The memory check of a training run of `cfg` (its batch and its optimizer's state) with the
/// network `plan` on a device with `free_bytes` free.
pub fn check_run_memory(
    cfg: &TrainConfig,
    plan: &Plan,
    free_bytes: u64,
    device: &str,
) -> Result<MemoryEstimate> {
    let adamw = matches!(
        cfg.optimizer,
        crate::training::config::OptimizerConfig::AdamW(_)
    );
    check_memory(plan, cfg.batch, adamw, free_bytes, device)
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
        let rmsprop = estimate_memory(&plan, 3, false);
        let adamw = estimate_memory(&plan, 3, true);
        // params: conv 2·1·9 + 2 = 20, classifier 2·8 + 2 = 18 → 38 values × 4 bytes × 3 copies
        // (value, gradient, mean square); AdamW adds its first moment.
        assert_eq!(rmsprop.params, 38 * 3 * 4);
        assert_eq!(adamw.params, 38 * 4 * 4);
        // Per sample: activations 16 + 32 + 8 + 2 = 58; the conv's gradient lives in its output,
        // the pool's (8) and the logits' (2) in two shared buffers (both alive in the classifier's
        // backward); argmax 8; label, loss and 2 soft targets 4 → 80 × 4 bytes. Class weights 2.
        assert_eq!(rmsprop.activations, 3 * 80 * 4 + 2 * 4);
        assert_eq!(rmsprop.activations, adamw.activations);
    }

    #[test]
    fn the_papers_batch_fits_an_h100_but_not_a_small_card_and_the_advice_fits() {
        let plan = paper_plan(512);
        let gib = 1u64 << 30;
        assert!(check_memory(&plan, 50, false, 78 * gib, "H100").is_ok());
        let err = check_memory(&plan, 50, false, 4 * gib, "a 4 GiB GPU")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch 50 does not fit in a 4 GiB GPU"),
            "{err}"
        );
        let fits = largest_fitting_batch(&plan, 4 * gib, 50, false);
        assert!(fits > 0 && fits < 50, "{fits}");
        assert!(err.contains(&format!("--batch {fits} or less")), "{err}");
        assert!(estimate_memory(&plan, fits, false).total() <= 4 * gib);
        assert!(estimate_memory(&plan, fits + 1, false).total() > 4 * gib);
        let none = check_memory(&plan, 50, false, 64 << 20, "a tiny GPU")
            .unwrap_err()
            .to_string();
        assert!(none.contains("even batch 1 does not fit"), "{none}");
    }

    /// The trainer's check for `--preset paper` (the `paper` network on 3×512×512, batch 50,
    /// RMSProp, EMO-DB's 7 classes) on a device reporting `free` bytes.
    fn paper_run_on(free: u64) -> Result<MemoryEstimate> {
        let cfg = TrainConfig::preset("paper").unwrap();
        let (c, h, w) = cfg.spectrogram.input_shape();
        assert_eq!((c, h, w, cfg.batch), (3, 512, 512, 50));
        let spec = ArchSpec::from_name_or_spec(&cfg.arch).unwrap();
        let plan = Plan::new(&spec, InputShape::new(c, h, w), 7).unwrap();
        check_run_memory(&cfg, &plan, free, "the GPU")
    }

    #[test]
    fn the_paper_preset_fits_an_8_gib_card_and_5_gib_names_the_batch_that_fits() {
        let gib = 1u64 << 30;
        // The paper's GTX 1080 has 8 GiB.
        let fits = paper_run_on(8 * gib).unwrap();
        assert!(fits.total() <= 8 * gib, "{fits:?}");
        let err = paper_run_on(5 * gib).unwrap_err().to_string();
        let plan = paper_plan(512);
        let batch = largest_fitting_batch(&plan, 5 * gib, 50, false);
        assert!(batch > 0 && batch < 50, "{batch}");
        assert!(
            err.contains("batch 50 does not fit in the GPU")
                && err.contains(&format!("use --batch {batch} or less")),
            "{err}"
        );
    }

    #[test]
    fn missing_modules_are_listed() {
        assert_eq!(
            missing_kernel_modules(["maxpool", "shortcut", "softmax_xent", "rmsprop"]),
            vec![
                "adamw",
                "batchnorm",
                "concat",
                "conv2d",
                "dense",
                "dropout",
                "statspool"
            ]
        );
        assert!(missing_kernel_modules(REQUIRED_KERNEL_MODULES.iter().copied()).is_empty());
    }
}
