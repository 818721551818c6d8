//! The emulated device's own behaviour, on the purpose-written kernels of tests/emu_kernels/selftest.cu
//! (some wrong on purpose): barriers, warp operations, shared memory, atomics, launch limits, errors.

use rescnn::backends::device::{Device, DevicePtr, Kernel, KernelArgs, LaunchConfig};
use rescnn::backends::emu::{EmuBuffer, EmuDevice, ThreadOrder};

mod selftest {
    include!(concat!(env!("OUT_DIR"), "/emu_selftest_kernels.rs"));
}

const ORDERS: [ThreadOrder; 2] = [ThreadOrder::Forward, ThreadOrder::Reverse];

fn device(order: ThreadOrder, host_threads: usize) -> EmuDevice {
    let mut dev = EmuDevice::with_host_threads(order, host_threads).unwrap();
    dev.register(selftest::KERNELS).unwrap();
    dev
}

fn kernel(name: &'static str) -> Kernel {
    Kernel {
        module: "selftest",
        name,
    }
}

fn upload<T: bytemuck::Pod + Send + Sync>(dev: &EmuDevice, data: &[T]) -> EmuBuffer<T> {
    let mut buf = dev.alloc_zeroed(data.len()).unwrap();
    dev.copy_to_device(data, &mut buf).unwrap();
    buf
}

fn ptr<T: bytemuck::Pod + Send + Sync>(dev: &EmuDevice, buf: &EmuBuffer<T>) -> DevicePtr {
    dev.device_ptr(buf)
}

/// Launch a self-test kernel; the arguments are built by the caller to match its signature.
fn launch(
    dev: &EmuDevice,
    name: &'static str,
    config: LaunchConfig,
    args: &mut KernelArgs,
) -> rescnn::Result<()> {
    // SAFETY: every caller packs the arguments in the order and types of the named kernel in
    // selftest.cu, with buffers at least as large as the shape comments there require for `config`.
    unsafe { dev.launch(kernel(name), &config, args) }
}

fn launch_err(
    dev: &EmuDevice,
    name: &'static str,
    config: LaunchConfig,
    args: &mut KernelArgs,
) -> String {
    match launch(dev, name, config, args) {
        Ok(()) => panic!("launching {name} should have failed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_thread_sees_its_own_indices_in_a_3d_launch() {
    for order in ORDERS {
        let dev = device(order, 2);
        let config = LaunchConfig {
            grid: (2, 3, 2),
            block: (4, 3, 2),
            dynamic_shared_bytes: 0,
            large_shared: false,
        };
        let blocks = 12;
        let threads = 24;
        let out = dev.alloc_zeroed::<i32>(blocks * threads * 6).unwrap();
        launch(
            &dev,
            "selftest_indices",
            config,
            KernelArgs::new().push(ptr(&dev, &out)),
        )
        .unwrap();
        let got = dev.copy_to_host(&out).unwrap();
        for (i, rec) in got.chunks(6).enumerate() {
            let (b, t) = (i / threads, i % threads);
            let expect = [t % 4, t / 4 % 3, t / 12, b % 2, b / 2 % 3, b / 6];
            let expect: Vec<i32> = expect.iter().map(|&v| v as i32).collect();
            assert_eq!(rec, &expect[..], "record {i} ({order:?})");
        }
    }
}

fn block_sums(dev: &EmuDevice, name: &'static str, x: &[f32]) -> Vec<f32> {
    let blocks = x.len() / 256;
    let xb = upload(dev, x);
    let out = dev.alloc_zeroed::<f32>(blocks).unwrap();
    launch(
        dev,
        name,
        LaunchConfig::linear(blocks as u32, 256),
        KernelArgs::new().push(ptr(dev, &xb)).push(ptr(dev, &out)),
    )
    .unwrap();
    dev.copy_to_host(&out).unwrap()
}

#[test]
fn a_reduction_with_its_barriers_is_right_in_both_orders() {
    // Small integers: every partial sum is exact in f32, whatever the order.
    let x: Vec<f32> = (0..256 * 8).map(|i| (i % 13) as f32).collect();
    let expect: Vec<f32> = x.chunks(256).map(|c| c.iter().sum()).collect();
    for order in ORDERS {
        let dev = device(order, 2);
        assert_eq!(
            block_sums(&dev, "selftest_block_sum", &x),
            expect,
            "{order:?}"
        );
    }
}

#[test]
fn a_missing_barrier_gives_wrong_results_in_at_least_one_order() {
    let x: Vec<f32> = (0..256 * 8).map(|i| (i % 13) as f32).collect();
    let expect: Vec<f32> = x.chunks(256).map(|c| c.iter().sum()).collect();
    let wrong_orders: Vec<ThreadOrder> = ORDERS
        .into_iter()
        .filter(|&order| block_sums(&device(order, 1), "selftest_block_sum_racy", &x) != expect)
        .collect();
    assert!(
        !wrong_orders.is_empty(),
        "the racy reduction matched in both thread orders: the emulator would hide missing barriers"
    );
}

#[test]
fn divergent_barriers_are_reported_with_both_sites() {
    for order in ORDERS {
        let dev = device(order, 1);
        let out = dev.alloc_zeroed::<f32>(64).unwrap();
        let msg = launch_err(
            &dev,
            "selftest_divergent_barrier",
            LaunchConfig::linear(1, 64),
            KernelArgs::new().push(ptr(&dev, &out)),
        );
        assert!(msg.contains("divergent __syncthreads()"), "{msg}");
        assert!(msg.contains("threads 0-15 at selftest.cu:"), "{msg}");
        assert!(msg.contains("threads 16-63 at selftest.cu:"), "{msg}");
        assert!(msg.contains("selftest_divergent_barrier"), "{msg}");
    }
}

#[test]
fn a_thread_exiting_while_others_wait_is_reported() {
    for order in ORDERS {
        let dev = device(order, 1);
        let out = dev.alloc_zeroed::<f32>(32).unwrap();
        let msg = launch_err(
            &dev,
            "selftest_exit_while_waiting",
            LaunchConfig::linear(1, 32),
            KernelArgs::new().push(ptr(&dev, &out)),
        );
        assert!(
            msg.contains("threads 5 exited while threads 0-4, 6-31 wait at __syncthreads()"),
            "{msg}"
        );
    }
}

#[test]
fn a_deadlock_is_reported_instead_of_hanging() {
    for order in ORDERS {
        let dev = device(order, 1);
        let out = dev.alloc_zeroed::<f32>(32).unwrap();
        let msg = launch_err(
            &dev,
            "selftest_deadlock",
            LaunchConfig::linear(1, 32),
            KernelArgs::new().push(ptr(&dev, &out)),
        );
        assert!(
            msg.contains("deadlock: thread 0 waits in __shfl_sync"),
            "{msg}"
        );
        assert!(
            msg.contains("for thread 1 (lane 1), which waits at __syncthreads()"),
            "{msg}"
        );
    }
}

/// CUDA's documented result of each warp operation, written independently of the emulator.
fn shuffle_model(input: &[i32], mask: u32, op: i32, arg: i32, width: i32) -> Vec<i32> {
    let w = width as usize;
    (0..input.len())
        .map(|t| {
            let (base, lane) = (t / 32 * 32, t % 32);
            if mask & (1 << lane) == 0 {
                return -1;
            }
            let seg = lane / w * w;
            let src = match op {
                0 => seg + (arg as usize % w),
                1 => {
                    if lane >= seg + arg as usize {
                        lane - arg as usize
                    } else {
                        lane
                    }
                }
                2 => {
                    if lane + (arg as usize) < seg + w {
                        lane + arg as usize
                    } else {
                        lane
                    }
                }
                3 => {
                    let s = lane ^ arg as usize;
                    if s / w == lane / w {
                        s
                    } else {
                        lane
                    }
                }
                _ => {
                    let in_mask = (0..32).filter(|l| mask & (1 << l) != 0);
                    let bits: Vec<usize> = in_mask.collect();
                    return match op {
                        4 => bits
                            .iter()
                            .filter(|&&l| input[base + l] & 1 != 0)
                            .fold(0u32, |acc, &l| acc | (1 << l))
                            as i32,
                        5 => bits.iter().any(|&l| input[base + l] > arg) as i32,
                        _ => bits.iter().all(|&l| input[base + l] > arg) as i32,
                    };
                }
            };
            input[base + src]
        })
        .collect()
}

#[test]
fn shuffles_and_votes_follow_cuda_for_full_and_partial_masks() {
    let input: Vec<i32> = (0..64).map(|i| (i * 37 + 11) % 101).collect();
    let cases: &[(u32, i32, i32, i32)] = &[
        // (mask, op, arg, width)
        (u32::MAX, 0, 5, 32),
        (u32::MAX, 0, 3, 8),
        (u32::MAX, 1, 1, 32),
        (u32::MAX, 1, 3, 16),
        (u32::MAX, 2, 1, 32),
        (u32::MAX, 2, 16, 32),
        (u32::MAX, 2, 2, 4),
        (u32::MAX, 3, 1, 32),
        (u32::MAX, 3, 16, 32),
        (u32::MAX, 3, 8, 8),
        (u32::MAX, 4, 0, 32),
        (u32::MAX, 5, 99, 32),
        (u32::MAX, 6, 0, 32),
        (u32::MAX, 6, 5, 32),
        // Lanes 16-31 take no part: the low half works on its own, in segments of 16 or less.
        (0x0000_ffff, 0, 7, 16),
        (0x0000_ffff, 1, 2, 16),
        (0x0000_ffff, 2, 1, 16),
        (0x0000_ffff, 3, 4, 16),
        (0x0000_ffff, 4, 0, 32),
        (0x0f0f_0f0f, 3, 16, 32),
        (0x0f0f_0f0f, 4, 0, 32),
        (0x0f0f_0f0f, 5, 90, 32),
        (0x0f0f_0f0f, 6, 3, 32),
    ];
    for order in ORDERS {
        let dev = device(order, 1);
        let inb = upload(&dev, &input);
        let out = dev.alloc_zeroed::<i32>(64).unwrap();
        for &(mask, op, arg, width) in cases {
            launch(
                &dev,
                "selftest_shuffle",
                LaunchConfig::linear(1, 64),
                KernelArgs::new()
                    .push(ptr(&dev, &inb))
                    .push(ptr(&dev, &out))
                    .push(mask)
                    .push(op)
                    .push(arg)
                    .push(width),
            )
            .unwrap_or_else(|e| panic!("mask {mask:#x} op {op} arg {arg} width {width}: {e}"));
            assert_eq!(
                dev.copy_to_host(&out).unwrap(),
                shuffle_model(&input, mask, op, arg, width),
                "mask {mask:#x} op {op} arg {arg} width {width} ({order:?})"
            );
        }
    }
}

#[test]
fn eight_byte_shuffles_sum_within_segments() {
    let input: Vec<f64> = (0..64).map(|i| 1.0 + i as f64 * 0.25).collect();
    for order in ORDERS {
        let dev = device(order, 1);
        let inb = upload(&dev, &input);
        let out = dev.alloc_zeroed::<f64>(64).unwrap();
        for width in [32, 8] {
            launch(
                &dev,
                "selftest_warp_sum_f64",
                LaunchConfig::linear(1, 64),
                KernelArgs::new()
                    .push(ptr(&dev, &inb))
                    .push(ptr(&dev, &out))
                    .push(width),
            )
            .unwrap();
            let got = dev.copy_to_host(&out).unwrap();
            for (t, g) in got.iter().enumerate() {
                let seg = t / width as usize * width as usize;
                let expect: f64 = input[seg..seg + width as usize].iter().sum();
                assert_eq!(*g, expect, "thread {t}, width {width}");
            }
        }
    }
}

#[test]
fn bad_masks_are_reported() {
    let expectations: [(i32, u32, &str); 5] = [
        (
            0,
            32,
            "with mask 0x00000001, which does not include its own lane",
        ),
        (
            1,
            48,
            "but warp 1 has only 16 lanes (the block has 48 threads)",
        ),
        (
            2,
            32,
            "but thread 31 (lane 31), named in the mask, has exited",
        ),
        (3, 32, "reads lane 20 in __shfl_sync(mask 0x0000ffff)"),
        (
            4,
            32,
            "every lane of a mask must call the same warp operation",
        ),
    ];
    for order in ORDERS {
        let dev = device(order, 1);
        let out = dev.alloc_zeroed::<i32>(64).unwrap();
        for (mode, threads, expect) in expectations {
            let msg = launch_err(
                &dev,
                "selftest_bad_mask",
                LaunchConfig::linear(1, threads),
                KernelArgs::new().push(ptr(&dev, &out)).push(mode),
            );
            assert!(msg.contains(expect), "mode {mode} ({order:?}): {msg}");
        }
    }
}

#[test]
fn blocks_on_parallel_host_threads_have_their_own_shared_memory() {
    for order in ORDERS {
        let dev = device(order, 2);
        let blocks = 64;
        let out = upload(&dev, &vec![-1i32; blocks]);
        launch(
            &dev,
            "selftest_shared_isolation",
            LaunchConfig::linear(blocks as u32, 256),
            KernelArgs::new().push(ptr(&dev, &out)).push(40i32),
        )
        .unwrap();
        assert_eq!(
            dev.copy_to_host(&out).unwrap(),
            vec![0; blocks],
            "{order:?}"
        );
    }
}

#[test]
fn dynamic_shared_memory_is_nan_filled_before_every_block() {
    let dev = device(ThreadOrder::Forward, 1);
    let (blocks, threads) = (3usize, 40usize);
    let out = dev.alloc_zeroed::<u32>(blocks * threads).unwrap();
    launch(
        &dev,
        "selftest_dynamic_shared",
        LaunchConfig::linear(blocks as u32, threads as u32).with_dynamic_shared(threads as u32 * 4),
        KernelArgs::new().push(ptr(&dev, &out)),
    )
    .unwrap();
    let got = dev.copy_to_host(&out).unwrap();
    assert!(
        got.iter().all(|&bits| f32::from_bits(bits).is_nan()),
        "{got:x?}"
    );
}

#[test]
fn launch_limits_are_enforced() {
    let dev = device(ThreadOrder::Forward, 1);
    let input = dev.alloc_zeroed::<i32>(1024).unwrap();
    let out = dev.alloc_zeroed::<i32>(1024).unwrap();
    let shuffle_args = |args: &mut KernelArgs| {
        args.push(ptr(&dev, &input))
            .push(ptr(&dev, &out))
            .push(u32::MAX)
            .push(0i32)
            .push(0i32)
            .push(32i32);
    };
    let cfg = |grid, block| LaunchConfig {
        grid,
        block,
        dynamic_shared_bytes: 0,
        large_shared: false,
    };
    let refused = [
        (
            cfg((1, 1, 1), (1056, 1, 1)),
            "exceeds the per-dimension limits",
        ),
        (
            cfg((1, 1, 1), (32, 33, 1)),
            "has 1056 threads; at most 1024",
        ),
        (
            cfg((1, 1, 1), (1, 1, 65)),
            "exceeds the per-dimension limits",
        ),
        (cfg((1, 65536, 1), (32, 1, 1)), "exceeds the limits"),
        (cfg((1, 1, 65536), (32, 1, 1)), "exceeds the limits"),
        (cfg((0, 1, 1), (32, 1, 1)), "at least 1"),
        (
            cfg((1, 1, 1), (32, 1, 1)).with_dynamic_shared(48 * 1024 + 4),
            "exceed the 49152-byte limit per block (a kernel that needs more must opt in",
        ),
    ];
    for (config, expect) in refused {
        let mut args = KernelArgs::new();
        shuffle_args(&mut args);
        let msg = launch_err(&dev, "selftest_shuffle", config, &mut args);
        assert!(msg.contains(expect), "{config:?}: {msg}");
    }
    // Opting in allows more, up to the H100's 227 KiB.
    let mut args = KernelArgs::new();
    shuffle_args(&mut args);
    let big = cfg((1, 1, 1), (32, 1, 1))
        .with_dynamic_shared(100 * 1024)
        .with_large_shared();
    launch(&dev, "selftest_shuffle", big, &mut args).unwrap();
    let mut args = KernelArgs::new();
    shuffle_args(&mut args);
    let too_big = big.with_dynamic_shared(228 * 1024);
    assert!(launch_err(&dev, "selftest_shuffle", too_big, &mut args).contains("232448-byte limit"));

    // Static shared memory counts: 40 KiB of it leaves room for 8 KiB of dynamic, not 9.
    let f = dev.alloc_zeroed::<f32>(256).unwrap();
    let ok = cfg((1, 1, 1), (256, 1, 1)).with_dynamic_shared(8 * 1024);
    launch(
        &dev,
        "selftest_big_static_shared",
        ok,
        KernelArgs::new().push(ptr(&dev, &f)),
    )
    .unwrap();
    let got = dev.copy_to_host(&f).unwrap();
    assert_eq!(got[0], 10239.0);
    let over = ok.with_dynamic_shared(9 * 1024);
    let msg = launch_err(
        &dev,
        "selftest_big_static_shared",
        over,
        KernelArgs::new().push(ptr(&dev, &f)),
    );
    assert!(
        msg.contains("40960 bytes of static and 9216 bytes of dynamic"),
        "{msg}"
    );
}

#[test]
fn atomics_are_exact_across_parallel_blocks() {
    for order in ORDERS {
        let dev = device(order, 2);
        let sum = dev.alloc_zeroed::<f32>(1).unwrap();
        let count = dev.alloc_zeroed::<u32>(1).unwrap();
        let largest = upload(&dev, &[-1i32]);
        let smallest = upload(&dev, &[u32::MAX]);
        launch(
            &dev,
            "selftest_atomics",
            LaunchConfig::linear(64, 256),
            KernelArgs::new()
                .push(ptr(&dev, &sum))
                .push(ptr(&dev, &count))
                .push(ptr(&dev, &largest))
                .push(ptr(&dev, &smallest)),
        )
        .unwrap();
        // 16384 additions of 1.0 are exact in f32 (< 2^24).
        assert_eq!(dev.copy_to_host(&sum).unwrap(), vec![16384.0]);
        assert_eq!(dev.copy_to_host(&count).unwrap(), vec![16384]);
        assert_eq!(dev.copy_to_host(&largest).unwrap(), vec![16383]);
        assert_eq!(dev.copy_to_host(&smallest).unwrap(), vec![7]);
    }
}

#[test]
fn a_trap_aborts_the_launch_and_the_device_keeps_working() {
    let dev = device(ThreadOrder::Forward, 2);
    let out = dev.alloc_zeroed::<f32>(64).unwrap();
    let msg = launch_err(
        &dev,
        "selftest_trap",
        LaunchConfig::linear(4, 64),
        KernelArgs::new().push(ptr(&dev, &out)),
    );
    assert!(
        msg.contains("thread 3 called __trap() at selftest.cu:"),
        "{msg}"
    );
    // The stopped fibers' stacks are reused: later launches on the same host threads still work.
    let x: Vec<f32> = (0..256 * 4).map(|i| (i % 7) as f32).collect();
    let expect: Vec<f32> = x.chunks(256).map(|c| c.iter().sum()).collect();
    for _ in 0..3 {
        assert_eq!(block_sums(&dev, "selftest_block_sum", &x), expect);
    }
}

#[test]
fn arguments_that_do_not_match_the_signature_are_refused() {
    let dev = device(ThreadOrder::Forward, 1);
    let out = dev.alloc_zeroed::<f32>(32).unwrap();
    let msg = launch_err(
        &dev,
        "selftest_trap",
        LaunchConfig::linear(1, 32),
        KernelArgs::new().push(ptr(&dev, &out)).push(1i32),
    );
    assert!(
        msg.contains("byte sizes [8, 4] but the kernel's parameters have [8]"),
        "{msg}"
    );
    let msg = launch_err(
        &dev,
        "selftest_trap",
        LaunchConfig::linear(1, 32),
        KernelArgs::new().push(1i32),
    );
    assert!(
        msg.contains("[4] but the kernel's parameters have [8]"),
        "{msg}"
    );
    let mut args = KernelArgs::new();
    // SAFETY: the launch must fail before running anything: the kernel does not exist.
    let err = unsafe {
        dev.launch(
            Kernel {
                module: "selftest",
                name: "no_such_kernel",
            },
            &LaunchConfig::linear(1, 1),
            &mut args,
        )
    };
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("no kernel selftest::no_such_kernel"));
}

#[test]
fn the_shim_math_and_qualifiers_compute_what_cuda_documents() {
    let dev = device(ThreadOrder::Forward, 1);
    let x: Vec<f32> = (0..70).map(|i| 0.05 + i as f32 * 0.37).collect();
    let xb = upload(&dev, &x);
    let out = dev.alloc_zeroed::<f32>(x.len() * 9).unwrap();
    launch(
        &dev,
        "selftest_math",
        LaunchConfig::linear(2, 64),
        KernelArgs::new()
            .push(ptr(&dev, &xb))
            .push(ptr(&dev, &out))
            .push(x.len() as i32),
    )
    .unwrap();
    let got = dev.copy_to_host(&out).unwrap();
    for (i, (&v, o)) in x.iter().zip(got.chunks(9)).enumerate() {
        let expect = [
            v.exp(),
            v.ln(),
            1.0 / v.sqrt(),
            1.0 / v,
            v.max(1.0) + v.min(1.0),
            v.sqrt() * v.sqrt(),
            v + 2.0 * v + 3.0 * v + 4.0 * v,
            1.0,
            i.clamp(1, 3) as f32,
        ];
        for (k, (g, e)) in o.iter().zip(expect).enumerate() {
            // The host's libm and the same operation order: within 2 ulp.
            assert!(
                (g - e).abs() <= 2.0 * f32::EPSILON * e.abs(),
                "x[{i}] = {v}, result {k}: {g} vs {e}"
            );
        }
    }
}
