//! Build script. Each concern lives in its own file under build/:
//! - kernel_sources.rs: finds kernels/*.cu and parses their `extern "C" __global__` entry points;
//! - (kernels) NVRTC → embedded PTX/CUBIN, and the emulated device's host build of the same sources.

#[path = "build/kernel_sources.rs"]
#[allow(dead_code)]
mod kernel_sources;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
}
