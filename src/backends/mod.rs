//! The op contract: one trait, [`Backend`], that every compute backend implements — the CPU reference
//! ([`cpu`]), the emulated device and the CUDA device. The network, the trainer and every test body are
//! written once against this trait.
//!
//! # Buffers
//! A backend owns its memory: [`Backend::Buf`] holds `Elem` values, [`Backend::Idx`] holds `u32`
//! (max-pool argmax, class labels). Ops take geometry structs ([`geometry`]) that say how much of each
//! buffer they use; a buffer may be longer than its geometry needs (a batch buffer sized for the largest
//! batch serves a smaller last batch), and ops read and write only the prefix the geometry describes.
//!
//! # Write or accumulate
//! - Forward outputs are WRITTEN, except [`Backend::shortcut_forward`], which adds into its target.
//! - Gradients with respect to an op's DATA inputs (`dx`, `d_src`) are ACCUMULATED (`+=`): a tensor
//!   that feeds two places (a pooled map that feeds the next convolution and a later shortcut) gets the
//!   sum of both contributions, in whatever order the backward pass visits them. The caller zeroes
//!   these buffers once per step.
//! - Exception: [`Backend::conv2d_backward`] takes its `dx` as an [`InputGrad`], which may also say
//!   WRITE. The network writes where the convolution is the only op that produces that gradient (its
//!   input feeds nothing else), and does not zero that buffer.
//! - Gradients with respect to PARAMETERS (`dw`, `db`) are WRITTEN: every parameter is used exactly once
//!   per step.
//! - With a fused ReLU, the backward pass first multiplies `dy` IN PLACE by `[y > 0]`, turning it into
//!   the gradient of the pre-activation; `y` is the op's forward output.
//! - Exception, for memory passes less: [`Backend::maxpool_relu_backward`] WRITES its `dx`, already
//!   ReLU-masked, and WRITES the producing convolution's bias gradient `db` (the channel sums of that
//!   `dx`). The network uses it where a pool is the only consumer of a ReLU convolution's output
//!   (then nothing else adds into that gradient, and it needs no zeroing), and runs that
//!   convolution's backward with `relu` off and without `db` (`None`), so the convolution reads
//!   neither its y nor, for the bias, its dy. Only gradients that are accumulated into are zeroed.

pub mod check;
pub mod cost;
pub mod cpu;
pub mod cuda;
pub mod device;
pub mod emu;
pub mod geometry;
pub mod kernel_backend;
pub mod kernels;

pub use geometry::{
    AdamWParams, BatchNormGeom, ConcatGeom, ConvGeom, DenseGeom, DropoutParams, Padding, PoolGeom,
    RmsPropParams, ShortcutGeom, StatsPoolGeom, XentGeom, XentStats,
};

use crate::model::optimizer::{AdamWStep, RmsPropConfig};
use crate::tensor::Real;
use crate::Result;

/// Where [`Backend::conv2d_backward`] puts the gradient with respect to its data input.
#[derive(Debug)]
pub enum InputGrad<'a, B> {
    /// Not needed (the first layer, whose input is the data).
    None,
    /// ACCUMULATED: `dx += ∂L/∂x`, as every data gradient (other ops add into the same tensor).
    Add(&'a mut B),
    /// WRITTEN: `dx = ∂L/∂x`, its old values neither read nor kept. Only for the sole producer of
    /// that gradient, which then needs no zeroing.
    Write(&'a mut B),
}

/// The operations the network is built from, forward and backward. See the module documentation for
/// which outputs are written and which are accumulated.
pub trait Backend {
    /// The element type this backend computes in (the devices: f32; the CPU reference: f32 or f64).
    type Elem: Real;
    /// A buffer of `Elem` in this backend's memory.
    type Buf;
    /// A buffer of `u32` in this backend's memory.
    type Idx;

    /// Human-readable name, e.g. "cpu (f64)", "emulated", "cuda: NVIDIA H100 80GB HBM3".
    fn name(&self) -> String;

    // ---- memory -------------------------------------------------------------------------------
    /// A new buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// A new buffer holding a copy of `host`.
    fn upload(&self, host: &[Self::Elem]) -> Result<Self::Buf>;
    /// Overwrite the first `host.len()` values of `buf` (no allocation; used inside the training loop).
    fn write(&self, buf: &mut Self::Buf, host: &[Self::Elem]) -> Result<()>;
    /// Copy the whole buffer back to the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<Self::Elem>>;
    /// Set every value of `buf` to zero.
    fn fill_zero(&self, buf: &mut Self::Buf) -> Result<()>;
    /// Number of values in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// A new index buffer of `len` zeros.
    fn zeros_idx(&self, len: usize) -> Result<Self::Idx>;
    /// Overwrite the first `host.len()` values of an index buffer.
    fn write_idx(&self, buf: &mut Self::Idx, host: &[u32]) -> Result<()>;
    /// Copy an index buffer back to the host.
    fn download_idx(&self, buf: &Self::Idx) -> Result<Vec<u32>>;
    /// Wait until all queued work has finished (a no-op for synchronous backends).
    fn synchronize(&self) -> Result<()>;

    // ---- convolution ----------------------------------------------------------------------------
    /// y (N, C_out, H_out, W_out) = \[ReLU\](x (N, C_in, H_in, W_in) ⋆ w (C_out, C_in, K_h, K_w) + b (C_out)). Writes y.
    fn conv2d_forward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`Backend::conv2d_forward`]. With `g.relu`, first masks `dy` in place by `y > 0`.
    /// ACCUMULATES or WRITES dx (N, C_in, H_in, W_in), as [`InputGrad`] says (`InputGrad::None` for
    /// the first layer, whose input needs no gradient); WRITES dw (C_out, C_in, K_h, K_w), and db (C_out) when given (pass `None`
    /// where [`Backend::maxpool_relu_backward`] already wrote it; then `g.relu` must be off, since
    /// that pool also applied the mask: an error otherwise). y is read only for the mask (with
    /// `g.relu`, or with db given); otherwise any buffer may stand in for it (the network passes x
    /// when y's buffer holds dy).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        y: &Self::Buf,
        dy: &mut Self::Buf,
        dx: InputGrad<'_, Self::Buf>,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;

    // ---- max-pool -------------------------------------------------------------------------------
    /// y (N, C, H_out, W_out) = max over each window of x (N, C, H_in, W_in); argmax (N, C, H_out, W_out)
    /// records the winner's index h·W_in + w in its input plane (first maximum in row-major window order).
    /// Writes y and argmax.
    fn maxpool_forward(
        &self,
        g: &PoolGeom,
        x: &Self::Buf,
        y: &mut Self::Buf,
        argmax: &mut Self::Idx,
    ) -> Result<()>;

    /// Routes each dy (N, C, H_out, W_out) to its argmax; ACCUMULATES dx (N, C, H_in, W_in).
    fn maxpool_backward(
        &self,
        g: &PoolGeom,
        dy: &Self::Buf,
        argmax: &Self::Idx,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of a max-pool whose input x (N, C, H_in, W_in) is the output of a fused ReLU
    /// convolution with no other consumer: WRITES dx (N, C, H_in, W_in) = [x > 0] · (the dy (N, C,
    /// H_out, W_out) routed to their argmax), the gradient of the ReLU's PRE-activation, and WRITES
    /// db (C) = Σ over (n, h, w) of dx, the convolution's bias gradient. The convolution's backward
    /// then runs without its ReLU and without db (it must not mask again, and need not read its y,
    /// rewrite dy or re-read dy for the bias). The mask [x > 0] comes from the argmax's
    /// [`geometry::ARGMAX_POSITIVE`] bit, not from x (the pool's own output cannot give it: shortcuts
    /// add into it after pooling), so x is dead after the forward pass and dx may take its buffer.
    fn maxpool_relu_backward(
        &self,
        g: &PoolGeom,
        dy: &Self::Buf,
        argmax: &Self::Idx,
        dx: &mut Self::Buf,
        db: &mut Self::Buf,
    ) -> Result<()>;

    // ---- shortcut (multi-level residual identity map) -------------------------------------------
    /// dst (N, C_dst, H_dst, W_dst) += r×r-mean of src (N, C_src, H_src, W_src), channel c reading
    /// source channel c mod C_src. ACCUMULATES into dst.
    fn shortcut_forward(
        &self,
        g: &ShortcutGeom,
        src: &Self::Buf,
        dst: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`Backend::shortcut_forward`]: ACCUMULATES d_src (N, C_src, H_src, W_src) from
    /// d_dst (N, C_dst, H_dst, W_dst).
    fn shortcut_backward(
        &self,
        g: &ShortcutGeom,
        d_dst: &Self::Buf,
        d_src: &mut Self::Buf,
    ) -> Result<()>;

    // ---- dense ----------------------------------------------------------------------------------
    /// y (N, OUT) = \[ReLU\](x (N, IN) · wᵀ + b), w (OUT, IN), b (OUT). Writes y.
    fn dense_forward(
        &self,
        g: &DenseGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`Backend::dense_forward`]. With `g.relu`, first masks `dy` in place by `y > 0`.
    /// ACCUMULATES dx (N, IN) when given; WRITES dw (OUT, IN) and db (OUT).
    #[allow(clippy::too_many_arguments)]
    fn dense_backward(
        &self,
        g: &DenseGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        y: &Self::Buf,
        dy: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
    ) -> Result<()>;

    // ---- batch normalisation ------------------------------------------------------------------
    /// Training forward of [`BatchNormGeom`]: y (N, C, H, W) = \[ReLU\](γ · x̂ + β) with the batch's
    /// per-channel statistics. WRITES y and saved (2, C) = (μ, 1/σ) for the backward pass; updates
    /// running_mean and running_var (C) in place by the momentum rule.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_forward_train(
        &self,
        g: &BatchNormGeom,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        saved: &mut Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
    ) -> Result<()>;

    /// Evaluation forward of [`BatchNormGeom`] with the running statistics. WRITES y.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_forward_eval(
        &self,
        g: &BatchNormGeom,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &Self::Buf,
        running_var: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`Backend::batchnorm_forward_train`] (y and saved from that call). With `g.relu`,
    /// first masks `dy` in place by `y > 0`. ACCUMULATES dx when given; WRITES dgamma and dbeta (C).
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_backward(
        &self,
        g: &BatchNormGeom,
        x: &Self::Buf,
        gamma: &Self::Buf,
        y: &Self::Buf,
        saved: &Self::Buf,
        dy: &mut Self::Buf,
        dx: Option<&mut Self::Buf>,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    ) -> Result<()>;

    // ---- statistics pooling -------------------------------------------------------------------
    /// y (N, 2C) = mean and std over W of the H-means of x (N, C, H, W) (see [`StatsPoolGeom`]). Writes y.
    fn statspool_forward(&self, g: &StatsPoolGeom, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;

    /// Backward of [`Backend::statspool_forward`] (y is its output): ACCUMULATES dx (N, C, H, W).
    fn statspool_backward(
        &self,
        g: &StatsPoolGeom,
        x: &Self::Buf,
        y: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;

    // ---- dropout ------------------------------------------------------------------------------
    /// Inverted dropout of `p.len` values (see [`DropoutParams`]). Writes y.
    fn dropout_forward(&self, p: &DropoutParams, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;

    /// Backward of [`Backend::dropout_forward`] with the same parameters (the mask is recomputed):
    /// ACCUMULATES dx.
    fn dropout_backward(&self, p: &DropoutParams, dy: &Self::Buf, dx: &mut Self::Buf)
        -> Result<()>;

    // ---- concatenation --------------------------------------------------------------------------
    /// y (N, A + B) = \[a (N, A), b (N, B)\] row by row (see [`ConcatGeom`]). Writes y.
    fn concat_forward(
        &self,
        g: &ConcatGeom,
        a: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`Backend::concat_forward`]: ACCUMULATES da (N, A) += dy\[:, ..A\] and db (N, B)
    /// += dy\[:, A..\] from dy (N, A + B), each only when given (`None`: that part needs no gradient).
    fn concat_backward(
        &self,
        g: &ConcatGeom,
        dy: &Self::Buf,
        da: Option<&mut Self::Buf>,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;

    // ---- loss -----------------------------------------------------------------------------------
    /// Fused softmax cross-entropy of logits (N, CLASSES) against labels (N). WRITES losses (N), the
    /// per-sample losses, and d_logits (N, CLASSES), the gradient of the MEAN loss ((softmax − onehot)/N).
    /// Returns the mean loss and the number of rows whose first-maximum argmax equals the label.
    /// Stable for logits of any finite magnitude (±1e4 and beyond): the row maximum is subtracted first.
    fn softmax_xent(
        &self,
        g: &XentGeom,
        logits: &Self::Buf,
        labels: &Self::Idx,
        losses: &mut Self::Buf,
        d_logits: &mut Self::Buf,
    ) -> Result<XentStats>;

    /// Softmax cross-entropy of logits (N, CLASSES) against soft targets (N, CLASSES), rows of
    /// probabilities (label smoothing, mixup), with optional class weights w (CLASSES; `None`: all 1):
    /// WRITES losses (N), loss_i = −Σ_j w_j t_ij log softmax(z_i)_j, and d_logits (N, CLASSES), the
    /// gradient of their MEAN, (softmax · Σ_j w_j t_ij − w ⊙ t_i)/N. Returns the mean loss and the
    /// number of rows whose first-maximum logit is their target's first maximum. The targets are not
    /// validated here (the caller does, on the host). [`Backend::softmax_xent`] is the hard-label path.
    #[allow(clippy::too_many_arguments)]
    fn softmax_xent_soft(
        &self,
        g: &XentGeom,
        logits: &Self::Buf,
        targets: &Self::Buf,
        class_weights: Option<&Self::Buf>,
        losses: &mut Self::Buf,
        d_logits: &mut Self::Buf,
    ) -> Result<XentStats>;

    // ---- optimiser ------------------------------------------------------------------------------
    /// One RMSProp update (see [`RmsPropConfig`]) of w from gradient g with running mean square r, all of
    /// the same length; `step` is the number of updates applied before this one. Updates w and r in place.
    fn rmsprop_update(
        &self,
        cfg: &RmsPropConfig,
        step: u64,
        w: &mut Self::Buf,
        g: &Self::Buf,
        r: &mut Self::Buf,
    ) -> Result<()>;

    /// One AdamW update (see [`AdamWParams`]) of w from gradient g with first and second moments m
    /// and v, all of the same length; `step` holds the scheduled lr and the 1-based update number.
    /// Updates w, m and v in place.
    fn adamw_update(
        &self,
        step: &AdamWStep,
        w: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    ) -> Result<()>;
}
