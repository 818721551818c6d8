//! The one place the CPU reference multiplies matrices. Every matrix is described by its element
//! strides, so the convolution and dense layers pass transposed views without copying.
//!
//! Backed by the `gemm` crate, chosen over `matrixmultiply` because it has AVX-512 kernels for both
//! f32 and f64, dispatches on the element type at run time (so one generic call serves `Real`), and
//! measured at least as fast on the convolution shapes here (see the commit introducing it).

use crate::tensor::Real;

/// Set the GEMM crate's (process-wide) tuning knobs for the shapes the convolutions use; called by
/// `CpuBackend::new`, idempotent. Speed only: results do not depend on it.
///
/// Single-threaded, the crate copies (packs) the left operand of the micro-kernel whenever the output
/// has more than 8·6 = 48 columns, even when that operand is already contiguous along the micro-kernel's
/// rows. The convolution's forward GEMM has exactly that operand (the im2col chunk, pixel-contiguous)
/// and C_out = 32 or 64 columns; allowing up to 16·6 = 96 columns unpacked made conv2 to conv4's
/// forward 7 to 11 % faster (GFLOP per CPU-second, single thread: 93.8 → 100.3, 90.4 → 100.8,
/// 85.4 → 94.5 at 128×128, batch 8) and left the backward unchanged.
pub(in crate::backends) fn tune_gemm_crate() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gemm::set_lhs_packing_threshold_single_thread(16));
}

/// A read-only matrix view: `rows`×`cols` elements of `data`, element (i, j) at `i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(in crate::backends) struct View<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> View<'a, T> {
    /// A row-major matrix with rows `row_stride` apart.
    pub fn rows(data: &'a [T], row_stride: usize) -> Self {
        View {
            data,
            row_stride,
            col_stride: 1,
        }
    }
    /// The transpose of a row-major matrix whose rows are `row_stride` apart.
    pub fn transposed(data: &'a [T], row_stride: usize) -> Self {
        View {
            data,
            row_stride: 1,
            col_stride: row_stride,
        }
    }
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// Whether the product may use several threads. Calls made from inside a rayon task pass `Single`:
/// the batch-level parallelism already occupies the cores, and nesting would only add overhead.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(in crate::backends) enum Threads {
    Single,
    All,
}

/// `dst (m×n) = [dst +] a (m×k) · b (k×n)`, element (i, j) of dst at `i·row_stride + j·col_stride`
/// with `(row_stride, col_stride) = dst_strides`: with `accumulate` the product is added to dst,
/// otherwise dst is overwritten (and never read).
///
/// Layouts matter for speed: the crate packs both operands, and packing is fastest when the
/// operand's stride along the output dimension it feeds is 1; the convolution picks its views
/// accordingly (see `conv`).
///
/// # Safety
/// `dst` must be valid for reads and writes of every element (i, j), i < m, j < n, at
/// `i·row_stride + j·col_stride`, and no other reference may access those elements during the call.
#[allow(clippy::too_many_arguments)]
pub(in crate::backends) unsafe fn gemm_raw<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_strides: (usize, usize),
    accumulate: bool,
    a: View<'_, T>,
    b: View<'_, T>,
    threads: Threads,
) {
    assert!(
        a.covers(m, k) && b.covers(k, n),
        "gemm operand views are out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = match threads {
        Threads::Single => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the asserts above keep every operand read inside its slice; the caller guarantees dst.
    // gemm reads dst only when `read_dst` (accumulate) is set. Strides fit isize because they index
    // slices that exist.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Safe form of [`gemm_raw`] for a destination that is one slice.
#[allow(clippy::too_many_arguments)]
pub(in crate::backends) fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_strides: (usize, usize),
    accumulate: bool,
    a: View<'_, T>,
    b: View<'_, T>,
    threads: Threads,
) {
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_strides.0 + (n - 1) * dst_strides.1 < dst.len(),
        "gemm destination is out of bounds"
    );
    // SAFETY: the assert keeps every destination element inside `dst`, which we borrow exclusively.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides,
            accumulate,
            a,
            b,
            threads,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: View<'_, f64>, b: View<'_, f64>) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    c[i * n + j] += a.data[i * a.row_stride + l * a.col_stride]
                        * b.data[l * b.row_stride + j * b.col_stride];
                }
            }
        }
        c
    }

    #[test]
    fn strided_views_and_accumulate_match_a_naive_product() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.5 - 3.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64).sin()).collect();
        // a as a transposed (k×m) row-major matrix, b as a plain k×n one.
        let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let want = naive(m, n, k, View::rows(&a, k), View::rows(&b, n));
        for threads in [Threads::Single, Threads::All] {
            let mut dst = vec![1.0; m * 9];
            gemm(
                m,
                n,
                k,
                &mut dst,
                (9, 1),
                true,
                View::transposed(&at, m),
                View::rows(&b, n),
                threads,
            );
            for i in 0..m {
                for j in 0..9 {
                    let expect = if j < n { want[i * n + j] + 1.0 } else { 1.0 };
                    assert!((dst[i * 9 + j] - expect).abs() < 1e-12, "({i},{j})");
                }
            }
            gemm(
                m,
                n,
                k,
                &mut dst,
                (9, 1),
                false,
                View::rows(&a, k),
                View::rows(&b, n),
                threads,
            );
            assert!((dst[2 * 9 + 3] - want[2 * n + 3]).abs() < 1e-12);
        }
    }
}
