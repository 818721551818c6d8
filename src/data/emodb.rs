//! EMO-DB (Berlin Database of Emotional Speech): `SSTTTEV.wav` files in one folder (sub-folders are
//! searched too): speaker (2 digits), text code (letter + 2 digits), emotion letter, version letter,
//! e.g. `03a01Wa.wav` = speaker 03, text a01, anger (Wut), version a.
//!
//! Emotion letters (German initials): W anger (Wut), L boredom (Langeweile), E disgust (Ekel),
//! A fear (Angst), F happiness (Freude), T sadness (Trauer), N neutral.

use std::path::{Path, PathBuf};

use super::{
    finish_load, relative_id, wav_files, BadFile, Candidate, Corpus, LoadOptions, EMOTIONS,
};
use crate::{Error, Result};

/// Environment variable that locates the EMO-DB development folder for tests, benches and the
/// trainer's defaults.
pub const DIR_ENV: &str = "RESCNN_EMODB_DIR";

/// The EMO-DB development folder: `$RESCNN_EMODB_DIR`, else `../shared/data/emodb-dev` beside the
/// repository (the rule `build.rs` uses to decide whether the EMO-DB tests run).
pub fn default_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/emodb-dev"),
    }
}

/// The class index (into [`EMOTIONS`]) of an EMO-DB emotion letter.
pub fn emotion_of_letter(letter: char) -> Option<usize> {
    let name = match letter {
        'W' => "anger",
        'L' => "boredom",
        'E' => "disgust",
        'A' => "fear",
        'F' => "happiness",
        'T' => "sadness",
        'N' => "neutral",
        _ => return None,
    };
    super::emotion_index(name)
}

/// The parts of an EMO-DB file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmodbName {
    pub speaker: String,
    pub text: String,
    pub label: usize,
    pub version: char,
}

/// Parse `SSTTTEV` (the file stem), or say what is wrong with it.
pub fn parse_name(stem: &str) -> std::result::Result<EmodbName, String> {
    let c: Vec<char> = stem.chars().collect();
    let expected = "expected SSTTTEV.wav: 2-digit speaker, text code (letter + 2 digits), emotion letter W/L/E/A/F/T/N, version letter";
    if c.len() != 7 {
        return Err(format!(
            "name '{stem}' has {} characters; {expected}",
            c.len()
        ));
    }
    let ok = c[0].is_ascii_digit()
        && c[1].is_ascii_digit()
        && c[2].is_ascii_lowercase()
        && c[3].is_ascii_digit()
        && c[4].is_ascii_digit()
        && c[6].is_ascii_lowercase();
    if !ok {
        return Err(format!(
            "name '{stem}' does not follow the convention; {expected}"
        ));
    }
    let label = emotion_of_letter(c[5]).ok_or_else(|| {
        format!(
            "unknown emotion letter '{}' in '{stem}'; expected one of W L E A F T N",
            c[5]
        )
    })?;
    Ok(EmodbName {
        speaker: c[0..2].iter().collect(),
        text: c[2..5].iter().collect(),
        label,
        version: c[6],
    })
}

/// Load every `.wav` under `dir` as EMO-DB. Names that break the convention and files that do not
/// decode are all reported together (or left out with `opts.skip_bad`).
pub fn load(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Corpus> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            "EMO-DB folder not found (set RESCNN_EMODB_DIR or pass the path)",
        ));
    }
    let mut candidates = Vec::new();
    let mut bad = Vec::new();
    for path in wav_files(dir)? {
        let stem = crate::fsutil::file_stem_lossy(&path);
        match parse_name(&stem) {
            Ok(n) => candidates.push(Candidate {
                id: relative_id(dir, &path),
                path,
                label: n.label,
                speaker: n.speaker,
            }),
            Err(problem) => bad.push(BadFile { path, problem }),
        }
    }
    let classes = EMOTIONS.iter().map(|s| s.to_string()).collect();
    finish_load(
        format!("EMO-DB ({})", dir.display()),
        dir,
        classes,
        candidates,
        bad,
        opts,
    )
}
