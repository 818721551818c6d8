//! The CPU reference backend: every op of the contract, written to be obviously correct first and
//! fast second, generic over f32 (what the devices compute in) and f64 (what the gradient checks run
//! in). Buffers are plain `Vec`s.
//!
//! Speed comes from im2col/col2im around a well-tuned GEMM (the `gemm` crate, AVX-512) and rayon
//! over (image, row-chunk) work items; see the `conv` module's documentation for the strategy. Each op uses ONE level of
//! parallelism: GEMMs called inside a rayon task run single-threaded. Results are bit-reproducible
//! for a given number of rayon threads (reductions split work into fixed ranges and add the partial
//! sums in order).
//!
//! Scratch memory (im2col chunks, per-thread weight-gradient partials) comes from a pool owned by the
//! backend and is reused from call to call, so after the first training step the backend allocates
//! nothing of its own; the GEMM crate still allocates its small packing buffers per call.

pub(in crate::backends) mod gemm;

use std::marker::PhantomData;
use std::sync::Mutex;

use rayon::prelude::*;

use super::{Backend, Buffers};
use crate::tensor::Real;
use crate::{shape_err, Result};

/// The CPU reference backend computing in `T` (f32 or f64). Runs on rayon's global thread pool.
pub struct CpuBackend<T: Real> {
    pub(in crate::backends) scratch: Scratch<T>,
}

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        gemm::tune_gemm_crate();
        CpuBackend {
            scratch: Scratch::default(),
        }
    }
}

impl<T: Real> Default for CpuBackend<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A pool of reusable scratch vectors. A task takes one, uses it, and gives it back; vectors only
/// ever grow, so once every vector has reached the largest size asked for nothing is allocated.
pub(in crate::backends) struct Scratch<T> {
    pool: Mutex<Vec<Vec<T>>>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Scratch {
            pool: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Real> Scratch<T> {
    /// A vector of at least `len` elements with unspecified contents.
    pub(in crate::backends) fn take(&self, len: usize) -> Vec<T> {
        let mut v = self
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if v.len() < len {
            v.resize(len, T::ZERO);
        }
        v
    }
    pub(in crate::backends) fn give_back(&self, v: Vec<T>) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }
    /// Run `f` on a scratch slice of exactly `len` elements with unspecified contents.
    pub(in crate::backends) fn with<R>(&self, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
        let mut v = self.take(len);
        let r = f(&mut v[..len]);
        self.give_back(v);
        r
    }
}

/// A raw pointer into a slice that parallel tasks write through, each to its own disjoint elements.
/// Used where those elements are interleaved (a chunk of pixels in every channel plane), so the slice
/// cannot be split into `&mut` pieces.
#[derive(Clone, Copy)]
pub(in crate::backends) struct SyncPtr<T> {
    ptr: *mut T,
    len: usize,
    _marker: PhantomData<T>,
}

// SAFETY: SyncPtr is only a way to hand the pointer to rayon tasks; every use site (the unsafe
// `slice`/`ptr_at` calls) guarantees that concurrent tasks access disjoint elements.
unsafe impl<T: Send> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    pub(in crate::backends) fn new(s: &mut [T]) -> Self {
        SyncPtr {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _marker: PhantomData,
        }
    }
    /// # Safety
    /// No other live reference may access elements [offset, offset + len) while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(in crate::backends) unsafe fn slice(&self, offset: usize, len: usize) -> &mut [T] {
        assert!(offset + len <= self.len, "SyncPtr slice out of bounds");
        // SAFETY: in bounds (asserted); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
    /// A pointer to element `offset` (callers bound what they access through it).
    pub(in crate::backends) fn ptr_at(&self, offset: usize) -> *mut T {
        assert!(offset <= self.len, "SyncPtr offset out of bounds");
        self.ptr.wrapping_add(offset)
    }
}

/// An error unless a buffer holds at least the `need` elements its geometry describes.
pub(in crate::backends) fn check_len(what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(shape_err!(
            "{what}: the geometry needs {need} elements but the buffer holds {have}"
        ));
    }
    Ok(())
}

/// dy ← dy · [y > 0] (the fused ReLU's backward), in parallel chunks.
pub(in crate::backends) fn relu_mask<T: Real>(dy: &mut [T], y: &[T]) {
    dy.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14))
        .for_each(|(dy, y)| {
            for (d, &v) in dy.iter_mut().zip(y) {
                // An unconditional store of a select, not a branch: the sign of y is a coin flip
                // the branch predictor loses, and the select vectorises.
                *d = if v <= T::ZERO { T::ZERO } else { *d };
            }
        });
}

impl<T: Real> Buffers for CpuBackend<T> {
    type Elem = T;
    type Buf = Vec<T>;
    type Idx = Vec<u32>;
}

impl<T: Real> Backend for CpuBackend<T> {
    fn name(&self) -> String {
        format!(
            "cpu ({}, {} threads)",
            T::NAME,
            rayon::current_num_threads()
        )
    }

    fn zeros(&self, len: usize) -> Result<Vec<T>> {
        Ok(vec![T::ZERO; len])
    }
    fn upload(&self, host: &[T]) -> Result<Vec<T>> {
        Ok(host.to_vec())
    }
    fn write(&self, buf: &mut Vec<T>, host: &[T]) -> Result<()> {
        check_len("write", buf.len(), host.len())?;
        buf[..host.len()].copy_from_slice(host);
        Ok(())
    }
    fn download(&self, buf: &Vec<T>) -> Result<Vec<T>> {
        Ok(buf.clone())
    }
    fn fill_zero(&self, buf: &mut Vec<T>) -> Result<()> {
        buf.fill(T::ZERO);
        Ok(())
    }
    fn len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }
    fn zeros_idx(&self, len: usize) -> Result<Vec<u32>> {
        Ok(vec![0; len])
    }
    fn write_idx(&self, buf: &mut Vec<u32>, host: &[u32]) -> Result<()> {
        check_len("write_idx", buf.len(), host.len())?;
        buf[..host.len()].copy_from_slice(host);
        Ok(())
    }
    fn download_idx(&self, buf: &Vec<u32>) -> Result<Vec<u32>> {
        Ok(buf.clone())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
