// softmax_xent.cu — fused softmax cross-entropy: per-row loss, the gradient of the mean loss and the
// number of correctly classified rows, in one pass over the logits.
//
// Kernels
//   softmax_xent: one WARP per row (blockDim.x a multiple of 32; row = global warp index). Each lane
//     scans the classes lane, lane + 32, …: (1) the row maximum and its first index, combined across
//     lanes with __shfl_xor_sync (ties go to the lower index, so the argmax is the first maximum, as in
//     the reference); (2) Σ exp(z − max), also by butterfly, so every lane holds the total; (3) each lane
//     writes d_logits = (softmax − onehot)/N for its classes; lane 0 writes the loss
//     log Σ − (z_label − max) and counts the row as correct with one atomicAdd. Subtracting the maximum
//     first keeps every exponent ≤ 0: logits of ±1e4 give finite results. A label outside the classes
//     gives a NaN loss and row and is counted in counters[1]; the wrapper turns that into an error.
#include "common.cuh"

extern "C" __global__ void softmax_xent(XentGeom g,
                                        const float* __restrict__ logits,  // (N, CLASSES)
                                        const unsigned* __restrict__ labels,  // (N)
                                        float* __restrict__ losses,        // (N)
                                        float* __restrict__ d_logits,      // (N, CLASSES)
                                        unsigned* __restrict__ counters) {  // (2): correct rows, bad labels
    const int lane = threadIdx.x % 32;
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (row >= g.n) return;  // whole warps leave together: the shuffles below see full warps
    const float* z = logits + (size_t)row * g.classes;
    float* d = d_logits + (size_t)row * g.classes;
    const unsigned label = labels[row];

    float best = -RESCNN_INFINITY;
    int best_at = 0x7fffffff;
    for (int j = lane; j < g.classes; j += 32) {
        const float v = z[j];
        if (v > best) {
            best = v;
            best_at = j;
        }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
        const float other = __shfl_xor_sync(RESCNN_FULL_MASK, best, offset);
        const int other_at = __shfl_xor_sync(RESCNN_FULL_MASK, best_at, offset);
        if (other > best || (other == best && other_at < best_at)) {
            best = other;
            best_at = other_at;
        }
    }

    float sum = 0.0f;
    for (int j = lane; j < g.classes; j += 32) sum += expf(z[j] - best);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(RESCNN_FULL_MASK, sum, offset);

    if (label >= (unsigned)g.classes) {
        for (int j = lane; j < g.classes; j += 32) d[j] = RESCNN_NAN;
        if (lane == 0) {
            losses[row] = RESCNN_NAN;
            atomicAdd(&counters[1], 1u);
        }
        return;
    }
    const float inv_n = 1.0f / (float)g.n;
    for (int j = lane; j < g.classes; j += 32) {
        const float p = expf(z[j] - best) / sum;
        d[j] = ((unsigned)j == label ? p - 1.0f : p) * inv_n;
    }
    if (lane == 0) {
        losses[row] = logf(sum) - (z[label] - best);
        if ((unsigned)best_at == label) atomicAdd(&counters[0], 1u);
    }
}
