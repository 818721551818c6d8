//! Convolution on the CPU: im2col + GEMM forward, GEMM + col2im backward.
//!
//! Strategy. Each image's output plane is cut into chunks of whole output rows; a chunk's im2col
//! matrix (K = C_in·K_h·K_w rows, one column per output pixel of the chunk) is sized to stay in
//! cache instead of materialising the whole image's (for conv2 of the paper net at 512×512 that would
//! be half a gigabyte). Work items are (image, chunk) pairs run by rayon over all cores, each GEMM on
//! one thread — one level of parallelism, enough items even for a batch of one.
//!
//! - forward: y[img][:, chunk] = bias; y[img][:, chunk] += W (C_out×K) · col (K×P_c); ReLU.
//! - d_input: per image (col2im of overlapping chunks must not race): dcol = Wᵀ · dy[img][:, chunk],
//!   then col2im ADDS dcol into dx (zeroed first where the op contract says WRITE).
//! - d_weight: the items are split into one contiguous range per thread; each range sums
//!   dy[img][:, chunk] · colᵀ into its own partial (stored transposed, K × C_out, which the GEMM
//!   fills twice as fast), and the partials are added in range order while transposing back, so the
//!   result is reproducible for a given thread count. WRITES dw.
//! - d_bias: per output channel, the sum of dy over batch and pixels (in f64). WRITES db.

use rayon::prelude::*;

use super::{Conv2dOp, ConvBackwardIo, ConvForwardIo, ConvGeom};
use crate::backends::cpu::gemm::{gemm, gemm_raw, Threads, View};
use crate::backends::cpu::{check_len, CpuBackend, Scratch, SyncPtr};
use crate::backends::InputGrad;
use crate::tensor::Real;
use crate::{shape_err, Result};

/// Target size (elements) of one chunk's im2col matrix: 512 KiB of f32, a quarter of a Zen 4 L2, so
/// the matrix is still in cache when the GEMM reads it. (On the paper net, targets from 2^16 to
/// 2^20 were within the noise of the shared 2-core machine; this one sits in the middle.)
const COL_TARGET_ELEMS: usize = 1 << 17;
/// A chunk covers at least this many output pixels. The paper net's large-K layers (K = 2048, 6400)
/// get exactly this many, the size at which the forward GEMM measured fastest (about 105 GFLOP per
/// CPU-second at 128 pixels, 85 to 100 at 256 to 1024).
const MIN_CHUNK_PIXELS: usize = 128;

/// A [`ConvGeom`] checked and converted to `usize`.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c_in: usize,
    h_in: usize,
    w_in: usize,
    c_out: usize,
    k_h: usize,
    k_w: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
    h_out: usize,
    w_out: usize,
    relu: bool,
    /// Output rows per chunk.
    chunk_rows: usize,
}

impl Dims {
    fn new(g: &ConvGeom) -> Result<Self> {
        g.validate()?;
        let u = |v: i32| v as usize;
        let mut d = Dims {
            n: u(g.n),
            c_in: u(g.c_in),
            h_in: u(g.h_in),
            w_in: u(g.w_in),
            c_out: u(g.c_out),
            k_h: u(g.k_h),
            k_w: u(g.k_w),
            stride: u(g.stride),
            pad_top: u(g.pad_top),
            pad_left: u(g.pad_left),
            h_out: u(g.h_out),
            w_out: u(g.w_out),
            relu: g.relu != 0,
            chunk_rows: 0,
        };
        let pixels = (COL_TARGET_ELEMS / d.k_len()).max(MIN_CHUNK_PIXELS);
        d.chunk_rows = (pixels / d.w_out).clamp(1, d.h_out);
        Ok(d)
    }
    fn in_len(&self) -> usize {
        self.c_in * self.h_in * self.w_in
    }
    fn plane(&self) -> usize {
        self.h_out * self.w_out
    }
    fn out_len(&self) -> usize {
        self.c_out * self.plane()
    }
    fn k_len(&self) -> usize {
        self.c_in * self.k_h * self.k_w
    }
    fn n_chunks(&self) -> usize {
        self.h_out.div_ceil(self.chunk_rows)
    }
    /// Output rows [start, end) of chunk `i`.
    fn chunk(&self, i: usize) -> (usize, usize) {
        let start = i * self.chunk_rows;
        (start, (start + self.chunk_rows).min(self.h_out))
    }
    fn max_chunk_pixels(&self) -> usize {
        self.chunk_rows * self.w_out
    }
    /// Height and width of the padded input: the extent the kernel sweeps, (H_out − 1)·s + K_h by
    /// (W_out − 1)·s + K_w. Padded position (i, j) is input position (i − pad_top, j − pad_left).
    fn padded_hw(&self) -> (usize, usize) {
        (
            (self.h_out - 1) * self.stride + self.k_h,
            (self.w_out - 1) * self.stride + self.k_w,
        )
    }
    fn padded_len(&self) -> usize {
        let (hp, wp) = self.padded_hw();
        self.c_in * hp * wp
    }
    /// For padded row (or column) `i` of an axis with input extent `len` and leading padding `pad`:
    /// the input index it holds, if any.
    fn unpad(i: usize, pad: usize, len: usize) -> Option<usize> {
        i.checked_sub(pad).filter(|&v| v < len)
    }
    /// The padded columns [lo, hi) that hold input columns (the rest are zero padding).
    fn interior_cols(&self) -> (usize, usize) {
        let (_, wp) = self.padded_hw();
        let lo = self.pad_left.min(wp);
        (lo, (self.pad_left + self.w_in).min(wp))
    }
}

/// `padded` (C_in, H_p, W_p) ← one image `x` (C_in, H_in, W_in) with its zero padding made explicit
/// (see [`Dims::padded_hw`]), so that im2col is plain copies without bounds checks. Input rows or
/// columns that no kernel position reads (a VALID convolution whose stride skips the last ones) are
/// left out.
fn pad_image<T: Real>(d: &Dims, x: &[T], padded: &mut [T]) {
    let (hp, wp) = d.padded_hw();
    let (lo, hi) = d.interior_cols();
    for (ci, plane) in padded[..d.padded_len()]
        .chunks_exact_mut(hp * wp)
        .enumerate()
    {
        for (i, row) in plane.chunks_exact_mut(wp).enumerate() {
            match Dims::unpad(i, d.pad_top, d.h_in) {
                Some(ih) => {
                    let src = &x[(ci * d.h_in + ih) * d.w_in..][..hi - lo];
                    row[..lo].fill(T::ZERO);
                    row[lo..hi].copy_from_slice(src);
                    row[hi..].fill(T::ZERO);
                }
                None => row.fill(T::ZERO),
            }
        }
    }
}

/// The adjoint of [`pad_image`]: ADD the interior of `padded` (C_in, H_p, W_p) into the image `dx`
/// (C_in, H_in, W_in); the padding is dropped.
fn unpad_add<T: Real>(d: &Dims, padded: &[T], dx: &mut [T]) {
    let (hp, wp) = d.padded_hw();
    let (lo, hi) = d.interior_cols();
    for (ci, plane) in padded[..d.padded_len()].chunks_exact(hp * wp).enumerate() {
        for (i, row) in plane.chunks_exact(wp).enumerate() {
            if let Some(ih) = Dims::unpad(i, d.pad_top, d.h_in) {
                let dst = &mut dx[(ci * d.h_in + ih) * d.w_in..][..hi - lo];
                for (o, v) in dst.iter_mut().zip(&row[lo..hi]) {
                    *o += *v;
                }
            }
        }
    }
}

/// Walks the patch matrix of output rows [oh0, oh1): for each row r = (ci, kh, kw) of the K × P_c
/// matrix (P_c = pixels of those output rows) and each output row oh, calls `f(col_offset,
/// padded_offset)`, where the W_out values at `col_offset` of the patch matrix are the padded
/// image's values from `padded_offset` on, every `stride`-th (output (oh, ow) reads padded (oh·s +
/// kh, ow·s + kw)). [`im2col`] and its adjoint [`col2im_add`] both walk it, so they cannot disagree
/// on an index.
fn for_each_patch_row(d: &Dims, (oh0, oh1): (usize, usize), mut f: impl FnMut(usize, usize)) {
    let pc = (oh1 - oh0) * d.w_out;
    let (hp, wp) = d.padded_hw();
    for ci in 0..d.c_in {
        for kh in 0..d.k_h {
            for kw in 0..d.k_w {
                let r = (ci * d.k_h + kh) * d.k_w + kw;
                for (j, oh) in (oh0..oh1).enumerate() {
                    f(
                        r * pc + j * d.w_out,
                        (ci * hp + oh * d.stride + kh) * wp + kw,
                    );
                }
            }
        }
    }
}

/// Fill `col` (K × P_c, row-major, P_c = pixels of the output rows `rows` = [oh0, oh1)) from one
/// zero-padded image (C_in, H_p, W_p) made by [`pad_image`]. Every element of `col[..K·P_c]` is
/// written.
fn im2col<T: Real>(d: &Dims, padded: &[T], rows: (usize, usize), col: &mut [T]) {
    let (s, wo) = (d.stride, d.w_out);
    for_each_patch_row(d, rows, |c, p| {
        let dst = &mut col[c..][..wo];
        let src = &padded[p..];
        if s == 1 {
            dst.copy_from_slice(&src[..wo]);
        } else {
            for (o, v) in dst.iter_mut().enumerate() {
                *v = src[o * s];
            }
        }
    });
}

/// The adjoint of [`im2col`]: ADD every element of `col` (K × P_c for the output rows `rows` =
/// [oh0, oh1)) into the padded position it was read from in `padded_dx` (C_in, H_p, W_p).
fn col2im_add<T: Real>(d: &Dims, col: &[T], rows: (usize, usize), padded_dx: &mut [T]) {
    let (s, wo) = (d.stride, d.w_out);
    for_each_patch_row(d, rows, |c, p| {
        let src = &col[c..][..wo];
        let dst = &mut padded_dx[p..];
        if s == 1 {
            for (o, v) in dst[..wo].iter_mut().zip(src) {
                *o += *v;
            }
        } else {
            for (o, v) in src.iter().enumerate() {
                dst[o * s] += *v;
            }
        }
    });
}

/// dst (cols × rows, row-major) = the transpose of the `rows` × `cols` matrix whose rows start
/// `row_stride` apart in `src`. Works in strips of 16 columns so that each source cache line is read
/// once, whole, however the rows alias in the cache.
fn transpose<T: Real>(src: &[T], rows: usize, row_stride: usize, cols: usize, dst: &mut [T]) {
    const STRIP: usize = 16;
    for c0 in (0..cols).step_by(STRIP) {
        let c1 = (c0 + STRIP).min(cols);
        for r in 0..rows {
            let src_row = &src[r * row_stride..][c0..c1];
            for (j, &v) in src_row.iter().enumerate() {
                dst[(c0 + j) * rows + r] = v;
            }
        }
    }
}

/// out[c] = the sum over the `n` images of channel c's `plane` values of t (N, C, plane), in f64:
/// the bias gradient of a convolution whose output gradient is t.
pub(in crate::backends) fn channel_sums<T: Real>(
    t: &[T],
    n: usize,
    c: usize,
    plane: usize,
    out: &mut [T],
) {
    out[..c].par_iter_mut().enumerate().for_each(|(ci, o)| {
        let sum: f64 = (0..n)
            .map(|img| sum_f64(&t[(img * c + ci) * plane..][..plane]))
            .sum();
        *o = T::from_f64(sum);
    });
}

/// The sum of `v` in f64, accumulated in eight interleaved lanes (a fixed order, so reproducible)
/// so that the compiler can vectorise it: a single running sum is one dependent add per element.
pub(in crate::backends) fn sum_f64<T: Real>(v: &[T]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += x.to_f64();
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|x| x.to_f64()).sum();
    acc.iter().sum::<f64>() + tail
}

/// Run `f` on the zero-padded copies (N, C_in, H_p, W_p) of all N images of `x`, padded in parallel.
fn with_padded_batch<T: Real, R>(
    scratch: &Scratch<T>,
    d: &Dims,
    x: &[T],
    f: impl FnOnce(&[T]) -> R,
) -> R {
    let len = d.padded_len();
    scratch.with(d.n * len, |padded| {
        padded
            .par_chunks_mut(len)
            .zip(x.par_chunks(d.in_len()))
            .for_each(|(p, x)| pad_image(d, x, p));
        f(padded)
    })
}

/// Output rows per im2col chunk for this convolution (tests use it to make sure they cover images
/// split into several chunks).
pub fn chunk_rows(g: &ConvGeom) -> Result<usize> {
    Ok(Dims::new(g)?.chunk_rows)
}

impl<T: Real> Conv2dOp for CpuBackend<T> {
    fn conv2d_forward(&self, g: &ConvGeom, io: ConvForwardIo<'_, Self::Buf>) -> Result<()> {
        let ConvForwardIo { x, w, b, y } = io;
        let scratch = &self.scratch;
        let d = Dims::new(g)?;
        check_len("conv2d x", x.len(), d.n * d.in_len())?;
        check_len("conv2d w", w.len(), d.c_out * d.k_len())?;
        check_len("conv2d b", b.len(), d.c_out)?;
        check_len("conv2d y", y.len(), d.n * d.out_len())?;
        let (k_len, plane, n_chunks) = (d.k_len(), d.plane(), d.n_chunks());
        let y = SyncPtr::new(&mut y[..d.n * d.out_len()]);
        with_padded_batch(scratch, &d, x, |padded| {
            (0..d.n * n_chunks).into_par_iter().for_each(|item| {
                let (img, rows) = (item / n_chunks, d.chunk(item % n_chunks));
                let (p0, pc) = (rows.0 * d.w_out, (rows.1 - rows.0) * d.w_out);
                let base = img * d.out_len() + p0;
                scratch.with(k_len * pc, |col| {
                    im2col(&d, &padded[img * d.padded_len()..], rows, col);
                    for (c, &bias) in b[..d.c_out].iter().enumerate() {
                        // SAFETY: item (img, chunk) owns pixels [p0, p0 + pc) of every channel of image img;
                        // no other item touches them.
                        unsafe { y.slice(base + c * plane, pc) }.fill(bias);
                    }
                    // SAFETY: the destination is the same region as above: rows c·plane apart, pc columns each.
                    unsafe {
                        gemm_raw(
                            d.c_out,
                            pc,
                            k_len,
                            y.ptr_at(base),
                            (plane, 1),
                            true,
                            View::rows(w, k_len),
                            View::rows(col, pc),
                            Threads::Single,
                        )
                    };
                    if d.relu {
                        for c in 0..d.c_out {
                            // SAFETY: as above.
                            for v in unsafe { y.slice(base + c * plane, pc) } {
                                *v = v.max(T::ZERO);
                            }
                        }
                    }
                });
            });
        });
        Ok(())
    }

    /// The backward pass; `dx` becomes `(dx, accumulate)`: added into when `accumulate`, else written.
    fn conv2d_backward(&self, g: &ConvGeom, io: ConvBackwardIo<'_, Self::Buf>) -> Result<()> {
        let ConvBackwardIo {
            x,
            w,
            y,
            dy,
            dx,
            dw,
            db,
        } = io;
        let scratch = &self.scratch;
        let dx = match dx {
            InputGrad::None => None,
            InputGrad::Add(dx) => Some((dx.as_mut_slice(), true)),
            InputGrad::Write(dx) => Some((dx.as_mut_slice(), false)),
        };
        let db = db.map(|v| v.as_mut_slice());
        let d = Dims::new(g)?;
        let (k_len, plane, n_chunks) = (d.k_len(), d.plane(), d.n_chunks());
        let (in_total, out_total, w_len) = (d.n * d.in_len(), d.n * d.out_len(), d.c_out * k_len);
        check_len("conv2d x", x.len(), in_total)?;
        check_len("conv2d w", w.len(), w_len)?;
        if d.relu {
            check_len("conv2d y", y.len(), out_total)?;
        }
        check_len("conv2d dy", dy.len(), out_total)?;
        check_len("conv2d dw", dw.len(), w_len)?;
        match &db {
            Some(db) => check_len("conv2d db", db.len(), d.c_out)?,
            // Without db a fused pool backward wrote it and masked dy (see `Backend::conv2d_backward`).
            None if d.relu => {
                return Err(shape_err!(
            "conv2d backward of {g:?} without db: dy must already be masked, so ReLU must be off"
        ))
            }
            None => {}
        }
        if let Some((dx, _)) = &dx {
            check_len("conv2d dx", dx.len(), in_total)?;
        }
        if d.relu {
            crate::backends::cpu::relu_mask(&mut dy[..out_total], &y[..out_total]);
        }
        let dy = &dy[..out_total];

        // d_bias (WRITE).
        if let Some(db) = db {
            channel_sums(&dy[..out_total], d.n, d.c_out, plane, &mut db[..d.c_out]);
        }

        // d_input (ACCUMULATE, or WRITE: added into zeros), one image per task.
        if let Some((dx, accumulate)) = dx {
            if !accumulate {
                dx[..in_total].fill(T::ZERO);
            }
            dx[..in_total]
                .par_chunks_mut(d.in_len())
                .enumerate()
                .for_each(|(img, dx_img)| {
                    let max_pc = d.max_chunk_pixels();
                    scratch.with(k_len * max_pc + d.padded_len(), |buf| {
                        let (dcol, padded_dx) = buf.split_at_mut(k_len * max_pc);
                        padded_dx.fill(T::ZERO);
                        for chunk in 0..n_chunks {
                            let rows = d.chunk(chunk);
                            let (p0, pc) = (rows.0 * d.w_out, (rows.1 - rows.0) * d.w_out);
                            let dcol = &mut dcol[..k_len * pc];
                            gemm(
                                k_len,
                                pc,
                                d.c_out,
                                dcol,
                                (pc, 1),
                                false,
                                View::transposed(w, k_len),
                                View::rows(&dy[img * d.out_len() + p0..], plane),
                                Threads::Single,
                            );
                            col2im_add(&d, dcol, rows, padded_dx);
                        }
                        unpad_add(&d, padded_dx, dx_img);
                    });
                });
        }

        // d_weight (WRITE): one contiguous range of (image, chunk) items per thread, each summed into its
        // own partial, the partials then added in range order. A partial is laid out transposed
        // (K × C_out), and each chunk of dy is first transposed to pixel-major (P_c × C_out): the GEMM's
        // micro-kernel then reads dy as it is, instead of packing (transposing) rows that lie a power-of-two
        // plane apart, which thrashed the L1 and made this GEMM 2 to 5 times slower than the forward's.
        let items = d.n * n_chunks;
        let groups = rayon::current_num_threads().clamp(1, items.max(1));
        let mut partials: Vec<Vec<T>> = (0..groups).map(|_| scratch.take(w_len)).collect();
        with_padded_batch(scratch, &d, x, |padded| {
            partials.par_iter_mut().enumerate().for_each(|(gi, acc)| {
                let acc = &mut acc[..w_len];
                let (first, last) = (gi * items / groups, (gi + 1) * items / groups);
                if first == last {
                    acc.fill(T::ZERO);
                    return;
                }
                let max_pc = d.max_chunk_pixels();
                scratch.with((k_len + d.c_out) * max_pc, |buf| {
                    let (col, dy_t) = buf.split_at_mut(k_len * max_pc);
                    for item in first..last {
                        let (img, rows) = (item / n_chunks, d.chunk(item % n_chunks));
                        let (p0, pc) = (rows.0 * d.w_out, (rows.1 - rows.0) * d.w_out);
                        let col = &mut col[..k_len * pc];
                        let dy_t = &mut dy_t[..pc * d.c_out];
                        im2col(&d, &padded[img * d.padded_len()..], rows, col);
                        transpose(&dy[img * d.out_len() + p0..], d.c_out, plane, pc, dy_t);
                        gemm(
                            d.c_out,
                            k_len,
                            pc,
                            acc,
                            (1, d.c_out),
                            item != first,
                            View::transposed(dy_t, d.c_out),
                            View::transposed(col, pc),
                            Threads::Single,
                        );
                    }
                });
            });
        });
        dw[..w_len]
            .par_chunks_mut(k_len)
            .enumerate()
            .for_each(|(co, row)| {
                for (k, v) in row.iter_mut().enumerate() {
                    let mut sum = partials[0][k * d.c_out + co];
                    for p in &partials[1..] {
                        sum += p[k * d.c_out + co];
                    }
                    *v = sum;
                }
            });
        for p in partials {
            scratch.give_back(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Padding;
    use crate::tensor::Shape;

    /// im2col (of the padded image) against the definition, for strides, paddings (including a VALID
    /// convolution whose stride skips the last rows and columns) and chunk boundaries.
    #[test]
    fn im2col_matches_the_definition_and_col2im_is_its_adjoint() {
        for (h, w, k, s, pad) in [
            (7usize, 6usize, 3usize, 1usize, Padding::Same),
            (8, 5, 4, 2, Padding::Same),
            (9, 9, 2, 3, Padding::Valid),
            (
                5,
                7,
                3,
                2,
                Padding::Explicit {
                    top: 2,
                    bottom: 0,
                    left: 1,
                    right: 2,
                },
            ),
        ] {
            let g = ConvGeom::new(Shape::new(1, 2, h, w), 1, (k, k), s, pad, false).unwrap();
            let mut d = Dims::new(&g).unwrap();
            d.chunk_rows = 2;
            let x: Vec<f64> = (0..d.in_len()).map(|i| i as f64 + 1.0).collect();
            let mut padded = vec![f64::NAN; d.padded_len()];
            pad_image(&d, &x, &mut padded);
            for chunk in 0..d.n_chunks() {
                let rows = d.chunk(chunk);
                let pc = (rows.1 - rows.0) * d.w_out;
                let mut col = vec![f64::NAN; d.k_len() * pc];
                im2col(&d, &padded, rows, &mut col);
                for ci in 0..2 {
                    for kh in 0..k {
                        for kw in 0..k {
                            for (j, oh) in (rows.0..rows.1).enumerate() {
                                for ow in 0..d.w_out {
                                    let ih = (oh * s + kh) as isize - d.pad_top as isize;
                                    let iw = (ow * s + kw) as isize - d.pad_left as isize;
                                    let inside =
                                        ih >= 0 && iw >= 0 && ih < h as isize && iw < w as isize;
                                    let want = if inside {
                                        x[(ci * h + ih as usize) * w + iw as usize]
                                    } else {
                                        0.0
                                    };
                                    let r = (ci * k + kh) * k + kw;
                                    assert_eq!(col[r * pc + j * d.w_out + ow], want);
                                }
                            }
                        }
                    }
                }
                // <im2col(x), c> == <x, col2im(c)> for a generic c.
                let c: Vec<f64> = (0..col.len())
                    .map(|i| ((i * 37) % 11) as f64 - 5.0)
                    .collect();
                let mut padded_back = vec![0.0; d.padded_len()];
                col2im_add(&d, &c, rows, &mut padded_back);
                let mut back = vec![0.0; x.len()];
                unpad_add(&d, &padded_back, &mut back);
                let lhs: f64 = col.iter().zip(&c).map(|(a, b)| a * b).sum();
                let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
                assert_eq!(lhs, rhs);
            }
        }
    }
}
