//! Build script. Each concern lives in its own file under build/:
//! - kernel_sources.rs: finds kernels/*.cu and parses their `extern "C" __global__` entry points;
//! - nvrtc.rs (+ ptxas_log.rs, ptx_signature.rs): NVRTC → PTX/CUBIN embedded in the binary, and the
//!   `rescnn_nvrtc` / `rescnn_gpu` cfgs;
//! - emu.rs: the emulated device's host build of the same sources and their registration.

#[path = "build/kernel_sources.rs"]
#[allow(dead_code)]
mod kernel_sources;
#[path = "build/nvrtc.rs"]
mod nvrtc;
#[path = "build/ptx_signature.rs"]
mod ptx_signature;
#[path = "build/ptxas_log.rs"]
mod ptxas_log;

use std::path::PathBuf;

#[path = "build/emu.rs"]
mod emu;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");

    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let kernel_dir = manifest_dir.join("kernels");
    let sources = if kernel_dir.is_dir() {
        // The folder itself (a new or removed .cu) and every file in it (.cu and .cuh edits).
        println!("cargo:rerun-if-changed={}", kernel_dir.display());
        for entry in std::fs::read_dir(&kernel_dir).unwrap().flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
        kernel_sources::discover(&kernel_dir).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        })
    } else {
        Vec::new()
    };
    nvrtc::build(&kernel_dir, &sources, &out_dir);
    if let Err(message) = emu::build(&manifest_dir, &out_dir) {
        eprintln!("{message}");
        panic!("{message}");
    }
}
