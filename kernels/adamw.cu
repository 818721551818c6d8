// adamw.cu — the AdamW parameter update (Adam's moments with bias correction, decoupled weight decay):
//
//   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²;   m̂ = m·bias1;   v̂ = v·bias2
//   w ← w − lr·wd·w;         w ← w − lr·m̂ / (sqrt(v̂) + eps)
//
// lr (already scheduled: warm-up, cosine or one-cycle) and bias1 = 1/(1 − β1^t), bias2 = 1/(1 − β2^t)
// are computed once per step on the host in f64 (AdamWStep::params), not per element.
//
// Kernels
//   adamw_update: element-wise and memory-bound (reads w, g, m, v; writes w, m, v: 28 bytes per value).
//     Grid-stride loop over float4 vectors so every load and store is a 16-byte transaction; the
//     len mod 4 values left over are done by the first threads of the grid with scalar accesses.
//     Needs w, g, m and v 16-byte aligned (every device allocation is; the wrapper checks).
#include "common.cuh"

__device__ __forceinline__ void adamw_one(float& w, float g, float& m, float& v, const AdamWParams& p) {
    m = p.beta1 * m + (1.0f - p.beta1) * g;
    v = p.beta2 * v + (1.0f - p.beta2) * g * g;
    const float m_hat = m * p.bias1;
    const float v_hat = v * p.bias2;
    w = w - p.lr * p.weight_decay * w;
    w = w - p.lr * m_hat / (sqrtf(v_hat) + p.eps);
}

extern "C" __global__ void adamw_update(AdamWParams p,
                                        float* __restrict__ w,        // (len)
                                        const float* __restrict__ g,  // (len)
                                        float* __restrict__ m,        // (len)
                                        float* __restrict__ v) {      // (len)
    const int vectors = p.len / 4;
    const int stride = gridDim.x * blockDim.x;
    const int first = blockIdx.x * blockDim.x + threadIdx.x;
    float4* w4 = reinterpret_cast<float4*>(w);
    const float4* g4 = reinterpret_cast<const float4*>(g);
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    for (int i = first; i < vectors; i += stride) {
        float4 wv = w4[i];
        const float4 gv = g4[i];
        float4 mv = m4[i];
        float4 vv = v4[i];
        adamw_one(wv.x, gv.x, mv.x, vv.x, p);
        adamw_one(wv.y, gv.y, mv.y, vv.y, p);
        adamw_one(wv.z, gv.z, mv.z, vv.z, p);
        adamw_one(wv.w, gv.w, mv.w, vv.w, p);
        w4[i] = wv;
        m4[i] = mv;
        v4[i] = vv;
    }
    const int tail = vectors * 4 + first;
    if (tail < p.len) {
        adamw_one(w[tail], g[tail], m[tail], v[tail], p);
    }
}
