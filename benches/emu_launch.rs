//! Cost of one emulated launch: 64 blocks × 256 threads, each thread passing 2·ROUNDS barriers
//! (tests/emu_kernels/selftest.cu, `selftest_barrier_loop`), in both thread orders and on 1 and all
//! host threads. The result is checked against a host computation before anything is timed.
//!
//! Run: `cargo bench --bench emu_launch`.

use std::time::Instant;

use rescnn::backends::device::{Device, Kernel, KernelArgs, LaunchConfig};
use rescnn::backends::emu::{EmuDevice, ThreadOrder};

mod selftest {
    include!(concat!(env!("OUT_DIR"), "/emu_selftest_kernels.rs"));
}

const BLOCKS: usize = 64;
const THREADS: usize = 256;
const ROUNDS: i32 = 2;
const REPEATS: usize = 21;

/// What the kernel computes, on the host.
fn expected() -> Vec<f32> {
    let mut out = Vec::with_capacity(BLOCKS * THREADS);
    for b in 0..BLOCKS {
        let mut v: Vec<f32> = (0..THREADS).map(|t| (b * THREADS + t) as f32).collect();
        for _ in 0..ROUNDS {
            let cells = v.clone();
            for t in 0..THREADS {
                v[t] = 0.5 * (v[t] + cells[(t + 1) % THREADS]);
            }
        }
        out.extend(v);
    }
    out
}

fn launch(dev: &EmuDevice, out: &<EmuDevice as Device>::Buffer<f32>) {
    let mut args = KernelArgs::new();
    args.push(dev.device_ptr(out)).push(ROUNDS);
    let kernel = Kernel {
        module: "selftest",
        name: "selftest_barrier_loop",
    };
    // SAFETY: selftest_barrier_loop(float* out, int rounds) with out holding BLOCKS·256 floats.
    unsafe {
        dev.launch(
            kernel,
            &LaunchConfig::linear(BLOCKS as u32, THREADS as u32),
            &mut args,
        )
    }
    .expect("launch");
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = expected();
    println!(
        "emulated launch of {BLOCKS} blocks × {THREADS} threads, {} barriers per thread (median of {REPEATS})",
        2 * ROUNDS
    );
    for host_threads in [1, cores] {
        for order in [ThreadOrder::Forward, ThreadOrder::Reverse] {
            let mut dev = EmuDevice::with_host_threads(order, host_threads).expect("device");
            dev.register(selftest::KERNELS).expect("register");
            let out = dev.alloc_zeroed::<f32>(BLOCKS * THREADS).expect("alloc");
            launch(&dev, &out); // warm-up: allocates the fiber stacks
            assert_eq!(
                dev.copy_to_host(&out).unwrap(),
                want,
                "wrong result: not timing"
            );
            let mut times: Vec<f64> = (0..REPEATS)
                .map(|_| {
                    let start = Instant::now();
                    launch(&dev, &out);
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let fibers = (BLOCKS * THREADS) as f64;
            let median = times[REPEATS / 2];
            println!(
                "  {host_threads} host thread(s), {order:?}: median {median:.2} ms (min {:.2}, max {:.2}), {:.0} ns per CUDA thread",
                times[0],
                times[REPEATS - 1],
                median * 1e6 / fibers
            );
        }
    }
}
