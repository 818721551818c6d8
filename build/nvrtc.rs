//! NVRTC half of the build: compiles every `kernels/*.cu` to PTX (virtual architectures, embedded and
//! JIT-compiled by the driver at run time) and to CUBIN (real architectures: the assembler runs here,
//! offline, so its register / shared-memory / spill figures are known without a GPU; the CUBINs are
//! embedded too). See [`ARCHS`]. Writes `$OUT_DIR/cuda_kernels.rs`, included by `src/backends/cuda/embedded.rs`.
//!
//! NVRTC is opened at build time with cudarc's dynamic loading: no CUDA toolkit is needed, only
//! `libnvrtc.so.12`. Where it is looked for, in order:
//! 1. `RESCNN_NVRTC_LIB`: the library file, or a folder holding it (also a `pip install --target`
//!    folder: `<dir>/nvidia/cuda_nvrtc/lib/`). Set but unusable: the build fails.
//! 2. `${RESCNN_CACHE:-$HOME/.cache/rescnn}/nvrtc`: where `.ci/run` and the README install the wheel.
//! 3. `$CUDA_HOME/lib64`, `$CUDA_PATH/lib64`, `/usr/local/cuda/lib64`: a CUDA toolkit.
//! 4. The system's own search (`LD_LIBRARY_PATH`, `ld.so.cache`), which is what cudarc does.
//!
//! cudarc opens NVRTC by its bare name (`libnvrtc.so.12`, ...). For 1-3 we `dlopen` the file by its
//! full path first and keep it open: the dynamic loader then answers cudarc's bare-name request with
//! the library already loaded under that soname. (Setting `LD_LIBRARY_PATH` from inside the process
//! would not work: the loader reads it once, at start-up.)
//!
//! Without a usable NVRTC the build still succeeds (a `cargo:warning` says how to install it; the
//! generated table is empty and carries the reason, and the CUDA device refuses to start with the same
//! advice), unless `RESCNN_REQUIRE_NVRTC=1`, which makes it an error (CI sets it).
//!
//! Also emits the cfgs `rescnn_nvrtc` (kernels were compiled) and `rescnn_gpu` (a CUDA GPU is visible
//! at build time, or `RESCNN_GPU_TESTS=1`), which un-ignore the tests that need them.

use std::ffi::{c_char, CString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cudarc::nvrtc::{result as nvrtc, sys};

use crate::kernel_sources::KernelSource;
use crate::ptx_signature;
use crate::ptxas_log::{self, EntryResources};

/// Architectures we build for: Pascal (the paper's GTX 1080), Ampere, Hopper. For each, PTX for
/// `compute_XY` (the driver JIT-compiles the newest one not above the GPU's compute capability, so
/// compute_90 also serves later GPUs) and a CUBIN for `sm_XY` (runs natively on compute capability X.Z,
/// Z ≥ Y: the 6.x, 8.x and 9.0 GPUs need no JIT, and no driver as new as this NVRTC).
pub const ARCHS: &[u32] = &[61, 80, 90];

/// The one deprecation notice NVRTC 12.9 prints for every pre-Turing target; it cannot be switched off
/// (NVRTC rejects nvcc's `-Wno-deprecated-gpu-targets`), and repeating it per file helps nobody.
const DEPRECATION_NOTICE: &str = "Architectures prior to '<compute/sm>_75' are deprecated";

const INSTALL_HINT: &str = "install NVRTC without a CUDA toolkit with `pip install --target \
\"${RESCNN_CACHE:-$HOME/.cache/rescnn}/nvrtc\" nvidia-cuda-nvrtc-cu12==12.9.86` (or point \
RESCNN_NVRTC_LIB at an existing libnvrtc.so.12 or its folder), then rebuild";

/// Entry point from build.rs.
pub fn build(kernel_dir: &Path, sources: &[KernelSource], out_dir: &Path) {
    for var in [
        "RESCNN_NVRTC_LIB",
        "RESCNN_REQUIRE_NVRTC",
        "RESCNN_CACHE",
        "HOME",
        "CUDA_HOME",
        "CUDA_PATH",
        "LD_LIBRARY_PATH",
        "RESCNN_GPU_TESTS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(rescnn_nvrtc)");
    println!("cargo::rustc-check-cfg=cfg(rescnn_gpu)");
    emit_gpu_cfg();

    let require = std::env::var("RESCNN_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    let nvrtc = match open_nvrtc() {
        Ok(n) => n,
        Err(reason) => {
            if require {
                fail(&format!(
                    "RESCNN_REQUIRE_NVRTC=1 but NVRTC is unusable: {reason}\n{INSTALL_HINT}."
                ));
            }
            println!("cargo:warning=NVRTC not found: the CUDA kernels are NOT compiled and the CUDA device will refuse to start ({reason}).");
            println!("cargo:warning=To compile them, {INSTALL_HINT}.");
            write_table(out_dir, &Table::Absent(format!("{reason}; {INSTALL_HINT}")));
            return;
        }
    };
    if let Some(path) = &nvrtc.path {
        // Rebuild when the library is replaced (e.g. a newer wheel installed over it).
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let started = Instant::now();
    let include = format!("--include-path={}", kernel_dir.display());
    // Files are compiled on as many threads as there are cores (NVRTC programs are independent, and
    // NVRTC may be called from several threads at once), each thread taking the next file.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sources.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut compiled: Vec<(usize, Result<CompiledModule, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(src) = sources.get(i) else {
                            break done;
                        };
                        done.push((i, compile_module(src, &include, out_dir)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("NVRTC worker thread panicked"))
            .collect()
    });
    compiled.sort_by_key(|(i, _)| *i);
    let mut modules = Vec::new();
    let mut errors = Vec::new();
    for (_, result) in compiled {
        match result {
            Ok(m) => modules.push(m),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        fail(&errors.join("\n\n"));
    }
    let compile_ms = started.elapsed().as_millis() as u64;
    for m in &modules {
        for line in &m.warnings {
            println!("cargo:warning={line}");
        }
    }
    write_table(
        out_dir,
        &Table::Compiled {
            version: nvrtc.version,
            library: nvrtc.description.clone(),
            compile_ms,
            modules,
        },
    );
    println!("cargo:rustc-cfg=rescnn_nvrtc");
    drop(nvrtc);
}

/// Print `message` (the build script's stderr is shown in full when it fails) and fail the build.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// `rescnn_gpu`: an NVIDIA GPU is visible to this machine, so the GPU tests are not ignored.
/// `RESCNN_GPU_TESTS=1` forces them on (e.g. in a container that hides /proc/driver), `=0` off.
fn emit_gpu_cfg() {
    let visible = match std::env::var("RESCNN_GPU_TESTS").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => {
            Path::new("/dev/nvidia0").exists()
                || std::fs::read_dir("/proc/driver/nvidia/gpus")
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false)
        }
    };
    if visible {
        println!("cargo:rustc-cfg=rescnn_gpu");
    }
}

// ---- locating NVRTC ------------------------------------------------------------------------------

struct Nvrtc {
    /// Kept open for the whole build: cudarc's bare-name lookups resolve to it.
    _library: Option<libloading::Library>,
    /// The file we opened by path, when we did.
    path: Option<PathBuf>,
    /// How it was found, for `rescnn info`.
    description: String,
    version: (i32, i32),
}

/// The NVRTC file inside `dir`, a CUDA toolkit lib folder or a `pip install --target` folder.
fn nvrtc_in(dir: &Path) -> Option<PathBuf> {
    ["", "nvidia/cuda_nvrtc/lib", "lib", "lib64"]
        .iter()
        .map(|sub| dir.join(sub).join("libnvrtc.so.12"))
        .find(|p| p.is_file())
}

fn open_nvrtc() -> Result<Nvrtc, String> {
    let mut opened: Option<(libloading::Library, PathBuf, String)> = None;
    let mut looked_in: Vec<String> = Vec::new();
    if let Some(setting) = std::env::var_os("RESCNN_NVRTC_LIB") {
        let given = PathBuf::from(&setting);
        let file = if given.is_dir() {
            nvrtc_in(&given)
        } else {
            Some(given.clone())
        };
        let file = file.filter(|f| f.is_file()).unwrap_or_else(|| {
            fail(&format!(
                "RESCNN_NVRTC_LIB={} is neither libnvrtc.so.12 nor a folder holding it (looked in \
                 ., nvidia/cuda_nvrtc/lib, lib, lib64)",
                given.display()
            ))
        });
        // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
        let lib = unsafe { libloading::Library::new(&file) }.unwrap_or_else(|e| {
            fail(&format!(
                "RESCNN_NVRTC_LIB={}: cannot load it: {e}",
                file.display()
            ))
        });
        opened = Some((lib, file, "RESCNN_NVRTC_LIB".into()));
    } else {
        let cache = std::env::var_os("RESCNN_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rescnn")));
        let mut places: Vec<(PathBuf, &str)> = Vec::new();
        if let Some(cache) = cache {
            places.push((cache.join("nvrtc"), "the rescnn cache"));
        }
        for var in ["CUDA_HOME", "CUDA_PATH"] {
            if let Some(root) = std::env::var_os(var) {
                places.push((PathBuf::from(root).join("lib64"), var));
            }
        }
        places.push((PathBuf::from("/usr/local/cuda/lib64"), "/usr/local/cuda"));
        for (dir, what) in places {
            looked_in.push(dir.display().to_string());
            let Some(file) = nvrtc_in(&dir) else { continue };
            // SAFETY: as above.
            match unsafe { libloading::Library::new(&file) } {
                Ok(lib) => {
                    opened = Some((lib, file, what.to_string()));
                    break;
                }
                Err(e) => println!("cargo:warning=skipping {}: {e}", file.display()),
            }
        }
    }

    // SAFETY: only probes whether cudarc can open the library; no NVRTC call is made.
    if !unsafe { sys::is_culib_present() } {
        return Err(match &opened {
            Some((_, file, _)) => format!(
                "{} was loaded but cudarc cannot bind to it (its soname must be libnvrtc.so.12)",
                file.display()
            ),
            None => format!(
                "no libnvrtc.so.12 in {} (RESCNN_NVRTC_LIB unset) nor on the library search path",
                looked_in.join(", ")
            ),
        });
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); both out-pointers are valid.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtcVersion failed: {e}"))?;

    let supported = supported_archs()?;
    let missing: Vec<u32> = ARCHS
        .iter()
        .copied()
        .filter(|a| !supported.contains(&(*a as i32)))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "NVRTC {major}.{minor} cannot target architecture(s) {missing:?} (it supports \
             {supported:?}); CUDA 13 dropped Pascal, so use the CUDA 12 wheel"
        ));
    }
    let (library, path, description) = match opened {
        Some((lib, file, what)) => {
            let d = format!("{} (via {what})", file.display());
            (Some(lib), Some(file), d)
        }
        None => (
            None,
            None,
            "libnvrtc.so.12 from the library search path".to_string(),
        ),
    };
    Ok(Nvrtc {
        _library: library,
        path,
        description,
        version: (major, minor),
    })
}

fn supported_archs() -> Result<Vec<i32>, String> {
    let mut n = 0;
    // SAFETY: NVRTC is loaded; `n` is a valid out-pointer.
    unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .map_err(|e| format!("nvrtcGetNumSupportedArchs failed: {e}"))?;
    let mut archs = vec![0i32; n.max(0) as usize];
    // SAFETY: `archs` has room for the `n` values NVRTC reported.
    unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
        .result()
        .map_err(|e| format!("nvrtcGetSupportedArchs failed: {e}"))?;
    Ok(archs)
}

// ---- compiling -----------------------------------------------------------------------------------

struct CompiledModule {
    module: String,
    source_file: String,
    /// (name, parameters as written in the source, parameter byte sizes read from the PTX)
    entries: Vec<(String, Vec<String>, Vec<u32>)>,
    /// (arch, file under OUT_DIR holding the PTX text)
    ptx: Vec<(u32, PathBuf)>,
    /// (arch, file under OUT_DIR holding the CUBIN, assembler figures per entry point)
    cubins: Vec<(u32, PathBuf, Vec<EntryResources>)>,
    /// Compiler warnings worth a `cargo:warning`.
    warnings: Vec<String>,
}

/// An NVRTC program, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create_program` and is destroyed exactly once, here.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

fn c_bytes(v: Vec<c_char>) -> Vec<u8> {
    v.into_iter().map(|c| c as u8).collect()
}

/// Compile `source` once with `options`; returns (program, log). On failure the error carries the full
/// log.
fn compile(
    source: &KernelSource,
    c_src: &CString,
    target: &str,
    options: &[String],
) -> Result<(Program, String), String> {
    let file_name = source.path.file_name().unwrap().to_string_lossy();
    let name = CString::new(file_name.as_bytes()).unwrap();
    let program = Program(
        nvrtc::create_program(c_src, Some(&name))
            .map_err(|e| format!("{}: nvrtcCreateProgram failed: {e}", source.path.display()))?,
    );
    // SAFETY: `program.0` is a live program created above.
    let status = unsafe { nvrtc::compile_program(program.0, options) };
    // SAFETY: as above.
    let log = unsafe { nvrtc::get_program_log(program.0) }
        .map(c_bytes)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .trim()
                .to_string()
        })
        .unwrap_or_else(|e| format!("(no log: {e})"));
    match status {
        Ok(()) => Ok((program, log)),
        Err(e) => Err(format!(
            "NVRTC failed to compile {} for {target} ({e}); options {options:?}; full log:\n{log}",
            source.path.display()
        )),
    }
}

/// The log lines that deserve a `cargo:warning`.
fn warnings_in(log: &str, source: &KernelSource, target: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("warning") && !l.contains(DEPRECATION_NOTICE))
        .map(|l| format!("{} ({target}): {}", source.path.display(), l.trim()))
        .collect()
}

fn compile_module(
    source: &KernelSource,
    include: &str,
    out_dir: &Path,
) -> Result<CompiledModule, String> {
    let c_src = CString::new(source.text.as_bytes())
        .map_err(|_| format!("{}: contains a NUL byte", source.path.display()))?;
    let common = [
        include.to_string(),
        "--std=c++17".to_string(),
        // Line tables let profilers map SASS back to the .cu lines; they do not change the code.
        "--generate-line-info".to_string(),
    ];
    let dir = out_dir.join("kernels");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut module = CompiledModule {
        module: source.module.clone(),
        source_file: format!(
            "kernels/{}",
            source.path.file_name().unwrap().to_string_lossy()
        ),
        entries: source
            .entries
            .iter()
            .map(|e| {
                let params = e
                    .params
                    .iter()
                    .map(|p| format!("{} {}", p.ty, p.name))
                    .collect();
                (e.name.clone(), params, Vec::new())
            })
            .collect(),
        ptx: Vec::new(),
        cubins: Vec::new(),
        warnings: Vec::new(),
    };

    for &arch in ARCHS {
        // One compilation for the real architecture sm_XY yields both images: the PTX NVRTC produces on
        // the way (byte for byte what `compute_XY` gives: checked with NVRTC 12.9) and the CUBIN the
        // assembler makes of it, with its figures in the log. Half the work of compiling twice.
        let target = format!("sm_{arch}");
        let mut options = common.to_vec();
        options.push(format!("--gpu-architecture={target}"));
        options.push("--ptxas-options=-v".to_string());
        let (program, log) = compile(source, &c_src, &target, &options)?;
        module.warnings.extend(warnings_in(&log, source, &target));

        // SAFETY: `program` compiled successfully, so its PTX is available.
        let ptx = unsafe { nvrtc::get_ptx(program.0) }
            .map_err(|e| format!("{}: nvrtcGetPTX: {e}", source.path.display()))?;
        let mut ptx = c_bytes(ptx);
        while ptx.last() == Some(&0) {
            ptx.pop();
        }
        let text = String::from_utf8_lossy(&ptx);
        for (name, params, sizes) in &mut module.entries {
            let found = ptx_signature::param_sizes(&text, name)
                .map_err(|e| format!("{} ({target}): {e}", source.path.display()))?;
            if found.len() != params.len() {
                return Err(format!(
                    "{} ({target}): kernel {name} has {} parameters in the source but {} in the PTX",
                    source.path.display(),
                    params.len(),
                    found.len()
                ));
            }
            if !sizes.is_empty() && *sizes != found {
                return Err(format!(
                    "{} ({target}): kernel {name} parameter sizes {found:?} differ from {sizes:?} on another architecture",
                    source.path.display()
                ));
            }
            *sizes = found;
        }
        let file = dir.join(format!("{}.compute_{arch}.ptx", source.module));
        std::fs::write(&file, &ptx).map_err(|e| format!("{}: {e}", file.display()))?;
        module.ptx.push((arch, file));

        let mut size = 0usize;
        // SAFETY: `program` compiled successfully for a real architecture; `size` is a valid out-pointer.
        unsafe { sys::nvrtcGetCUBINSize(program.0, &mut size) }
            .result()
            .map_err(|e| format!("{}: nvrtcGetCUBINSize: {e}", source.path.display()))?;
        let mut cubin = vec![0u8; size];
        // SAFETY: `cubin` has the `size` bytes NVRTC asked for.
        unsafe { sys::nvrtcGetCUBIN(program.0, cubin.as_mut_ptr() as *mut c_char) }
            .result()
            .map_err(|e| format!("{}: nvrtcGetCUBIN: {e}", source.path.display()))?;
        let file = dir.join(format!("{}.{target}.cubin", source.module));
        std::fs::write(&file, &cubin).map_err(|e| format!("{}: {e}", file.display()))?;
        let resources = ptxas_log::parse(&log).map_err(|e| {
            format!(
                "{} ({target}): {e}; full log:\n{log}",
                source.path.display()
            )
        })?;
        for (entry, _, _) in &module.entries {
            if !resources.iter().any(|r| &r.entry == entry) {
                return Err(format!(
                    "{} ({target}): the assembler reported nothing for entry point `{entry}` \
                     (is it really `extern \"C\" __global__`?); full log:\n{log}",
                    source.path.display()
                ));
            }
        }
        let errors = ptxas_log::gemm_spill_errors(
            &source.path.display().to_string(),
            &source.text,
            &target,
            &resources,
        );
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        for r in resources.iter().filter(|r| r.spills()) {
            module.warnings.push(format!(
                "{} ({target}): kernel {} spills ({} bytes stored, {} loaded)",
                source.path.display(),
                r.entry,
                r.spill_store_bytes,
                r.spill_load_bytes
            ));
        }
        module.cubins.push((arch, file, resources));
    }
    Ok(module)
}

// ---- the generated table -------------------------------------------------------------------------

enum Table {
    Absent(String),
    Compiled {
        version: (i32, i32),
        library: String,
        compile_ms: u64,
        modules: Vec<CompiledModule>,
    },
}

fn write_table(out_dir: &Path, table: &Table) {
    let mut s = String::from("// @generated by build/nvrtc.rs: the kernels compiled by NVRTC.\n\n");
    match table {
        Table::Absent(reason) => {
            writeln!(
                s,
                "pub static KERNELS: EmbeddedKernels = EmbeddedKernels {{\n    nvrtc: NvrtcBuild::Absent {{ reason: {reason:?} }},\n    modules: &[],\n}};"
            )
            .unwrap();
        }
        Table::Compiled {
            version,
            library,
            compile_ms,
            modules,
        } => {
            writeln!(
                s,
                "pub static KERNELS: EmbeddedKernels = EmbeddedKernels {{\n    nvrtc: NvrtcBuild::Compiled {{ version: ({}, {}), library: {library:?}, compile_ms: {compile_ms} }},\n    modules: &[",
                version.0, version.1
            )
            .unwrap();
            for m in modules {
                writeln!(
                    s,
                    "        EmbeddedModule {{\n            module: {:?},\n            source_file: {:?},\n            entries: &[",
                    m.module, m.source_file
                )
                .unwrap();
                for (name, params, sizes) in &m.entries {
                    writeln!(
                        s,
                        "                EmbeddedEntry {{ name: {name:?}, params: &{params:?}, param_sizes: &{sizes:?} }},"
                    )
                    .unwrap();
                }
                s.push_str("            ],\n            ptx: &[\n");
                for (arch, file) in &m.ptx {
                    writeln!(
                        s,
                        "                PtxImage {{ arch: {arch}, text: include_str!({:?}) }},",
                        file.to_string_lossy()
                    )
                    .unwrap();
                }
                s.push_str("            ],\n            cubins: &[\n");
                for (arch, file, resources) in &m.cubins {
                    writeln!(
                        s,
                        "                CubinImage {{\n                    arch: {arch},\n                    image: include_bytes!({:?}),\n                    resources: &[",
                        file.to_string_lossy()
                    )
                    .unwrap();
                    for r in resources {
                        writeln!(
                            s,
                            "                        KernelResources {{ entry: {:?}, registers: {}, barriers: {}, shared_bytes: {}, const_bytes: {}, stack_frame_bytes: {}, spill_store_bytes: {}, spill_load_bytes: {} }},",
                            r.entry, r.registers, r.barriers, r.shared_bytes, r.const_bytes,
                            r.stack_frame_bytes, r.spill_store_bytes, r.spill_load_bytes
                        )
                        .unwrap();
                    }
                    s.push_str("                    ],\n                },\n");
                }
                s.push_str("            ],\n        },\n");
            }
            s.push_str("    ],\n};\n");
        }
    }
    let path = out_dir.join("cuda_kernels.rs");
    // Write only on change, so an unchanged table does not make rustc's dependency tracking rebuild.
    if std::fs::read_to_string(&path).ok().as_deref() != Some(s.as_str()) {
        std::fs::write(&path, s).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    }
}
