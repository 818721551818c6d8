// channel_sum.cuh — the block reduction shared by the kernels that sum one channel of an (N, C, H, W)
// tensor in chunks (conv2d_bias_grad_partial, maxpool_relu_backward): block (c, z) of REDUCE_THREADS
// threads covers chunk z of channel c's N·H·W positions and writes one partial sum, and
// conv2d_sum_partials adds the chunks in a fixed order. Both wrappers plan the chunks with
// `channel_chunks` in src/backends/ops/conv2d/kernel.rs.
#pragma once

#include "common.cuh"

namespace channel_sum {

constexpr int REDUCE_THREADS = 256;

// Sum of `v` over the block (REDUCE_THREADS threads), valid in thread 0. Fixed tree: deterministic.
// `warp_sums` is the caller's __shared__ float[REDUCE_THREADS / 32] (declared in the kernel so that the
// build's static shared-memory accounting sees it).
__device__ __forceinline__ float block_sum(float v, float* warp_sums) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(RESCNN_FULL_MASK, v, offset);
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = 0.0f;
    if (warp == 0) {
        v = lane < REDUCE_THREADS / 32 ? warp_sums[lane] : 0.0f;
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(RESCNN_FULL_MASK, v, offset);
    }
    return v;
}

}  // namespace channel_sum
