//! The build script's kernel-source parser (build/kernel_sources.rs), compiled here as an ordinary
//! module so that its unit tests run with `cargo test`, plus a check over the real kernels/.

#[path = "../build/kernel_sources.rs"]
#[allow(dead_code)]
mod kernel_sources;

#[test]
fn every_kernel_file_has_entry_points_with_named_parameters() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let sources = kernel_sources::discover(&dir).unwrap();
    let modules: Vec<&str> = sources.iter().map(|s| s.module.as_str()).collect();
    for expected in ["maxpool", "rmsprop", "shortcut", "softmax_xent"] {
        assert!(
            modules.contains(&expected),
            "kernels/{expected}.cu not found in {modules:?}"
        );
    }
    for source in &sources {
        assert!(
            !source.entries.is_empty(),
            "{}: no entry points",
            source.path.display()
        );
        for entry in &source.entries {
            assert!(
                !entry.params.is_empty(),
                "{}: {} takes nothing",
                source.module,
                entry.name
            );
        }
    }
}
