//! The emulated device's half of the build: compile every `kernels/*.cu` as C++ for the host against
//! `kernels/emu_shim.h` (through `kernels/common.cuh`), and register every `extern "C" __global__`
//! entry point from its parsed signature, never from a hand-kept list.
//!
//! For each `.cu` a generated C++ file includes the source and adds, per entry point `K`:
//! - `rescnn_emu_entry_K(void** args)`: calls `K` with its parameters read from a cuLaunchKernel-style
//!   argument array (the parameter types come from the kernel's own C++ signature by template
//!   deduction, so nothing here parses C types);
//! - `rescnn_emu_params_K()`: the byte size of each parameter, which the device checks against the
//!   packed `KernelArgs` before every launch;
//! - a `static_assert` that the C++ arity equals the parameter count read by `kernel_sources.rs`.
//!
//! Then `$OUT_DIR/emu_kernels.rs` lists them as `EmuKernel` entries (module, name, trampoline, parameter
//! sizes, static shared bytes), `include!`d by `src/backends/emu/registry.rs`. The static shared bytes
//! of each kernel are the sizes of its function-local `__shared__` (= `static thread_local`) symbols,
//! read from the archive with `nm`.
//!
//! Test-only kernels (`tests/emu_kernels/*.cu`, some deliberately broken) are compiled the same way into
//! a separate archive with their own table, `$OUT_DIR/emu_selftest_kernels.rs`, which only the tests
//! include: nothing in the library references them, so the linker leaves them out of the product. They
//! never live in `kernels/`, which NVRTC compiles.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel_sources::{discover, KernelSource};

/// Compile the product and self-test kernels and write their registration tables into `out`.
pub fn build(manifest: &Path, out: &Path) -> Result<(), String> {
    let kernels_dir = manifest.join("kernels");
    let selftest_dir = manifest.join("tests").join("emu_kernels");
    let runtime = manifest.join("src/backends/emu/runtime.cpp");
    println!("cargo:rerun-if-changed={}", kernels_dir.display());
    println!("cargo:rerun-if-changed={}", selftest_dir.display());
    println!("cargo:rerun-if-changed={}", runtime.display());
    for dir in [&kernels_dir, &selftest_dir] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }

    let product = discover(&kernels_dir)?;
    let selftest = if selftest_dir.is_dir() {
        discover(&selftest_dir)?
    } else {
        Vec::new()
    };
    check_sources(&product, &selftest)?;

    let gen_dir = out.join("emu");
    std::fs::create_dir_all(&gen_dir).map_err(|e| format!("{}: {e}", gen_dir.display()))?;
    // The layout check's C++ half, generated from kernels/geometry.cuh (see build/geometry.rs).
    let layout_cpp = gen_dir.join("geometry_layout.cpp");
    crate::geometry::generate(
        &kernels_dir.join("geometry.cuh"),
        &layout_cpp,
        &out.join("geometry_layout.rs"),
    )?;
    let product_lib = compile(
        "rescnn_emu_kernels",
        &product,
        &[runtime.clone(), layout_cpp],
        &kernels_dir,
        &gen_dir,
        out,
    )?;
    let shared = static_shared_bytes(&product_lib, &product)?;
    write_table(
        &out.join("emu_kernels.rs"),
        "crate::backends::emu::EmuKernel",
        &product,
        &shared,
    )?;

    if selftest.is_empty() {
        write_table(
            &out.join("emu_selftest_kernels.rs"),
            "rescnn::backends::emu::EmuKernel",
            &[],
            &HashMap::new(),
        )?;
    } else {
        let selftest_lib = compile(
            "rescnn_emu_selftest",
            &selftest,
            &[],
            &kernels_dir,
            &gen_dir,
            out,
        )?;
        let shared = static_shared_bytes(&selftest_lib, &selftest)?;
        write_table(
            &out.join("emu_selftest_kernels.rs"),
            "rescnn::backends::emu::EmuKernel",
            &selftest,
            &shared,
        )?;
    }
    Ok(())
}

/// Entry-point names must be unique (the host links every kernel into one program) and every source
/// must include common.cuh, which is what makes it compile on both sides.
fn check_sources(product: &[KernelSource], selftest: &[KernelSource]) -> Result<(), String> {
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for source in product.iter().chain(selftest) {
        if !source.text.contains("#include \"common.cuh\"") {
            return Err(format!(
                "{}: every kernel source must `#include \"common.cuh\"` first (it selects CUDA or the host shim)",
                source.path.display()
            ));
        }
        for entry in &source.entries {
            if let Some(other) = seen.insert(&entry.name, &source.path) {
                return Err(format!(
                    "kernel `{}` is defined in both {} and {}: entry-point names must be unique across kernels/ and tests/emu_kernels/ (the emulated device links them into one program)",
                    entry.name,
                    other.display(),
                    source.path.display()
                ));
            }
        }
    }
    Ok(())
}

/// Generate one C++ file per source (the source plus its trampolines) and compile them, with the
/// runtime if given, into `lib{name}.a`. Returns the archive's path.
fn compile(
    name: &str,
    sources: &[KernelSource],
    extra: &[PathBuf],
    include_dir: &Path,
    gen_dir: &Path,
    out: &Path,
) -> Result<PathBuf, String> {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .include(include_dir)
        // The emulated device runs the test-suite; unoptimised kernels would make it crawl in debug builds.
        .opt_level(2)
        .flag("-fno-exceptions")
        .flag("-fno-rtti")
        // The shim's threadIdx & co. and every __shared__ variable are thread_locals read in inner loops;
        // the archive is linked into executables, where the initial-exec model avoids a call per access.
        .flag("-ftls-model=initial-exec")
        // Kernels reinterpret float buffers as float4; CUDA allows it, so the host build must too.
        .flag("-fno-strict-aliasing")
        .flag("-Wno-unknown-pragmas")
        .flag("-Wno-unused-parameter")
        .cargo_warnings(true);
    let mut files = Vec::new();
    for source in sources {
        let generated = gen_dir.join(format!("{}.cpp", source.module));
        let mut text = format!(
            "// Generated by build/emu.rs from {}: the source and one trampoline per entry point.\n#include \"{}\"\n\n",
            source.path.display(),
            source.path.display()
        );
        for entry in &source.entries {
            let k = &entry.name;
            let n = entry.params.len();
            writeln!(
                text,
                "static_assert(rescnn_emu::arity(&{k}) == {n}, \"build/emu.rs read {n} parameters of {k}\");\n\
                 extern \"C\" void rescnn_emu_entry_{k}(void** args) {{ rescnn_emu::invoke(&{k}, args); }}\n\
                 extern \"C\" const size_t* rescnn_emu_params_{k}() {{ return rescnn_emu::param_sizes(&{k}); }}\n"
            )
            .unwrap();
        }
        write_if_changed(&generated, &text)?;
        files.push((source.path.clone(), generated));
    }
    for file in extra {
        files.push((file.clone(), file.clone()));
    }
    for (_, file) in &files {
        build.file(file);
    }
    if let Err(e) = build.try_compile(name) {
        // Find the file that failed and show its whole log, named by the source the author edits.
        for (source, file) in &files {
            let mut cmd = build.get_compiler().to_command();
            cmd.arg("-fsyntax-only").arg(file);
            match cmd.output() {
                Ok(o) if !o.status.success() => {
                    return Err(format!(
                        "emulated device: compiling {} for the host failed:\n{}{}",
                        source.display(),
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ))
                }
                Ok(_) => {}
                Err(err) => {
                    return Err(format!(
                        "emulated device: cannot run the C++ compiler: {err}"
                    ))
                }
            }
        }
        return Err(format!("emulated device: building lib{name}.a failed: {e}"));
    }
    Ok(out.join(format!("lib{name}.a")))
}

pub fn write_if_changed(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Bytes of function-local statics (the shim's `__shared__`) of each entry point, read from the archive's
/// symbol table: a local static `v` of the extern "C" function `k` is the symbol `_ZZ<len>kE<len>v`.
fn static_shared_bytes(
    archive: &Path,
    sources: &[KernelSource],
) -> Result<HashMap<String, u64>, String> {
    let nm = std::env::var("NM").unwrap_or_else(|_| "nm".into());
    let output = Command::new(&nm)
        .args(["-S", "--defined-only"])
        .arg(archive)
        .output()
        .map_err(|e| {
            format!("emulated device: cannot run `{nm}` (binutils) to measure the kernels' shared memory: {e}")
        })?;
    if !output.status.success() {
        return Err(format!(
            "emulated device: `{nm} -S {}` failed: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let prefixes: Vec<(String, String)> = sources
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| (format!("_ZZ{}{}E", e.name.len(), e.name), e.name.clone()))
        .collect();
    let mut bytes: HashMap<String, u64> = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, size, _, symbol] = fields[..] else {
            continue;
        };
        if let Some((_, kernel)) = prefixes
            .iter()
            .find(|(p, _)| symbol.starts_with(p.as_str()))
        {
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| format!("cannot read the size in nm's line `{line}`"))?;
            *bytes.entry(kernel.clone()).or_default() += size;
        }
    }
    Ok(bytes)
}

fn write_table(
    path: &Path,
    kernel_type: &str,
    sources: &[KernelSource],
    shared: &HashMap<String, u64>,
) -> Result<(), String> {
    let mut text = String::from(
        "// Generated by build/emu.rs from the `extern \"C\" __global__` entry points of the kernel sources.\n",
    );
    let entries: BTreeMap<(&str, &str), ()> = sources
        .iter()
        .flat_map(|s| {
            s.entries
                .iter()
                .map(move |e| ((s.module.as_str(), e.name.as_str()), ()))
        })
        .collect();
    text.push_str("extern \"C\" {\n");
    for &(_, k) in entries.keys() {
        writeln!(
            text,
            "    fn rescnn_emu_entry_{k}(args: *mut *mut ::std::ffi::c_void);\n    fn rescnn_emu_params_{k}() -> *const usize;"
        )
        .unwrap();
    }
    text.push_str("}\n\n");
    writeln!(text, "pub static KERNELS: &[{kernel_type}] = &[").unwrap();
    for &(module, k) in entries.keys() {
        let n = sources
            .iter()
            .flat_map(|s| &s.entries)
            .find(|e| e.name == k)
            .map_or(0, |e| e.params.len());
        writeln!(
            text,
            "    {kernel_type} {{ module: \"{module}\", name: \"{k}\", entry: rescnn_emu_entry_{k}, param_sizes: rescnn_emu_params_{k}, param_count: {n}, static_shared_bytes: {} }},",
            shared.get(k).copied().unwrap_or(0)
        )
        .unwrap();
    }
    text.push_str("];\n");
    write_if_changed(path, &text)
}
