//! Reads the per-kernel resource figures out of the assembler's verbose log (`--ptxas-options=-v`),
//! which NVRTC returns as the program log when it compiles to a CUBIN. Kept free of any NVRTC call so
//! that a test can feed it recorded logs (tests/build_support.rs).
//!
//! The log has, per entry point, lines of this shape (ptxas 12.9; `cmem` appears only where used):
//! ```text
//! ptxas info    : Compiling entry function 'saxpy' for 'sm_61'
//! ptxas info    : Function properties for saxpy
//! ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//! ptxas info    : Used 7 registers, used 1 barriers, 1024 bytes smem, 348 bytes cmem[0]
//! ```
//! Non-inlined device functions get a "Function properties" block of their own, without a "Used" line.

/// What the assembler reports for one entry point on one real architecture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryResources {
    pub entry: String,
    pub registers: u32,
    /// Named barriers used (`__syncthreads` uses barrier 0).
    pub barriers: u32,
    /// Static shared memory (`__shared__` arrays); dynamic shared memory is a launch parameter.
    pub shared_bytes: u32,
    /// Constant bank 0: kernel parameters and driver-reserved words.
    pub const_bytes: u32,
    pub stack_frame_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

impl EntryResources {
    pub fn spills(&self) -> bool {
        self.spill_store_bytes > 0 || self.spill_load_bytes > 0
    }
}

/// The number written just before `unit` in `line` (e.g. `number_before(l, "registers")`).
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let at = line.find(unit)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

/// The text between the first pair of single quotes after `marker`.
fn quoted_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let open = rest.find('\'')?;
    let close = rest[open + 1..].find('\'')? + open + 1;
    Some(&rest[open + 1..close])
}

/// Every entry point's figures, in log order. Errors if an entry point has no "Used … registers" line
/// (a log format we do not understand must not silently read as zero registers).
pub fn parse(log: &str) -> Result<Vec<EntryResources>, String> {
    let mut entries: Vec<EntryResources> = Vec::new();
    // (function name, stack, spill stores, spill loads) from "Function properties" blocks.
    let mut frames: Vec<(String, u32, u32, u32)> = Vec::new();
    let mut properties_of: Option<String> = None;
    let mut current_entry: Option<usize> = None;
    let mut has_usage: Vec<bool> = Vec::new();

    for line in log.lines() {
        if let Some(name) = quoted_after(line, "Compiling entry function") {
            entries.push(EntryResources {
                entry: name.to_string(),
                ..Default::default()
            });
            has_usage.push(false);
            current_entry = Some(entries.len() - 1);
        } else if let Some(at) = line.find("Function properties for ") {
            properties_of = Some(
                line[at + "Function properties for ".len()..]
                    .trim()
                    .to_string(),
            );
        } else if line.contains("bytes stack frame") {
            let name = properties_of
                .take()
                .ok_or_else(|| format!("stack-frame line without a function: `{line}`"))?;
            frames.push((
                name,
                number_before(line, "bytes stack frame").unwrap_or(0),
                number_before(line, "bytes spill stores").unwrap_or(0),
                number_before(line, "bytes spill loads").unwrap_or(0),
            ));
        } else if line.contains("Used") && line.contains("registers") {
            let Some(i) = current_entry.take() else {
                continue; // a device function's own usage line: not an entry point
            };
            let e = &mut entries[i];
            e.registers = number_before(line, "registers")
                .ok_or_else(|| format!("cannot read the register count in `{line}`"))?;
            e.barriers = number_before(line, "barriers").unwrap_or(0);
            e.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
            e.const_bytes = number_before(line, "bytes cmem[0]").unwrap_or(0);
            has_usage[i] = true;
        }
    }
    for (e, used) in entries.iter_mut().zip(has_usage) {
        if !used {
            return Err(format!(
                "the assembler log names entry `{}` but gives no `Used N registers` line for it",
                e.entry
            ));
        }
        if let Some((_, stack, stores, loads)) = frames.iter().find(|f| f.0 == e.entry) {
            e.stack_frame_bytes = *stack;
            e.spill_store_bytes = *stores;
            e.spill_load_bytes = *loads;
        }
    }
    Ok(entries)
}

/// Whether the entry point `name` of `source` is a tiled-GEMM kernel: its declaration asks for the
/// GEMM block, `__launch_bounds__(gemm::THREADS, ...)` (kernels/gemm_tile.cuh). These run at the
/// 128-register cap their launch bounds allow, where a template change can tip them into spills.
pub fn is_gemm_entry(source: &str, name: &str) -> bool {
    let Some(at) = source.find(&format!("void {name}(")) else {
        return false;
    };
    let declaration = match source[..at].rfind("extern \"C\"") {
        Some(start) => &source[start..at],
        None => return false,
    };
    declaration.contains("__launch_bounds__(gemm::THREADS")
}

/// The build errors for `resources` (one architecture's figures of `file`): one per GEMM kernel that
/// spills, naming the kernel and the architecture. Spills elsewhere stay warnings.
pub fn gemm_spill_errors(
    file: &str,
    source: &str,
    target: &str,
    resources: &[EntryResources],
) -> Vec<String> {
    resources
        .iter()
        .filter(|r| r.spills() && is_gemm_entry(source, &r.entry))
        .map(|r| {
            format!(
                "{file} ({target}): GEMM kernel {} spills registers ({} bytes stored, {} loaded) at its \
                 launch bounds; a spilling GEMM main loop loses much of its speed, so this fails the build \
                 (see `rescnn info --kernels`)",
                r.entry, r.spill_store_bytes, r.spill_load_bytes
            )
        })
        .collect()
}
