//! Spectrogram → image.
//!
//! 1. Normalise per utterance: dB → [0, 1] over `[max(min, max − top_db), max]`.
//! 2. Resize the time axis (frames → width) and then the frequency axis (bins → height) with
//!    separable triangle (bilinear) filters whose support widens by the reduction factor when an
//!    axis shrinks, so downsizing averages instead of aliasing (the "antialiased bilinear" of common
//!    image libraries). Each pass is a weighted sum of whole rows, which the compiler vectorises:
//!    the time pass runs on frame-major data (rows = frames), then the data is transposed so that the
//!    frequency pass's rows are image rows.
//! 3. Flip so that row 0 is the highest frequency (low frequencies at the bottom), quantise, colour.
//!
//! Weights are non-negative and sum to one, so intensities stay in [0, 1]; normalising before
//! resizing gives the same image as after, at a fraction of the cost.

use super::colormap::{level, ColorTable};
use super::stft::Spectrogram;
use super::{ImageConfig, TimeAxis};
use crate::Result;

/// A rectangle of the spectrogram to draw, in source coordinates: frames `[t0, t1)` and bins
/// `[f0, f1)`, fractional edges allowed (a random crop need not fall on whole frames).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub t0: f32,
    pub t1: f32,
    pub f0: f32,
    pub f1: f32,
}

impl Region {
    pub fn whole(spec: &Spectrogram) -> Self {
        Region {
            t0: 0.0,
            t1: spec.frames as f32,
            f0: 0.0,
            f1: spec.bins as f32,
        }
    }
}

/// Separable resampling weights for one axis: output `i` = Σ_k weights[i][k] · input[starts[i] + k].
#[derive(Clone, Debug, Default)]
struct ResizeTable {
    starts: Vec<usize>,
    lens: Vec<usize>,
    stride: usize,
    weights: Vec<f32>,
    key: Option<(usize, u32, u32, usize, bool)>,
}

impl ResizeTable {
    /// Triangle-filter table mapping the source span `[start, start + span)` of an axis with
    /// `src_len` samples onto `dst_len` outputs (pixel centres at +0.5). With `one_to_one`, output
    /// `i` is source `floor(start) + i` (or nothing past the end): the fixed-time-resolution axis.
    fn prepare(&mut self, src_len: usize, start: f32, span: f32, dst_len: usize, one_to_one: bool) {
        let key = (
            src_len,
            start.to_bits(),
            span.to_bits(),
            dst_len,
            one_to_one,
        );
        if self.key == Some(key) {
            return;
        }
        self.key = Some(key);
        self.starts.clear();
        self.lens.clear();
        self.weights.clear();
        if one_to_one {
            self.stride = 1;
            let first = start.floor().max(0.0) as usize;
            for i in 0..dst_len {
                let s = first + i;
                self.starts.push(s.min(src_len.saturating_sub(1)));
                self.lens.push(usize::from(s < src_len));
                self.weights.push(1.0);
            }
            return;
        }
        let scale = span as f64 / dst_len as f64;
        let support = scale.max(1.0);
        self.stride = (2.0 * support).ceil() as usize + 2;
        let mut w = vec![0f64; self.stride];
        for i in 0..dst_len {
            let centre = start as f64 + (i as f64 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(src_len);
            let mut total = 0.0;
            let mut n = 0;
            for (k, j) in (lo..hi).enumerate().take(self.stride) {
                // Distance from source sample j's centre to the output centre, in filter units.
                let d = ((j as f64 + 0.5 - centre) / support).abs();
                w[k] = (1.0 - d).max(0.0);
                total += w[k];
                n = k + 1;
            }
            if total <= 0.0 {
                // Centre outside the source (cannot happen for spans inside it): nearest sample.
                self.starts
                    .push((centre.max(0.0) as usize).min(src_len - 1));
                self.lens.push(1);
                self.weights.push(1.0);
                self.weights
                    .extend(std::iter::repeat_n(0.0, self.stride - 1));
                continue;
            }
            // Drop zero-weight taps at both ends so the inner loops do no useless work.
            let first_nz = w[..n].iter().position(|&x| x > 0.0).unwrap_or(0);
            let last_nz = w[..n].iter().rposition(|&x| x > 0.0).unwrap_or(0);
            self.starts.push(lo + first_nz);
            self.lens.push(last_nz + 1 - first_nz);
            for &x in &w[first_nz..=last_nz] {
                self.weights.push((x / total) as f32);
            }
            self.weights.extend(std::iter::repeat_n(
                0.0,
                self.stride - (last_nz + 1 - first_nz),
            ));
        }
    }

    #[inline]
    fn taps(&self, i: usize) -> (usize, &[f32]) {
        (
            self.starts[i],
            &self.weights[i * self.stride..i * self.stride + self.lens[i]],
        )
    }
}

/// `dst = Σ_k w[k] · rows[start + k]`, rows of length `dst.len()` packed in `src`.
#[inline]
fn weighted_rows(dst: &mut [f32], src: &[f32], start: usize, w: &[f32]) {
    let n = dst.len();
    match w.len() {
        0 => dst.fill(0.0),
        1 => {
            let (w0, r0) = (w[0], &src[start * n..(start + 1) * n]);
            dst.iter_mut().zip(r0).for_each(|(d, &a)| *d = w0 * a);
        }
        2 => {
            let (w0, w1) = (w[0], w[1]);
            let r0 = &src[start * n..(start + 1) * n];
            let r1 = &src[(start + 1) * n..(start + 2) * n];
            dst.iter_mut()
                .zip(r0.iter().zip(r1))
                .for_each(|(d, (&a, &b))| *d = w0 * a + w1 * b);
        }
        _ => {
            let r0 = &src[start * n..(start + 1) * n];
            dst.iter_mut().zip(r0).for_each(|(d, &a)| *d = w[0] * a);
            for (k, &wk) in w.iter().enumerate().skip(1) {
                let r = &src[(start + k) * n..(start + k + 1) * n];
                dst.iter_mut().zip(r).for_each(|(d, &a)| *d += wk * a);
            }
        }
    }
}

/// `dst[c][r] = src[r][c]` for a `rows × cols` matrix, in cache-sized blocks.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 16;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                let row = &src[r * cols..(r + 1) * cols];
                for c in c0..(c0 + B).min(cols) {
                    dst[c * rows + r] = row[c];
                }
            }
        }
    }
}

/// Draws spectrograms for one [`ImageConfig`]; owns its tables and scratch, so it allocates nothing
/// per image once warm. One per thread.
pub struct Renderer {
    cfg: ImageConfig,
    table: ColorTable,
    time: ResizeTable,
    freq: ResizeTable,
    norm: Vec<f32>,
    resized_time: Vec<f32>,
    transposed: Vec<f32>,
    intensity: Vec<f32>,
    /// One image row, for the fused frequency-pass-and-colour of `render_u8`.
    row: Vec<f32>,
    /// Columns of the last drawn image that hold source frames (the rest is padding).
    valid: std::ops::Range<usize>,
    /// Δ and ΔΔ planes of the last intensities (when `delta_window` > 0), and whether they are
    /// up to date with them.
    delta: Vec<f32>,
    delta2: Vec<f32>,
    deltas_ready: bool,
}

impl Renderer {
    pub fn new(cfg: &ImageConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Renderer {
            cfg: cfg.clone(),
            table: ColorTable::new(cfg.colormap),
            time: ResizeTable::default(),
            freq: ResizeTable::default(),
            norm: Vec::new(),
            resized_time: Vec::new(),
            transposed: Vec::new(),
            intensity: vec![0.0; cfg.height * cfg.width],
            row: vec![0.0; cfg.width],
            valid: 0..cfg.width,
            delta: Vec::new(),
            delta2: Vec::new(),
            deltas_ready: false,
        })
    }

    pub fn config(&self) -> &ImageConfig {
        &self.cfg
    }

    /// The region drawn without augmentation: the whole utterance, or in the fixed-time-resolution
    /// mode its first `width` frames (padded past the end).
    pub fn default_region(&self, spec: &Spectrogram) -> Region {
        match self.cfg.time_axis {
            TimeAxis::Whole => Region::whole(spec),
            TimeAxis::Fixed => Region {
                t1: self.cfg.width as f32,
                ..Region::whole(spec)
            },
        }
    }

    /// Image intensities in [0, 1], `height × width`, row 0 = highest frequency, for `region` of
    /// `spec`, normalised by the whole utterance's range.
    pub fn intensity(&mut self, spec: &Spectrogram, region: &Region) -> &[f32] {
        self.intensity_mut(spec, region)
    }

    /// [`Renderer::intensity`], mutable, for augmentations that draw on the image before colouring
    /// it with [`Renderer::colorize_chw`].
    pub fn intensity_mut(&mut self, spec: &Spectrogram, region: &Region) -> &mut [f32] {
        self.resize_time(spec, region);
        self.deltas_ready = false;
        let (h, w) = (self.cfg.height, self.cfg.width);
        self.intensity.resize(h * w, 0.0);
        for (y, dst) in self.intensity.chunks_exact_mut(w).enumerate() {
            let (start, wts) = self.freq.taps(h - 1 - y);
            weighted_rows(dst, &self.transposed, start, wts);
        }
        &mut self.intensity
    }

    /// Normalise, resize the time axis, and transpose (bins × width, ready for the frequency pass);
    /// also prepares the frequency table.
    fn resize_time(&mut self, spec: &Spectrogram, region: &Region) {
        let (h, w) = (self.cfg.height, self.cfg.width);
        let (frames, bins) = (spec.frames, spec.bins);

        let (min, max) = spec.range();
        let lo = min.max(max - self.cfg.top_db);
        let scale = if max > lo { 1.0 / (max - lo) } else { 0.0 };
        self.norm.resize(spec.db.len(), 0.0);
        for (n, &d) in self.norm.iter_mut().zip(&spec.db) {
            // Comparisons that are the packed max/min instructions' own semantics, so the loop
            // vectorises (`clamp` does not); a NaN (impossible from a finite spectrogram) becomes 0.
            let v = (d - lo) * scale;
            let v = if v > 0.0 { v } else { 0.0 };
            *n = if v < 1.0 { v } else { 1.0 };
        }

        let fixed = self.cfg.time_axis == TimeAxis::Fixed;
        self.time
            .prepare(frames, region.t0, region.t1 - region.t0, w, fixed);
        self.valid = if fixed {
            0..frames
                .saturating_sub(region.t0.floor().max(0.0) as usize)
                .min(w)
        } else {
            0..w
        };
        self.freq
            .prepare(bins, region.f0, region.f1 - region.f0, h, false);

        self.resized_time.resize(w * bins, 0.0);
        for (x, dst) in self.resized_time.chunks_exact_mut(bins).enumerate() {
            let (start, wts) = self.time.taps(x);
            weighted_rows(dst, &self.norm, start, wts);
        }
        self.transposed.resize(bins * w, 0.0);
        transpose(&self.resized_time, w, bins, &mut self.transposed);
    }

    /// The last intensities, mutable, for drawing on (noise points, masks) without redrawing;
    /// the Δ planes are not recomputed from them once computed.
    pub fn intensity_mut_last(&mut self) -> &mut [f32] {
        &mut self.intensity
    }

    /// Columns of the last drawn image that hold source frames; in the fixed-time mode the
    /// columns past a short utterance's end are padding.
    pub fn valid_columns(&self) -> std::ops::Range<usize> {
        self.valid.clone()
    }

    /// Reverse the time axis of the last intensities (the "flip" augmentation), keeping track of
    /// where the padding went.
    pub fn flip_time(&mut self) {
        let w = self.cfg.width;
        self.intensity
            .chunks_exact_mut(w)
            .for_each(|row| row.reverse());
        self.valid = w - self.valid.end..w - self.valid.start;
        self.deltas_ready = false;
    }

    /// Compute the Δ and ΔΔ planes of the last intensities now (a no-op without delta
    /// channels), so that augmentations can mask them too ([`Renderer::deltas_mut`]); otherwise
    /// [`Renderer::colorize_chw`] computes them.
    pub fn compute_deltas(&mut self) {
        if self.cfg.delta_window == 0 || self.deltas_ready {
            return;
        }
        super::deltas::deltas_rows(
            &self.intensity,
            self.cfg.width,
            self.valid.clone(),
            self.cfg.delta_window,
            &mut self.delta,
            &mut self.delta2,
        );
        self.deltas_ready = true;
    }

    /// The Δ and ΔΔ planes (`height × width` each) after [`Renderer::compute_deltas`]; empty
    /// without delta channels.
    pub fn deltas_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        self.compute_deltas();
        (&mut self.delta, &mut self.delta2)
    }

    /// Colour the last computed intensities into planar f32 (`channels × height × width`); with
    /// `grayed`, every colour channel holds the luma of the coloured pixel. With delta channels,
    /// the last two planes are Δ and ΔΔ of the (unquantised) intensities.
    pub fn colorize_chw(&mut self, grayed: bool, out: &mut [f32]) {
        let plane = self.intensity.len();
        let colour = self.cfg.colormap.channels() * plane;
        colorize_chw(&self.table, &self.intensity, grayed, &mut out[..colour]);
        if self.cfg.delta_window > 0 {
            self.compute_deltas();
            out[colour..colour + plane].copy_from_slice(&self.delta);
            out[colour + plane..].copy_from_slice(&self.delta2);
        }
    }

    /// The default image of `spec` as interleaved u8 (`height × width × colour channels`), for
    /// PNG: the colour channels only (Δ and ΔΔ are signed and have no picture).
    pub fn render_u8(&mut self, spec: &Spectrogram, out: &mut Vec<u8>) {
        let region = self.default_region(spec);
        self.resize_time(spec, &region);
        // Frequency pass and colour fused row by row: the row stays in L1 instead of a round trip
        // through a full-image intensity buffer.
        self.deltas_ready = false;
        let (h, w, c) = (
            self.cfg.height,
            self.cfg.width,
            self.cfg.colormap.channels(),
        );
        out.resize(h * w * c, 0);
        self.row.resize(w, 0.0);
        for (y, dst) in out.chunks_exact_mut(w * c).enumerate() {
            let (start, wts) = self.freq.taps(h - 1 - y);
            weighted_rows(&mut self.row, &self.transposed, start, wts);
            colorize_u8(&self.table, &self.row, dst);
        }
    }

    /// The default image of `spec` as planar f32 (`channels × height × width`): colours in
    /// [0, 1], then Δ and ΔΔ when configured.
    pub fn render_chw(&mut self, spec: &Spectrogram, out: &mut [f32]) {
        let region = self.default_region(spec);
        self.render_region_chw(spec, &region, out);
    }

    /// [`Renderer::render_chw`] for `region` (e.g. one crop of an utterance for evaluation).
    pub fn render_region_chw(&mut self, spec: &Spectrogram, region: &Region, out: &mut [f32]) {
        self.intensity_mut(spec, region);
        self.colorize_chw(false, out);
    }
}

/// Interleaved u8 pixels of `intensity` (`out.len()` = pixels × channels of the table's colormap).
pub fn colorize_u8(table: &ColorTable, intensity: &[f32], out: &mut [u8]) {
    let channels = table.colormap.channels();
    assert_eq!(out.len(), intensity.len() * channels, "output buffer size");
    // Quantise a block of pixels first (a branch-free loop that vectorises), then look colours up.
    const BLOCK: usize = 64;
    let mut levels = [0u8; BLOCK];
    for (inp, outp) in intensity
        .chunks(BLOCK)
        .zip(out.chunks_mut(BLOCK * channels))
    {
        let levels = &mut levels[..inp.len()];
        quantise(inp, levels);
        if channels == 1 {
            for (o, &q) in outp.iter_mut().zip(levels.iter()) {
                *o = table.rgb8[q as usize][0];
            }
            continue;
        }
        // Four pixels (12 bytes) at a time as three little-endian words: a per-pixel 3-byte copy
        // costs several times more, and this loop is a large share of the whole image's cost.
        let lut = &table.rgb32;
        let mut out_quads = outp.chunks_exact_mut(12);
        let mut in_quads = levels.chunks_exact(4);
        for (o, q) in (&mut out_quads).zip(&mut in_quads) {
            let a = lut[q[0] as usize];
            let b = lut[q[1] as usize];
            let c = lut[q[2] as usize];
            let d = lut[q[3] as usize];
            o[0..4].copy_from_slice(&(a | b << 24).to_le_bytes());
            o[4..8].copy_from_slice(&(b >> 8 | c << 16).to_le_bytes());
            o[8..12].copy_from_slice(&(c >> 16 | d << 8).to_le_bytes());
        }
        for (o, &q) in out_quads
            .into_remainder()
            .chunks_exact_mut(3)
            .zip(in_quads.remainder())
        {
            o.copy_from_slice(&table.rgb8[q as usize]);
        }
    }
}

/// `levels[i] = level(v[i])`, written so that it vectorises: the comparisons are the packed
/// max/min instructions' own semantics (NaN becomes 0, as in `level`), after which the value is a
/// finite number in [0, 255] and converts without saturation checks.
#[inline]
fn quantise(v: &[f32], levels: &mut [u8]) {
    for (q, &x) in levels.iter_mut().zip(v) {
        let y = x * 255.0 + 0.5;
        let y = if y > 0.0 { y } else { 0.0 };
        let y = if y < 255.0 { y } else { 255.0 };
        // SAFETY: y is finite and in [0, 255] (NaN failed the first comparison and became 0), so
        // it is representable as i32 after truncation.
        *q = unsafe { y.to_int_unchecked::<i32>() } as u8;
    }
}

/// Planar f32 pixels of `intensity` (`channels × pixels`); with `grayed`, every channel holds the
/// luma of the coloured pixel instead (the paper's "graying" augmentation; a no-op for gray).
pub fn colorize_chw(table: &ColorTable, intensity: &[f32], grayed: bool, out: &mut [f32]) {
    let channels = table.colormap.channels();
    let n = intensity.len();
    assert_eq!(out.len(), n * channels, "output buffer size");
    if grayed {
        for c in 0..channels {
            for (o, &v) in out[c * n..(c + 1) * n].iter_mut().zip(intensity) {
                *o = table.gray8[level(v) as usize] as f32 * (1.0 / 255.0);
            }
        }
        return;
    }
    for c in 0..channels {
        let plane = &table.planes[c];
        for (o, &v) in out[c * n..(c + 1) * n].iter_mut().zip(intensity) {
            *o = plane[level(v) as usize];
        }
    }
}
