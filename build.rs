//! Build script. Each concern lives in its own file under build/:
//! - kernel_sources.rs: finds kernels/*.cu and parses their `extern "C" __global__` entry points;
//! - emu.rs: the emulated device's host build of the same sources and their registration;
//! - (kernels) NVRTC → embedded PTX/CUBIN.

#[path = "build/kernel_sources.rs"]
#[allow(dead_code)]
mod kernel_sources;

#[path = "build/emu.rs"]
mod emu;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    // Set by the CUDA device's build where a GPU is usable; GPU-only tests are ignored without it.
    println!("cargo:rustc-check-cfg=cfg(rescnn_gpu)");

    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    if let Err(message) = emu::build(&manifest, &out) {
        eprintln!("{message}");
        panic!("{message}");
    }
}
