//! Op geometry: the shapes and settings of one op call. These structs are `#[repr(C)]` with `i32`
//! fields because the CUDA kernels take them by value (mirrored in `kernels/geometry.cuh`); the CPU
//! reference reads the very same structs, so every backend is driven by one description of each call.
//!
//! Constructors validate and derive the output sizes; the fields are public for the kernels' sake
//! but should only be filled in through the constructors.

use crate::tensor::Shape;
use crate::{shape_err, Result};

/// Padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow `SAME`: output = ceil(input / stride); the total padding needed is split with
    /// ⌊total/2⌋ before and the rest after (so even kernels pad one more at the bottom/right).
    Same,
    /// No padding: output = ⌊(input − k) / stride⌋ + 1.
    Valid,
    /// Explicit padding (top, bottom, left, right).
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
}

/// A 2-D convolution: x (N, C_in, H_in, W_in) * w (C_out, C_in, K_h, K_w) + b (C_out) -> y (N, C_out, H_out, W_out),
/// optionally followed by ReLU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvGeom {
    pub n: i32,
    pub c_in: i32,
    pub h_in: i32,
    pub w_in: i32,
    pub c_out: i32,
    pub k_h: i32,
    pub k_w: i32,
    pub stride: i32,
    pub pad_top: i32,
    pub pad_left: i32,
    pub h_out: i32,
    pub w_out: i32,
    /// 1: y = max(0, conv + b); 0: y = conv + b.
    pub relu: i32,
}

fn same_padding(input: usize, k: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(input);
    (out, total / 2, total - total / 2)
}

fn to_i32(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| shape_err!("{what} = {v} does not fit in 32 bits"))
}

impl ConvGeom {
    /// Validate and build. `input` is (N, C_in, H_in, W_in); the kernel is `k_h`×`k_w`.
    pub fn new(
        input: Shape,
        c_out: usize,
        (k_h, k_w): (usize, usize),
        stride: usize,
        padding: Padding,
        relu: bool,
    ) -> Result<Self> {
        if input.is_empty() || c_out == 0 || k_h == 0 || k_w == 0 || stride == 0 {
            return Err(shape_err!(
                "conv2d needs non-empty input, filters, kernel and stride ≥ 1; got input {input}, {c_out} filters of {k_h}×{k_w}, stride {stride}"
            ));
        }
        let (h_out, pad_top, w_out, pad_left) = match padding {
            Padding::Same => {
                let (ho, pt, _) = same_padding(input.h, k_h, stride);
                let (wo, pl, _) = same_padding(input.w, k_w, stride);
                (ho, pt, wo, pl)
            }
            Padding::Valid | Padding::Explicit { .. } => {
                let (t, b, l, r) = match padding {
                    Padding::Explicit {
                        top,
                        bottom,
                        left,
                        right,
                    } => (top, bottom, left, right),
                    _ => (0, 0, 0, 0),
                };
                let (hp, wp) = (input.h + t + b, input.w + l + r);
                if hp < k_h || wp < k_w {
                    return Err(shape_err!(
                        "conv2d kernel {k_h}×{k_w} is larger than the padded input {hp}×{wp} (input {input})"
                    ));
                }
                ((hp - k_h) / stride + 1, t, (wp - k_w) / stride + 1, l)
            }
        };
        if pad_top >= k_h || pad_left >= k_w {
            return Err(shape_err!(
                "conv2d padding ({pad_top}, {pad_left}) must be smaller than the kernel {k_h}×{k_w}"
            ));
        }
        Ok(ConvGeom {
            n: to_i32("batch", input.n)?,
            c_in: to_i32("input channels", input.c)?,
            h_in: to_i32("input height", input.h)?,
            w_in: to_i32("input width", input.w)?,
            c_out: to_i32("output channels", c_out)?,
            k_h: to_i32("kernel height", k_h)?,
            k_w: to_i32("kernel width", k_w)?,
            stride: to_i32("stride", stride)?,
            pad_top: to_i32("padding", pad_top)?,
            pad_left: to_i32("padding", pad_left)?,
            h_out: to_i32("output height", h_out)?,
            w_out: to_i32("output width", w_out)?,
            relu: relu as i32,
        })
    }
    pub fn input(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c_in as usize,
            self.h_in as usize,
            self.w_in as usize,
        )
    }
    pub fn output(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c_out as usize,
            self.h_out as usize,
            self.w_out as usize,
        )
    }
    /// Number of weights (C_out·C_in·K_h·K_w); the bias adds C_out. Computed in `usize`: the i32
    /// product wraps for large filters (1024 × 1024 × 64 × 64 is 2³²), and the kernel wrappers size
    /// their buffer checks with it.
    pub fn weight_len(&self) -> usize {
        [self.c_in, self.k_h, self.k_w]
            .iter()
            .fold(self.c_out as usize, |acc, &d| acc * d as usize)
    }
    /// The same convolution for another batch size.
    pub fn with_batch(self, n: usize) -> Self {
        ConvGeom {
            n: n as i32,
            ..self
        }
    }
    /// Multiply-adds of the forward pass, ×2 (the usual FLOP count, padding included).
    pub fn forward_flops(&self) -> f64 {
        2.0 * self.output().len() as f64 * (self.weight_len() / self.c_out as usize) as f64
    }
}

/// The top bit of a max-pool argmax: set when the window's maximum is > 0, the ReLU mask of the
/// winner (mirrored in kernels/maxpool.cu). The fused ReLU backward reads the mask here, so the
/// pool's input need not outlive the forward pass.
pub const ARGMAX_POSITIVE: u32 = 1 << 31;
/// The index bits of a max-pool argmax.
pub const ARGMAX_INDEX: u32 = !ARGMAX_POSITIVE;

/// Max-pooling with a k×k window and stride s, floor mode (windows that would run past the edge are
/// dropped): x (N, C, H_in, W_in) -> y (N, C, H_out, W_out) and argmax (N, C, H_out, W_out), the
/// index h·W_in + w of the maximum inside its input plane (first maximum in row-major window order),
/// with [`ARGMAX_POSITIVE`] set when that maximum is > 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PoolGeom {
    pub n: i32,
    pub c: i32,
    pub h_in: i32,
    pub w_in: i32,
    pub k: i32,
    pub stride: i32,
    pub h_out: i32,
    pub w_out: i32,
}

impl PoolGeom {
    pub fn new(input: Shape, k: usize, stride: usize) -> Result<Self> {
        if k == 0 || stride == 0 {
            return Err(shape_err!(
                "max-pool needs window and stride ≥ 1, got {k} and {stride}"
            ));
        }
        if input.is_empty() || input.h < k || input.w < k {
            return Err(shape_err!(
                "max-pool window {k}×{k} does not fit input {input}"
            ));
        }
        Ok(PoolGeom {
            n: to_i32("batch", input.n)?,
            c: to_i32("channels", input.c)?,
            h_in: to_i32("input height", input.h)?,
            w_in: to_i32("input width", input.w)?,
            k: k as i32,
            stride: stride as i32,
            h_out: ((input.h - k) / stride + 1) as i32,
            w_out: ((input.w - k) / stride + 1) as i32,
        })
    }
    pub fn input(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c as usize,
            self.h_in as usize,
            self.w_in as usize,
        )
    }
    pub fn output(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c as usize,
            self.h_out as usize,
            self.w_out as usize,
        )
    }
    pub fn with_batch(self, n: usize) -> Self {
        PoolGeom {
            n: n as i32,
            ..self
        }
    }
}

/// The paper's multi-level residual identity map: `dst[n,c,h,w] += mean over the r×r window at
/// (h·r, w·r) of src[n, c mod C_src]`, where r = H_src/H_dst = W_src/W_dst is a whole number.
/// src is (N, C_src, H_src, W_src), dst is (N, C_dst, H_dst, W_dst). Parameter-free.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ShortcutGeom {
    pub n: i32,
    pub c_src: i32,
    pub h_src: i32,
    pub w_src: i32,
    pub c_dst: i32,
    pub h_dst: i32,
    pub w_dst: i32,
    /// r: the side of the averaging window.
    pub ratio: i32,
}

impl ShortcutGeom {
    pub fn new(src: Shape, dst: Shape) -> Result<Self> {
        let fail = || {
            shape_err!(
                "shortcut from {src} into {dst}: the source's height and width must both be the same whole multiple of the target's, and the batches must match"
            )
        };
        if src.n != dst.n || src.is_empty() || dst.is_empty() {
            return Err(fail());
        }
        if src.h % dst.h != 0 || src.w % dst.w != 0 || src.h / dst.h != src.w / dst.w {
            return Err(fail());
        }
        Ok(ShortcutGeom {
            n: to_i32("batch", src.n)?,
            c_src: to_i32("source channels", src.c)?,
            h_src: to_i32("source height", src.h)?,
            w_src: to_i32("source width", src.w)?,
            c_dst: to_i32("target channels", dst.c)?,
            h_dst: to_i32("target height", dst.h)?,
            w_dst: to_i32("target width", dst.w)?,
            ratio: (src.h / dst.h) as i32,
        })
    }
    pub fn source(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c_src as usize,
            self.h_src as usize,
            self.w_src as usize,
        )
    }
    pub fn target(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c_dst as usize,
            self.h_dst as usize,
            self.w_dst as usize,
        )
    }
    pub fn with_batch(self, n: usize) -> Self {
        ShortcutGeom {
            n: n as i32,
            ..self
        }
    }
}

/// A fully connected layer: x (N, IN) · wᵀ, with w (OUT, IN) row-major, + b (OUT) -> y (N, OUT),
/// optionally followed by ReLU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DenseGeom {
    pub n: i32,
    pub in_features: i32,
    pub out_features: i32,
    pub relu: i32,
}

impl DenseGeom {
    pub fn new(n: usize, in_features: usize, out_features: usize, relu: bool) -> Result<Self> {
        if n == 0 || in_features == 0 || out_features == 0 {
            return Err(shape_err!(
                "dense layer needs a non-empty batch and features; got batch {n}, {in_features} -> {out_features}"
            ));
        }
        Ok(DenseGeom {
            n: to_i32("batch", n)?,
            in_features: to_i32("input features", in_features)?,
            out_features: to_i32("output features", out_features)?,
            relu: relu as i32,
        })
    }
    pub fn with_batch(self, n: usize) -> Self {
        DenseGeom {
            n: n as i32,
            ..self
        }
    }
    /// OUT·IN, computed in `usize` (the i32 product wraps for large layers).
    pub fn weight_len(&self) -> usize {
        self.in_features as usize * self.out_features as usize
    }
}

/// Softmax cross-entropy over `classes` logits per row: logits (N, CLASSES), labels (N).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct XentGeom {
    pub n: i32,
    pub classes: i32,
}

impl XentGeom {
    pub fn new(n: usize, classes: usize) -> Result<Self> {
        if n == 0 || classes < 2 {
            return Err(shape_err!(
                "softmax cross-entropy needs a non-empty batch and at least 2 classes; got {n} rows of {classes}"
            ));
        }
        Ok(XentGeom {
            n: to_i32("batch", n)?,
            classes: to_i32("classes", classes)?,
        })
    }
}

/// What one softmax cross-entropy call reports back to the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct XentStats {
    /// Mean of the per-sample losses.
    pub mean_loss: f64,
    /// Rows whose argmax (first maximum) equals the label.
    pub correct: usize,
}

/// The RMSProp update of the paper's formulas (3) and (4), for one parameter tensor of `len` values:
///
/// ```text
/// g' = g + weight_decay · w
/// r  ← rho · r + (1 − rho) · g'²
/// w  ← w − lr_t · g' / sqrt(r + eps),   lr_t = lr / (1 + decay · step)
/// ```
///
/// `step` is the number of updates applied before this one (0 for the first), as in Keras.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RmsPropParams {
    pub len: i32,
    /// lr_t, already time-decayed (computed once on the host by
    /// [`RmsPropConfig::params`](crate::model::RmsPropConfig::params)).
    pub lr: f32,
    pub rho: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// The AdamW update (Loshchilov & Hutter's decoupled weight decay) for one parameter tensor of `len`
/// values, at update number t (1-based):
///
/// ```text
/// m ← β1 · m + (1 − β1) · g;        v ← β2 · v + (1 − β2) · g²
/// m̂ = m / (1 − β1^t);               v̂ = v / (1 − β2^t)
/// w ← w − lr_t · wd · w;            w ← w − lr_t · m̂ / (sqrt(v̂) + eps)
/// ```
///
/// lr_t comes from the schedule ([`AdamWConfig::lr_at`](crate::model::AdamWConfig::lr_at)); it and
/// the two bias-correction factors are computed once on the host in f64
/// ([`AdamWStep::params`](crate::model::AdamWStep::params)), not per element.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamWParams {
    pub len: i32,
    /// lr_t, already scheduled.
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 / (1 − β1^t).
    pub bias1: f32,
    /// 1 / (1 − β2^t).
    pub bias2: f32,
}

/// Batch normalisation per channel over (N, H, W) of x (N, C, H, W) -> y (N, C, H, W), with a per-channel
/// scale γ (C) and shift β (C), optionally followed by ReLU:
///
/// ```text
/// training:    μ, σ² = mean and (biased) variance of channel c over the batch;  x̂ = (x − μ) / sqrt(σ² + eps)
///              running_mean ← (1 − momentum) · running_mean + momentum · μ
///              running_var  ← (1 − momentum) · running_var  + momentum · σ² · M/(M − 1)   (M = N·H·W; unbiased)
/// evaluation:  x̂ = (x − running_mean) / sqrt(running_var + eps)
/// both:        y = [ReLU](γ · x̂ + β)
/// ```
///
/// The running variance uses the unbiased estimate (M/(M − 1); plain σ² when M = 1), as PyTorch does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BatchNormGeom {
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w: i32,
    /// 1: y = max(0, γ·x̂ + β).
    pub relu: i32,
    pub eps: f32,
    pub momentum: f32,
}

impl BatchNormGeom {
    pub fn new(input: Shape, relu: bool, eps: f64, momentum: f64) -> Result<Self> {
        if input.is_empty() {
            return Err(shape_err!(
                "batch norm needs a non-empty input, got {input}"
            ));
        }
        if !(eps > 0.0 && eps.is_finite() && (0.0..=1.0).contains(&momentum)) {
            return Err(shape_err!(
                "batch norm needs eps > 0 and momentum in [0, 1]; got eps {eps}, momentum {momentum}"
            ));
        }
        Ok(BatchNormGeom {
            n: to_i32("batch", input.n)?,
            c: to_i32("channels", input.c)?,
            h: to_i32("height", input.h)?,
            w: to_i32("width", input.w)?,
            relu: relu as i32,
            eps: eps as f32,
            momentum: momentum as f32,
        })
    }
    pub fn shape(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c as usize,
            self.h as usize,
            self.w as usize,
        )
    }
    /// M = N·H·W: the values each channel's statistics are taken over.
    pub fn per_channel(&self) -> usize {
        self.n as usize * self.h as usize * self.w as usize
    }
    pub fn with_batch(self, n: usize) -> Self {
        BatchNormGeom {
            n: n as i32,
            ..self
        }
    }
}

/// Global statistics pooling of x (N, C, H, W) -> y (N, 2C): the mean over frequency (H) gives one
/// value m_w per time step, then
///
/// ```text
/// y[n, c]     = mean_w m_w
/// y[n, C + c] = sqrt(var_w m_w + eps)        (var: the biased variance over the W time steps)
/// ```
///
/// `eps` keeps the standard deviation's derivative, (m_w − mean) / (W · std), finite when a channel is
/// constant over time (var = 0, e.g. a dead ReLU channel or W = 1). Output length 2C whatever H and W
/// are, so a network with statistics pooling takes inputs of any width.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StatsPoolGeom {
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w: i32,
    pub eps: f32,
}

impl StatsPoolGeom {
    pub fn new(input: Shape, eps: f64) -> Result<Self> {
        if input.is_empty() || !(eps > 0.0 && eps.is_finite()) {
            return Err(shape_err!(
                "statistics pooling needs a non-empty input and eps > 0; got {input}, eps {eps}"
            ));
        }
        Ok(StatsPoolGeom {
            n: to_i32("batch", input.n)?,
            c: to_i32("channels", input.c)?,
            h: to_i32("height", input.h)?,
            w: to_i32("width", input.w)?,
            eps: eps as f32,
        })
    }
    pub fn input(&self) -> Shape {
        Shape::new(
            self.n as usize,
            self.c as usize,
            self.h as usize,
            self.w as usize,
        )
    }
    /// (N, 2C).
    pub fn output(&self) -> Shape {
        Shape::flat(self.n as usize, 2 * self.c as usize)
    }
    pub fn with_batch(self, n: usize) -> Self {
        StatsPoolGeom {
            n: n as i32,
            ..self
        }
    }
}

/// Concatenation along the row: a (N, A) and b (N, B) -> y (N, A + B), y\[n\] = \[a\[n\], b\[n\]\]. The
/// network appends a side input (the utterance vector) to its pooled features with it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConcatGeom {
    pub n: i32,
    pub a: i32,
    pub b: i32,
}

impl ConcatGeom {
    pub fn new(n: usize, a: usize, b: usize) -> Result<Self> {
        if n == 0 || a == 0 || b == 0 {
            return Err(shape_err!(
                "concatenation needs a non-empty batch and two non-empty parts; got batch {n}, {a} + {b} features"
            ));
        }
        let total = a.checked_add(b).and_then(|row| row.checked_mul(n));
        if !matches!(total, Some(t) if t <= i32::MAX as usize) {
            return Err(shape_err!(
                "concatenation of {n} rows of {a} + {b} features has more than {} values",
                i32::MAX
            ));
        }
        Ok(ConcatGeom {
            n: to_i32("batch", n)?,
            a: to_i32("first part's features", a)?,
            b: to_i32("second part's features", b)?,
        })
    }
    pub fn with_batch(self, n: usize) -> Self {
        ConcatGeom {
            n: n as i32,
            ..self
        }
    }
    /// A + B.
    pub fn row(&self) -> usize {
        self.a as usize + self.b as usize
    }
    /// N·A, N·B and N·(A + B): the lengths of a, b and y.
    pub fn lens(&self) -> (usize, usize, usize) {
        let n = self.n as usize;
        (n * self.a as usize, n * self.b as usize, n * self.row())
    }
    /// False for a geometry [`ConcatGeom::new`] would not build (a hand-made or corrupted one).
    pub fn is_valid(&self) -> bool {
        self.n > 0 && self.a > 0 && self.b > 0 && self.lens().2 <= i32::MAX as usize
    }
}

/// Inverted dropout over `len` values: y = x / (1 − p) where the element is kept, 0 where dropped.
/// Element i is kept iff `dropout_hash(i, key_lo, key_hi) ≥ threshold`, threshold = ⌊p · 2³²⌋: the
/// mask is a pure function of the key (itself a function of seed, step and layer, see
/// [`DropoutParams::new`]) and the element index, so every backend draws the same bits, nothing is
/// stored between forward and backward, and a resumed run draws the masks it would have drawn.
/// With p = 0 (evaluation) every element is kept with scale 1: y = x exactly.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    pub len: i32,
    pub threshold: u32,
    /// 1 / (1 − p).
    pub scale: f32,
    pub key_lo: u32,
    pub key_hi: u32,
}

/// SplitMix64's finaliser: a bijective 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 32-bit integer mix (xor-shift-multiply, the "lowbias32" constants), used twice per element.
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The dropout hash of element `index` (mirrored by `dropout_hash` in kernels/dropout.cu).
pub fn dropout_hash(index: u32, key_lo: u32, key_hi: u32) -> u32 {
    mix32(mix32(index.wrapping_mul(0x9e37_79b1) ^ key_lo) ^ key_hi)
}

impl DropoutParams {
    /// The mask of layer `layer` at training step `step` of a run seeded with `seed`, over `len`
    /// values, dropping each with probability `p` (0 ≤ p < 1).
    pub fn new(len: usize, p: f64, seed: u64, step: u64, layer: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(shape_err!("dropout rate {p} must be in [0, 1)"));
        }
        let key = mix64(mix64(mix64(seed ^ 0x0d70_9a0d) ^ step) ^ layer);
        Ok(DropoutParams {
            len: to_i32("dropout length", len)?,
            threshold: (p * 4294967296.0).floor().min(u32::MAX as f64) as u32,
            scale: (1.0 / (1.0 - p)) as f32,
            key_lo: key as u32,
            key_hi: (key >> 32) as u32,
        })
    }
    /// The identity (evaluation mode): every element kept, scale 1.
    pub fn identity(len: usize) -> Result<Self> {
        Self::new(len, 0.0, 0, 0, 0)
    }
    /// Whether element `index` is kept.
    pub fn keeps(&self, index: u32) -> bool {
        dropout_hash(index, self.key_lo, self.key_hi) >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow_for_even_kernels() {
        // TF SAME, stride 1, k = 4: total 3, 1 before, 2 after.
        let g = ConvGeom::new(Shape::new(1, 3, 16, 12), 8, (4, 4), 1, Padding::Same, true).unwrap();
        assert_eq!((g.h_out, g.w_out, g.pad_top, g.pad_left), (16, 12, 1, 1));
        // k = 10: total 9, 4 before.
        let g = ConvGeom::new(
            Shape::new(1, 3, 16, 12),
            8,
            (10, 10),
            1,
            Padding::Same,
            true,
        )
        .unwrap();
        assert_eq!((g.h_out, g.w_out, g.pad_top, g.pad_left), (16, 12, 4, 4));
        // stride 2, in 7, k 3: out 4, total (3*2+3)-7 = 2, 1 before.
        let g = ConvGeom::new(Shape::new(1, 1, 7, 7), 1, (3, 3), 2, Padding::Same, false).unwrap();
        assert_eq!((g.h_out, g.pad_top), (4, 1));
        // stride 2, in 8, k 4: out 4, total (3*2+4)-8 = 2, 1 before.
        let g = ConvGeom::new(Shape::new(1, 1, 8, 8), 1, (4, 4), 2, Padding::Same, false).unwrap();
        assert_eq!((g.h_out, g.pad_top), (4, 1));
    }

    #[test]
    fn valid_and_explicit_padding() {
        let g = ConvGeom::new(Shape::new(2, 1, 9, 8), 4, (3, 2), 2, Padding::Valid, false).unwrap();
        assert_eq!((g.h_out, g.w_out), (4, 4));
        let p = Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 0,
            right: 2,
        };
        let g = ConvGeom::new(Shape::new(2, 1, 5, 5), 4, (3, 3), 1, p, false).unwrap();
        assert_eq!((g.h_out, g.w_out, g.pad_top, g.pad_left), (4, 5, 1, 0));
        assert!(
            ConvGeom::new(Shape::new(1, 1, 2, 2), 1, (3, 3), 1, Padding::Valid, false).is_err()
        );
    }

    #[test]
    fn pool_floor_mode() {
        let g = PoolGeom::new(Shape::new(1, 2, 7, 6), 2, 2).unwrap();
        assert_eq!((g.h_out, g.w_out), (3, 3));
        let g = PoolGeom::new(Shape::new(1, 2, 7, 6), 3, 2).unwrap();
        assert_eq!((g.h_out, g.w_out), (3, 2));
        assert!(PoolGeom::new(Shape::new(1, 1, 1, 5), 2, 2).is_err());
    }

    #[test]
    fn shortcut_rejects_non_dividing_shapes_naming_both() {
        let ok = ShortcutGeom::new(Shape::new(2, 3, 32, 24), Shape::new(2, 64, 8, 6)).unwrap();
        assert_eq!(ok.ratio, 4);
        let err = ShortcutGeom::new(Shape::new(2, 3, 30, 30), Shape::new(2, 64, 8, 8)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("(2, 3, 30, 30)") && msg.contains("(2, 64, 8, 8)"),
            "{msg}"
        );
        assert!(ShortcutGeom::new(Shape::new(2, 3, 32, 16), Shape::new(2, 8, 8, 8)).is_err());
    }
}
