//! The CUDA side without the ops: what NVRTC embedded at build time, how the CUDA device refuses to
//! start without a GPU, and (on a GPU machine only) buffers, launches checks, images, timing and cuBLAS.
//!
//! cfgs from build.rs: `rescnn_nvrtc` = NVRTC compiled the kernels; `rescnn_gpu` = a GPU was visible
//! at build time (or `RESCNN_GPU_TESTS=1`). Tests that need what is missing are ignored, not passed.

#[path = "common/cublas.rs"]
mod cublas;
#[path = "common/timing.rs"]
mod timing;

use std::path::Path;

use rescnn::backends::cuda::embedded::{NvrtcBuild, KERNELS};
use rescnn::backends::cuda::CudaDevice;

/// The `.cu` files in kernels/, by module name.
fn kernel_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let Ok(listing) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, String)> = listing
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .map(|p| {
            let module = p.file_stem().unwrap().to_string_lossy().into_owned();
            (module, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Kernel signatures counted straight from the text (every line that opens with the marker), as a
/// check on the build script's parser.
fn count_entry_points(source: &str) -> usize {
    source
        .lines()
        .filter(|l| l.trim_start().starts_with("extern \"C\" __global__"))
        .count()
}

#[test]
#[cfg_attr(
    not(rescnn_nvrtc),
    ignore = "NVRTC was absent at build time: no kernels were compiled"
)]
fn every_kernel_file_is_embedded_for_every_architecture() {
    let files = kernel_files();
    let embedded: Vec<&str> = KERNELS.modules.iter().map(|m| m.module).collect();
    let on_disk: Vec<&str> = files.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(embedded, on_disk, "embedded modules vs kernels/*.cu");

    for (m, (_, source)) in KERNELS.modules.iter().zip(&files) {
        assert_eq!(m.source_file, format!("kernels/{}.cu", m.module));
        assert_eq!(
            m.entries.len(),
            count_entry_points(source),
            "{}: entry points parsed vs `extern \"C\" __global__` lines",
            m.source_file
        );
        let ptx_archs: Vec<u32> = m.ptx.iter().map(|p| p.arch).collect();
        let cubin_archs: Vec<u32> = m.cubins.iter().map(|c| c.arch).collect();
        assert_eq!(ptx_archs, [61, 80, 90], "{}: PTX architectures", m.module);
        assert_eq!(
            cubin_archs,
            [61, 80, 90],
            "{}: CUBIN architectures",
            m.module
        );

        for p in m.ptx {
            assert!(
                p.text.contains(&format!(".target sm_{}", p.arch)),
                "{} PTX compute_{} targets another architecture",
                m.module,
                p.arch
            );
            for e in m.entries {
                assert!(
                    p.text.contains(&format!(".entry {}(", e.name)),
                    "{} PTX compute_{} lacks `.entry {}`",
                    m.module,
                    p.arch,
                    e.name
                );
            }
        }
        for c in m.cubins {
            assert_eq!(
                &c.image[..4],
                b"\x7fELF",
                "{} sm_{}: not an ELF",
                m.module,
                c.arch
            );
            for e in m.entries {
                let r = c.resources_of(e.name).unwrap_or_else(|| {
                    panic!(
                        "{} sm_{}: no assembler figures for {}",
                        m.module, c.arch, e.name
                    )
                });
                assert!(r.registers > 0, "{} sm_{}: {r:?}", m.module, c.arch);
            }
        }
        for e in m.entries {
            assert_eq!(
                e.params.len(),
                e.param_sizes.len(),
                "{}::{}",
                m.module,
                e.name
            );
            assert!(
                e.param_sizes.iter().all(|&s| s > 0),
                "{}::{}",
                m.module,
                e.name
            );
        }
    }
}

#[test]
#[cfg_attr(rescnn_nvrtc, ignore = "NVRTC was present at build time")]
fn without_nvrtc_the_table_is_empty_and_says_how_to_install_it() {
    assert!(KERNELS.modules.is_empty());
    match KERNELS.nvrtc {
        NvrtcBuild::Absent { reason } => {
            assert!(reason.contains("pip install"), "{reason}");
            assert!(reason.contains("nvidia-cuda-nvrtc-cu12"), "{reason}");
        }
        NvrtcBuild::Compiled { .. } => panic!("rescnn_nvrtc unset but the table says compiled"),
    }
}

#[test]
#[cfg_attr(
    all(rescnn_gpu, rescnn_nvrtc),
    ignore = "a GPU is present and the kernels are compiled: the device starts"
)]
fn without_a_gpu_the_cuda_device_refuses_to_start_and_says_why() {
    let err = CudaDevice::new(0)
        .err()
        .expect("CudaDevice::new succeeded on a machine without a GPU")
        .to_string();
    assert!(err.contains("cannot start"), "{err}");
    if KERNELS.compiled() {
        // The driver is what is missing.
        assert!(
            err.contains("libcuda") || err.contains("no usable GPU"),
            "{err}"
        );
        assert!(!err.contains("NVRTC"), "NVRTC was there, yet blamed: {err}");
    } else {
        assert!(
            err.contains("NVRTC") && err.contains("pip install"),
            "{err}"
        );
    }
}

// ---- on a GPU ------------------------------------------------------------------------------------

/// Test bodies below compile everywhere (so a change that breaks them shows on every build) and run
/// only where a GPU was seen at build time.
fn gpu() -> CudaDevice {
    CudaDevice::new(0).unwrap_or_else(|e| panic!("a GPU was detected at build time but: {e}"))
}

#[test]
#[cfg_attr(
    not(all(rescnn_gpu, rescnn_nvrtc)),
    ignore = "needs a CUDA GPU and the kernels NVRTC compiles"
)]
fn gpu_buffers_round_trip() {
    use rescnn::backends::device::Device;
    let dev = gpu();
    let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
    let mut buf = dev.alloc_zeroed::<f32>(1003).unwrap();
    assert_eq!(dev.buffer_len(&buf), 1003);
    assert_eq!(dev.copy_to_host(&buf).unwrap(), vec![0.0; 1003]);
    dev.copy_to_device(&values, &mut buf).unwrap();
    let back = dev.copy_to_host(&buf).unwrap();
    assert_eq!(&back[..1000], &values[..]);
    assert_eq!(&back[1000..], &[0.0; 3]);
    assert!(dev.copy_to_device(&[0.0f32; 1004], &mut buf).is_err());
    dev.memset_zero(&mut buf).unwrap();
    assert_eq!(dev.copy_to_host(&buf).unwrap(), vec![0.0; 1003]);
    let empty = dev.alloc_zeroed::<u32>(0).unwrap();
    assert!(dev.copy_to_host(&empty).unwrap().is_empty());
    assert_ne!(dev.device_ptr(&buf).0, 0);
}

#[test]
#[cfg_attr(
    not(all(rescnn_gpu, rescnn_nvrtc)),
    ignore = "needs a CUDA GPU and the kernels NVRTC compiles"
)]
fn gpu_loads_every_module_from_cubin_or_ptx() {
    use rescnn::backends::cuda::{ImagePolicy, LoadedImage};
    let dev = gpu();
    let cc = dev.info().compute_capability;
    let images = dev.loaded_images();
    assert_eq!(images.len(), KERNELS.modules.len());
    // 6.1+, 8.x and 9.0 GPUs have a native CUBIN of their family; others run the newest PTX ≤ cc.
    let native = matches!(cc, 61..=69 | 80..=89 | 90);
    for (module, image) in &images {
        match *image {
            LoadedImage::Cubin(a) => assert!(native && a / 10 == cc / 10 && a <= cc, "{module}"),
            LoadedImage::Ptx(a) => assert!(!native && a <= cc, "{module}"),
        }
    }
    // The driver JIT-compiles PTX only of an ISA it knows: PTX from an NVRTC newer than the driver
    // does not load. Such a driver still runs the CUBINs above; the PTX-only half is skipped, saying so.
    let driver = rescnn::backends::cuda::driver_version().unwrap();
    if let NvrtcBuild::Compiled { version, .. } = KERNELS.nvrtc {
        if driver < version {
            eprintln!(
                "SKIPPED the PTX-only load: the driver supports CUDA {}.{}, older than the NVRTC {}.{} that built the PTX",
                driver.0, driver.1, version.0, version.1
            );
            return;
        }
    }
    let ptx = CudaDevice::with_policy(0, ImagePolicy::PtxOnly).unwrap();
    assert!(ptx
        .loaded_images()
        .iter()
        .all(|(_, i)| matches!(i, LoadedImage::Ptx(a) if *a <= cc)));
}

#[test]
#[cfg_attr(
    not(all(rescnn_gpu, rescnn_nvrtc)),
    ignore = "needs a CUDA GPU and the kernels NVRTC compiles"
)]
fn gpu_launch_rejects_arguments_that_do_not_match_the_kernel() {
    use rescnn::backends::device::{Device, Kernel, KernelArgs, LaunchConfig};
    use rescnn::backends::ops::rmsprop::kernel::UPDATE;
    use rescnn::backends::RmsPropParams;
    let dev = gpu();
    let reject = |kernel: Kernel, config: LaunchConfig, args: &mut KernelArgs| {
        // SAFETY: every launch below is rejected by the device's checks before reaching the GPU (and
        // would do nothing if it were not: len 0).
        unsafe { dev.launch(kernel, &config, args) }
            .expect_err("launch accepted")
            .to_string()
    };
    // rmsprop_update(RmsPropParams, float* w, const float* g, float* r), len 0.
    let right = || {
        let mut a = KernelArgs::new();
        a.push(<RmsPropParams as bytemuck::Zeroable>::zeroed());
        for _ in 0..3 {
            a.push(rescnn::backends::device::DevicePtr(0));
        }
        a
    };
    let one_block = LaunchConfig::linear(1, 256);

    // Wrong sizes (a 4-byte length where the 20-byte struct goes): rejected before cuLaunchKernel.
    let mut wrong = KernelArgs::new();
    wrong.push(0i32);
    for _ in 0..3 {
        wrong.push(0u64);
    }
    let err = reject(UPDATE, one_block, &mut wrong);
    assert!(
        err.contains("rmsprop_update") && err.contains("[20, 8, 8, 8]"),
        "{err}"
    );
    // One parameter missing.
    let mut args = right();
    let mut fewer = KernelArgs::new();
    fewer.push(<RmsPropParams as bytemuck::Zeroable>::zeroed());
    assert!(reject(UPDATE, one_block, &mut fewer).contains("bytes"));
    // Impossible block shapes.
    let err = reject(UPDATE, LaunchConfig::linear(1, 2048), &mut args);
    assert!(err.contains("block"), "{err}");
    let mut z = one_block;
    z.block = (1, 1, 128);
    assert!(reject(UPDATE, z, &mut right()).contains("block"));
    // Over 48 KiB of shared memory without opting in; over the device's opt-in limit with it.
    let big = one_block.with_dynamic_shared(64 * 1024);
    assert!(reject(UPDATE, big, &mut right()).contains("48 KiB"));
    let huge = one_block
        .with_dynamic_shared(dev.info().max_shared_per_block_optin + 1)
        .with_large_shared();
    assert!(reject(UPDATE, huge, &mut right()).contains("at most"));
    // A kernel that was never compiled.
    let unknown = Kernel {
        module: "rmsprop",
        name: "no_such_kernel",
    };
    assert!(reject(unknown, one_block, &mut right()).contains("no_such_kernel"));
}

#[test]
#[cfg_attr(
    not(all(rescnn_gpu, rescnn_nvrtc)),
    ignore = "needs a CUDA GPU and the kernels NVRTC compiles"
)]
fn gpu_timer_measures_and_cublas_matches_a_host_product() {
    use crate::cublas::{Cublas, Transpose};
    use crate::timing::{GpuTimer, TimingConfig};
    use rescnn::backends::cuda::peak;
    use rescnn::backends::device::Device;
    let dev = gpu();
    let (m, n, k) = (37, 53, 29);
    let a: Vec<f32> = (0..m * k).map(|v| ((v * 7) % 11) as f32 - 5.0).collect();
    let b: Vec<f32> = (0..k * n).map(|v| ((v * 3) % 13) as f32 - 6.0).collect();
    // cudarc opens libcublas.so.12. GPU machines whose CUDA comes from CUDA 13 pip wheels have
    // none; scripts/gpu-check.sh then takes the cuBLAS reference rates from torch.matmul instead.
    let blas = match Cublas::new(&dev) {
        Ok(b) => Some(b),
        Err(e) if e.to_string().contains("could not be loaded") => {
            eprintln!("SKIPPED the cuBLAS half: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    };
    if let Some(blas) = &blas {
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                let mut da = dev.alloc_zeroed::<f32>(m * k).unwrap();
                let mut db = dev.alloc_zeroed::<f32>(k * n).unwrap();
                let mut dc = dev.alloc_zeroed::<f32>(m * n).unwrap();
                dev.copy_to_device(&a, &mut da).unwrap();
                dev.copy_to_device(&b, &mut db).unwrap();
                blas.sgemm(ta, tb, m, n, k, 1.0, &da, &db, 0.0, &mut dc)
                    .unwrap();
                let c = dev.copy_to_host(&dc).unwrap();
                let opa = |i: usize, p: usize| {
                    if ta == Transpose::No {
                        a[i * k + p]
                    } else {
                        a[p * m + i]
                    }
                };
                let opb = |p: usize, j: usize| {
                    if tb == Transpose::No {
                        b[p * n + j]
                    } else {
                        b[j * k + p]
                    }
                };
                for i in 0..m {
                    for j in 0..n {
                        // Small integers: every partial sum is exact in f32, so equality is exact.
                        let want: f32 = (0..k).map(|p| opa(i, p) * opb(p, j)).sum();
                        assert_eq!(c[i * n + j], want, "{ta:?} {tb:?} ({i},{j})");
                    }
                }
            }
        }
    }
    let mut big = dev.alloc_zeroed::<f32>(1 << 24).unwrap();
    let mut timer = GpuTimer::new(&dev).unwrap();
    let cfg = TimingConfig {
        warmup: 1,
        repeats: 5,
        flush_l2: true,
    };
    let t = timer.time(&cfg, || dev.memset_zero(&mut big)).unwrap();
    assert_eq!(t.samples_ms.len(), 5);
    assert!(
        t.min_ms > 0.0 && t.min_ms <= t.median_ms && t.median_ms <= t.max_ms,
        "{t:?}"
    );
    let p = peak::peak_for(&dev).unwrap();
    // Zeroing 64 MiB cannot beat the DRAM bandwidth by more than measurement noise.
    assert!(
        p.fraction_of_bandwidth(t.gbs(4.0 * (1 << 24) as f64)) < 1.5,
        "{t:?} {p:?}"
    );
}
