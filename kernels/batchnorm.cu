// batchnorm.cu — batch normalisation per channel over (N, H, W), optionally fused with ReLU: the
// training forward pass (batch statistics, running averages), the evaluation forward pass (running
// statistics) and the training backward pass (dx, dγ, dβ).
//
// Kernels
//   batchnorm_forward_train: one BLOCK per channel (grid = C, blockDim a power of two ≤ 1024). Thread t
//     walks the channel's M = N·H·W values t, t + blockDim, … (consecutive threads on consecutive
//     columns of one image plane: coalesced). Two reductions, the mean and then Σ (x − μ)² (two
//     passes, no catastrophic cancellation), each a fixed tree: a per-thread sum in index order, a
//     butterfly inside each warp, then the warps' partials by warp 0 in warp order. No atomics: the
//     result depends only on blockDim, never on scheduling. A third pass writes y; thread 0 writes
//     saved (μ, 1/σ) for the backward pass and updates the running averages.
//   batchnorm_forward_eval: element-wise, grid-stride over N·C·H·W, with the running statistics.
//   batchnorm_backward: one BLOCK per channel, as the training forward. Pass 1 masks dy in place by
//     [y > 0] when fused with ReLU and reduces Σ dy and Σ dy·x̂ (x̂ recomputed from x and saved); thread
//     0 WRITES dβ = Σ dy and dγ = Σ dy·x̂. Pass 2 ACCUMULATES
//     dx += γ/σ · (dy − dβ/M − x̂ · dγ/M). Each thread re-reads exactly the dy it masked itself: no race.
//   One block per channel leaves SMs idle when C is small; it is what keeps the sums deterministic
//   without a second launch, and the op is memory-bound at three (forward) or two (backward) reads.
#include "common.cuh"

// Sum of `v` over the block, returned to every thread. `partials` is shared memory of ≥ 33 floats;
// every thread of the block must call it (it synchronises).
__device__ __forceinline__ float block_sum(float v, float* partials) {
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int warps = (blockDim.x + 31) / 32;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(RESCNN_FULL_MASK, v, offset);
    if (lane == 0) partials[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < warps ? partials[lane] : 0.0f;
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) w += __shfl_xor_sync(RESCNN_FULL_MASK, w, offset);
        if (lane == 0) partials[32] = w;
    }
    __syncthreads();
    const float total = partials[32];
    __syncthreads();  // partials may be reused by the next call
    return total;
}

// Offset of value j (0 ≤ j < M) of channel c: image j / HW, position j mod HW.
__device__ __forceinline__ size_t channel_offset(const BatchNormGeom& g, int c, int j) {
    const int hw = g.h * g.w;
    return ((size_t)(j / hw) * g.c + c) * hw + j % hw;
}

extern "C" __global__ void batchnorm_forward_train(BatchNormGeom g,
                                                   const float* __restrict__ x,      // (N, C, H, W)
                                                   const float* __restrict__ gamma,  // (C)
                                                   const float* __restrict__ beta,   // (C)
                                                   float* __restrict__ y,            // (N, C, H, W)
                                                   float* __restrict__ saved,        // (2, C): μ, 1/σ
                                                   float* __restrict__ running_mean,  // (C)
                                                   float* __restrict__ running_var) {  // (C)
    __shared__ float partials[33];
    const int c = blockIdx.x;
    const int m = g.n * g.h * g.w;
    float s = 0.0f;
    for (int j = threadIdx.x; j < m; j += blockDim.x) s += __ldg(x + channel_offset(g, c, j));
    const float mean = block_sum(s, partials) / (float)m;
    float q = 0.0f;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        const float d = __ldg(x + channel_offset(g, c, j)) - mean;
        q += d * d;
    }
    const float var = block_sum(q, partials) / (float)m;
    const float inv_std = 1.0f / sqrtf(var + g.eps);
    const float scale = gamma[c], shift = beta[c];
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        const size_t o = channel_offset(g, c, j);
        float v = scale * ((__ldg(x + o) - mean) * inv_std) + shift;
        if (g.relu && v < 0.0f) v = 0.0f;
        y[o] = v;
    }
    if (threadIdx.x == 0) {
        saved[c] = mean;
        saved[g.c + c] = inv_std;
        const float unbiased = m > 1 ? var * ((float)m / (float)(m - 1)) : var;
        running_mean[c] = (1.0f - g.momentum) * running_mean[c] + g.momentum * mean;
        running_var[c] = (1.0f - g.momentum) * running_var[c] + g.momentum * unbiased;
    }
}

extern "C" __global__ void batchnorm_forward_eval(BatchNormGeom g,
                                                  const float* __restrict__ x,             // (N, C, H, W)
                                                  const float* __restrict__ gamma,         // (C)
                                                  const float* __restrict__ beta,          // (C)
                                                  const float* __restrict__ running_mean,  // (C)
                                                  const float* __restrict__ running_var,   // (C)
                                                  float* __restrict__ y) {                 // (N, C, H, W)
    const unsigned hw = (unsigned)g.h * g.w;
    const unsigned total = (unsigned)g.n * g.c * hw;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int c = (i / hw) % g.c;
        const float inv_std = 1.0f / sqrtf(__ldg(running_var + c) + g.eps);
        float v = __ldg(gamma + c) * ((__ldg(x + i) - __ldg(running_mean + c)) * inv_std) + __ldg(beta + c);
        if (g.relu && v < 0.0f) v = 0.0f;
        y[i] = v;
    }
}

extern "C" __global__ void batchnorm_backward(BatchNormGeom g,
                                              const float* __restrict__ x,      // (N, C, H, W)
                                              const float* __restrict__ gamma,  // (C)
                                              const float* __restrict__ y,      // (N, C, H, W)
                                              const float* __restrict__ saved,  // (2, C): μ, 1/σ
                                              float* __restrict__ dy,           // (N, C, H, W), masked in place
                                              float* __restrict__ dx,           // (N, C, H, W), may be null
                                              float* __restrict__ dgamma,       // (C)
                                              float* __restrict__ dbeta) {      // (C)
    __shared__ float partials[33];
    const int c = blockIdx.x;
    const int m = g.n * g.h * g.w;
    const float mean = saved[c], inv_std = saved[g.c + c];
    float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        const size_t o = channel_offset(g, c, j);
        float d = dy[o];
        if (g.relu && __ldg(y + o) <= 0.0f) {
            d = 0.0f;
            dy[o] = 0.0f;
        }
        sum_dy += d;
        sum_dy_xhat += d * ((__ldg(x + o) - mean) * inv_std);
    }
    const float d_beta = block_sum(sum_dy, partials);
    const float d_gamma = block_sum(sum_dy_xhat, partials);
    if (threadIdx.x == 0) {
        dbeta[c] = d_beta;
        dgamma[c] = d_gamma;
    }
    if (dx == nullptr) return;
    const float k = gamma[c] * inv_std;
    const float mean_dy = d_beta / (float)m, mean_dy_xhat = d_gamma / (float)m;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        const size_t o = channel_offset(g, c, j);
        const float xhat = (__ldg(x + o) - mean) * inv_std;
        dx[o] += k * (dy[o] - mean_dy - xhat * mean_dy_xhat);
    }
}
