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

mod adamw;
mod batchnorm;
mod concat;
mod conv2d;
mod dense;
mod dropout;
mod gemm;
mod maxpool;
mod rmsprop;
mod shortcut;
mod softmax_xent;
mod statspool;

use std::marker::PhantomData;
use std::sync::Mutex;

use rayon::prelude::*;

use super::geometry::{
    BatchNormGeom, ConcatGeom, ConvGeom, DenseGeom, DropoutParams, PoolGeom, ShortcutGeom,
    StatsPoolGeom, XentGeom, XentStats,
};
use super::{Backend, InputGrad};
use crate::model::optimizer::{AdamWStep, RmsPropConfig};
use crate::tensor::Real;
use crate::{shape_err, Result};

/// The CPU reference backend computing in `T` (f32 or f64). Runs on rayon's global thread pool.
pub struct CpuBackend<T: Real> {
    scratch: Scratch<T>,
}

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        gemm::tune_gemm_crate();
        CpuBackend {
            scratch: Scratch::default(),
        }
    }
    /// How many output rows one im2col chunk of this convolution covers (tests use it to be sure
    /// they cover images split into several chunks).
    pub fn conv_chunk_rows(g: &ConvGeom) -> Result<usize> {
        conv2d::chunk_rows(g)
    }
}

impl<T: Real> Default for CpuBackend<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A pool of reusable scratch vectors. A task takes one, uses it, and gives it back; vectors only
/// ever grow, so once every vector has reached the largest size asked for nothing is allocated.
pub(crate) struct Scratch<T> {
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
    fn take(&self, len: usize) -> Vec<T> {
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
    fn give_back(&self, v: Vec<T>) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }
    /// Run `f` on a scratch slice of exactly `len` elements with unspecified contents.
    fn with<R>(&self, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
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
struct SyncPtr<T> {
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
    fn new(s: &mut [T]) -> Self {
        SyncPtr {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _marker: PhantomData,
        }
    }
    /// # Safety
    /// No other live reference may access elements [offset, offset + len) while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, offset: usize, len: usize) -> &mut [T] {
        assert!(offset + len <= self.len, "SyncPtr slice out of bounds");
        // SAFETY: in bounds (asserted); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
    /// A pointer to element `offset` (callers bound what they access through it).
    fn ptr_at(&self, offset: usize) -> *mut T {
        assert!(offset <= self.len, "SyncPtr offset out of bounds");
        self.ptr.wrapping_add(offset)
    }
}

/// An error unless a buffer holds at least the `need` elements its geometry describes.
fn check_len(what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(shape_err!(
            "{what}: the geometry needs {need} elements but the buffer holds {have}"
        ));
    }
    Ok(())
}

/// dy ← dy · [y > 0] (the fused ReLU's backward), in parallel chunks.
fn relu_mask<T: Real>(dy: &mut [T], y: &[T]) {
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

impl<T: Real> Backend for CpuBackend<T> {
    type Elem = T;
    type Buf = Vec<T>;
    type Idx = Vec<u32>;

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

    fn conv2d_forward(
        &self,
        g: &ConvGeom,
        x: &Vec<T>,
        w: &Vec<T>,
        b: &Vec<T>,
        y: &mut Vec<T>,
    ) -> Result<()> {
        conv2d::forward(&self.scratch, g, x, w, b, y)
    }

    fn conv2d_backward(
        &self,
        g: &ConvGeom,
        x: &Vec<T>,
        w: &Vec<T>,
        y: &Vec<T>,
        dy: &mut Vec<T>,
        dx: InputGrad<'_, Vec<T>>,
        dw: &mut Vec<T>,
        db: Option<&mut Vec<T>>,
    ) -> Result<()> {
        let dx = match dx {
            InputGrad::None => None,
            InputGrad::Add(dx) => Some((dx.as_mut_slice(), true)),
            InputGrad::Write(dx) => Some((dx.as_mut_slice(), false)),
        };
        conv2d::backward(
            &self.scratch,
            g,
            x,
            w,
            y,
            dy,
            dx,
            dw,
            db.map(|v| v.as_mut_slice()),
        )
    }

    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &Vec<T>,
        y: &mut Vec<T>,
        argmax: &mut Vec<u32>,
    ) -> Result<()> {
        maxpool::forward(g, x, y, argmax)
    }

    fn maxpool_backward(
        &self,
        g: &PoolGeom,
        dy: &Vec<T>,
        argmax: &Vec<u32>,
        dx: &mut Vec<T>,
    ) -> Result<()> {
        maxpool::backward(g, dy, argmax, dx)
    }

    fn maxpool_relu_backward(
        &self,
        g: &PoolGeom,
        dy: &Vec<T>,
        argmax: &Vec<u32>,
        dx: &mut Vec<T>,
        db: &mut Vec<T>,
    ) -> Result<()> {
        maxpool::relu_backward(g, dy, argmax, dx, db)
    }

    fn shortcut_forward(&self, g: &ShortcutGeom, src: &Vec<T>, dst: &mut Vec<T>) -> Result<()> {
        shortcut::forward(g, src, dst)
    }

    fn shortcut_backward(
        &self,
        g: &ShortcutGeom,
        d_dst: &Vec<T>,
        d_src: &mut Vec<T>,
    ) -> Result<()> {
        shortcut::backward(g, d_dst, d_src)
    }

    fn dense_forward(
        &self,
        g: &DenseGeom,
        x: &Vec<T>,
        w: &Vec<T>,
        b: &Vec<T>,
        y: &mut Vec<T>,
    ) -> Result<()> {
        dense::forward(g, x, w, b, y)
    }

    fn dense_backward(
        &self,
        g: &DenseGeom,
        x: &Vec<T>,
        w: &Vec<T>,
        y: &Vec<T>,
        dy: &mut Vec<T>,
        dx: Option<&mut Vec<T>>,
        dw: &mut Vec<T>,
        db: &mut Vec<T>,
    ) -> Result<()> {
        dense::backward(g, x, w, y, dy, dx.map(|v| v.as_mut_slice()), dw, db)
    }

    fn batchnorm_forward_train(
        &self,
        g: &BatchNormGeom,
        x: &Vec<T>,
        gamma: &Vec<T>,
        beta: &Vec<T>,
        y: &mut Vec<T>,
        saved: &mut Vec<T>,
        running_mean: &mut Vec<T>,
        running_var: &mut Vec<T>,
    ) -> Result<()> {
        batchnorm::forward_train(g, x, gamma, beta, y, saved, running_mean, running_var)
    }

    fn batchnorm_forward_eval(
        &self,
        g: &BatchNormGeom,
        x: &Vec<T>,
        gamma: &Vec<T>,
        beta: &Vec<T>,
        running_mean: &Vec<T>,
        running_var: &Vec<T>,
        y: &mut Vec<T>,
    ) -> Result<()> {
        batchnorm::forward_eval(g, x, gamma, beta, running_mean, running_var, y)
    }

    fn batchnorm_backward(
        &self,
        g: &BatchNormGeom,
        x: &Vec<T>,
        gamma: &Vec<T>,
        y: &Vec<T>,
        saved: &Vec<T>,
        dy: &mut Vec<T>,
        dx: Option<&mut Vec<T>>,
        dgamma: &mut Vec<T>,
        dbeta: &mut Vec<T>,
    ) -> Result<()> {
        batchnorm::backward(
            g,
            x,
            gamma,
            y,
            saved,
            dy,
            dx.map(|v| v.as_mut_slice()),
            dgamma,
            dbeta,
        )
    }

    fn statspool_forward(&self, g: &StatsPoolGeom, x: &Vec<T>, y: &mut Vec<T>) -> Result<()> {
        statspool::forward(g, x, y)
    }

    fn statspool_backward(
        &self,
        g: &StatsPoolGeom,
        x: &Vec<T>,
        y: &Vec<T>,
        dy: &Vec<T>,
        dx: &mut Vec<T>,
    ) -> Result<()> {
        statspool::backward(g, x, y, dy, dx)
    }

    fn dropout_forward(&self, p: &DropoutParams, x: &Vec<T>, y: &mut Vec<T>) -> Result<()> {
        dropout::forward(p, x, y)
    }

    fn dropout_backward(&self, p: &DropoutParams, dy: &Vec<T>, dx: &mut Vec<T>) -> Result<()> {
        dropout::backward(p, dy, dx)
    }

    fn concat_forward(&self, g: &ConcatGeom, a: &Vec<T>, b: &Vec<T>, y: &mut Vec<T>) -> Result<()> {
        concat::forward(g, a, b, y)
    }

    fn concat_backward(
        &self,
        g: &ConcatGeom,
        dy: &Vec<T>,
        da: Option<&mut Vec<T>>,
        db: Option<&mut Vec<T>>,
    ) -> Result<()> {
        concat::backward(
            g,
            dy,
            da.map(|v| v.as_mut_slice()),
            db.map(|v| v.as_mut_slice()),
        )
    }

    fn softmax_xent(
        &self,
        g: &XentGeom,
        logits: &Vec<T>,
        labels: &Vec<u32>,
        losses: &mut Vec<T>,
        d_logits: &mut Vec<T>,
    ) -> Result<XentStats> {
        softmax_xent::softmax_xent(g, logits, labels, losses, d_logits)
    }

    fn softmax_xent_soft(
        &self,
        g: &XentGeom,
        logits: &Vec<T>,
        targets: &Vec<T>,
        class_weights: Option<&Vec<T>>,
        losses: &mut Vec<T>,
        d_logits: &mut Vec<T>,
    ) -> Result<XentStats> {
        softmax_xent::softmax_xent_soft(
            g,
            logits,
            targets,
            class_weights.map(|w| w.as_slice()),
            losses,
            d_logits,
        )
    }

    fn rmsprop_update(
        &self,
        cfg: &RmsPropConfig,
        step: u64,
        w: &mut Vec<T>,
        g: &Vec<T>,
        r: &mut Vec<T>,
    ) -> Result<()> {
        rmsprop::update(cfg, step, w, g, r)
    }

    fn adamw_update(
        &self,
        step: &AdamWStep,
        w: &mut Vec<T>,
        g: &Vec<T>,
        m: &mut Vec<T>,
        v: &mut Vec<T>,
    ) -> Result<()> {
        adamw::update(step, w, g, m, v)
    }
}
