//! The per-thread renderer that turns a cached spectrogram into an image: shared by the batcher and
//! the normalisation statistics, so both draw exactly the same pixels.

use std::cell::RefCell;

use crate::features::{ImageConfig, Renderer, Spectrogram};

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
