// Kernel compilation (NVRTC → PTX/CUBIN) and the emulated device's host build arrive with the kernels.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
