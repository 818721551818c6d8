// statspool.cu — global statistics pooling: x (N, C, H, W) -> y (N, 2C). The mean over frequency (H)
// gives m_w for each time step w; y holds the mean of the m_w and sqrt(their variance + eps).
//
// Kernels
//   statspool_forward: one WARP per (n, c) plane (blockDim a multiple of 32; plane = global warp
//     index). Lane l owns the columns w = l, l + 32, …: it sums each column over H (the 32 lanes read
//     32 consecutive values of a row: coalesced) and keeps the column means. Two butterfly reductions
//     give the mean and then Σ (m_w − mean)² (two passes: no cancellation); the second pass recomputes
//     the column means instead of keeping W of them per lane. Lane 0 writes both outputs. Fixed
//     reduction order, no atomics: deterministic.
//   statspool_backward: one WARP per plane, reading mean and std back from y. Each lane recomputes
//     its columns' m_w and ACCUMULATES dx[h, w] += (dmean/W + dstd · (m_w − mean)/(W · std)) / H for
//     every h. Every dx element has one writer.
#include "common.cuh"

__device__ __forceinline__ float column_mean(const float* plane, int h, int w, int col, float inv_h) {
    float s = 0.0f;
    for (int r = 0; r < h; ++r) s += __ldg(plane + (size_t)r * w + col);
    return s * inv_h;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(RESCNN_FULL_MASK, v, offset);
    return v;
}

extern "C" __global__ void statspool_forward(StatsPoolGeom g,
                                             const float* __restrict__ x,  // (N, C, H, W)
                                             float* __restrict__ y) {      // (N, 2C)
    const int lane = threadIdx.x % 32;
    const int plane = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (plane >= g.n * g.c) return;  // whole warps leave together: the shuffles see full warps
    const int n = plane / g.c, c = plane % g.c;
    const float* in = x + (size_t)plane * g.h * g.w;
    const float inv_h = 1.0f / (float)g.h;
    float s = 0.0f;
    for (int col = lane; col < g.w; col += 32) s += column_mean(in, g.h, g.w, col, inv_h);
    const float mean = warp_sum(s) / (float)g.w;
    float q = 0.0f;
    for (int col = lane; col < g.w; col += 32) {
        const float d = column_mean(in, g.h, g.w, col, inv_h) - mean;
        q += d * d;
    }
    const float var = warp_sum(q) / (float)g.w;
    if (lane == 0) {
        y[(size_t)n * 2 * g.c + c] = mean;
        y[(size_t)n * 2 * g.c + g.c + c] = sqrtf(var + g.eps);
    }
}

extern "C" __global__ void statspool_backward(StatsPoolGeom g,
                                              const float* __restrict__ x,   // (N, C, H, W)
                                              const float* __restrict__ y,   // (N, 2C)
                                              const float* __restrict__ dy,  // (N, 2C)
                                              float* __restrict__ dx) {      // (N, C, H, W)
    const int lane = threadIdx.x % 32;
    const int plane = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (plane >= g.n * g.c) return;
    const int n = plane / g.c, c = plane % g.c;
    const size_t mean_at = (size_t)n * 2 * g.c + c, std_at = mean_at + g.c;
    const float mean = y[mean_at], std = y[std_at];
    const float inv_w = 1.0f / (float)g.w, inv_h = 1.0f / (float)g.h;
    const float d_mean = dy[mean_at] * inv_w;
    const float d_dev = dy[std_at] * inv_w / std;
    const float* in = x + (size_t)plane * g.h * g.w;
    float* out = dx + (size_t)plane * g.h * g.w;
    for (int col = lane; col < g.w; col += 32) {
        const float m = column_mean(in, g.h, g.w, col, inv_h);
        const float d = (d_mean + d_dev * (m - mean)) * inv_h;
        for (int r = 0; r < g.h; ++r) out[(size_t)r * g.w + col] += d;
    }
}
