//! Finds `kernels/*.cu` and reads the `extern "C" __global__` entry points out of them, so that both
//! the NVRTC build and the emulated device's registration come from the sources themselves and never
//! from a hand-kept list.

use std::path::{Path, PathBuf};

/// One `.cu` file: its module name (the file stem) and its entry points.
#[derive(Debug, Clone)]
pub struct KernelSource {
    pub path: PathBuf,
    pub module: String,
    pub text: String,
    pub entries: Vec<EntryPoint>,
}

/// One `extern "C" __global__ void name(params)` kernel.
#[derive(Debug, Clone)]
pub struct EntryPoint {
    pub name: String,
    pub params: Vec<Param>,
}

/// One kernel parameter: its C type as written (e.g. `const float* __restrict__`, `ConvGeom`) and name.
#[derive(Debug, Clone)]
pub struct Param {
    pub ty: String,
    pub name: String,
}

/// Every `.cu` file in `dir`, sorted by name, with its entry points.
pub fn discover(dir: &Path) -> Result<Vec<KernelSource>, String> {
    let mut sources = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in listing {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("cu") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let entries = parse_entry_points(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        sources.push(KernelSource {
            path,
            module,
            text,
            entries,
        });
    }
    sources.sort_by(|a, b| a.module.cmp(&b.module));
    Ok(sources)
}

/// Remove `//` and `/* */` comments (string literals do not occur in kernel signatures).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Parse every `extern "C" __global__ [__launch_bounds__(..)] void name(params)` in `text`.
pub fn parse_entry_points(text: &str) -> Result<Vec<EntryPoint>, String> {
    let code = strip_comments(text);
    let marker = "extern \"C\" __global__";
    let mut entries = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let open = rest
            .find('(')
            .ok_or("entry point without a parameter list")?;
        let mut head = rest[..open].trim().to_string();
        // `__launch_bounds__(...)` has its own parentheses and may stand before or after `void`:
        // drop it and look for the parameter list after it.
        let mut after_head = open;
        if head.ends_with("__launch_bounds__") {
            let close = matching_paren(rest, open)?;
            let next_open = rest[close..]
                .find('(')
                .ok_or("entry point without a parameter list")?
                + close;
            head = format!(
                "{} {}",
                head.trim_end_matches("__launch_bounds__"),
                rest[close + 1..next_open].trim()
            );
            after_head = next_open;
        }
        let head = head.split_whitespace().collect::<Vec<_>>().join(" ");
        let name = head
            .strip_prefix("void")
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                format!("cannot read the kernel name from `{head}` (expected `void name`)")
            })?
            .to_string();
        let close = matching_paren(rest, after_head)?;
        let params = parse_params(&rest[after_head + 1..close])
            .map_err(|e| format!("kernel {name}: {e}"))?;
        entries.push(EntryPoint { name, params });
        rest = &rest[close..];
    }
    Ok(entries)
}

fn matching_paren(s: &str, open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(open + i);
                }
            }
            _ => {}
        }
    }
    Err("unbalanced parentheses in a kernel signature".into())
}

fn parse_params(list: &str) -> Result<Vec<Param>, String> {
    let list = list.trim();
    if list.is_empty() || list == "void" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|p| {
            let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
            let split = p
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .ok_or_else(|| format!("parameter `{p}` has no type"))?;
            let (ty, name) = (p[..=split].trim(), p[split + 1..].trim());
            if name.is_empty() || ty.is_empty() {
                return Err(format!("cannot read parameter `{p}`"));
            }
            Ok(Param {
                ty: ty.to_string(),
                name: name.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_bounds_may_stand_before_or_after_void() {
        let src = r#"
            extern "C" __global__ __launch_bounds__(256) void a(const float* __restrict__ x, // (N)
                                                                 PoolGeom g) {}
            extern "C" __global__ void __launch_bounds__(64, 2) b(int n) {}
            /* extern "C" __global__ void commented_out(int n) {} */
            extern "C" __global__ void c() {}
        "#;
        let entries = parse_entry_points(src).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(entries[0].params[0].ty, "const float* __restrict__");
        assert_eq!(entries[0].params[1].name, "g");
        assert_eq!(entries[1].params.len(), 1);
        assert!(entries[2].params.is_empty());
    }
}
