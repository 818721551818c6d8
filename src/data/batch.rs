//! Batches for the trainer: (inputs `N × C × H × W` f32, labels u32) from a list of utterances of a
//! [`FeatureStore`], rendered on the fly (in parallel), shuffled per epoch by seed, augmented when
//! asked (training only), and normalised by a [`Normalization`] (see [`super::norm`]).
//!
//! Reproducibility: epoch `e`'s order depends only on (seed, e), and sample `k` of that epoch is
//! augmented with a generator seeded by (seed, e, k), so the batches are the same whatever the
//! thread count.

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::AugmentConfig;
use super::cache::FeatureStore;
use super::norm::Normalization;
use super::render::with_renderer;
use crate::features::ImageConfig;
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
    /// `norm` (an [`InputNorm`](super::InputNorm) or a [`Normalization`]).
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
        norm.check(image, store)?;
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
                let (variant, after_norm) =
                    with_renderer(&self.image, |r, spec| match &self.cfg.augment {
                        None => {
                            self.store.spectrogram_into(i, 0, spec);
                            r.render_chw(spec, out);
                            (0, None)
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
                            (variant, Some(aug.render(r, spec, &mut rng, out)))
                        }
                    });
                self.norm.apply_variant(i, variant, out);
                if let Some(after) = after_norm {
                    after.apply(out);
                }
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
