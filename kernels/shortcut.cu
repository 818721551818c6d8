// shortcut.cu — the paper's multi-level residual identity map, forward and backward:
//   dst[n, c, h, w] += (1/r²) · Σ_{i,j<r} src[n, c mod C_src, h·r + i, w·r + j]
//
// Kernels
//   shortcut_forward: one thread per SOURCE WINDOW (n, c_s, h, w) with c_s < min(C_src, C_dst)
//     (grid-stride). Reads its r×r window row by row (consecutive threads read consecutive windows, so
//     each row is one coalesced stretch) once, and adds the mean into every target channel
//     c ≡ c_s (mod C_src) at (h, w): the source is read once, not once per target channel (a whole
//     tensor apart, so no cache caught the re-reads). Each dst element has one writer; the sum is
//     formed in the same order as before, so results are unchanged. Memory-bound.
//   shortcut_backward: GATHER, one thread per SOURCE element (n, c_s, h_s, w_s). It sums d_dst over the
//     target channels c ≡ c_s (mod C_src) at (h_s / r, w_s / r), multiplies by 1/r² and adds into d_src.
//     Every d_src element has exactly one writer: no atomics, deterministic. The r threads of a window
//     row read the same d_dst values (served by L1).
#include "common.cuh"

extern "C" __global__ void shortcut_forward(ShortcutGeom g,
                                            const float* __restrict__ src,  // (N, C_src, H_src, W_src)
                                            float* __restrict__ dst) {      // (N, C_dst, H_dst, W_dst)
    // Source channels that feed some target channel: min(C_src, C_dst).
    const int c_used = min(g.c_src, g.c_dst);
    const unsigned total = (unsigned)g.n * c_used * g.h_dst * g.w_dst;
    const unsigned stride = gridDim.x * blockDim.x;
    const float scale = 1.0f / (float)(g.ratio * g.ratio);
    const size_t dst_plane = (size_t)g.h_dst * g.w_dst;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int w = i % g.w_dst;
        const int h = (i / g.w_dst) % g.h_dst;
        const int cs = (i / (g.w_dst * g.h_dst)) % c_used;
        const int n = i / (g.w_dst * g.h_dst * c_used);
        const float* window =
            src + ((size_t)(n * g.c_src + cs) * g.h_src + h * g.ratio) * g.w_src + w * g.ratio;
        float sum = 0.0f;
        for (int di = 0; di < g.ratio; ++di) {
            for (int dj = 0; dj < g.ratio; ++dj) sum += __ldg(window + di * g.w_src + dj);
        }
        const float mean = sum * scale;
        float* out = dst + (size_t)n * g.c_dst * dst_plane + (size_t)h * g.w_dst + w;
        for (int c = cs; c < g.c_dst; c += g.c_src) out[c * dst_plane] += mean;
    }
}

extern "C" __global__ void shortcut_backward(ShortcutGeom g,
                                             const float* __restrict__ d_dst,  // (N, C_dst, H_dst, W_dst)
                                             float* __restrict__ d_src) {      // (N, C_src, H_src, W_src)
    const unsigned total = (unsigned)g.n * g.c_src * g.h_src * g.w_src;
    const unsigned stride = gridDim.x * blockDim.x;
    const float scale = 1.0f / (float)(g.ratio * g.ratio);
    const size_t dst_plane = (size_t)g.h_dst * g.w_dst;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int ws = i % g.w_src;
        const int hs = (i / g.w_src) % g.h_src;
        const int cs = (i / (g.w_src * g.h_src)) % g.c_src;
        const int n = i / (g.w_src * g.h_src * g.c_src);
        const float* column = d_dst + (size_t)n * g.c_dst * dst_plane + (hs / g.ratio) * g.w_dst + ws / g.ratio;
        float sum = 0.0f;
        for (int c = cs; c < g.c_dst; c += g.c_src) sum += __ldg(column + c * dst_plane);
        d_src[i] += sum * scale;
    }
}
