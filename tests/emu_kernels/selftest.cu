// selftest.cu — kernels that test the emulated device itself (tests/emulator.rs). Several are wrong on
// purpose (divergent barriers, bad masks, a missing barrier): they live here, not in kernels/, so NVRTC
// never compiles them and the product never contains them.
//
// Kernels
//   selftest_indices           writes every thread's (thread, block) coordinates.
//   selftest_block_sum         shared-memory tree reduction of one block, correct barriers.
//   selftest_block_sum_racy    the same with the barrier after the loads removed (wrong in some order).
//   selftest_divergent_barrier two halves of the block wait at different __syncthreads().
//   selftest_exit_while_waiting one thread returns before a barrier the others reach.
//   selftest_deadlock          lane 0 waits in a shuffle for lane 1, which waits at a barrier.
//   selftest_shuffle           one warp operation chosen by `op` over a mask, for comparing with CUDA's rules.
//   selftest_warp_sum_f64      butterfly sum of doubles (8-byte shuffles) with partial-width segments.
//   selftest_bad_mask          the mask errors, chosen by `mode`.
//   selftest_shared_isolation  each block fills static shared memory with its id and checks it over many barriers.
//   selftest_dynamic_shared    reads dynamic shared memory before writing it.
//   selftest_big_static_shared 40 KiB of static shared memory (for the launch-limit check).
//   selftest_atomics           float/unsigned/int atomics from every thread of every block.
//   selftest_trap              calls __trap() in one thread.
//   selftest_barrier_loop      `rounds` barriers over a shared array (the emulator's launch benchmark).
#include "common.cuh"

extern "C" __global__ void selftest_indices(int* out) {  // (grid volume · block volume, 6)
    int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int i = (block * blockDim.x * blockDim.y * blockDim.z + thread) * 6;
    out[i + 0] = threadIdx.x;
    out[i + 1] = threadIdx.y;
    out[i + 2] = threadIdx.z;
    out[i + 3] = blockIdx.x;
    out[i + 4] = blockIdx.y;
    out[i + 5] = blockIdx.z;
}

// Block size must be 256.
extern "C" __global__ void selftest_block_sum(const float* x,  // (gridDim.x · 256)
                                              float* out) {    // (gridDim.x)
    __shared__ float partial[256];
    int t = threadIdx.x;
    partial[t] = x[blockIdx.x * 256 + t];
    __syncthreads();
    for (int stride = 128; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}

extern "C" __global__ void selftest_block_sum_racy(const float* x,  // (gridDim.x · 256)
                                                   float* out) {    // (gridDim.x)
    __shared__ float partial[256];
    int t = threadIdx.x;
    partial[t] = x[blockIdx.x * 256 + t];
    // BUG on purpose: no __syncthreads() between the loads and the first reads of other threads' loads.
    for (int stride = 128; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
    }
    __syncthreads();
    if (t == 0) out[blockIdx.x] = partial[0];
}

extern "C" __global__ void selftest_divergent_barrier(float* out) {  // (blockDim.x)
    if (threadIdx.x < 16) {
        out[threadIdx.x] = 1.0f;
        __syncthreads();
    } else {
        out[threadIdx.x] = 2.0f;
        __syncthreads();
    }
}

extern "C" __global__ void selftest_exit_while_waiting(float* out) {  // (blockDim.x)
    if (threadIdx.x == 5) return;
    out[threadIdx.x] = 1.0f;
    __syncthreads();
}

extern "C" __global__ void selftest_deadlock(float* out) {  // (blockDim.x)
    float v = (float)threadIdx.x;
    if (threadIdx.x == 0) v = __shfl_sync(0x3u, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}

// op: 0 idx, 1 up, 2 down, 3 xor, 4 ballot(v odd), 5 any(v > arg), 6 all(v > arg).
// Lanes outside `mask` write -1 and take no part.
extern "C" __global__ void selftest_shuffle(const int* in,  // (blockDim.x)
                                            int* out,       // (blockDim.x)
                                            unsigned mask, int op, int arg, int width) {
    int t = threadIdx.x;
    int v = in[t];
    int r = -1;
    if (mask & (1u << (t % 32))) {
        switch (op) {
            case 0: r = __shfl_sync(mask, v, arg, width); break;
            case 1: r = __shfl_up_sync(mask, v, (unsigned)arg, width); break;
            case 2: r = __shfl_down_sync(mask, v, (unsigned)arg, width); break;
            case 3: r = __shfl_xor_sync(mask, v, arg, width); break;
            case 4: r = (int)__ballot_sync(mask, v & 1); break;
            case 5: r = __any_sync(mask, v > arg); break;
            default: r = __all_sync(mask, v > arg); break;
        }
    }
    out[t] = r;
}

extern "C" __global__ void selftest_warp_sum_f64(const double* in,  // (blockDim.x)
                                                 double* out,       // (blockDim.x)
                                                 int width) {
    double v = in[threadIdx.x];
    for (int offset = width / 2; offset > 0; offset /= 2) {
        v += __shfl_xor_sync(RESCNN_FULL_MASK, v, offset, width);
    }
    out[threadIdx.x] = v;
}

// mode 0: each lane names only lane 0 in its mask; 1: full mask in a warp of fewer than 32 lanes;
// 2: lane 31 exits, the others shuffle with the full mask; 3: read lane 20 with mask 0x0000ffff;
// 4: lanes of one mask call different operations.
extern "C" __global__ void selftest_bad_mask(int* out,  // (blockDim.x)
                                             int mode) {
    int lane = threadIdx.x % 32;
    int v = threadIdx.x;
    if (mode == 0) {
        v = __shfl_sync(0x1u, v, 0);
    } else if (mode == 1) {
        v = __shfl_down_sync(RESCNN_FULL_MASK, v, 1);
    } else if (mode == 2) {
        if (lane == 31) return;
        v = __shfl_down_sync(RESCNN_FULL_MASK, v, 1);
    } else if (mode == 3) {
        if (lane < 16) v = __shfl_sync(0x0000ffffu, v, 20);
    } else {
        if (lane == 3) {
            v = __shfl_up_sync(RESCNN_FULL_MASK, v, 1);
        } else {
            v = __shfl_down_sync(RESCNN_FULL_MASK, v, 1);
        }
    }
    out[threadIdx.x] = v;
}

// Block size 256. out[block] counts the entries of the block's shared array that ever held another
// block's id over `rounds` barrier-separated checks.
extern "C" __global__ void selftest_shared_isolation(int* out,  // (gridDim.x)
                                                     int rounds) {
    __shared__ int owner[256];
    __shared__ int wrong;
    int t = threadIdx.x;
    if (t == 0) wrong = 0;
    owner[t] = blockIdx.x;
    __syncthreads();
    for (int round = 0; round < rounds; ++round) {
        int other = owner[(t + round) % 256];
        if (other != (int)blockIdx.x) atomicAdd(&wrong, 1);
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = wrong;
}

extern "C" __global__ void selftest_dynamic_shared(unsigned* out) {  // (gridDim.x · blockDim.x)
    RESCNN_DYNAMIC_SHARED(float, scratch);
    int t = threadIdx.x;
    out[blockIdx.x * blockDim.x + t] = __float_as_uint(scratch[t]);
    scratch[t] = 1.0f;  // the next block must not see this
}

extern "C" __global__ void selftest_big_static_shared(float* out) {  // (blockDim.x)
    __shared__ float big[10240];  // 40 KiB
    for (int i = threadIdx.x; i < 10240; i += blockDim.x) big[i] = (float)i;
    __syncthreads();
    out[threadIdx.x] = big[10239 - threadIdx.x];
}

extern "C" __global__ void selftest_atomics(float* sum,        // (1)
                                            unsigned* count,   // (1)
                                            int* largest,      // (1)
                                            unsigned* smallest) {  // (1)
    int global = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(sum, 1.0f);
    atomicAdd(count, 1u);
    atomicMax(largest, global);
    atomicMin(smallest, (unsigned)global + 7u);
}

extern "C" __global__ void selftest_trap(float* out) {  // (blockDim.x)
    if (threadIdx.x == 3) __trap();
    out[threadIdx.x] = 1.0f;
}

// Block size 256: `rounds` rounds of neighbour exchange through shared memory, two barriers each.
extern "C" __global__ void selftest_barrier_loop(float* out,  // (gridDim.x · 256)
                                                 int rounds) {
    __shared__ float cells[256];
    int t = threadIdx.x;
    float v = (float)(blockIdx.x * 256 + t);
    for (int round = 0; round < rounds; ++round) {
        cells[t] = v;
        __syncthreads();
        v = 0.5f * (v + cells[(t + 1) % 256]);
        __syncthreads();
    }
    out[blockIdx.x * 256 + t] = v;
}

// The shim's math and qualifiers: a __device__ helper, __launch_bounds__, #pragma unroll, float4,
// __ldg and the fast-math names. out[9·i …] holds nine results for x[i].
__device__ __forceinline__ float selftest_square(float v) { return v * v; }

extern "C" __global__ void __launch_bounds__(64) selftest_math(const float* __restrict__ x,  // (n)
                                                              float* __restrict__ out,       // (n, 9)
                                                              int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = __ldg(x + i);
    float4 q = make_float4(v, 2.0f * v, 3.0f * v, 4.0f * v);
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; ++k) acc += (&q.x)[k];
    float* o = out + 9 * i;
    o[0] = __expf(v);
    o[1] = __logf(v);
    o[2] = rsqrtf(v);
    o[3] = __fdividef(1.0f, v);
    o[4] = fmaxf(v, 1.0f) + fminf(v, 1.0f);
    o[5] = selftest_square(sqrtf(v));
    o[6] = acc;
    o[7] = __int_as_float(0x7f800000) > v ? 1.0f : 0.0f;  // RESCNN_INFINITY's spelling
    o[8] = (float)max(min(i, 3), 1);
}
