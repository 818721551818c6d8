//! RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song): files named
//! `MM-VV-EE-II-SS-RR-AA.wav`, usually in `Actor_AA/` folders (any layout under the root works):
//! modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song),
//! emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
//! intensity (01 normal, 02 strong), statement (01, 02), repetition (01, 02), actor (01–24).
//!
//! Labels are either RAVDESS's own eight emotions ([`RavdessLabels::Native`], in the order above),
//! or mapped onto EMO-DB's seven ([`RavdessLabels::Emodb`], class order [`EMOTIONS`]):
//! neutral → neutral, **calm → neutral**, happy → happiness, sad → sadness, angry → anger,
//! fearful → fear, disgust → disgust, and **surprised is left out** (EMO-DB has no such class).
//! EMO-DB's boredom has no RAVDESS counterpart and stays empty. Song files are left out unless asked
//! for.

use std::path::Path;

use super::{
    finish_load, relative_id, wav_files, BadFile, Candidate, Corpus, LoadOptions, EMOTIONS,
};
use crate::{Error, Result};

/// RAVDESS's own emotions, in its code order (code = index + 1).
pub const RAVDESS_EMOTIONS: [&str; 8] = [
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RavdessLabels {
    /// Eight classes, [`RAVDESS_EMOTIONS`].
    Native,
    /// EMO-DB's seven classes ([`EMOTIONS`]): calm → neutral, surprised left out.
    Emodb,
}

/// EMO-DB class of a RAVDESS emotion code (1..=8); `None` for surprised.
pub fn emodb_class(code: u8) -> Option<usize> {
    let name = match code {
        1 | 2 => "neutral",
        3 => "happiness",
        4 => "sadness",
        5 => "anger",
        6 => "fear",
        7 => "disgust",
        _ => return None,
    };
    super::emotion_index(name)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RavdessName {
    pub modality: u8,
    pub vocal_channel: u8,
    pub emotion: u8,
    pub intensity: u8,
    pub statement: u8,
    pub repetition: u8,
    pub actor: u8,
}

/// Parse `MM-VV-EE-II-SS-RR-AA` (the file stem), or say what is wrong with it.
pub fn parse_name(stem: &str) -> std::result::Result<RavdessName, String> {
    let expected = "expected MM-VV-EE-II-SS-RR-AA.wav (seven 2-digit fields)";
    let fields: Vec<&str> = stem.split('-').collect();
    if fields.len() != 7
        || fields
            .iter()
            .any(|f| f.len() != 2 || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "name '{stem}' does not follow the convention; {expected}"
        ));
    }
    let v: Vec<u8> = fields
        .iter()
        .map(|f| f.parse().expect("two digits"))
        .collect();
    let check = |x: u8, lo: u8, hi: u8, what: &str| {
        if x < lo || x > hi {
            Err(format!(
                "{what} code {x:02} in '{stem}' is outside {lo:02}..{hi:02}"
            ))
        } else {
            Ok(())
        }
    };
    check(v[0], 1, 3, "modality")?;
    check(v[1], 1, 2, "vocal channel")?;
    check(v[2], 1, 8, "emotion")?;
    check(v[3], 1, 2, "intensity")?;
    check(v[4], 1, 2, "statement")?;
    check(v[5], 1, 2, "repetition")?;
    check(v[6], 1, 99, "actor")?;
    Ok(RavdessName {
        modality: v[0],
        vocal_channel: v[1],
        emotion: v[2],
        intensity: v[3],
        statement: v[4],
        repetition: v[5],
        actor: v[6],
    })
}

#[derive(Clone, Debug)]
pub struct RavdessOptions {
    pub labels: RavdessLabels,
    /// Also load sung utterances (vocal channel 02).
    pub include_song: bool,
    pub load: LoadOptions,
}

impl Default for RavdessOptions {
    fn default() -> Self {
        RavdessOptions {
            labels: RavdessLabels::Emodb,
            include_song: false,
            load: LoadOptions::default(),
        }
    }
}

/// Load every `.wav` under `dir` as RAVDESS. Speakers are named `actor01` … `actor24`.
pub fn load(dir: impl AsRef<Path>, opts: &RavdessOptions) -> Result<Corpus> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Error::data(dir, "RAVDESS folder not found"));
    }
    let mut candidates = Vec::new();
    let mut bad = Vec::new();
    for path in wav_files(dir)? {
        let stem = crate::fsutil::file_stem_lossy(&path);
        let name = match parse_name(&stem) {
            Ok(n) => n,
            Err(problem) => {
                bad.push(BadFile { path, problem });
                continue;
            }
        };
        if name.modality == 2 {
            bad.push(BadFile {
                path,
                problem: "modality 02 is video-only: a .wav should not carry it".into(),
            });
            continue;
        }
        if name.vocal_channel == 2 && !opts.include_song {
            continue;
        }
        let label = match opts.labels {
            RavdessLabels::Native => Some(name.emotion as usize - 1),
            RavdessLabels::Emodb => emodb_class(name.emotion),
        };
        if let Some(label) = label {
            candidates.push(Candidate {
                id: relative_id(dir, &path),
                path,
                label,
                speaker: format!("actor{:02}", name.actor),
            });
        }
    }
    let classes = match opts.labels {
        RavdessLabels::Native => RAVDESS_EMOTIONS.iter().map(|s| s.to_string()).collect(),
        RavdessLabels::Emodb => EMOTIONS.iter().map(|s| s.to_string()).collect(),
    };
    finish_load(
        format!("RAVDESS ({})", dir.display()),
        dir,
        classes,
        candidates,
        bad,
        &opts.load,
    )
}
