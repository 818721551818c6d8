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
//   softmax_xent_soft: the same warp-per-row scan against a row of target probabilities t (label
//     smoothing, mixup) and optional class weights w (null: all 1): loss −Σ_j w_j t_j log p_j, and
//     d_logits = (p · Σ_j w_j t_j − w ⊙ t)/N. Σ_j w_j t_j is a third butterfly. A row counts as correct
//     when its first-maximum logit is its target's first maximum (counters[0]).
#include "common.cuh"

// The first maximum of the row and its index, then Σ exp(z − max), each combined across the warp by
// butterfly, so every lane holds all three. Ties go to the lower index.
__device__ __forceinline__ void row_max_and_sum(const float* z, int classes, int lane, float& best, int& best_at,
                                                float& sum) {
    best = -RESCNN_INFINITY;
    best_at = 0x7fffffff;
    for (int j = lane; j < classes; j += 32) {
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
    sum = 0.0f;
    for (int j = lane; j < classes; j += 32) sum += expf(z[j] - best);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(RESCNN_FULL_MASK, sum, offset);
}

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

    float best, sum;
    int best_at;
    row_max_and_sum(z, g.classes, lane, best, best_at, sum);

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

extern "C" __global__ void softmax_xent_soft(XentGeom g,
                                             const float* __restrict__ logits,   // (N, CLASSES)
                                             const float* __restrict__ targets,  // (N, CLASSES)
                                             const float* __restrict__ weights,  // (CLASSES), may be null
                                             float* __restrict__ losses,         // (N)
                                             float* __restrict__ d_logits,       // (N, CLASSES)
                                             unsigned* __restrict__ counters) {  // (1): correct rows
    const int lane = threadIdx.x % 32;
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (row >= g.n) return;  // whole warps leave together
    const float* z = logits + (size_t)row * g.classes;
    const float* t = targets + (size_t)row * g.classes;
    float* d = d_logits + (size_t)row * g.classes;
    float best, sum;
    int best_at;
    row_max_and_sum(z, g.classes, lane, best, best_at, sum);
    const float log_sum = logf(sum);
    // Σ w t, Σ w t (log Σ − (z − max)) and the target's first maximum, by butterfly.
    float wt = 0.0f, loss = 0.0f, t_best = -RESCNN_INFINITY;
    int t_at = 0x7fffffff;
    for (int j = lane; j < g.classes; j += 32) {
        const float tj = t[j];
        const float w = weights == nullptr ? 1.0f : weights[j];
        wt += w * tj;
        loss += w * tj * (log_sum - (z[j] - best));
        if (tj > t_best) {
            t_best = tj;
            t_at = j;
        }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
        wt += __shfl_xor_sync(RESCNN_FULL_MASK, wt, offset);
        loss += __shfl_xor_sync(RESCNN_FULL_MASK, loss, offset);
        const float other = __shfl_xor_sync(RESCNN_FULL_MASK, t_best, offset);
        const int other_at = __shfl_xor_sync(RESCNN_FULL_MASK, t_at, offset);
        if (other > t_best || (other == t_best && other_at < t_at)) {
            t_best = other;
            t_at = other_at;
        }
    }
    const float inv_n = 1.0f / (float)g.n;
    for (int j = lane; j < g.classes; j += 32) {
        const float p = expf(z[j] - best) / sum;
        const float w = weights == nullptr ? 1.0f : weights[j];
        d[j] = (p * wt - w * t[j]) * inv_n;
    }
    if (lane == 0) {
        losses[row] = loss;
        if (best_at == t_at) atomicAdd(&counters[0], 1u);
    }
}
