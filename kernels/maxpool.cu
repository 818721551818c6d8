// maxpool.cu — k×k max-pooling with stride s (floor mode), forward and backward.
//
// Kernels
//   maxpool_forward: one thread per output element (grid-stride over N·C·H_out·W_out, consecutive
//     threads on consecutive output columns, so the window rows they read are coalesced). Reads k²
//     inputs, writes y and argmax = h·W_in + w of the FIRST maximum in row-major window order (a strict
//     `>` scan, like the CPU reference), with ARGMAX_POSITIVE set when that maximum is > 0: the ReLU
//     mask of the winner, so the fused backward needs no copy of the pool's input (the network reuses
//     that buffer for its gradient). Memory-bound: overlapping windows (s < k) are re-read through
//     L1/L2, not DRAM.
//   maxpool_backward: GATHER, one thread per INPUT element. It visits the ⌈k/s⌉² (at most) windows that
//     contain it and adds the dy of those whose argmax is this element, in row-major window order,
//     then adds the total into dx once. No two threads write the same dx element, so overlapping
//     windows need no atomics, and the result does not depend on scheduling.
//   maxpool_relu_backward: the same gather, WRITING dx (no read of it, no prior zeroing), times the
//     ReLU mask [x > 0] of the element's own input value, read from the ARGMAX_POSITIVE bit of a window
//     it won (every window it wins has it as its maximum): the pre-activation gradient of a fused
//     convolution whose output only this pool reads. It also emits that convolution's bias-gradient
//     partials: block (c, z) of REDUCE_THREADS threads covers chunk z of channel c's N·H_in·W_in
//     positions (consecutive threads on consecutive columns of one plane, so dx and x stay coalesced),
//     tree-reduces the dx it wrote (channel_sum.cuh) and stores partials[z][c]; conv2d_sum_partials
//     adds the chunks in order. Saves the zeroing and the read of dx, and the conv backward's read of
//     its y, rewrite of dy and the bias gradient's re-read of dy.
#include "common.cuh"
#include "channel_sum.cuh"

using channel_sum::REDUCE_THREADS;

// The argmax's top bit: the window's maximum is > 0 (mirrors ARGMAX_POSITIVE in
// src/backends/ops/maxpool/mod.rs). Indices use the other 31 bits (an input plane has < 2³¹ elements).
#define ARGMAX_POSITIVE 0x80000000u
#define ARGMAX_INDEX 0x7fffffffu

extern "C" __global__ void maxpool_forward(PoolGeom g,
                                           const float* __restrict__ x,  // (N, C, H_in, W_in)
                                           float* __restrict__ y,        // (N, C, H_out, W_out)
                                           unsigned* __restrict__ argmax) {  // (N, C, H_out, W_out)
    const unsigned total = (unsigned)g.n * g.c * g.h_out * g.w_out;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int ow = i % g.w_out;
        const int oh = (i / g.w_out) % g.h_out;
        const unsigned plane = i / (g.w_out * g.h_out);
        const float* in = x + (size_t)plane * g.h_in * g.w_in;
        const int first = oh * g.stride * g.w_in + ow * g.stride;
        float best = in[first];
        int best_at = first;
        for (int dh = 0; dh < g.k; ++dh) {
            const float* row = in + first + dh * g.w_in;
            for (int dw = 0; dw < g.k; ++dw) {
                const float v = __ldg(row + dw);
                if (v > best) {
                    best = v;
                    best_at = first + dh * g.w_in + dw;
                }
            }
        }
        y[i] = best;
        argmax[i] = (unsigned)best_at | (best > 0.0f ? ARGMAX_POSITIVE : 0u);
    }
}

extern "C" __global__ void maxpool_backward(PoolGeom g,
                                            const float* __restrict__ dy,          // (N, C, H_out, W_out)
                                            const unsigned* __restrict__ argmax,   // (N, C, H_out, W_out)
                                            float* __restrict__ dx) {              // (N, C, H_in, W_in)
    const unsigned total = (unsigned)g.n * g.c * g.h_in * g.w_in;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int w = i % g.w_in;
        const int h = (i / g.w_in) % g.h_in;
        const unsigned plane = i / (g.w_in * g.h_in);
        // Windows (oh, ow) with oh·s ≤ h < oh·s + k, inside the output.
        const int oh_lo = h < g.k ? 0 : (h - g.k + g.stride) / g.stride;
        const int oh_hi = min(h / g.stride, g.h_out - 1);
        const int ow_lo = w < g.k ? 0 : (w - g.k + g.stride) / g.stride;
        const int ow_hi = min(w / g.stride, g.w_out - 1);
        const unsigned me = (unsigned)(h * g.w_in + w);
        const size_t out_plane = (size_t)plane * g.h_out * g.w_out;
        float acc = dx[i];
        for (int oh = oh_lo; oh <= oh_hi; ++oh) {
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                const size_t o = out_plane + oh * g.w_out + ow;
                if ((__ldg(argmax + o) & ARGMAX_INDEX) == me) acc += __ldg(dy + o);
            }
        }
        dx[i] = acc;
    }
}

extern "C" __global__ __launch_bounds__(REDUCE_THREADS) void maxpool_relu_backward(
    PoolGeom g,
    const float* __restrict__ dy,         // (N, C, H_out, W_out)
    const unsigned* __restrict__ argmax,  // (N, C, H_out, W_out), with ARGMAX_POSITIVE
    float* __restrict__ dx,               // (N, C, H_in, W_in), written
    float* __restrict__ partials,         // (gridDim.y, C): Σ dx over chunk z of channel c at [z][c]
    int chunk)                            // (n, h, w) positions per block, a multiple of REDUCE_THREADS
{
    const int c = blockIdx.x;
    const int hw = g.h_in * g.w_in;
    const int out_hw = g.h_out * g.w_out;
    const int total = g.n * hw;
    const int begin = blockIdx.y * chunk;
    const int end = min(total, begin + chunk);
    int t = begin + (int)threadIdx.x;
    int n = t / hw;
    int q = t - n * hw;  // offset in the (n, c) plane
    float sum = 0.0f;
    for (; t < end; t += REDUCE_THREADS) {
        const size_t plane = (size_t)n * g.c + c;
        const int h = q / g.w_in;
        const int w = q - h * g.w_in;
        const int oh_lo = h < g.k ? 0 : (h - g.k + g.stride) / g.stride;
        const int oh_hi = min(h / g.stride, g.h_out - 1);
        const int ow_lo = w < g.k ? 0 : (w - g.k + g.stride) / g.stride;
        const int ow_hi = min(w / g.stride, g.w_out - 1);
        const size_t out_plane = plane * out_hw;
        float acc = 0.0f;
        bool positive = false;
        for (int oh = oh_lo; oh <= oh_hi; ++oh) {
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                const size_t o = out_plane + oh * g.w_out + ow;
                const unsigned a = __ldg(argmax + o);
                if ((a & ARGMAX_INDEX) == (unsigned)q) {
                    acc += __ldg(dy + o);
                    positive = (a & ARGMAX_POSITIVE) != 0u;
                }
            }
        }
        const size_t i = plane * hw + q;
        const float v = (acc != 0.0f && positive) ? acc : 0.0f;
        dx[i] = v;
        sum += v;
        q += REDUCE_THREADS;
        if (q >= hw) {
            n += q / hw;
            q %= hw;
        }
    }
    __shared__ float warp_sums[REDUCE_THREADS / 32];
    sum = channel_sum::block_sum(sum, warp_sums);
    if (threadIdx.x == 0) partials[blockIdx.y * g.c + c] = sum;
}
