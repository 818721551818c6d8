//! Reads an entry point's parameter sizes from PTX, e.g.
//! ```text
//! .visible .entry saxpy(
//!     .param .f32 saxpy_param_0,
//!     .param .u64 .ptr .global .align 4 saxpy_param_1,
//!     .param .align 4 .b8 saxpy_param_2[52]
//! )
//! ```
//! gives [4, 8, 52]. The CUDA device checks every launch's packed arguments against these sizes, so a
//! wrapper that pushes arguments that do not match the compiled kernel gets an error instead of
//! undefined behaviour. Free of NVRTC calls so tests can feed it text (tests/build_support.rs).

/// Byte size of each parameter of entry point `name` in `ptx`, or an error if `ptx` has no such entry
/// or a parameter declaration we cannot read.
pub fn param_sizes(ptx: &str, name: &str) -> Result<Vec<u32>, String> {
    let marker = format!(".entry {name}(");
    let start = ptx
        .find(&marker)
        .ok_or_else(|| format!("the PTX has no `.entry {name}`"))?
        + marker.len();
    let end = ptx[start..]
        .find(')')
        .ok_or_else(|| format!("unterminated parameter list of `.entry {name}`"))?
        + start;
    ptx[start..end]
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| param_size(p).ok_or_else(|| format!("cannot size PTX parameter `{p}` of {name}")))
        .collect()
}

fn param_size(decl: &str) -> Option<u32> {
    let words: Vec<&str> = decl.split_whitespace().collect();
    if words.first() != Some(&".param") {
        return None;
    }
    let scalar = words.iter().find_map(|w| match *w {
        ".b8" | ".u8" | ".s8" => Some(1),
        ".b16" | ".u16" | ".s16" | ".f16" => Some(2),
        ".b32" | ".u32" | ".s32" | ".f32" => Some(4),
        ".b64" | ".u64" | ".s64" | ".f64" => Some(8),
        _ => None,
    })?;
    // An aggregate passed by value is a byte array: `name[52]`.
    let last = words.last()?;
    let count = match (last.find('['), last.ends_with(']')) {
        (Some(open), true) => last[open + 1..last.len() - 1].parse().ok()?,
        (None, false) => 1,
        _ => return None,
    };
    Some(scalar * count)
}
