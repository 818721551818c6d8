//! `rescnn info [--kernels]`: which compute devices this machine offers, the NVRTC the binary was built
//! with, and the CUDA kernels embedded in it; with `--kernels`, the assembler's figures per kernel and
//! architecture (registers, static shared memory, stack, spills), known without a GPU; with `--cost`,
//! the cost model of one `paper` training step (src/backends/cost.rs); with `--memory`, the device
//! memory a real training step allocates beside the trainer's estimate.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::backends::cuda::embedded::{NvrtcBuild, KERNELS};
use crate::backends::cuda::{self, peak, ImagePolicy};
use crate::model::cost::measure_step_memory;
use crate::model::{AdamWConfig, ArchSpec, InputShape, Optimizer, Plan, RmsPropConfig};
use crate::training::device::estimate_memory;
use crate::Result;

#[derive(clap::Args, Debug, Default)]
pub struct InfoArgs {
    /// Also list every kernel with its registers, shared memory and spills per architecture.
    #[arg(long)]
    pub kernels: bool,
    /// Print the cost model of one `paper` training step at 512×512, batch 50 instead: every kernel
    /// launch with its FLOPs, DRAM bytes and roofline time on a GTX 1080 and an H100 (no GPU needed).
    #[arg(long)]
    pub cost: bool,
    /// Print the device memory of real training steps instead (`paper` at 3×512×512, batch 50, and
    /// `recipe` at 3×64×128, batch 32), counted on the recording device (it allocates like the GPU
    /// but computes nothing), beside the estimate the trainer checks free memory with.
    #[arg(long)]
    pub memory: bool,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    if args.cost {
        print!("{}", crate::model::cost::paper_step_report()?);
        return Ok(());
    }
    if args.memory {
        print!("{}", memory_report()?);
        return Ok(());
    }
    print!("{}", report(args.kernels));
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// The networks `--memory` reports: (spec, input, batch, optimizer is AdamW).
const MEMORY_CASES: [(&str, InputShape, usize, bool); 4] = [
    ("paper", InputShape::new(3, 512, 512), 50, false),
    ("paper", InputShape::new(3, 512, 512), 50, true),
    ("recipe", InputShape::new(3, 64, 128), 32, false),
    ("recipe", InputShape::new(3, 64, 128), 32, true),
];

/// Measured peak and estimate of a training step of each of [`MEMORY_CASES`], 7 classes.
pub fn memory_report() -> Result<String> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let mut s = String::new();
    writeln!(
        s,
        "device memory of a training step: measured on the recording device (peak bytes alive over two steps), and the trainer's estimate (the same memory plan; the 0.25 GiB reserve it also keeps free is not in it)"
    )
    .unwrap();
    writeln!(
        s,
        "{:<8} {:>11} {:>5} {:<8} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9}",
        "network",
        "input",
        "batch",
        "optim",
        "peak GiB",
        "est. GiB",
        "est/pk",
        "params",
        "acts",
        "scratch"
    )
    .unwrap();
    for (name, input, batch, adamw) in MEMORY_CASES {
        let spec = ArchSpec::from_name_or_spec(name)?;
        let plan = Plan::new(&spec, input, 7)?;
        let optimizer = if adamw {
            Optimizer::AdamW {
                cfg: AdamWConfig::default(),
                total_steps: 2,
            }
        } else {
            Optimizer::RmsProp(RmsPropConfig::default())
        };
        let measured = measure_step_memory(&spec, input, 7, batch, optimizer)?;
        let est = estimate_memory(&plan, batch, adamw);
        writeln!(
            s,
            "{:<8} {:>11} {:>5} {:<8} {:>10.3} {:>10.3} {:>7.3} {:>9.3} {:>9.3} {:>9.3}",
            name,
            format!("{}x{}x{}", input.channels, input.height, input.width),
            batch,
            if adamw { "AdamW" } else { "RMSProp" },
            gib(measured.peak),
            gib(est.allocated()),
            est.allocated() as f64 / measured.peak as f64,
            gib(est.params),
            gib(est.activations),
            gib(est.scratch),
        )
        .unwrap();
    }
    Ok(s)
}

/// The whole report as text.
pub fn report(show_kernels: bool) -> String {
    let mut s = String::new();
    writeln!(s, "rescnn {}", env!("CARGO_PKG_VERSION")).unwrap();
    s.push_str("\nDevices\n");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    writeln!(s, "  cpu       {cores} core(s): the CPU reference backend").unwrap();
    let emu = crate::backends::emu::product_kernels();
    let emu_files: BTreeSet<&str> = emu.iter().map(|k| k.module).collect();
    writeln!(
        s,
        "  emulated  {} kernel(s) of {} kernels/*.cu file(s) compiled for the host; blocks on {cores} host thread(s)",
        emu.len(),
        emu_files.len()
    )
    .unwrap();
    devices_cuda(&mut s);

    s.push_str("\nNVRTC (at build time)\n");
    match KERNELS.nvrtc {
        NvrtcBuild::Compiled {
            version,
            library,
            compile_ms,
        } => writeln!(
            s,
            "  {}.{}, {library}; compiled the kernels in {:.1} s",
            version.0,
            version.1,
            compile_ms as f64 / 1e3
        )
        .unwrap(),
        NvrtcBuild::Absent { reason } => writeln!(
            s,
            "  not found: the CUDA kernels were not compiled.\n  {reason}"
        )
        .unwrap(),
    }

    let entries: usize = KERNELS.modules.iter().map(|m| m.entries.len()).sum();
    let ptx: BTreeSet<u32> = KERNELS
        .modules
        .iter()
        .flat_map(|m| m.ptx.iter().map(|p| p.arch))
        .collect();
    let cubin: BTreeSet<u32> = KERNELS
        .modules
        .iter()
        .flat_map(|m| m.cubins.iter().map(|c| c.arch))
        .collect();
    let list = |set: &BTreeSet<u32>, prefix: &str| {
        set.iter()
            .map(|a| format!("{prefix}{a}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        s,
        "\nCUDA kernels: {} file(s), {entries} kernel(s); PTX {}; CUBIN {}",
        KERNELS.modules.len(),
        if ptx.is_empty() {
            "none".into()
        } else {
            list(&ptx, "compute_")
        },
        if cubin.is_empty() {
            "none".into()
        } else {
            list(&cubin, "sm_")
        },
    )
    .unwrap();
    if show_kernels {
        kernel_table(&mut s);
    } else if !KERNELS.modules.is_empty() {
        s.push_str("  (`rescnn info --kernels`: registers, shared memory and spills per kernel)\n");
    }
    s
}

fn devices_cuda(s: &mut String) {
    let gpus = match cuda::list_gpus() {
        Ok(g) if g.is_empty() => {
            s.push_str("  cuda      none: the NVIDIA driver reports no GPU\n");
            return;
        }
        Ok(g) => g,
        Err(crate::Error::Device(why)) => {
            writeln!(s, "  cuda      none: {why}").unwrap();
            return;
        }
        Err(e) => {
            writeln!(s, "  cuda      none: {e}").unwrap();
            return;
        }
    };
    let driver = cuda::driver_version()
        .map(|(a, b)| format!("driver CUDA {a}.{b}"))
        .unwrap_or_else(|e| e.to_string());
    for g in gpus {
        let cc = g.compute_capability;
        writeln!(
            s,
            "  cuda:{}    {}, compute {}.{}, {} SMs, {:.1} GiB, L2 {:.1} MiB, {driver}",
            g.ordinal,
            g.name,
            cc / 10,
            cc % 10,
            g.multiprocessors,
            mib(g.total_memory_bytes) / 1024.0,
            mib(g.l2_cache_bytes as u64),
        )
        .unwrap();
        let images: BTreeSet<String> = KERNELS
            .modules
            .iter()
            .map(|m| match cuda::choose_image(m, cc, ImagePolicy::Auto) {
                Some(i) => i.to_string(),
                None => "nothing (GPU too old)".into(),
            })
            .collect();
        if !images.is_empty() {
            let joined: Vec<String> = images.into_iter().collect();
            writeln!(s, "            kernels load from {}", joined.join(", ")).unwrap();
        }
        if let Some(p) = peak::lookup(&g.name) {
            writeln!(
                s,
                "            peak {:.1} TFLOP/s FP32, {:.0} GB/s ({})",
                p.fp32_tflops, p.bandwidth_gbs, p.model
            )
            .unwrap();
        }
    }
}

fn kernel_table(s: &mut String) {
    for m in KERNELS.modules {
        writeln!(s, "\n  {}", m.source_file).unwrap();
        writeln!(
            s,
            "    {:<28} {:>6} {:>5} {:>9} {:>8} {:>8} {:>8} {:>5}",
            "kernel", "arch", "regs", "smem B", "stack B", "spill st", "spill ld", "bars"
        )
        .unwrap();
        for e in m.entries {
            for c in m.cubins {
                let Some(r) = c.resources_of(e.name) else {
                    continue;
                };
                writeln!(
                    s,
                    "    {:<28} {:>6} {:>5} {:>9} {:>8} {:>8} {:>8} {:>5}{}",
                    e.name,
                    format!("sm_{}", c.arch),
                    r.registers,
                    r.shared_bytes,
                    r.stack_frame_bytes,
                    r.spill_store_bytes,
                    r.spill_load_bytes,
                    r.barriers,
                    if r.spill_store_bytes + r.spill_load_bytes > 0 {
                        "  SPILLS"
                    } else {
                        ""
                    }
                )
                .unwrap();
            }
            let params: Vec<String> = e
                .params
                .iter()
                .zip(e.param_sizes)
                .map(|(p, n)| format!("{p} [{n} B]"))
                .collect();
            writeln!(s, "    {:<28} ({})", "", params.join(", ")).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_devices_nvrtc_and_every_kernel() {
        let r = report(true);
        assert!(r.contains("cpu "), "{r}");
        assert!(r.contains("emulated"), "{r}");
        assert!(r.contains("cuda"), "{r}");
        match KERNELS.nvrtc {
            NvrtcBuild::Compiled { version, .. } => {
                assert!(r.contains(&format!("{}.{}", version.0, version.1)), "{r}")
            }
            NvrtcBuild::Absent { .. } => assert!(r.contains("not found"), "{r}"),
        }
        for m in KERNELS.modules {
            assert!(r.contains(m.source_file), "{r}");
            for e in m.entries {
                for c in m.cubins {
                    let reg = c.resources_of(e.name).unwrap().registers;
                    let row = r
                        .lines()
                        .find(|l| {
                            let w: Vec<&str> = l.split_whitespace().collect();
                            w.first() == Some(&e.name)
                                && w.get(1) == Some(&format!("sm_{}", c.arch).as_str())
                        })
                        .unwrap_or_else(|| panic!("no row for {} sm_{}: {r}", e.name, c.arch));
                    assert_eq!(
                        row.split_whitespace().nth(2),
                        Some(reg.to_string().as_str()),
                        "{row}"
                    );
                }
            }
        }
        // Without --kernels the per-kernel rows are left out.
        let short = report(false);
        assert!(!short.contains("spill st"), "{short}");
    }
}
