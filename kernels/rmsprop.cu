// rmsprop.cu — the RMSProp parameter update of the paper's formulas (3) and (4), with time decay:
//
//   g' = g + weight_decay · w;   r ← rho · r + (1 − rho) · g'²;   w ← w − lr_t · g' / sqrt(r + eps)
//
// lr_t = lr / (1 + decay · step) is computed once on the host (RmsPropConfig::params), not per element.
//
// Kernels
//   rmsprop_update: element-wise and memory-bound (reads w, g, r; writes w, r: 20 bytes per value).
//     Grid-stride loop over float4 vectors so every load and store is a 16-byte transaction; the
//     len mod 4 values left over are done by the first threads of the grid with scalar accesses.
//     Needs w, g and r 16-byte aligned (every device allocation is; the wrapper checks).
#include "common.cuh"

__device__ __forceinline__ void rmsprop_one(float& w, float g, float& r, const RmsPropParams& p) {
    float grad = g + p.weight_decay * w;
    r = p.rho * r + (1.0f - p.rho) * grad * grad;
    w = w - p.lr * grad / sqrtf(r + p.eps);
}

extern "C" __global__ void rmsprop_update(RmsPropParams p,
                                          float* __restrict__ w,        // (len)
                                          const float* __restrict__ g,  // (len)
                                          float* __restrict__ r) {      // (len)
    const int vectors = p.len / 4;
    const int stride = gridDim.x * blockDim.x;
    const int first = blockIdx.x * blockDim.x + threadIdx.x;
    float4* w4 = reinterpret_cast<float4*>(w);
    const float4* g4 = reinterpret_cast<const float4*>(g);
    float4* r4 = reinterpret_cast<float4*>(r);
    for (int i = first; i < vectors; i += stride) {
        float4 wv = w4[i];
        const float4 gv = g4[i];
        float4 rv = r4[i];
        rmsprop_one(wv.x, gv.x, rv.x, p);
        rmsprop_one(wv.y, gv.y, rv.y, p);
        rmsprop_one(wv.z, gv.z, rv.z, p);
        rmsprop_one(wv.w, gv.w, rv.w, p);
        w4[i] = wv;
        r4[i] = rv;
    }
    const int tail = vectors * 4 + first;
    if (tail < p.len) {
        rmsprop_one(w[tail], g[tail], r[tail], p);
    }
}
