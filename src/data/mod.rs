//! Data: corpora ([`emodb`], [`ravdess`], [`folders`], CSV [`manifest`]s and the built-in
//! [`synth`]etic corpus), [`split`]s, the on-disk feature [`cache`], [`augment`]ation and
//! [`batch`]ing for the trainer with input [`norm`]alisation.
//!
//! A [`Corpus`] is a list of [`Utterance`]s (audio source, class index, speaker) plus its class
//! names. All seven-emotion corpora share one class order, [`EMOTIONS`], so a model trained on one
//! can be evaluated on another.

pub mod augment;
pub mod batch;
pub mod cache;
pub mod crops;
pub mod emodb;
pub mod folders;
pub mod manifest;
pub mod mixup;
pub mod norm;
pub mod ravdess;
mod render;
pub mod speaker_norm;
pub mod split;
pub mod synth;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::{Error, Result};

pub use augment::AugmentConfig;
pub use batch::{Batch, BatchConfig, Batcher};
pub use cache::{CacheOptions, FeatureStore};
pub use crops::EvalTime;
pub use norm::{InputNorm, InputNormMode, Normalization};
pub use speaker_norm::SpeakerNorm;
pub use split::Split;
pub use synth::SynthConfig;

/// The project's canonical class order: EMO-DB's seven emotions. Class index `i` of every
/// seven-emotion corpus, model output and confusion matrix is `EMOTIONS[i]`.
pub const EMOTIONS: [&str; 7] = [
    "anger",
    "boredom",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "neutral",
];

/// Index of an emotion name in [`EMOTIONS`].
pub fn emotion_index(name: &str) -> Option<usize> {
    EMOTIONS.iter().position(|&e| e == name)
}

/// Where an utterance's audio comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A WAV file.
    File(PathBuf),
    /// Samples held in memory (the synthetic corpus), mono, at `rate` Hz.
    Samples { samples: Arc<Vec<f32>>, rate: u32 },
}

#[derive(Clone, Debug)]
pub struct Utterance {
    /// Stable name, unique in the corpus: the path relative to the corpus root, or the synthetic
    /// utterance's name. Split files refer to utterances by it.
    pub id: String,
    pub source: Source,
    /// Index into [`Corpus::classes`].
    pub label: usize,
    pub speaker: String,
    pub duration_s: f64,
}

impl Utterance {
    /// Decoded mono audio at its own rate.
    pub fn audio(&self) -> Result<crate::audio::Audio> {
        match &self.source {
            Source::File(p) => crate::audio::read_wav(p),
            Source::Samples { samples, rate } => Ok(crate::audio::Audio {
                samples: samples.as_ref().clone(),
                sample_rate: *rate,
            }),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Corpus {
    /// What was loaded, for messages ("EMO-DB at /data/emodb").
    pub name: String,
    pub classes: Vec<String>,
    pub utterances: Vec<Utterance>,
}

/// Options shared by the loaders.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Leave bad files out (listing them on stderr) instead of failing the load.
    pub skip_bad: bool,
}

impl Corpus {
    pub fn len(&self) -> usize {
        self.utterances.len()
    }
    pub fn is_empty(&self) -> bool {
        self.utterances.is_empty()
    }

    /// Speakers in sorted order.
    pub fn speakers(&self) -> Vec<String> {
        let mut s: Vec<String> = self.utterances.iter().map(|u| u.speaker.clone()).collect();
        s.sort();
        s.dedup();
        s
    }

    /// Utterances per class, indexed like `classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for u in &self.utterances {
            c[u.label] += 1;
        }
        c
    }

    /// Index of the utterance with this id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.utterances.iter().position(|u| u.id == id)
    }

    pub fn summary(&self) -> Summary {
        let mut per_speaker: BTreeMap<String, usize> = BTreeMap::new();
        for u in &self.utterances {
            *per_speaker.entry(u.speaker.clone()).or_default() += 1;
        }
        Summary {
            name: self.name.clone(),
            classes: self
                .classes
                .iter()
                .cloned()
                .zip(self.class_counts())
                .collect(),
            speakers: per_speaker.into_iter().collect(),
            total_s: self.utterances.iter().map(|u| u.duration_s).sum(),
            utterances: self.len(),
        }
    }
}

/// Utterances per class and speaker, and total duration; `Display` prints it as a short table.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub name: String,
    pub utterances: usize,
    pub classes: Vec<(String, usize)>,
    pub speakers: Vec<(String, usize)>,
    pub total_s: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.total_s / 60.0;
        writeln!(
            f,
            "{}: {} utterances, {} speakers, {:.1} min ({:.2} s mean)",
            self.name,
            self.utterances,
            self.speakers.len(),
            minutes,
            self.total_s / self.utterances.max(1) as f64
        )?;
        write!(f, "  per class:  ")?;
        for (i, (c, n)) in self.classes.iter().enumerate() {
            write!(f, "{}{c} {n}", if i > 0 { ", " } else { "" })?;
        }
        writeln!(f)?;
        write!(f, "  per speaker:")?;
        for (i, (s, n)) in self.speakers.iter().enumerate() {
            write!(f, "{}{s} {n}", if i > 0 { ", " } else { " " })?;
        }
        Ok(())
    }
}

/// A file a loader could not use, and why.
#[derive(Clone, Debug)]
pub struct BadFile {
    pub path: PathBuf,
    pub problem: String,
}

/// One candidate found by a loader's file-name parser, before its audio has been checked.
pub(crate) struct Candidate {
    pub path: PathBuf,
    pub id: String,
    pub label: usize,
    pub speaker: String,
}

/// Check every candidate's audio (in parallel) and build the corpus; every bad file, from the
/// name parser (`bad`) or the decoder, is reported together at the end.
pub(crate) fn finish_load(
    name: String,
    root: &Path,
    classes: Vec<String>,
    candidates: Vec<Candidate>,
    mut bad: Vec<BadFile>,
    opts: &LoadOptions,
) -> Result<Corpus> {
    let checked: Vec<std::result::Result<Utterance, BadFile>> = candidates
        .into_par_iter()
        .map(|c| match crate::audio::read_wav(&c.path) {
            Ok(a) => Ok(Utterance {
                id: c.id,
                duration_s: a.duration_s(),
                source: Source::File(c.path),
                label: c.label,
                speaker: c.speaker,
            }),
            Err(e) => Err(BadFile {
                path: c.path,
                problem: problem_text(&e),
            }),
        })
        .collect();
    let mut utterances = Vec::with_capacity(checked.len());
    for r in checked {
        match r {
            Ok(u) => utterances.push(u),
            Err(b) => bad.push(b),
        }
    }
    bad.sort_by(|a, b| a.path.cmp(&b.path));
    if !bad.is_empty() {
        let list: String = bad
            .iter()
            .map(|b| format!("\n  {}: {}", b.path.display(), b.problem))
            .collect();
        if !opts.skip_bad {
            return Err(Error::data(
                root,
                format!(
                    "{} bad file(s) in {name} (pass --skip-bad to leave them out):{list}",
                    bad.len()
                ),
            ));
        }
        eprintln!(
            "warning: left out {} bad file(s) of {name}:{list}",
            bad.len()
        );
    }
    if utterances.is_empty() {
        return Err(Error::data(
            root,
            format!("no usable utterances found for {name}"),
        ));
    }
    utterances.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Corpus {
        name,
        classes,
        utterances,
    })
}

/// An error's message without the file name (the bad-file list prints the name itself).
fn problem_text(e: &Error) -> String {
    match e {
        Error::Data { message, .. } => message.clone(),
        Error::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// `.wav` files (any case) under `dir`, recursively, sorted. Symbolic links are followed (a corpus
/// may be assembled from links to folders); each real folder is read once, which also ends loops.
pub(crate) fn wav_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let real = std::fs::canonicalize(&d).map_err(|e| Error::io(&d, e))?;
        if !seen.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            let mut ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_symlink() {
                // A dangling link stays a link: a `.wav` one is then reported as a bad file.
                if let Ok(target) = std::fs::metadata(&path) {
                    ft = target.file_type();
                }
            }
            if ft.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("wav"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path` relative to `root` with `/` separators (ids are the same on every OS).
pub(crate) fn relative_id(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Which corpus to load, as written on a command line:
///
/// | text | corpus |
/// |---|---|
/// | `synthetic` or `synthetic:SEED` | the built-in synthetic corpus ([`synth`]) |
/// | `emodb:DIR` (or `emodb` for [`emodb::default_dir`]) | EMO-DB |
/// | `ravdess:DIR` | RAVDESS mapped onto EMO-DB's seven classes |
/// | `ravdess8:DIR` | RAVDESS with its own eight classes |
/// | `folders:DIR` | folder per class |
/// | `manifest:FILE` or any `*.csv` path | CSV manifest |
#[derive(Clone, Debug, PartialEq)]
pub enum CorpusSpec {
    Synthetic(SynthConfig),
    Emodb(PathBuf),
    Ravdess {
        dir: PathBuf,
        labels: ravdess::RavdessLabels,
    },
    Folders(PathBuf),
    Manifest(PathBuf),
}

impl std::str::FromStr for CorpusSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let path = |what: &str| {
            arg.filter(|a| !a.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| crate::config_err!("corpus '{s}': expected {what}:PATH"))
        };
        Ok(match kind {
            "synthetic" => {
                let seed = match arg {
                    Some(a) => a
                        .parse()
                        .map_err(|_| crate::config_err!("corpus '{s}': the seed must be a whole number"))?,
                    None => 0,
                };
                CorpusSpec::Synthetic(SynthConfig { seed, ..SynthConfig::default() })
            }
            "emodb" => CorpusSpec::Emodb(if arg.is_some() { path("emodb")? } else { emodb::default_dir() }),
            "ravdess" => CorpusSpec::Ravdess { dir: path("ravdess")?, labels: ravdess::RavdessLabels::Emodb },
            "ravdess8" => CorpusSpec::Ravdess { dir: path("ravdess8")?, labels: ravdess::RavdessLabels::Native },
            "folders" => CorpusSpec::Folders(path("folders")?),
            "manifest" => CorpusSpec::Manifest(path("manifest")?),
            _ if s.to_ascii_lowercase().ends_with(".csv") => CorpusSpec::Manifest(PathBuf::from(s)),
            _ => {
                return Err(crate::config_err!(
                    "unknown corpus '{s}': expected synthetic[:SEED], emodb[:DIR], ravdess:DIR, ravdess8:DIR, \
                     folders:DIR, manifest:FILE or a .csv file"
                ))
            }
        })
    }
}

impl CorpusSpec {
    /// Load the corpus (checking every file; see [`LoadOptions`]).
    pub fn load(&self, opts: &LoadOptions) -> Result<Corpus> {
        match self {
            CorpusSpec::Synthetic(cfg) => synth::generate(cfg),
            CorpusSpec::Emodb(dir) => emodb::load(dir, opts),
            CorpusSpec::Ravdess { dir, labels } => ravdess::load(
                dir,
                &ravdess::RavdessOptions {
                    labels: *labels,
                    include_song: false,
                    load: opts.clone(),
                },
            ),
            CorpusSpec::Folders(dir) => folders::load(dir, opts),
            CorpusSpec::Manifest(file) => manifest::read(file, opts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A corpus folder made of links to folders is searched through them; a link back up the tree
    /// (a loop) and a second link to one folder read it once.
    #[cfg(unix)]
    #[test]
    fn wav_search_follows_folder_links_once_and_ends_loops() {
        use std::os::unix::fs::symlink;
        let scratch = tempfile::tempdir().unwrap();
        let real = scratch.path().join("real");
        std::fs::create_dir_all(real.join("deeper")).unwrap();
        crate::audio::write_wav_i16(real.join("a.wav"), &[0.1; 160], 16_000).unwrap();
        crate::audio::write_wav_i16(real.join("deeper/b.WAV"), &[0.1; 160], 16_000).unwrap();
        let corpus = scratch.path().join("corpus");
        std::fs::create_dir_all(&corpus).unwrap();
        symlink(&real, corpus.join("speaker1")).unwrap();
        symlink(&real, corpus.join("same-again")).unwrap();
        symlink(&corpus, real.join("deeper/loop")).unwrap();
        let found = wav_files(&corpus).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["a.wav", "b.WAV"], "{found:?}");
    }
}
