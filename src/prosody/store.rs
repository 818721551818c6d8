//! The prosody vectors of a corpus ([`super::vector`]): computed once per utterance
//! (in parallel) from the unperturbed audio at the analysis rate, cached on disk, and
//! z-normalised per entry like the network's image input: with the training utterances'
//! statistics, or with each speaker's own (labels never read).
//!
//! # Disk cache
//! One file per utterance in `<dir>/prosody-v1/`, named by an FNV-1a hash of the audio content,
//! the analysis rate, the [`ProsodyConfig`] (as JSON), the feature list and the format version, so
//! a change to any of them misses the cache instead of reading stale values. A file is a magic
//! tag, the vector length and the values as little-endian f32, written atomically.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::stats::mean_std;
use super::vector::{prosody_vector, ProsodyConfig};
use crate::data::cache::{BuildStats, CacheOptions, Fnv};
use crate::data::norm::InputNormMode;
use crate::data::{Corpus, Source, Utterance};
use crate::{config_err, Error, Result};

const MAGIC: &[u8; 8] = b"RSCNPRS1";
const SUBDIR: &str = "prosody-v1";

/// Prosody vectors of every utterance of a corpus (corpus order).
pub struct ProsodyStore {
    cfg: ProsodyConfig,
    vectors: Vec<Vec<f32>>,
    pub stats: BuildStats,
}

impl ProsodyStore {
    /// Compute (or read from the disk cache) every utterance's vector at `sample_rate`; all
    /// unreadable files are reported together.
    pub fn build(
        corpus: &Corpus,
        cfg: &ProsodyConfig,
        sample_rate: u32,
        opts: &CacheOptions,
    ) -> Result<Self> {
        cfg.pitch.validate(sample_rate)?;
        let cfg_json = serde_json::to_string(cfg).expect("ProsodyConfig serialises");
        let dir = opts.dir.as_ref().map(|d| d.join(SUBDIR));
        let results: Vec<Result<(Vec<f32>, bool)>> = corpus
            .utterances
            .par_iter()
            .map(|u| vector_of(u, cfg, &cfg_json, sample_rate, dir.as_deref()))
            .collect();
        let mut vectors = Vec::with_capacity(results.len());
        let mut stats = BuildStats::default();
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok((v, loaded)) => {
                    if loaded {
                        stats.loaded += 1;
                    } else {
                        stats.computed += 1;
                    }
                    vectors.push(v);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Data {
                path: None,
                message: format!(
                    "{} utterance(s) of {} have no prosody vector:\n  {}",
                    errors.len(),
                    corpus.name,
                    errors.join("\n  ")
                ),
            });
        }
        Ok(ProsodyStore {
            cfg: cfg.clone(),
            vectors,
            stats,
        })
    }

    /// A store of ready vectors (tests, or vectors computed elsewhere); all of length
    /// [`ProsodyConfig::vector_len`].
    pub fn from_vectors(cfg: &ProsodyConfig, vectors: Vec<Vec<f32>>) -> Result<Self> {
        if let Some(bad) = vectors.iter().position(|v| v.len() != cfg.vector_len()) {
            return Err(config_err!(
                "prosody vector {bad} has {} values, expected {}",
                vectors[bad].len(),
                cfg.vector_len()
            ));
        }
        Ok(ProsodyStore {
            cfg: cfg.clone(),
            vectors,
            stats: BuildStats::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }
    pub fn config(&self) -> &ProsodyConfig {
        &self.cfg
    }
    /// Utterance `utterance`'s raw vector ([`ProsodyConfig::names`] order).
    pub fn vector(&self, utterance: usize) -> &[f32] {
        &self.vectors[utterance]
    }
}

fn vector_of(
    u: &Utterance,
    cfg: &ProsodyConfig,
    cfg_json: &str,
    sample_rate: u32,
    dir: Option<&Path>,
) -> Result<(Vec<f32>, bool)> {
    let mut key = Fnv::new();
    key.write(MAGIC);
    key.write(cfg_json.as_bytes());
    key.write(cfg.names().join(",").as_bytes());
    key.write(&sample_rate.to_le_bytes());
    let (audio, name) = match &u.source {
        Source::File(p) => {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            key.write(&bytes);
            (Err(bytes), p.clone())
        }
        Source::Samples { samples, rate } => {
            key.write(&rate.to_le_bytes());
            key.write(bytemuck::cast_slice(samples.as_slice()));
            (
                Ok(crate::audio::Audio {
                    samples: samples.as_ref().clone(),
                    sample_rate: *rate,
                }),
                PathBuf::from(&u.id),
            )
        }
    };
    let file = dir.map(|d| d.join(format!("{:016x}.prosody", key.0)));
    if let Some(f) = &file {
        if let Some(v) = std::fs::read(f)
            .ok()
            .and_then(|b| decode(&b, cfg.vector_len()))
        {
            return Ok((v, true));
        }
    }
    let audio = match audio {
        Ok(a) => a,
        Err(bytes) => crate::audio::decode_wav_bytes(&bytes, &name)?,
    };
    let samples = crate::audio::resample(&audio.samples, audio.sample_rate, sample_rate)
        .map_err(|e| Error::data(&name, e.to_string()))?;
    let v = prosody_vector(&samples, sample_rate, cfg)
        .map_err(|e| Error::data(&name, e.to_string()))?;
    if let Some(f) = &file {
        // An unwritable cache costs time, not correctness (as for the spectrogram cache).
        let _ = crate::fsutil::write_atomic(f, &encode(&v));
    }
    Ok((v, false))
}

fn encode(v: &[f32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + 4 * v.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b
}

fn decode(b: &[u8], len: usize) -> Option<Vec<f32>> {
    if b.len() < 12 || &b[..8] != MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(b[8..12].try_into().ok()?) as usize;
    if n != len || b.len() != 12 + 4 * n {
        return None;
    }
    let v: Vec<f32> = b[12..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    v.iter().all(|x| x.is_finite()).then_some(v)
}

/// Mean and standard deviation per entry of the vectors of `members` (an entry whose standard
/// deviation is below 1e-6 of its scale gets 1; see [`ProsodyNorm`]).
pub fn vector_stats(store: &ProsodyStore, members: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let len = store.config().vector_len();
    let (mut m, mut s) = (vec![0f64; len], vec![0f64; len]);
    for k in 0..len {
        let v: Vec<f64> = members.iter().map(|&i| store.vector(i)[k] as f64).collect();
        let (mk, sk) = mean_std(&v);
        m[k] = mk;
        s[k] = if sk > 1e-6 * mk.abs().max(1.0) {
            sk
        } else {
            1.0
        };
    }
    (m, s)
}

/// Per-entry z-normalisation of the prosody vectors: `(v − mean) / std`, with one set of
/// statistics (the training utterances') or one per speaker (all of that speaker's utterances,
/// as [`crate::data::SpeakerNorm`] does for the image; transductive for test speakers in the same
/// way).
///
/// An entry whose standard deviation is below 1e-6 of its scale (a constant, e.g. the active
/// duration of a corpus of equal-length files without silence) is divided by 1 instead.
#[derive(Clone, Debug, PartialEq)]
pub struct ProsodyNorm {
    /// Statistics group of every utterance (corpus index): 0 for training statistics.
    group: Vec<usize>,
    mean: Vec<Vec<f64>>,
    std: Vec<Vec<f64>>,
}

impl ProsodyNorm {
    /// The statistics `mode` asks for: `Training` from the `train` utterances only, `Speaker` per
    /// `speakers[i]` (the speaker of utterance `i`) from all utterances.
    pub fn for_training<S: AsRef<str>>(
        mode: InputNormMode,
        store: &ProsodyStore,
        speakers: &[S],
        train: &[usize],
    ) -> Result<Self> {
        if speakers.len() != store.len() {
            return Err(config_err!(
                "prosody normalisation: {} speaker names for {} utterances",
                speakers.len(),
                store.len()
            ));
        }
        let (groups, group): (Vec<Vec<usize>>, Vec<usize>) = match mode {
            InputNormMode::Training => {
                if train.is_empty() {
                    return Err(config_err!(
                        "cannot compute prosody statistics from an empty training set"
                    ));
                }
                (vec![train.to_vec()], vec![0; store.len()])
            }
            InputNormMode::Speaker => {
                let mut names: Vec<&str> = speakers.iter().map(|s| s.as_ref()).collect();
                names.sort();
                names.dedup();
                let group: Vec<usize> = speakers
                    .iter()
                    .map(|s| names.binary_search(&s.as_ref()).expect("listed above"))
                    .collect();
                let mut groups = vec![Vec::new(); names.len()];
                for (i, &g) in group.iter().enumerate() {
                    groups[g].push(i);
                }
                (groups, group)
            }
        };
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for members in &groups {
            let (m, s) = vector_stats(store, members);
            mean.push(m);
            std.push(s);
        }
        Ok(ProsodyNorm { group, mean, std })
    }

    /// Normalisation with given statistics: utterance `i` uses `stats[group[i]]` (mean, std per
    /// entry, as [`vector_stats`] computes them).
    pub fn from_stats(group: Vec<usize>, stats: Vec<(Vec<f64>, Vec<f64>)>) -> Result<Self> {
        if let Some(&g) = group.iter().find(|&&g| g >= stats.len()) {
            return Err(config_err!(
                "prosody normalisation: statistics group {g} of {} given",
                stats.len()
            ));
        }
        let len = stats.first().map_or(0, |s| s.0.len());
        if stats.iter().any(|(m, s)| m.len() != len || s.len() != len) {
            return Err(config_err!(
                "prosody normalisation: statistics of unequal lengths"
            ));
        }
        let (mean, std) = stats.into_iter().unzip();
        Ok(ProsodyNorm { group, mean, std })
    }

    /// The (mean, std) of statistics group `g` (0 for training statistics; speakers in sorted
    /// order otherwise).
    pub fn stats(&self, g: usize) -> (&[f64], &[f64]) {
        (&self.mean[g], &self.std[g])
    }

    /// Utterance `utterance`'s normalised vector.
    pub fn normalised(&self, store: &ProsodyStore, utterance: usize) -> Vec<f32> {
        let g = self.group[utterance];
        store
            .vector(utterance)
            .iter()
            .enumerate()
            .map(|(k, &v)| ((v as f64 - self.mean[g][k]) / self.std[g][k]) as f32)
            .collect()
    }

    /// The normalised vectors of `utterances`, concatenated (N × [`ProsodyConfig::vector_len`]): a network's
    /// side input for one batch.
    pub fn batch(&self, store: &ProsodyStore, utterances: &[usize]) -> Vec<f32> {
        utterances
            .iter()
            .flat_map(|&u| self.normalised(store, u))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosody::basic::LEN;

    fn store(n: usize) -> ProsodyStore {
        let vectors = (0..n)
            .map(|i| {
                (0..LEN)
                    .map(|k| {
                        (i * (k + 1)) as f32 * 0.5 + k as f32 + if i % 2 == 0 { 3.0 } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        ProsodyStore::from_vectors(&ProsodyConfig::default(), vectors).unwrap()
    }

    /// Training statistics come from the training utterances only: the training set's normalised
    /// entries have mean 0 and standard deviation 1, and changing a test utterance changes nothing
    /// else. Tolerance 1e-5: f32 outputs of f64 arithmetic.
    #[test]
    fn training_statistics_use_only_training_utterances() {
        let s = store(8);
        let speakers = ["a", "a", "b", "b", "c", "c", "d", "d"];
        let train = [0, 1, 2, 3, 4];
        let norm =
            ProsodyNorm::for_training(InputNormMode::Training, &s, &speakers, &train).unwrap();
        for k in 0..LEN {
            let v: Vec<f64> = train
                .iter()
                .map(|&i| norm.normalised(&s, i)[k] as f64)
                .collect();
            let (m, sd) = mean_std(&v);
            assert!(
                m.abs() < 1e-5 && (sd - 1.0).abs() < 1e-5,
                "entry {k}: {m} {sd}"
            );
        }
        let mut changed = s.vectors.clone();
        changed[7] = vec![1e6; LEN];
        let s2 = ProsodyStore::from_vectors(&ProsodyConfig::default(), changed).unwrap();
        let norm2 =
            ProsodyNorm::for_training(InputNormMode::Training, &s2, &speakers, &train).unwrap();
        assert_eq!(norm, norm2);
    }

    /// Per-speaker statistics: every speaker's normalised entries have mean 0 (each speaker's own
    /// offset removed), whatever order its utterances come in.
    #[test]
    fn speaker_statistics_centre_every_speaker() {
        let s = store(8);
        let speakers = ["b", "a", "b", "a", "c", "c", "a", "b"];
        let norm = ProsodyNorm::for_training(InputNormMode::Speaker, &s, &speakers, &[]).unwrap();
        for who in ["a", "b", "c"] {
            let members: Vec<usize> = (0..8).filter(|&i| speakers[i] == who).collect();
            for k in 0..LEN {
                let v: Vec<f64> = members
                    .iter()
                    .map(|&i| norm.normalised(&s, i)[k] as f64)
                    .collect();
                let (m, _) = mean_std(&v);
                assert!(m.abs() < 1e-5, "speaker {who} entry {k}: mean {m}");
            }
        }
        let b = norm.batch(&s, &[1, 4]);
        assert_eq!(b.len(), 2 * LEN);
        assert_eq!(&b[LEN..], norm.normalised(&s, 4).as_slice());
    }

    #[test]
    fn cache_files_round_trip_and_reject_damage() {
        let v: Vec<f32> = (0..LEN).map(|k| k as f32 - 3.5).collect();
        let b = encode(&v);
        assert_eq!(decode(&b, LEN), Some(v.clone()));
        assert_eq!(
            decode(&b, LEN + 1),
            None,
            "a vector of another set's length"
        );
        assert_eq!(decode(&b[..b.len() - 1], LEN), None);
        let mut wrong = b.clone();
        wrong[0] ^= 1;
        assert_eq!(decode(&wrong, LEN), None);
        assert!(ProsodyStore::from_vectors(&ProsodyConfig::default(), vec![vec![0.0; 3]]).is_err());
    }
}
