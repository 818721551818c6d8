//! CSV manifests: a header line `path,label,speaker`, then one utterance per line. Relative paths are
//! relative to the manifest's folder. Fields may be double-quoted (a quote inside is doubled), so
//! paths with commas work. The class order follows [`super::folders::class_order`].

use std::path::{Path, PathBuf};

use super::{finish_load, BadFile, Candidate, Corpus, LoadOptions, Source};
use crate::{Error, Result};

pub const HEADER: [&str; 3] = ["path", "label", "speaker"];

/// Split one CSV line into fields.
fn parse_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            fields.push(std::mem::take(&mut field));
            at_start = true;
        } else {
            field.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ') {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Read a manifest and check every file it names; all problems (bad lines, missing or undecodable
/// files) are reported together.
pub fn read(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Corpus> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header = match lines.next() {
        Some((_, l)) => parse_line(l).map_err(|e| Error::data(path, format!("line 1: {e}")))?,
        None => {
            return Err(Error::data(
                path,
                "empty manifest (expected a header line path,label,speaker)",
            ))
        }
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if header != HEADER {
        return Err(Error::data(
            path,
            format!(
                "header is '{}', expected 'path,label,speaker'",
                header.join(",")
            ),
        ));
    }
    let mut rows: Vec<(PathBuf, String, String, String)> = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in lines {
        let lineno = i + 1;
        match parse_line(line) {
            Ok(f) if f.len() == 3 && !f[0].trim().is_empty() && !f[1].trim().is_empty() => {
                let p = PathBuf::from(f[0].trim());
                let full = if p.is_absolute() { p } else { base.join(p) };
                let speaker = if f[2].trim().is_empty() { "unknown".to_string() } else { f[2].trim().to_string() };
                rows.push((full, f[0].trim().to_string(), f[1].trim().to_string(), speaker));
            }
            Ok(f) => bad.push(BadFile {
                path: path.to_path_buf(),
                problem: format!("line {lineno}: expected 3 fields path,label,speaker with path and label set, got {}", f.len()),
            }),
            Err(e) => bad.push(BadFile { path: path.to_path_buf(), problem: format!("line {lineno}: {e}") }),
        }
    }
    let classes = super::folders::class_order(rows.iter().map(|r| r.2.as_str()));
    let mut seen = std::collections::HashSet::new();
    let mut candidates = Vec::new();
    for (full, id, label, speaker) in rows {
        if !seen.insert(id.clone()) {
            bad.push(BadFile {
                path: full,
                problem: "listed more than once in the manifest".into(),
            });
            continue;
        }
        let label = classes
            .iter()
            .position(|c| *c == label)
            .expect("class order covers every label");
        candidates.push(Candidate {
            path: full,
            id,
            label,
            speaker,
        });
    }
    finish_load(
        format!("manifest {}", path.display()),
        path,
        classes,
        candidates,
        bad,
        opts,
    )
}

/// Write a manifest of a file-based corpus, atomically. Paths are written relative to the manifest's
/// folder where possible. In-memory utterances (the synthetic corpus) cannot be listed: export them
/// as WAV files first ([`super::synth::export`]).
pub fn write(path: impl AsRef<Path>, corpus: &Corpus) -> Result<()> {
    let path = path.as_ref();
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base_abs = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let mut out = String::from("path,label,speaker\n");
    for u in &corpus.utterances {
        let file = match &u.source {
            Source::File(p) => p,
            Source::Samples { .. } => {
                return Err(Error::data(
                    path,
                    format!(
                    "utterance '{}' has no file (in-memory audio); export the corpus as WAV first",
                    u.id
                ),
                ))
            }
        };
        let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
        let shown = match abs.strip_prefix(&base_abs) {
            Ok(rel) => super::relative_id(Path::new(""), rel),
            Err(_) => abs.display().to_string(),
        };
        out.push_str(&format!(
            "{},{},{}\n",
            quote(&shown),
            quote(&corpus.classes[u.label]),
            quote(&u.speaker)
        ));
    }
    crate::fsutil::write_atomic(path, out.as_bytes())
}
