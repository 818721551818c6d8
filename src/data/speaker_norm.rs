//! Per-speaker input normalisation ([`SpeakerNorm`]): each speaker's own per-(channel, row)
//! statistics over every frame of the plain images of all of its utterances, one set per stored
//! waveform variant.

use rayon::prelude::*;

use super::cache::FeatureStore;
use super::render::{every_frame_image, utterance_moments, RowMoments};
use crate::features::ImageConfig;
use crate::{config_err, Result};

/// Per-speaker input normalisation: the image of an utterance of speaker `s` becomes
/// `x[c, row, t] ← (x − mean_s[c, row]) / std_s[c, row]`, each speaker's statistics taken over the
/// plain (unaugmented) images of all of its utterances, every frame of each utterance counted once.
/// A waveform-perturbed variant (speed, pitch) of an utterance is normalised with the statistics
/// of the same variant of all of its speaker's utterances ([`SpeakerNorm::apply_variant`]).
///
/// Each image row is one frequency band, so this removes a speaker's average spectral envelope
/// (vocal-tract length, recording channel) and its per-band loudness spread, as per-speaker
/// feature normalisation does in the speech emotion literature. It needs only unlabelled audio of
/// the speaker, but for a test speaker it is transductive: the statistics come from the very
/// utterances being classified.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeakerNorm {
    pub(crate) channels: usize,
    pub(crate) height: usize,
    /// The speakers, sorted.
    speakers: Vec<String>,
    /// Index into `speakers` of every utterance (corpus index).
    utterance_speaker: Vec<usize>,
    /// `[variant * speakers + speaker][c * height + row]`; variant 0 is the original audio.
    mean: Vec<Vec<f32>>,
    /// `[variant * speakers + speaker][c * height + row]`, floored (see
    /// [`SpeakerNorm::STD_FLOOR`]).
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
    /// in), grouped by `speakers[i]`, the speaker of utterance `i`, over every frame of each
    /// utterance ([`every_frame_image`]), for each waveform variant the store holds. Images are
    /// rendered in parallel; per-utterance sums are combined in utterance order, so the result is
    /// the same bit for bit whatever the thread count.
    pub fn from_store<S: AsRef<str>>(
        store: &FeatureStore,
        image: &ImageConfig,
        speakers: &[S],
    ) -> Result<Self> {
        let mut norms = Self::from_store_groupings(store, image, &[speakers])?;
        Ok(norms.pop().expect("one grouping"))
    }

    /// [`SpeakerNorm::from_store`] for several groupings of the same utterances at once: the
    /// images are rendered and their moments taken once, then summed per group of each grouping.
    pub fn from_store_groupings<S: AsRef<str>>(
        store: &FeatureStore,
        image: &ImageConfig,
        groupings: &[&[S]],
    ) -> Result<Vec<Self>> {
        image.validate()?;
        if let Some(g) = groupings.iter().find(|g| g.len() != store.len()) {
            return Err(config_err!(
                "speaker normalisation: {} speaker names for {} utterances",
                g.len(),
                store.len()
            ));
        }
        let (c, h) = (image.channels(), image.height);
        let wide = every_frame_image(store, image);
        let variants = store.variants().len().max(1);
        let per_variant: Vec<Vec<RowMoments>> = (0..variants)
            .map(|v| {
                (0..store.len())
                    .into_par_iter()
                    .map(|i| utterance_moments(store, &wide, i, v))
                    .collect()
            })
            .collect();
        groupings
            .iter()
            .map(|speakers| Self::from_moments(&per_variant, speakers, c, h))
            .collect()
    }

    /// Statistics of ready images (`images[i]` is utterance `i`'s (C, H, W) image, of speaker
    /// `speakers[i]`, every column a frame): the same computation as [`SpeakerNorm::from_store`]
    /// after rendering, for the original audio only.
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
            .map(|x| RowMoments::of(x, c * h, w, w))
            .collect();
        Self::from_moments(&[partial], speakers, c, h)
    }

    fn from_moments<S: AsRef<str>>(
        per_variant: &[Vec<RowMoments>],
        speakers: &[S],
        c: usize,
        h: usize,
    ) -> Result<Self> {
        if per_variant.first().is_none_or(|p| p.is_empty()) {
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
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for partial in per_variant {
            let mut sum = vec![vec![0f64; rows]; names.len()];
            let mut sumsq = vec![vec![0f64; rows]; names.len()];
            let mut columns = vec![0usize; names.len()];
            // Fixed order (utterance index) so the statistics are bit-identical from run to run.
            for (m, &s) in partial.iter().zip(&utterance_speaker) {
                for k in 0..rows {
                    sum[s][k] += m.sum[k];
                    sumsq[s][k] += m.sumsq[k];
                }
                columns[s] += m.columns;
            }
            for s in 0..names.len() {
                let n_row = columns[s] as f64;
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

    /// Normalisation with given statistics: `stats` holds (speaker, mean, std) per speaker, each
    /// indexed `c * height + row` as [`SpeakerNorm::stats`] returns them (e.g. saved by enrollment),
    /// and `speakers[i]` names utterance `i`'s speaker, which must be one of them.
    pub fn from_stats<S: AsRef<str>>(
        (channels, height): (usize, usize),
        stats: Vec<(String, Vec<f32>, Vec<f32>)>,
        speakers: &[S],
    ) -> Result<Self> {
        let mut stats = stats;
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = stats.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(config_err!(
                "speaker normalisation: two sets of statistics for speaker '{}'",
                w[0].0
            ));
        }
        if let Some((name, m, s)) = stats
            .iter()
            .find(|(_, m, s)| m.len() != channels * height || s.len() != channels * height)
        {
            return Err(config_err!(
                "speaker normalisation: the statistics of '{name}' have {} means and {} standard \
                 deviations, the model needs {channels}×{height}",
                m.len(),
                s.len()
            ));
        }
        let names: Vec<String> = stats.iter().map(|(n, _, _)| n.clone()).collect();
        let utterance_speaker = speakers
            .iter()
            .map(|s| {
                names
                    .binary_search_by(|n| n.as_str().cmp(s.as_ref()))
                    .map_err(|_| {
                        config_err!(
                            "no statistics for speaker '{}' (statistics given for: {})",
                            s.as_ref(),
                            names.join(", ")
                        )
                    })
            })
            .collect::<Result<Vec<usize>>>()?;
        let (mean, std) = stats.into_iter().map(|(_, m, s)| (m, s)).unzip();
        Ok(SpeakerNorm {
            channels,
            height,
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
        self.apply_variant(utterance, 0, chw)
    }

    /// Waveform variants the statistics cover (1 = the original audio only).
    pub fn variants(&self) -> usize {
        self.mean.len() / self.speakers.len()
    }

    /// Normalise the (C, H, W) image of waveform variant `variant` of utterance `utterance` with
    /// its speaker's statistics of that variant.
    pub fn apply_variant(&self, utterance: usize, variant: usize, chw: &mut [f32]) {
        assert!(
            variant < self.variants(),
            "speaker statistics cover {} variant(s), not variant {variant}",
            self.variants()
        );
        let s = variant * self.speakers.len() + self.utterance_speaker[utterance];
        let w = chw.len() / (self.channels * self.height);
        for (k, row) in chw.chunks_exact_mut(w).enumerate() {
            let (m, inv) = (self.mean[s][k], 1.0 / self.std[s][k]);
            row.iter_mut().for_each(|v| *v = (*v - m) * inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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
