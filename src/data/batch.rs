//! Batches for the trainer: (inputs `N × C × H × W` f32, labels u32) from a list of utterances of a
//! [`FeatureStore`], rendered on the fly (in parallel), shuffled per epoch by seed, augmented when
//! asked (training only), normalised by per-channel statistics of the TRAINING utterances.
//!
//! Reproducibility: epoch `e`'s order depends only on (seed, e), and sample `k` of that epoch is
//! augmented with a generator seeded by (seed, e, k), so the batches are the same whatever the
//! thread count.

use std::cell::RefCell;

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
    norm: InputNorm,
}

impl<'a> Batcher<'a> {
    /// Batches over `indices` (corpus indices into `store`), drawn as `image` says.
    pub fn new(
        store: &'a FeatureStore,
        image: &ImageConfig,
        indices: &[usize],
        cfg: BatchConfig,
        norm: InputNorm,
    ) -> Result<Self> {
        image.validate()?;
        if cfg.batch_size == 0 {
            return Err(config_err!("batch size must be at least 1"));
        }
        if let Some(a) = &cfg.augment {
            a.validate()?;
        }
        if norm.mean.len() != image.channels() || norm.std.len() != image.channels() {
            return Err(config_err!(
                "input normalisation has {} channel(s), the images have {}",
                norm.mean.len(),
                image.channels()
            ));
        }
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
                self.norm.apply(out);
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
