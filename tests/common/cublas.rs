//! cuBLAS SGEMM on the CUDA device's stream and buffers: the reference the benchmarks compare our own
//! SGEMM kernel with ("ratio to cuBLAS"). `libcublas.so.12` is opened at run time; only the benchmarks
//! need it.
//!
//! ```no_run
//! use rescnn::backends::cuda::{cublas::{Cublas, Transpose}, timing::{GpuTimer, TimingConfig}, CudaDevice};
//! use rescnn::backends::device::Device;
//! # fn main() -> rescnn::Result<()> {
//! let dev = CudaDevice::new(0)?;
//! let (m, n, k) = (4096, 4096, 4096);
//! let a = dev.alloc_zeroed::<f32>(m * k)?;
//! let b = dev.alloc_zeroed::<f32>(k * n)?;
//! let mut c = dev.alloc_zeroed::<f32>(m * n)?;
//! let blas = Cublas::new(&dev)?;
//! let mut timer = GpuTimer::new(&dev)?;
//! let t = timer.time(&TimingConfig::default(), || {
//!     blas.sgemm(Transpose::No, Transpose::No, m, n, k, 1.0, &a, &b, 0.0, &mut c)
//! })?;
//! println!("cuBLAS: {:.0} GFLOP/s", t.gflops(2.0 * (m * n * k) as f64));
//! # Ok(()) }
//! ```
//!
//! Matrices are ROW-major, as everywhere in rescnn (a dense layer's `w` is (OUT, IN)). cuBLAS is
//! column-major; a row-major matrix read as column-major is its transpose, so C = op(A)·op(B) is
//! computed as Cᵀ = op(B)ᵀ·op(A)ᵀ with the operands swapped and no data moved. The math mode is
//! cuBLAS's default, which for SGEMM is true FP32 (no TF32 tensor cores), so the comparison with our
//! FP32 kernel is like for like.

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};

use rescnn::backends::cuda::{CudaBuffer, CudaDevice};
use rescnn::backends::device::Device;
use rescnn::{Error, Result};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// A cuBLAS handle bound to a [`CudaDevice`]'s stream.
pub struct Cublas<'d> {
    device: &'d CudaDevice,
    blas: CudaBlas,
}

/// The column-major call that computes row-major C (m×n) = op(A)·op(B), op(A) m×k, op(B) k×n:
/// (op for B, op for A, m', n', k', ldb, lda, ldc) with B passed first.
pub fn row_major_gemm_args(
    trans_a: Transpose,
    trans_b: Transpose,
    m: usize,
    n: usize,
    k: usize,
) -> (
    Transpose,
    Transpose,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
) {
    // Row-major A is m×k (ld k), or k×m (ld m) when transposed; likewise B is k×n (ld n) or n×k (ld k).
    let lda = if trans_a == Transpose::No { k } else { m };
    let ldb = if trans_b == Transpose::No { n } else { k };
    (trans_b, trans_a, n, m, k, ldb, lda, n)
}

fn op(t: Transpose) -> blas_sys::cublasOperation_t {
    match t {
        Transpose::No => blas_sys::cublasOperation_t::CUBLAS_OP_N,
        Transpose::Yes => blas_sys::cublasOperation_t::CUBLAS_OP_T,
    }
}

fn to_int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Config(format!("SGEMM {what} = {v} exceeds cuBLAS's int")))
}

impl<'d> Cublas<'d> {
    pub fn new(device: &'d CudaDevice) -> Result<Self> {
        // SAFETY: only tries to open libcublas; no cuBLAS call is made.
        if !unsafe { blas_sys::is_culib_present() } {
            return Err(Error::Device(
                "cuBLAS (libcublas.so.12) could not be loaded: install the CUDA toolkit's cuBLAS or \
                 `pip install nvidia-cublas-cu12` and put its lib folder on LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let blas = CudaBlas::new(device.stream().clone())
            .map_err(|e| Error::Device(format!("creating a cuBLAS handle: {e:?}")))?;
        // SAFETY: the handle is live; CUBLAS_DEFAULT_MATH keeps SGEMM in FP32.
        unsafe {
            blas_sys::cublasSetMathMode(*blas.handle(), blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH)
        }
        .result()
        .map_err(|e| Error::Device(format!("cublasSetMathMode: {e:?}")))?;
        Ok(Cublas { device, blas })
    }

    /// Row-major C (m×n) = alpha·op(A)·op(B) + beta·C, where op(A) is m×k and op(B) is k×n; queued on
    /// the device's stream. Checks every buffer is large enough.
    #[allow(clippy::too_many_arguments)]
    pub fn sgemm(
        &self,
        trans_a: Transpose,
        trans_b: Transpose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &CudaBuffer<f32>,
        b: &CudaBuffer<f32>,
        beta: f32,
        c: &mut CudaBuffer<f32>,
    ) -> Result<()> {
        for (name, buf, need) in [
            ("A", a.len(), m * k),
            ("B", b.len(), k * n),
            ("C", c.len(), m * n),
        ] {
            if buf < need {
                return Err(Error::Shape(format!(
                    "SGEMM {m}×{n}×{k}: {name} holds {buf} values, needs {need}"
                )));
            }
        }
        let (op_first, op_second, mm, nn, kk, ld_first, ld_second, ldc) =
            row_major_gemm_args(trans_a, trans_b, m, n, k);
        let (pa, pb, pc) = (
            self.device.device_ptr(a).0,
            self.device.device_ptr(b).0,
            self.device.device_ptr(c).0,
        );
        // SAFETY: the three buffers live on this device and hold at least m·k, k·n and m·n values
        // (checked above), which is what the column-major call reads and writes with these leading
        // dimensions; alpha and beta are host values (the handle's default pointer mode).
        unsafe {
            blas::sgemm(
                *self.blas.handle(),
                op(op_first),
                op(op_second),
                to_int("n", mm)?,
                to_int("m", nn)?,
                to_int("k", kk)?,
                &alpha,
                pb as *const f32,
                to_int("ldb", ld_first)?,
                pa as *const f32,
                to_int("lda", ld_second)?,
                &beta,
                pc as *mut f32,
                to_int("ldc", ldc)?,
            )
        }
        .map_err(|e| Error::Device(format!("cublasSgemm: {e:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column-major reference GEMM: C (m×n, ldc) = op(A)·op(B), exactly as cuBLAS defines it.
    #[allow(clippy::too_many_arguments)]
    fn colmajor_gemm(
        ta: Transpose,
        tb: Transpose,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        ldc: usize,
    ) -> Vec<f32> {
        let at = |i: usize, p: usize| match ta {
            Transpose::No => a[i + p * lda],
            Transpose::Yes => a[p + i * lda],
        };
        let bt = |p: usize, j: usize| match tb {
            Transpose::No => b[p + j * ldb],
            Transpose::Yes => b[j + p * ldb],
        };
        let mut c = vec![0.0; ldc * n];
        for j in 0..n {
            for i in 0..m {
                c[i + j * ldc] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn row_major_mapping_matches_a_row_major_product() {
        // Small exact integers, so the sums are exact in f32.
        let (m, n, k) = (3, 5, 4);
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                let a: Vec<f32> = (0..m * k).map(|v| (v % 7) as f32 - 3.0).collect();
                let b: Vec<f32> = (0..k * n).map(|v| (v % 5) as f32 - 2.0).collect();
                // Row-major element accessors of op(A) (m×k) and op(B) (k×n).
                let opa = |i: usize, p: usize| match ta {
                    Transpose::No => a[i * k + p],
                    Transpose::Yes => a[p * m + i],
                };
                let opb = |p: usize, j: usize| match tb {
                    Transpose::No => b[p * n + j],
                    Transpose::Yes => b[j * k + p],
                };
                let (o1, o2, mm, nn, kk, ld1, ld2, ldc) = row_major_gemm_args(ta, tb, m, n, k);
                let c = colmajor_gemm(o1, o2, mm, nn, kk, &b, ld1, &a, ld2, ldc);
                for i in 0..m {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|p| opa(i, p) * opb(p, j)).sum();
                        assert_eq!(c[i * n + j], want, "ta {ta:?} tb {tb:?} at ({i},{j})");
                    }
                }
            }
        }
    }
}
