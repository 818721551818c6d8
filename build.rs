// Kernel compilation (NVRTC → PTX/CUBIN) and the emulated device's host build arrive with the kernels.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    detect_emodb();
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
