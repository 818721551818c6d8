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
//!   then col2im ADDS dcol into dx.
//! - d_weight: the items are split into one contiguous range per thread; each range sums
//!   dy[img][:, chunk] · colᵀ into its own partial (stored transposed, K × C_out, which the GEMM
//!   fills twice as fast), and the partials are added in range order while transposing back, so the
//!   result is reproducible for a given thread count. WRITES dw.
//! - d_bias: per output channel, the sum of dy over batch and pixels (in f64). WRITES db.

use rayon::prelude::*;

use super::gemm::{gemm, gemm_raw, Threads, View};
use super::{check_len, Scratch, SyncPtr};
use crate::backends::geometry::ConvGeom;
use crate::tensor::Real;
use crate::{shape_err, Result};

/// Target size (elements) of one chunk's im2col matrix: 512 KiB of f32, a quarter of a Zen 4 L2, so
/// the matrix is still in cache when the GEMM reads it. (On the paper net, targets from 2^16 to 2^20
/// were within the noise of the shared 2-core machine; this one sits in the middle.)
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
        let fields = [
            g.n, g.c_in, g.h_in, g.w_in, g.c_out, g.k_h, g.k_w, g.stride, g.pad_top, g.pad_left,
            g.h_out, g.w_out,
        ];
        if fields.iter().any(|&v| v < 0)
            || [
                g.c_in, g.h_in, g.w_in, g.c_out, g.k_h, g.k_w, g.stride, g.h_out, g.w_out,
            ]
            .contains(&0)
        {
            return Err(shape_err!("invalid conv2d geometry {g:?}"));
        }
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
    /// The output columns [lo, hi) whose input column ow·s + kw − pad_left lies inside the image.
    fn valid_cols(&self, kw: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = if kw >= self.pad_left {
            0
        } else {
            (self.pad_left - kw).div_ceil(s)
        };
        let limit = self.w_in + self.pad_left; // ow·s + kw < limit
        let hi = if limit <= kw {
            0
        } else {
            (limit - kw).div_ceil(s)
        };
        let hi = hi.min(self.w_out);
        (lo.min(hi), hi)
    }
    /// The input row read by output row `oh` at kernel row `kh`, if inside the image.
    fn input_row(&self, oh: usize, kh: usize) -> Option<usize> {
        (oh * self.stride + kh)
            .checked_sub(self.pad_top)
            .filter(|&ih| ih < self.h_in)
    }
}

/// Fill `col` (K × P_c, row-major, P_c = pixels of output rows [oh0, oh1)) from one image `x`
/// (C_in, H_in, W_in); padding reads as zero. Every element of `col[..K·P_c]` is written.
fn im2col<T: Real>(d: &Dims, x: &[T], (oh0, oh1): (usize, usize), col: &mut [T]) {
    let pc = (oh1 - oh0) * d.w_out;
    let (s, wo) = (d.stride, d.w_out);
    for ci in 0..d.c_in {
        let plane = &x[ci * d.h_in * d.w_in..][..d.h_in * d.w_in];
        for kh in 0..d.k_h {
            for kw in 0..d.k_w {
                let r = (ci * d.k_h + kh) * d.k_w + kw;
                let row = &mut col[r * pc..][..pc];
                let (lo, hi) = d.valid_cols(kw);
                for (j, oh) in (oh0..oh1).enumerate() {
                    let seg = &mut row[j * wo..][..wo];
                    let Some(ih) = d.input_row(oh, kh) else {
                        seg.fill(T::ZERO);
                        continue;
                    };
                    let src = &plane[ih * d.w_in..][..d.w_in];
                    seg[..lo].fill(T::ZERO);
                    seg[hi..].fill(T::ZERO);
                    if lo == hi {
                        continue;
                    }
                    // input column of output column ow: ow·s + kw − pad_left (≥ 0 for ow ≥ lo)
                    let first = lo * s + kw - d.pad_left;
                    if s == 1 {
                        seg[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                    } else {
                        for (o, v) in seg[lo..hi].iter_mut().enumerate() {
                            *v = src[first + o * s];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: ADD every element of `col` (K × P_c for output rows [oh0, oh1)) into
/// the input position it was read from in `dx` (C_in, H_in, W_in); padding positions are dropped.
fn col2im_add<T: Real>(d: &Dims, col: &[T], (oh0, oh1): (usize, usize), dx: &mut [T]) {
    let pc = (oh1 - oh0) * d.w_out;
    let (s, wo) = (d.stride, d.w_out);
    for ci in 0..d.c_in {
        let plane = &mut dx[ci * d.h_in * d.w_in..][..d.h_in * d.w_in];
        for kh in 0..d.k_h {
            for kw in 0..d.k_w {
                let r = (ci * d.k_h + kh) * d.k_w + kw;
                let row = &col[r * pc..][..pc];
                let (lo, hi) = d.valid_cols(kw);
                if lo == hi {
                    continue;
                }
                for (j, oh) in (oh0..oh1).enumerate() {
                    let Some(ih) = d.input_row(oh, kh) else {
                        continue;
                    };
                    let seg = &row[j * wo..][..wo];
                    let dst = &mut plane[ih * d.w_in..][..d.w_in];
                    let first = lo * s + kw - d.pad_left;
                    if s == 1 {
                        for (o, v) in dst[first..first + (hi - lo)].iter_mut().zip(&seg[lo..hi]) {
                            *o += *v;
                        }
                    } else {
                        for (o, v) in seg[lo..hi].iter().enumerate() {
                            dst[first + o * s] += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Output rows per im2col chunk for this convolution (tests use it to make sure they cover images
/// split into several chunks).
pub fn chunk_rows(g: &ConvGeom) -> Result<usize> {
    Ok(Dims::new(g)?.chunk_rows)
}

pub(super) fn forward<T: Real>(
    scratch: &Scratch<T>,
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
) -> Result<()> {
    let d = Dims::new(g)?;
    check_len("conv2d x", x.len(), d.n * d.in_len())?;
    check_len("conv2d w", w.len(), d.c_out * d.k_len())?;
    check_len("conv2d b", b.len(), d.c_out)?;
    check_len("conv2d y", y.len(), d.n * d.out_len())?;
    let (k_len, plane, n_chunks) = (d.k_len(), d.plane(), d.n_chunks());
    let y = SyncPtr::new(&mut y[..d.n * d.out_len()]);
    (0..d.n * n_chunks).into_par_iter().for_each(|item| {
        let (img, rows) = (item / n_chunks, d.chunk(item % n_chunks));
        let (p0, pc) = (rows.0 * d.w_out, (rows.1 - rows.0) * d.w_out);
        let base = img * d.out_len() + p0;
        scratch.with(k_len * pc, |col| {
            im2col(&d, &x[img * d.in_len()..][..d.in_len()], rows, col);
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
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Real>(
    scratch: &Scratch<T>,
    g: &ConvGeom,
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &mut [T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: &mut [T],
) -> Result<()> {
    let d = Dims::new(g)?;
    let (k_len, plane, n_chunks) = (d.k_len(), d.plane(), d.n_chunks());
    let (in_total, out_total, w_len) = (d.n * d.in_len(), d.n * d.out_len(), d.c_out * k_len);
    check_len("conv2d x", x.len(), in_total)?;
    check_len("conv2d w", w.len(), w_len)?;
    check_len("conv2d y", y.len(), out_total)?;
    check_len("conv2d dy", dy.len(), out_total)?;
    check_len("conv2d dw", dw.len(), w_len)?;
    check_len("conv2d db", db.len(), d.c_out)?;
    if let Some(dx) = &dx {
        check_len("conv2d dx", dx.len(), in_total)?;
    }
    if d.relu {
        super::relu_mask(&mut dy[..out_total], &y[..out_total]);
    }
    let dy = &dy[..out_total];

    // d_bias (WRITE).
    db[..d.c_out]
        .par_iter_mut()
        .enumerate()
        .for_each(|(c, db)| {
            let sum: f64 = (0..d.n)
                .map(|img| {
                    dy[img * d.out_len() + c * plane..][..plane]
                        .iter()
                        .map(|v| v.to_f64())
                        .sum::<f64>()
                })
                .sum();
            *db = T::from_f64(sum);
        });

    // d_input (ACCUMULATE), one image per task.
    if let Some(dx) = dx {
        dx[..in_total]
            .par_chunks_mut(d.in_len())
            .enumerate()
            .for_each(|(img, dx_img)| {
                scratch.with(k_len * d.max_chunk_pixels(), |dcol| {
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
                        col2im_add(&d, dcol, rows, dx_img);
                    }
                });
            });
    }

    // d_weight (WRITE): one contiguous range of (image, chunk) items per thread, each summed into its
    // own partial, the partials then added in range order. A partial is laid out transposed
    // (K × C_out): with that destination the GEMM packs dy and col along their contiguous axes and
    // runs about twice as fast as into C_out × K.
    let items = d.n * n_chunks;
    let groups = rayon::current_num_threads().clamp(1, items.max(1));
    let mut partials: Vec<Vec<T>> = (0..groups).map(|_| scratch.take(w_len)).collect();
    partials.par_iter_mut().enumerate().for_each(|(gi, acc)| {
        let acc = &mut acc[..w_len];
        let (first, last) = (gi * items / groups, (gi + 1) * items / groups);
        if first == last {
            acc.fill(T::ZERO);
            return;
        }
        scratch.with(k_len * d.max_chunk_pixels(), |col| {
            for item in first..last {
                let (img, rows) = (item / n_chunks, d.chunk(item % n_chunks));
                let (p0, pc) = (rows.0 * d.w_out, (rows.1 - rows.0) * d.w_out);
                let col = &mut col[..k_len * pc];
                im2col(&d, &x[img * d.in_len()..][..d.in_len()], rows, col);
                gemm(
                    d.c_out,
                    k_len,
                    pc,
                    acc,
                    (1, d.c_out),
                    item != first,
                    View::rows(&dy[img * d.out_len() + p0..], plane),
                    View::transposed(col, pc),
                    Threads::Single,
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Padding;
    use crate::tensor::Shape;

    /// im2col against the definition, for strides, paddings and chunk boundaries.
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
            for chunk in 0..d.n_chunks() {
                let rows = d.chunk(chunk);
                let pc = (rows.1 - rows.0) * d.w_out;
                let mut col = vec![f64::NAN; d.k_len() * pc];
                im2col(&d, &x, rows, &mut col);
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
                let mut back = vec![0.0; x.len()];
                col2im_add(&d, &c, rows, &mut back);
                let lhs: f64 = col.iter().zip(&c).map(|(a, b)| a * b).sum();
                let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
                assert_eq!(lhs, rhs);
            }
        }
    }
}
