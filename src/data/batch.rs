//! Batches for the trainer: (inputs `N × C × H × W` f32, labels u32) from a list of utterances of a
//! [`FeatureStore`], rendered on the fly (in parallel), shuffled per epoch by seed, augmented when
//! asked (training only), normalised either by per-channel statistics of the TRAINING utterances
//! ([`InputNorm`], the default) or by each speaker's own per-(channel, row) statistics
//! ([`SpeakerNorm`]); [`Normalization`] is the one the batcher applies.
//!
//! Reproducibility: epoch `e`'s order depends only on (seed, e), and sample `k` of that epoch is
//! augmented with a generator seeded by (seed, e, k), so the batches are the same whatever the
//! thread count.

use std::cell::RefCell;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::AugmentConfig;
use super::cache::FeatureStore;
use crate::features::{ImageConfig, Renderer, Spectrogram};
use crate::{config_err, Result, Shape, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct BatchConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// Shuffle each epoch (training) or keep the given order (evaluation).
    pub shuffle: bool,
    /// Augmentation (training only); `None` renders the plain images.
    pub augment: Option<AugmentConfig>,
    /// Class-balanced sampling: each draw picks a class uniformly, then one of its utterances
    /// uniformly (with replacement); the epoch keeps the number of utterances as its length.
    pub balanced: bool,
    /// Leave out a last partial batch.
    pub drop_last: bool,
}

impl BatchConfig {
    /// Shuffled, augmented training batches.
    pub fn training(batch_size: usize, seed: u64, augment: Option<AugmentConfig>) -> Self {
        BatchConfig {
            batch_size,
            seed,
            shuffle: true,
            augment,
            balanced: false,
            drop_last: false,
        }
    }
    /// Plain batches in order, for validation and test.
    pub fn evaluation(batch_size: usize) -> Self {
        BatchConfig {
            batch_size,
            seed: 0,
            shuffle: false,
            augment: None,
            balanced: false,
            drop_last: false,
        }
    }
}

/// Per-channel input normalisation: `x ← (x − mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputNorm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputNorm {
    /// Leaves inputs unchanged.
    pub fn identity(channels: usize) -> Self {
        InputNorm {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Mean and standard deviation per channel over the plain (unaugmented) images of `train`
    /// (training utterances only, so nothing about validation or test leaks into the inputs).
    pub fn from_training(
        store: &FeatureStore,
        image: &ImageConfig,
        train: &[usize],
    ) -> Result<Self> {
        if train.is_empty() {
            return Err(config_err!(
                "cannot compute input statistics from an empty training set"
            ));
        }
        let c = image.channels();
        let plane = image.height * image.width;
        // Per-utterance sums in parallel, combined in a fixed order: rayon's `reduce` may pair
        // partial sums differently from run to run, which would change the last bits of the
        // statistics and break bit-identical runs for a seed.
        let partial: Vec<(Vec<f64>, Vec<f64>)> = train
            .par_iter()
            .map(|&i| {
                with_renderer(image, |r, spec| {
                    store.spectrogram_into(i, 0, spec);
                    let mut buf = vec![0f32; c * plane];
                    r.render_chw(spec, &mut buf);
                    let mut s = vec![0f64; c];
                    let mut q = vec![0f64; c];
                    for ch in 0..c {
                        for &v in &buf[ch * plane..(ch + 1) * plane] {
                            s[ch] += v as f64;
                            q[ch] += (v as f64) * (v as f64);
                        }
                    }
                    (s, q)
                })
            })
            .collect();
        let (mut sum, mut sumsq) = (vec![0f64; c], vec![0f64; c]);
        for (s, q) in &partial {
            for ch in 0..c {
                sum[ch] += s[ch];
                sumsq[ch] += q[ch];
            }
        }
        let n = (train.len() * plane) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std: Vec<f32> = sum
            .iter()
            .zip(&sumsq)
            .map(|(s, q)| {
                let m = s / n;
                ((q / n - m * m).max(0.0).sqrt() as f32).max(1e-6)
            })
            .collect();
        Ok(InputNorm { mean, std })
    }

    pub fn apply(&self, chw: &mut [f32]) {
        let plane = chw.len() / self.mean.len();
        for (c, p) in chw.chunks_exact_mut(plane).enumerate() {
            let (m, inv) = (self.mean[c], 1.0 / self.std[c]);
            p.iter_mut().for_each(|v| *v = (*v - m) * inv);
        }
    }
}

/// Which statistics normalise the network's inputs (config key `input_norm`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum InputNormMode {
    /// One mean and standard deviation per channel, from the training utterances ([`InputNorm`]).
    #[default]
    Training,
    /// Each speaker's own mean and standard deviation per (channel, image row), from all of that
    /// speaker's utterances ([`SpeakerNorm`]); labels are never read.
    Speaker,
}

impl std::fmt::Display for InputNormMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputNormMode::Training => "training",
            InputNormMode::Speaker => "speaker",
        })
    }
}

/// Per-speaker input normalisation: the image of an utterance of speaker `s` becomes
/// `x[c, row, t] ← (x − mean_s[c, row]) / std_s[c, row]`, each speaker's statistics taken over the
/// plain (unaugmented) images of all of its utterances.
///
/// Each image row is one frequency band, so this removes a speaker's average spectral envelope
/// (vocal-tract length, recording channel) and its per-band loudness spread, as per-speaker
/// feature normalisation does in the speech emotion literature. It needs only unlabelled audio of
/// the speaker, but for a test speaker it is transductive: the statistics come from the very
/// utterances being classified.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeakerNorm {
    channels: usize,
    height: usize,
    /// The speakers, sorted.
    speakers: Vec<String>,
    /// Index into `speakers` of every utterance (corpus index).
    utterance_speaker: Vec<usize>,
    /// `[speaker][c * height + row]`.
    mean: Vec<Vec<f32>>,
    /// `[speaker][c * height + row]`, floored (see [`SpeakerNorm::STD_FLOOR`]).
    std: Vec<Vec<f32>>,
}

impl SpeakerNorm {
    /// A row's standard deviation is floored at this fraction of the speaker's typical row
    /// standard deviation in that channel (the root mean of its rows' variances). Rows where a
    /// speaker's images hardly vary (bands clipped at the `top_db` floor in every utterance, bands
    /// above a low-pass recording's cutoff) have a standard deviation near 0; dividing by it would
    /// turn the slightest difference in an augmented or unseen image into a huge input. The floor
    /// is relative, so it does not depend on the images' scale, and taken over row variances, not
    /// the channel's variance, so the spectral envelope (differences between row means) does not
    /// raise it.
    pub const STD_FLOOR: f64 = 0.1;

    /// Statistics of every utterance of `store` (all of them, whatever part of a split they are
    /// in), grouped by `speakers[i]`, the speaker of utterance `i`. Images are rendered with
    /// `image` in parallel; per-utterance sums are combined in utterance order, so the result is
    /// the same bit for bit whatever the thread count.
    pub fn from_store<S: AsRef<str>>(
        store: &FeatureStore,
        image: &ImageConfig,
        speakers: &[S],
    ) -> Result<Self> {
        image.validate()?;
        if speakers.len() != store.len() {
            return Err(config_err!(
                "speaker normalisation: {} speaker names for {} utterances",
                speakers.len(),
                store.len()
            ));
        }
        let (c, h, w) = (image.channels(), image.height, image.width);
        let partial: Vec<RowMoments> = (0..store.len())
            .into_par_iter()
            .map(|i| {
                with_renderer(image, |r, spec| {
                    store.spectrogram_into(i, 0, spec);
                    let mut buf = vec![0f32; c * h * w];
                    r.render_chw(spec, &mut buf);
                    RowMoments::of(&buf, c, h, w)
                })
            })
            .collect();
        Self::from_moments(partial, speakers, c, h, w)
    }

    /// Statistics of ready images (`images[i]` is utterance `i`'s (C, H, W) image, of speaker
    /// `speakers[i]`): the same computation as [`SpeakerNorm::from_store`] after rendering.
    pub fn from_images<S: AsRef<str>>(
        images: &[Vec<f32>],
        speakers: &[S],
        (c, h, w): (usize, usize, usize),
    ) -> Result<Self> {
        if speakers.len() != images.len() {
            return Err(config_err!(
                "speaker normalisation: {} speaker names for {} images",
                speakers.len(),
                images.len()
            ));
        }
        if let Some(bad) = images.iter().position(|x| x.len() != c * h * w) {
            return Err(config_err!(
                "speaker normalisation: image {bad} has {} values, expected {c}×{h}×{w}",
                images[bad].len()
            ));
        }
        let partial: Vec<RowMoments> = images
            .par_iter()
            .map(|x| RowMoments::of(x, c, h, w))
            .collect();
        Self::from_moments(partial, speakers, c, h, w)
    }

    fn from_moments<S: AsRef<str>>(
        partial: Vec<RowMoments>,
        speakers: &[S],
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Self> {
        if partial.is_empty() {
            return Err(config_err!(
                "cannot compute speaker statistics without utterances"
            ));
        }
        let mut names: Vec<String> = speakers.iter().map(|s| s.as_ref().to_string()).collect();
        names.sort();
        names.dedup();
        let utterance_speaker: Vec<usize> = speakers
            .iter()
            .map(|s| {
                names
                    .binary_search_by(|n| n.as_str().cmp(s.as_ref()))
                    .expect("listed above")
            })
            .collect();
        let rows = c * h;
        let mut sum = vec![vec![0f64; rows]; names.len()];
        let mut sumsq = vec![vec![0f64; rows]; names.len()];
        let mut count = vec![0usize; names.len()];
        // Fixed order (utterance index) so the statistics are bit-identical from run to run.
        for (m, &s) in partial.iter().zip(&utterance_speaker) {
            for k in 0..rows {
                sum[s][k] += m.sum[k];
                sumsq[s][k] += m.sumsq[k];
            }
            count[s] += 1;
        }
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for s in 0..names.len() {
            let n_row = (count[s] * w) as f64;
            let mut m_s = vec![0f32; rows];
            let mut sd_s = vec![0f32; rows];
            for ch in 0..c {
                let range = ch * h..(ch + 1) * h;
                let mut mean_variance = 0.0;
                for k in range.clone() {
                    let m = sum[s][k] / n_row;
                    let variance = (sumsq[s][k] / n_row - m * m).max(0.0);
                    m_s[k] = m as f32;
                    sd_s[k] = variance.sqrt() as f32;
                    mean_variance += variance / h as f64;
                }
                let floor = (Self::STD_FLOOR * mean_variance.sqrt()).max(1e-6) as f32;
                for sd in &mut sd_s[range] {
                    *sd = sd.max(floor);
                }
            }
            mean.push(m_s);
            std.push(sd_s);
        }
        Ok(SpeakerNorm {
            channels: c,
            height: h,
            speakers: names,
            utterance_speaker,
            mean,
            std,
        })
    }

    /// The speakers, sorted.
    pub fn speakers(&self) -> &[String] {
        &self.speakers
    }

    /// (mean, std) of `speaker`, each indexed `c * height + row`.
    pub fn stats(&self, speaker: &str) -> Option<(&[f32], &[f32])> {
        let s = self
            .speakers
            .binary_search_by(|n| n.as_str().cmp(speaker))
            .ok()?;
        Some((&self.mean[s], &self.std[s]))
    }

    /// Utterances the statistics were computed for (and can normalise).
    pub fn len_utterances(&self) -> usize {
        self.utterance_speaker.len()
    }

    /// Normalise utterance `utterance`'s (C, H, W) image with its speaker's statistics.
    pub fn apply(&self, utterance: usize, chw: &mut [f32]) {
        let s = self.utterance_speaker[utterance];
        let w = chw.len() / (self.channels * self.height);
        for (k, row) in chw.chunks_exact_mut(w).enumerate() {
            let (m, inv) = (self.mean[s][k], 1.0 / self.std[s][k]);
            row.iter_mut().for_each(|v| *v = (*v - m) * inv);
        }
    }
}

/// Sums and sums of squares per (channel, row) of one image.
struct RowMoments {
    sum: Vec<f64>,
    sumsq: Vec<f64>,
}

impl RowMoments {
    fn of(chw: &[f32], c: usize, h: usize, w: usize) -> Self {
        let mut sum = vec![0f64; c * h];
        let mut sumsq = vec![0f64; c * h];
        for (k, row) in chw.chunks_exact(w).enumerate() {
            for &v in row {
                sum[k] += v as f64;
                sumsq[k] += (v as f64) * (v as f64);
            }
        }
        RowMoments { sum, sumsq }
    }
}

/// The normalisation a [`Batcher`] applies to every image it renders.
#[derive(Clone, Debug, PartialEq)]
pub enum Normalization {
    /// The same per-channel statistics for every utterance.
    Global(InputNorm),
    /// Each utterance's speaker's statistics.
    PerSpeaker(Arc<SpeakerNorm>),
}

impl From<InputNorm> for Normalization {
    fn from(n: InputNorm) -> Self {
        Normalization::Global(n)
    }
}

impl From<SpeakerNorm> for Normalization {
    fn from(n: SpeakerNorm) -> Self {
        Normalization::PerSpeaker(Arc::new(n))
    }
}

impl Normalization {
    /// The normalisation `mode` asks for when training on `train`: per-channel statistics of the
    /// training utterances, or per-speaker statistics of every utterance of `store` (`speakers[i]`
    /// is utterance `i`'s speaker; the split plays no part).
    pub fn for_training<S: AsRef<str>>(
        mode: InputNormMode,
        store: &FeatureStore,
        image: &ImageConfig,
        speakers: &[S],
        train: &[usize],
    ) -> Result<Self> {
        Ok(match mode {
            InputNormMode::Training => InputNorm::from_training(store, image, train)?.into(),
            InputNormMode::Speaker => SpeakerNorm::from_store(store, image, speakers)?.into(),
        })
    }

    pub fn mode(&self) -> InputNormMode {
        match self {
            Normalization::Global(_) => InputNormMode::Training,
            Normalization::PerSpeaker(_) => InputNormMode::Speaker,
        }
    }

    /// Normalise utterance `utterance`'s (C, H, W) image.
    pub fn apply(&self, utterance: usize, chw: &mut [f32]) {
        match self {
            Normalization::Global(n) => n.apply(chw),
            Normalization::PerSpeaker(n) => n.apply(utterance, chw),
        }
    }

    fn check(&self, image: &ImageConfig, utterances: usize) -> Result<()> {
        match self {
            Normalization::Global(norm) => {
                if norm.mean.len() != image.channels() || norm.std.len() != image.channels() {
                    return Err(config_err!(
                        "input normalisation has {} channel(s), the images have {}",
                        norm.mean.len(),
                        image.channels()
                    ));
                }
            }
            Normalization::PerSpeaker(n) => {
                if (n.channels, n.height) != (image.channels(), image.height) {
                    return Err(config_err!(
                        "speaker normalisation has {} channel(s) of {} rows, the images {} of {}",
                        n.channels,
                        n.height,
                        image.channels(),
                        image.height
                    ));
                }
                if n.len_utterances() != utterances {
                    return Err(config_err!(
                        "speaker normalisation covers {} utterances, the feature store holds {}",
                        n.len_utterances(),
                        utterances
                    ));
                }
            }
        }
        Ok(())
    }
}

thread_local! {
    /// One renderer and spectrogram buffer per thread, rebuilt when the image setting changes.
    static RENDER_STATE: RefCell<Option<(Renderer, Spectrogram)>> = const { RefCell::new(None) };
}

fn with_renderer<T>(
    image: &ImageConfig,
    f: impl FnOnce(&mut Renderer, &mut Spectrogram) -> T,
) -> T {
    RENDER_STATE.with(|cell| {
        let mut state = cell.borrow_mut();
        if state.as_ref().is_none_or(|(r, _)| r.config() != image) {
            let r = Renderer::new(image).expect("image config validated by the batcher");
            *state = Some((
                r,
                Spectrogram {
                    frames: 0,
                    bins: 0,
                    db: Vec::new(),
                },
            ));
        }
        let (r, s) = state.as_mut().expect("set above");
        f(r, s)
    })
}

/// One batch: `inputs` is (N, C, H, W); `labels[k]` and `utterances[k]` (corpus indices) describe
/// sample k.
#[derive(Clone, Debug)]
pub struct Batch {
    pub inputs: Tensor<f32>,
    pub labels: Vec<u32>,
    pub utterances: Vec<usize>,
}

pub struct Batcher<'a> {
    store: &'a FeatureStore,
    image: ImageConfig,
    indices: Vec<usize>,
    cfg: BatchConfig,
    norm: Normalization,
}

impl<'a> Batcher<'a> {
    /// Batches over `indices` (corpus indices into `store`), drawn as `image` says, normalised by
    /// `norm` (an [`InputNorm`] or a [`Normalization`]).
    pub fn new(
        store: &'a FeatureStore,
        image: &ImageConfig,
        indices: &[usize],
        cfg: BatchConfig,
        norm: impl Into<Normalization>,
    ) -> Result<Self> {
        let norm = norm.into();
        image.validate()?;
        if cfg.batch_size == 0 {
            return Err(config_err!("batch size must be at least 1"));
        }
        if let Some(a) = &cfg.augment {
            a.validate()?;
        }
        norm.check(image, store.len())?;
        if let Some(&bad) = indices.iter().find(|&&i| i >= store.len()) {
            return Err(config_err!(
                "utterance index {bad} is outside the feature store ({} utterances)",
                store.len()
            ));
        }
        Ok(Batcher {
            store,
            image: image.clone(),
            indices: indices.to_vec(),
            cfg,
            norm,
        })
    }

    /// (C, H, W) of one input.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        (self.image.channels(), self.image.height, self.image.width)
    }

    pub fn len_utterances(&self) -> usize {
        self.indices.len()
    }

    pub fn batches_per_epoch(&self) -> usize {
        let n = self.indices.len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    /// The utterance order of epoch `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.cfg.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if self.cfg.balanced {
            let mut by_class: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
            for &i in &self.indices {
                by_class.entry(self.store.label(i)).or_default().push(i);
            }
            let classes: Vec<&Vec<usize>> = by_class.values().collect();
            return (0..self.indices.len())
                .map(|_| {
                    let members = classes[rng.random_range(0..classes.len())];
                    members[rng.random_range(0..members.len())]
                })
                .collect();
        }
        let mut order = self.indices.clone();
        if self.cfg.shuffle {
            order.shuffle(&mut rng);
        }
        order
    }

    /// Batch `index` of epoch `epoch`, given that epoch's order ([`Batcher::epoch_order`]): the same
    /// batch the epoch iterator yields at that position, rendered without rendering the ones before
    /// it (a resumed run starts in the middle of an epoch). `None` past the epoch's last batch.
    pub fn batch_at(&self, epoch: u64, order: &[usize], index: usize) -> Option<Batch> {
        let bs = self.cfg.batch_size;
        let first = index.checked_mul(bs)?;
        let remaining = order.len().checked_sub(first)?;
        if remaining == 0 || (self.cfg.drop_last && remaining < bs) {
            return None;
        }
        let end = (first + bs).min(order.len());
        Some(self.render_batch(epoch, first, &order[first..end]))
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> EpochBatches<'_, 'a> {
        EpochBatches {
            batcher: self,
            epoch,
            order: self.epoch_order(epoch),
            next: 0,
        }
    }

    fn render_batch(&self, epoch: u64, first: usize, ids: &[usize]) -> Batch {
        let (c, h, w) = self.input_shape();
        let per = c * h * w;
        let mut data = vec![0f32; ids.len() * per];
        data.par_chunks_mut(per)
            .zip(ids.par_iter())
            .enumerate()
            .for_each(|(k, (out, &i))| {
                with_renderer(&self.image, |r, spec| match &self.cfg.augment {
                    None => {
                        self.store.spectrogram_into(i, 0, spec);
                        r.render_chw(spec, out);
                    }
                    Some(aug) => {
                        let position = (first + k) as u64;
                        let mut rng = ChaCha8Rng::seed_from_u64(
                            self.cfg.seed
                                ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                                ^ position.wrapping_mul(0xd1b5_4a32_d192_ed03),
                        );
                        let variant = aug.pick_variant(self.store.variants().len(), &mut rng);
                        self.store.spectrogram_into(i, variant, spec);
                        aug.render(r, spec, &mut rng, out);
                    }
                });
                self.norm.apply(i, out);
            });
        Batch {
            inputs: Tensor {
                shape: Shape::new(ids.len(), c, h, w),
                data,
            },
            labels: ids.iter().map(|&i| self.store.label(i)).collect(),
            utterances: ids.to_vec(),
        }
    }
}

/// Iterator over one epoch's batches (each rendered when asked for).
pub struct EpochBatches<'b, 'a> {
    batcher: &'b Batcher<'a>,
    epoch: u64,
    order: Vec<usize>,
    next: usize,
}

impl Iterator for EpochBatches<'_, '_> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        let bs = self.batcher.cfg.batch_size;
        let remaining = self.order.len() - self.next;
        if remaining == 0 || (self.batcher.cfg.drop_last && remaining < bs) {
            return None;
        }
        let end = (self.next + bs).min(self.order.len());
        let first = self.next;
        self.next = end;
        Some(
            self.batcher
                .render_batch(self.epoch, first, &self.order[first..end]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images of `n` utterances, (2, 6, 16), from a seeded generator: every row has its own level
    /// and spread, so per-row statistics differ from per-channel ones.
    fn images(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                (0..2 * 6 * 16)
                    .map(|i| {
                        let row = (i / 16) as f32;
                        0.1 * row + (0.05 + 0.02 * row) * rng.random::<f32>()
                    })
                    .collect()
            })
            .collect()
    }

    /// Speaker "b" says the same as speaker "a", but every (channel, row) of its images is shifted
    /// by its own offset and scaled by its own gain (another vocal tract, another microphone):
    /// per-speaker, per-row statistics map both onto the same normalised images. Per-channel
    /// statistics would not (the offsets differ from row to row). Tolerance 1e-4: values of a few
    /// units in f32 (rounding near 1e-6) after two affine maps.
    #[test]
    fn speakers_differing_by_a_per_row_affine_map_normalise_to_the_same_images() {
        let shape = (2, 6, 16);
        let a = images(5, 1);
        let row_map = |k: usize| (1.5 + 0.37 * k as f32, 0.5 + 0.1 * (k % 4) as f32);
        let b: Vec<Vec<f32>> = a
            .iter()
            .map(|x| {
                x.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let (offset, gain) = row_map(i / 16);
                        gain * v + offset
                    })
                    .collect()
            })
            .collect();
        // Interleaved, so utterance i's speaker must be looked up, not assumed from its position.
        let mut all = Vec::new();
        let mut speakers = Vec::new();
        for (x, y) in a.iter().zip(&b) {
            all.push(y.clone());
            speakers.push("b");
            all.push(x.clone());
            speakers.push("a");
        }
        let norm = SpeakerNorm::from_images(&all, &speakers, shape).unwrap();
        assert_eq!(norm.speakers(), ["a", "b"]);
        let (ma, _) = norm.stats("a").unwrap();
        let (mb, _) = norm.stats("b").unwrap();
        assert_eq!(ma.len(), 12, "one mean per (channel, row)");
        assert!((mb[5] - ma[5] * row_map(5).1 - row_map(5).0).abs() < 1e-4);
        for k in 0..a.len() {
            let (mut x, mut y) = (all[2 * k + 1].clone(), all[2 * k].clone());
            norm.apply(2 * k + 1, &mut x);
            norm.apply(2 * k, &mut y);
            let worst = x
                .iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "utterance pair {k}: largest difference {worst}"
            );
        }
        // Each speaker's normalised rows have mean 0 and standard deviation 1.
        let mut sums = [(0f64, 0f64); 12];
        for k in 0..a.len() {
            let mut y = all[2 * k].clone();
            norm.apply(2 * k, &mut y);
            for (i, &v) in y.iter().enumerate() {
                sums[i / 16].0 += v as f64;
                sums[i / 16].1 += (v as f64).powi(2);
            }
        }
        let n = (a.len() * 16) as f64;
        for (row, (s, q)) in sums.iter().enumerate() {
            let m = s / n;
            let sd = (q / n - m * m).sqrt();
            assert!(
                m.abs() < 1e-4 && (sd - 1.0).abs() < 1e-4,
                "row {row}: mean {m}, sd {sd}"
            );
        }
    }

    /// A row that never varies gets the floor (a tenth of the speaker's typical row spread in that
    /// channel) instead of a near-zero standard deviation, so a different value there stays a
    /// moderate input.
    #[test]
    fn a_constant_row_gets_the_floored_standard_deviation() {
        let mut imgs = images(4, 2);
        for x in &mut imgs {
            x[3 * 16..4 * 16].fill(0.25); // channel 0, row 3
        }
        let norm = SpeakerNorm::from_images(&imgs, &["s"; 4], (2, 6, 16)).unwrap();
        let (mean, std) = norm.stats("s").unwrap();
        let row_variance = |row: usize| {
            let v: Vec<f64> = imgs
                .iter()
                .flat_map(|x| x[row * 16..(row + 1) * 16].iter().map(|&v| v as f64))
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64
        };
        let floor = SpeakerNorm::STD_FLOOR * ((0..6).map(row_variance).sum::<f64>() / 6.0).sqrt();
        assert_eq!(mean[3], 0.25);
        assert!(
            ((std[3] as f64) - floor).abs() < 1e-6,
            "std {} vs floor {floor}",
            std[3]
        );
        // The other rows vary more than the floor and keep their own standard deviation.
        assert!(((std[2] as f64) - row_variance(2).sqrt()).abs() < 1e-6);
        let mut x = imgs[0].clone();
        x[3 * 16] = 0.3;
        norm.apply(0, &mut x);
        assert!(
            x[3 * 16].is_finite() && x[3 * 16].abs() < 20.0,
            "{}",
            x[3 * 16]
        );
    }

    #[test]
    fn mismatched_inputs_are_refused() {
        let imgs = images(2, 3);
        assert!(SpeakerNorm::from_images(&imgs, &["a"], (2, 6, 16)).is_err());
        assert!(SpeakerNorm::from_images(&imgs, &["a", "b"], (2, 6, 15)).is_err());
        assert!(SpeakerNorm::from_images(&[], &[] as &[&str], (2, 6, 16)).is_err());
    }
}
