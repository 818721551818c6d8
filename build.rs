//! Build script. Each concern lives in its own file under build/:
//! - kernel_sources.rs: finds kernels/*.cu and parses their `extern "C" __global__` entry points;
//! - emu.rs: the emulated device's host build of the same sources and their registration;
//! - geometry.rs: the layout check of kernels/geometry.cuh against the #[repr(C)] structs, generated;
//! - nvrtc.rs (+ ptx_signature.rs, ptxas_log.rs): NVRTC → PTX/CUBIN embedded in the binary, with the
//!   assembler's resource figures, and the `rescnn_nvrtc` / `rescnn_gpu` cfgs.

#[path = "build/kernel_sources.rs"]
#[allow(dead_code)]
mod kernel_sources;

#[path = "build/emu.rs"]
mod emu;
#[path = "build/geometry.rs"]
mod geometry;

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

    detect_emodb();
    git_commit();
    detect_conv_kernels(&kernel_dir);
}

/// `cfg(rescnn_emu_conv)` when the convolution and dense kernels exist (kernels/conv2d.cu and
/// kernels/dense.cu): tests that train a whole network on the emulated device are ignored, not
/// passed, without them.
fn detect_conv_kernels(kernel_dir: &std::path::Path) {
    println!("cargo:rustc-check-cfg=cfg(rescnn_emu_conv)");
    if kernel_dir.join("conv2d.cu").is_file() && kernel_dir.join("dense.cu").is_file() {
        println!("cargo:rustc-cfg=rescnn_emu_conv");
    }
}

/// `RESCNN_GIT_COMMIT` for the binaries (run reports and checkpoints record it): the short hash of
/// HEAD when the build script last ran. Re-run when HEAD moves (a commit, a checkout); uncommitted
/// edits are not tracked (watching the index would rebuild the crate on every `git add`). Absent
/// without git or outside a checkout; the code then says "unknown commit".
fn git_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(hash) = git(&["rev-parse", "--short=10", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=RESCNN_GIT_COMMIT={hash}");
    // Only existing paths are watched (a missing one would re-run this script on every build).
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &r]));
    }
    for p in watched.into_iter().flatten() {
        if std::path::Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

/// Tests that need the EMO-DB development folder are compiled with `cfg(rescnn_emodb)` only when the
/// folder exists, so a checkout without it reports them as ignored instead of passing them. The same
/// resolution rule (env var, else `../shared/data/emodb-dev` beside the repository) is
/// `rescnn::data::emodb::default_dir()` at run time.
fn detect_emodb() {
    println!("cargo:rustc-check-cfg=cfg(rescnn_emodb)");
    println!("cargo:rerun-if-env-changed=RESCNN_EMODB_DIR");
    let from_env = std::env::var_os("RESCNN_EMODB_DIR");
    let dir = match &from_env {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let root =
                std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
            std::path::Path::new(&root).join("../shared/data/emodb-dev")
        }
    };
    if dir.is_dir() {
        println!("cargo:rustc-cfg=rescnn_emodb");
        println!("cargo:rerun-if-changed={}", dir.display());
    } else if from_env.is_none() {
        // While the default folder is absent, watch its parent (`../shared/data`) if that exists, so
        // the folder's arrival is noticed. Never a missing path (cargo would re-run this script on
        // every build) and never an arbitrary ancestor (cargo scans a watched folder recursively);
        // a missing RESCNN_EMODB_DIR is re-checked when the variable changes.
        if let Some(parent) = dir.parent().filter(|p| p.is_dir()) {
            println!("cargo:rerun-if-changed={}", parent.display());
        }
    }
}
