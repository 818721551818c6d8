//! Build script. Each concern lives in its own file under build/:
//! - kernel_sources.rs: finds kernels/*.cu and parses their `extern "C" __global__` entry points;
//! - emu.rs: the emulated device's host build of the same sources and their registration;
//! - nvrtc.rs (+ ptx_signature.rs, ptxas_log.rs): NVRTC → PTX/CUBIN embedded in the binary, with the
//!   assembler's resource figures, and the `rescnn_nvrtc` / `rescnn_gpu` cfgs.

#[path = "build/kernel_sources.rs"]
#[allow(dead_code)]
mod kernel_sources;

#[path = "build/emu.rs"]
mod emu;

#[path = "build/nvrtc.rs"]
mod nvrtc;
#[path = "build/ptx_signature.rs"]
mod ptx_signature;
#[path = "build/ptxas_log.rs"]
mod ptxas_log;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");

    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    if let Err(message) = emu::build(&manifest, &out) {
        eprintln!("{message}");
        panic!("{message}");
    }

    // NVRTC (emu::build has already printed rerun-if-changed for kernels/ and every file in it).
    let kernel_dir = manifest.join("kernels");
    let sources = kernel_sources::discover(&kernel_dir).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    nvrtc::build(&kernel_dir, &sources, &out);
}
