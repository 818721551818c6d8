//! A generic folder-per-class corpus:
//!
//! ```text
//! root/<class>/<file>.wav              speaker "unknown"
//! root/<class>/<speaker>/<file>.wav    speaker from the sub-folder
//! ```
//!
//! Class names are the folder names. When they are all EMO-DB emotions the class order is
//! [`EMOTIONS`] (all seven, so indices match every other seven-emotion corpus); otherwise it is the
//! sorted folder names.

use std::path::Path;

use super::{
    finish_load, relative_id, wav_files, BadFile, Candidate, Corpus, LoadOptions, EMOTIONS,
};
use crate::{Error, Result};

/// Speaker name given to files directly inside a class folder.
pub const UNKNOWN_SPEAKER: &str = "unknown";

/// Class order for a set of label names: [`EMOTIONS`] when every name is one of them, else sorted.
pub fn class_order<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = names.into_iter().map(str::to_string).collect();
    names.sort();
    names.dedup();
    if names.iter().all(|n| super::emotion_index(n).is_some()) {
        EMOTIONS.iter().map(|s| s.to_string()).collect()
    } else {
        names
    }
}

pub fn load(root: impl AsRef<Path>, opts: &LoadOptions) -> Result<Corpus> {
    let root = root.as_ref();
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut class_dirs = Vec::new();
    let mut bad = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let path = entry.path();
        if path.is_dir() {
            class_dirs.push((entry.file_name().to_string_lossy().into_owned(), path));
        } else if path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("wav"))
        {
            bad.push(BadFile {
                path,
                problem: "WAV file outside any class folder (expected root/<class>/…)".into(),
            });
        }
    }
    if class_dirs.is_empty() {
        return Err(Error::data(
            root,
            "no class folders found (expected root/<class>/*.wav)",
        ));
    }
    let classes = class_order(class_dirs.iter().map(|(n, _)| n.as_str()));
    let mut candidates = Vec::new();
    for (class, dir) in &class_dirs {
        let label = classes
            .iter()
            .position(|c| c == class)
            .expect("class order covers every folder");
        for path in wav_files(dir)? {
            let rel = path.strip_prefix(dir).expect("found under dir");
            let depth = rel.components().count();
            let speaker = match depth {
                1 => UNKNOWN_SPEAKER.to_string(),
                2 => rel
                    .components()
                    .next()
                    .expect("depth 2")
                    .as_os_str()
                    .to_string_lossy()
                    .into_owned(),
                _ => {
                    bad.push(BadFile {
                        path,
                        problem: "nested too deep (expected root/<class>/[<speaker>/]file.wav)"
                            .into(),
                    });
                    continue;
                }
            };
            candidates.push(Candidate {
                id: relative_id(root, &path),
                path,
                label,
                speaker,
            });
        }
    }
    finish_load(
        format!("folders ({})", root.display()),
        root,
        classes,
        candidates,
        bad,
        opts,
    )
}
