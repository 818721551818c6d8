// dropout.cu — inverted dropout, forward and backward, with a mask that is never stored: element i is
// kept iff dropout_hash(i / group, key) ≥ threshold (DropoutParams; the key is a function of seed, step
// and layer made on the host; group 1 draws per element, a sample's length per whole sample). The backward pass recomputes the same mask from the same parameters, so the
// op needs no mask buffer and every backend (CPU reference, emulator, GPU) draws the same bits.
//
// Kernels
//   dropout_forward: element-wise, grid-stride over len: y = keep ? x · scale : 0 (WRITES y).
//   dropout_backward: element-wise, grid-stride: dx += keep ? dy · scale : 0 (ACCUMULATES dx).
//   Memory-bound; the hash is a handful of integer multiplies per element.
#include "common.cuh"

// Two rounds of a 32-bit xor-shift-multiply mix; mirrors dropout_hash in src/backends/ops/dropout/mod.rs.
__device__ __forceinline__ unsigned mix32(unsigned x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    return x ^ (x >> 16);
}

__device__ __forceinline__ bool dropout_keeps(const DropoutParams& p, unsigned i) {
    const unsigned draw = i / (unsigned)p.group;
    return mix32(mix32(draw * 0x9e3779b1u ^ p.key_lo) ^ p.key_hi) >= p.threshold;
}

extern "C" __global__ void dropout_forward(DropoutParams p,
                                           const float* __restrict__ x,  // (len)
                                           float* __restrict__ y) {      // (len)
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)p.len; i += stride) {
        y[i] = dropout_keeps(p, i) ? x[i] * p.scale : 0.0f;
    }
}

extern "C" __global__ void dropout_backward(DropoutParams p,
                                            const float* __restrict__ dy,  // (len)
                                            float* __restrict__ dx) {      // (len)
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (unsigned)p.len; i += stride) {
        if (dropout_keeps(p, i)) dx[i] += dy[i] * p.scale;
    }
}
