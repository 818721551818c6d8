// geometry.cuh — C mirrors of the #[repr(C)] op parameter structs of src/backends/ops/<op>/mod.rs. Kernels take
// them by value. Field order and types must match the Rust side exactly: the emulator's layout test
// (src/backends/ops/mod.rs) compares every size and offset, and the static_asserts below catch a
// size change under NVRTC too.
#pragma once

// conv2d: x (N, C_in, H_in, W_in) * w (C_out, C_in, K_h, K_w) + b (C_out) -> y (N, C_out, H_out, W_out).
struct ConvGeom {
    int n, c_in, h_in, w_in;
    int c_out, k_h, k_w;
    int stride, pad_top, pad_left;
    int h_out, w_out;
    int relu;  // 1: y = max(0, conv + b)
};

// max-pool k×k, stride s, floor mode: x (N, C, H_in, W_in) -> y, argmax (N, C, H_out, W_out).
struct PoolGeom {
    int n, c, h_in, w_in;
    int k, stride;
    int h_out, w_out;
};

// shortcut: dst (N, C_dst, H_dst, W_dst) += r×r mean of src (N, C_src, H_src, W_src), channel c mod C_src.
struct ShortcutGeom {
    int n, c_src, h_src, w_src;
    int c_dst, h_dst, w_dst;
    int ratio;
};

// dense: y (N, OUT) = x (N, IN) · wᵀ + b, w (OUT, IN).
struct DenseGeom {
    int n, in_features, out_features;
    int relu;
};

// softmax cross-entropy: logits (N, CLASSES), labels (N).
struct XentGeom {
    int n, classes;
};

// one RMSProp step over `len` values; lr already time-decayed on the host.
struct RmsPropParams {
    int len;
    float lr, rho, eps, weight_decay;
};

// AdamW over `len` values; lr already scheduled, bias1 = 1/(1 − β1^t), bias2 = 1/(1 − β2^t) from the host.
struct AdamWParams {
    int len;
    float lr, beta1, beta2, eps, weight_decay, bias1, bias2;
};

// batch norm per channel over (N, H, W): x, y (N, C, H, W); γ, β, running mean/var (C).
struct BatchNormGeom {
    int n, c, h, w;
    int relu;  // 1: y = max(0, γ·x̂ + β)
    float eps, momentum;
};

// statistics pooling: x (N, C, H, W) -> y (N, 2C) = [mean_w, std_w] of the frequency means.
struct StatsPoolGeom {
    int n, c, h, w;
    float eps;
};

// inverted dropout over `len` values: kept iff dropout_hash(i, key) ≥ threshold; kept values × scale.
struct DropoutParams {
    int len;
    unsigned threshold;
    float scale;
    unsigned key_lo, key_hi;
    int group;  // consecutive elements sharing one draw (1: each its own; a sample's length: whole samples)
};

// concatenation along the row: a (N, A) and b (N, B) -> y (N, A + B) = [a, b].
struct ConcatGeom {
    int n, a, b;
};

static_assert(sizeof(ConvGeom) == 13 * 4, "ConvGeom must mirror src/backends/ops");
static_assert(sizeof(PoolGeom) == 8 * 4, "PoolGeom must mirror src/backends/ops");
static_assert(sizeof(ShortcutGeom) == 8 * 4, "ShortcutGeom must mirror src/backends/ops");
static_assert(sizeof(DenseGeom) == 4 * 4, "DenseGeom must mirror src/backends/ops");
static_assert(sizeof(XentGeom) == 2 * 4, "XentGeom must mirror src/backends/ops");
static_assert(sizeof(RmsPropParams) == 5 * 4, "RmsPropParams must mirror src/backends/ops");
static_assert(sizeof(AdamWParams) == 8 * 4, "AdamWParams must mirror src/backends/ops");
static_assert(sizeof(BatchNormGeom) == 7 * 4, "BatchNormGeom must mirror src/backends/ops");
static_assert(sizeof(StatsPoolGeom) == 5 * 4, "StatsPoolGeom must mirror src/backends/ops");
static_assert(sizeof(DropoutParams) == 6 * 4, "DropoutParams must mirror src/backends/ops");
static_assert(sizeof(ConcatGeom) == 3 * 4, "ConcatGeom must mirror src/backends/ops");
