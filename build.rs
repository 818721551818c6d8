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
    let dir = match std::env::var_os("RESCNN_EMODB_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let root =
                std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
            std::path::Path::new(&root).join("../shared/data/emodb-dev")
        }
    };
    // Watch the folder, or while it is absent its nearest existing ancestor (whose mtime changes when
    // the folder appears); watching a missing path would re-run this script, and rebuild, every time.
    let mut watched = dir.as_path();
    while !watched.exists() {
        match watched.parent() {
            Some(p) if !p.as_os_str().is_empty() => watched = p,
            _ => break,
        }
    }
    println!("cargo:rerun-if-changed={}", watched.display());
    if dir.is_dir() {
        println!("cargo:rustc-cfg=rescnn_emodb");
    }
}
