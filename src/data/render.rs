//! The per-thread renderer that turns a cached spectrogram into an image: shared by the batcher and
//! the normalisation statistics, so both draw exactly the same pixels.

use std::cell::RefCell;

use super::cache::FeatureStore;
use crate::features::{ImageConfig, Renderer, Spectrogram, TimeAxis};

thread_local! {
    /// One renderer and spectrogram buffer per thread, rebuilt when the image setting changes.
    static RENDER_STATE: RefCell<Option<(Renderer, Spectrogram)>> = const { RefCell::new(None) };
}

pub(crate) fn with_renderer<T>(
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

/// Sums and sums of squares per (channel, row) of one plain image, over `columns` columns.
pub(crate) struct RowMoments {
    pub sum: Vec<f64>,
    pub sumsq: Vec<f64>,
    pub columns: usize,
}

impl RowMoments {
    /// Moments of the first `columns` columns of every row of a (C, H, W) image.
    pub fn of(chw: &[f32], rows: usize, width: usize, columns: usize) -> Self {
        let mut sum = vec![0f64; rows];
        let mut sumsq = vec![0f64; rows];
        for (k, row) in chw.chunks_exact(width).enumerate() {
            for &v in &row[..columns] {
                sum[k] += v as f64;
                sumsq[k] += (v as f64) * (v as f64);
            }
        }
        RowMoments {
            sum,
            sumsq,
            columns,
        }
    }
}

/// The image configuration that shows every frame of every utterance of `store` (in any stored
/// variant) at once: with `time_axis = "fixed"` (one column per frame) `image` widened to the
/// longest spectrogram; with `"whole"` `image` itself, which already stretches each utterance to its
/// width. Normalisation statistics are taken over these images, so that they describe every frame
/// a training crop or a whole-utterance evaluation can show, not only the first `width` frames.
pub(crate) fn every_frame_image(store: &FeatureStore, image: &ImageConfig) -> ImageConfig {
    let mut wide = image.clone();
    if image.time_axis == TimeAxis::Fixed {
        let longest = (0..store.len())
            .flat_map(|u| (0..store.variants().len().max(1)).map(move |v| (u, v)))
            .map(|(u, v)| store.stored(u, v).frames)
            .max()
            .unwrap_or(0);
        wide.width = wide.width.max(longest);
    }
    wide
}

/// [`RowMoments`] of utterance `utterance`'s plain image in variant `variant`, drawn with `wide`
/// (from [`every_frame_image`]), over the columns that hold its frames (padding left out).
pub(crate) fn utterance_moments(
    store: &FeatureStore,
    wide: &ImageConfig,
    utterance: usize,
    variant: usize,
) -> RowMoments {
    let (c, h, w) = (wide.channels(), wide.height, wide.width);
    with_renderer(wide, |r, spec| {
        store.spectrogram_into(utterance, variant, spec);
        let mut buf = vec![0f32; c * h * w];
        r.render_chw(spec, &mut buf);
        let columns = match wide.time_axis {
            TimeAxis::Fixed => r.valid_columns().end.max(1),
            TimeAxis::Whole => w,
        };
        RowMoments::of(&buf, c * h, w, columns)
    })
}
