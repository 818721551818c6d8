//! The feature store: every utterance's spectrogram (and its waveform-perturbed variants), computed
//! once per STFT setting, in parallel, held in memory in half precision and cached on disk.
//!
//! # Disk cache
//! One file per (utterance, variant) in `<dir>/spec-v1/`, named by a 64-bit FNV-1a hash of the audio
//! content (the WAV file's bytes, or the in-memory samples), the [`StftConfig`], the perturbation and
//! the format version: change any of them and the entry is simply not found. A file holds a small
//! header (magic, frames, bins) and the dB values as little-endian f16 (half precision keeps
//! 0.01–0.03 dB resolution over the −100…+10 dB range, far below what an 8-bit image shows). Files
//! are written atomically (temporary file, then rename), so parallel runs can share a cache; an
//! unreadable entry is recomputed and rewritten. The image settings are not part of the key: images
//! are rendered from the cached spectrogram at batch time, so one cache serves every image size.
//!
//! Default directory ([`default_cache_dir`]): `$RESCNN_CACHE_DIR`, else `$XDG_CACHE_HOME/rescnn`,
//! else `$HOME/.cache/rescnn`, else `rescnn-cache` in the system temporary directory.
//!
//! # Waveform perturbations
//! Speed and pitch perturbation must start from samples, so the store computes a few fixed variants
//! per utterance up front ([`CacheOptions::variants`]); augmentation picks one at random. The cost is
//! one extra STFT (plus a resampling, and for pitch a WSOLA stretch) per variant per utterance, once,
//! and the memory and disk space of one more spectrogram each (about 100 KB per 2 s utterance at the
//! default setting).

use std::path::{Path, PathBuf};

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use super::{Corpus, Source};
use crate::audio::Perturbation;
use crate::features::{Spectrogram, StftConfig, StftPlan};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"RSCNSPC1";
const SUBDIR: &str = "spec-v1";

/// `$RESCNN_CACHE_DIR`, `$XDG_CACHE_HOME/rescnn`, `$HOME/.cache/rescnn`, or a temp-dir fallback.
pub fn default_cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("RESCNN_CACHE_DIR") {
        return d;
    }
    if let Some(d) = env("XDG_CACHE_HOME") {
        return d.join("rescnn");
    }
    if let Some(d) = env("HOME") {
        return d.join(".cache").join("rescnn");
    }
    std::env::temp_dir().join("rescnn-cache")
}

#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Disk cache directory; `None` keeps everything in memory only.
    pub dir: Option<PathBuf>,
    /// Show a progress bar (on a terminal, for more than a few dozen utterances).
    pub progress: bool,
    /// Waveform perturbations to precompute besides the original (which is always variant 0).
    pub variants: Vec<Perturbation>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            dir: Some(default_cache_dir()),
            progress: true,
            variants: Vec::new(),
        }
    }
}

impl CacheOptions {
    /// No disk cache, no progress bar, no variants: for tests and small in-memory corpora.
    pub fn in_memory() -> Self {
        CacheOptions {
            dir: None,
            progress: false,
            variants: Vec::new(),
        }
    }
}

/// Round `spec`'s dB values to the store's half precision, in place. Training, evaluation and
/// prediction render every image from a stored (half-precision) spectrogram, so a spectrogram
/// computed outside the store (`rescnn spectrogram`, the long-audio timeline) must go through this
/// rounding to render the very same image.
pub fn round_to_stored_precision(spec: &mut Spectrogram) {
    StoredSpectrogram::from_f32(spec).to_f32_into(spec);
}

/// A spectrogram in half precision.
#[derive(Clone, Debug)]
pub struct StoredSpectrogram {
    pub frames: usize,
    pub bins: usize,
    pub db: Vec<f16>,
}

impl StoredSpectrogram {
    fn from_f32(s: &Spectrogram) -> Self {
        let mut db = vec![f16::ZERO; s.db.len()];
        db.convert_from_f32_slice(&s.db);
        StoredSpectrogram {
            frames: s.frames,
            bins: s.bins,
            db,
        }
    }

    /// Into `out` as f32, reusing its allocation.
    pub fn to_f32_into(&self, out: &mut Spectrogram) {
        out.frames = self.frames;
        out.bins = self.bins;
        out.db.resize(self.db.len(), 0.0);
        self.db.convert_to_f32_slice(&mut out.db);
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + 2 * self.db.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(self.frames as u32).to_le_bytes());
        b.extend_from_slice(&(self.bins as u32).to_le_bytes());
        for v in &self.db {
            b.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        b
    }

    fn decode(bytes: &[u8], bins: usize) -> Option<Self> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return None;
        }
        let frames = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
        let stored_bins = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
        if stored_bins != bins || frames == 0 || bytes.len() != 16 + 2 * frames * bins {
            return None;
        }
        let db = bytes[16..]
            .chunks_exact(2)
            .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        Some(StoredSpectrogram { frames, bins, db })
    }
}

/// FNV-1a, 64 bit: stable across platforms and compiler versions (std's hasher is not promised to
/// be), and fast enough next to decoding.
#[derive(Clone, Copy)]
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What [`FeatureStore::build`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Spectrograms computed from audio.
    pub computed: usize,
    /// Spectrograms read from the disk cache.
    pub loaded: usize,
}

/// Spectrograms of a whole corpus: `variants()` per utterance, variant 0 the unperturbed audio.
pub struct FeatureStore {
    stft: StftConfig,
    variants: Vec<Perturbation>,
    /// `[utterance][variant]`.
    specs: Vec<Vec<StoredSpectrogram>>,
    labels: Vec<u32>,
    pub stats: BuildStats,
}

impl FeatureStore {
    /// Compute (or load from the disk cache) every utterance's spectrograms. All unreadable files
    /// are reported together.
    pub fn build(corpus: &Corpus, stft: &StftConfig, opts: &CacheOptions) -> Result<Self> {
        stft.validate()?;
        let mut variants = vec![Perturbation::IDENTITY];
        for v in &opts.variants {
            v.validate()?;
            if !variants.contains(v) {
                variants.push(*v);
            }
        }
        let stft_json = serde_json::to_string(stft).expect("StftConfig serialises");
        let dir = opts.dir.as_ref().map(|d| d.join(SUBDIR));
        let bar = if opts.progress && corpus.len() >= 32 {
            let bar = indicatif::ProgressBar::new(corpus.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "features {bar:40} {pos}/{len} utterances ({eta} left)",
                )
                .expect("valid template"),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let results: Vec<Result<(Vec<StoredSpectrogram>, BuildStats)>> = corpus
            .utterances
            .par_iter()
            .map_init(
                || None::<StftPlan>,
                |plan, u| {
                    let r = featurise(u, stft, &stft_json, &variants, dir.as_deref(), plan);
                    bar.inc(1);
                    r
                },
            )
            .collect();
        bar.finish_and_clear();
        let mut specs = Vec::with_capacity(results.len());
        let mut stats = BuildStats::default();
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok((s, st)) => {
                    stats.computed += st.computed;
                    stats.loaded += st.loaded;
                    specs.push(s);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Data {
                path: None,
                message: format!(
                    "{} utterance(s) of {} could not be featurised:\n  {}",
                    errors.len(),
                    corpus.name,
                    errors.join("\n  ")
                ),
            });
        }
        Ok(FeatureStore {
            stft: stft.clone(),
            variants,
            specs,
            labels: corpus.utterances.iter().map(|u| u.label as u32).collect(),
            stats,
        })
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
    pub fn stft(&self) -> &StftConfig {
        &self.stft
    }
    /// The perturbations stored per utterance; index 0 is the identity.
    pub fn variants(&self) -> &[Perturbation] {
        &self.variants
    }
    pub fn label(&self, utterance: usize) -> u32 {
        self.labels[utterance]
    }
    pub fn stored(&self, utterance: usize, variant: usize) -> &StoredSpectrogram {
        &self.specs[utterance][variant]
    }
    /// Utterance `utterance`'s spectrogram (variant `variant`) as f32 into `out`.
    pub fn spectrogram_into(&self, utterance: usize, variant: usize, out: &mut Spectrogram) {
        self.specs[utterance][variant].to_f32_into(out);
    }
}

fn featurise(
    u: &super::Utterance,
    stft: &StftConfig,
    stft_json: &str,
    variants: &[Perturbation],
    dir: Option<&Path>,
    plan: &mut Option<StftPlan>,
) -> Result<(Vec<StoredSpectrogram>, BuildStats)> {
    // Content key and (lazily) the decoded audio.
    let mut key = Fnv::new();
    key.write(MAGIC);
    key.write(stft_json.as_bytes());
    let bytes;
    let mut audio: Option<crate::audio::Audio> = None;
    let path_for_errors: PathBuf;
    match &u.source {
        Source::File(p) => {
            bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            key.write(&bytes);
            path_for_errors = p.clone();
        }
        Source::Samples { samples, rate } => {
            bytes = Vec::new();
            key.write(&rate.to_le_bytes());
            key.write(bytemuck::cast_slice(samples.as_slice()));
            audio = Some(crate::audio::Audio {
                samples: samples.as_ref().clone(),
                sample_rate: *rate,
            });
            path_for_errors = PathBuf::from(&u.id);
        }
    }
    let mut out = Vec::with_capacity(variants.len());
    let mut stats = BuildStats::default();
    for v in variants {
        let mut k = key;
        k.write(&v.speed.to_le_bytes());
        k.write(&v.pitch_semitones.to_le_bytes());
        let file = dir.map(|d| d.join(format!("{:016x}.spec", k.0)));
        if let Some(f) = &file {
            if let Ok(b) = std::fs::read(f) {
                if let Some(s) = StoredSpectrogram::decode(&b, stft.bins()) {
                    out.push(s);
                    stats.loaded += 1;
                    continue;
                }
            }
        }
        if audio.is_none() {
            audio = Some(crate::audio::decode_wav_bytes(&bytes, &path_for_errors)?);
        }
        let a = audio.as_ref().expect("decoded above");
        let resampled = crate::audio::resample(&a.samples, a.sample_rate, stft.sample_rate)
            .map_err(|e| Error::data(&path_for_errors, e.to_string()))?;
        let samples = if v.is_identity() {
            resampled
        } else {
            v.apply(&resampled, stft.sample_rate)?
        };
        let plan = match plan {
            Some(p) => p,
            None => plan.insert(StftPlan::new(stft)?),
        };
        let stored = StoredSpectrogram::from_f32(&plan.compute(&samples));
        if let Some(f) = &file {
            // A cache that cannot be written costs speed, not correctness: warn (once) and go on.
            if let Err(e) = crate::fsutil::write_atomic(f, &stored.encode()) {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "warning: feature cache not written (features are still computed): {e}"
                    );
                }
            }
        }
        out.push(stored);
        stats.computed += 1;
    }
    Ok((out, stats))
}
