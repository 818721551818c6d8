// conv2d.cu — 2-D convolution, forward and backward, as implicit GEMMs on the shared tiled core
// (gemm_tile.cuh: 64 x 128 block tile, or 32 x 128 for the `_m32` entry points, BK = 8, 128 threads,
// 8 x 8 or 4 x 8 accumulators per thread, double-buffered shared memory, one barrier per K step). No im2col buffer is ever built: the loaders
// below gather the virtual im2col matrix straight from the NCHW tensors, with SAME/explicit padding
// (asymmetric: only pad_top/pad_left are needed, the far side falls out of the bounds checks) and any
// stride. Pixel index math is done once per thread per block; what depends on K only is computed once
// per launch (the K table) or per K step (the pixel ring) and read as shared broadcasts, so a gathered
// element costs two adds, two unsigned bounds tests and a predicated load. Static SASS of the sm_90
// main loops: FFMA is 71 % (forward), 67 % (backward data) and 70 % (backward filter) of the
// instructions, against 75 % for the plain dense SGEMM.
//
// Kernels (P = N·H_out·W_out output pixels, KK = K_h·K_w):
//   conv2d_forward           y = [ReLU](w · im2col(x) + b): GEMM M = C_out, N = P, K = C_in·KK.
//                            A = w rows (float4 along K when aligned); B gathered through the K table:
//                            thread t owns pixel column t of the tile and loads its 8 (ci, kh, kw) rows
//                            per step — lanes are
//                            consecutive pixels, so for stride 1 a warp reads 32 consecutive floats of a
//                            row. Epilogue: bias + optional ReLU, st.global.v4 when H_out·W_out % 4 == 0.
//                            Compute-bound for the paper's 8x8/10x10 layers (K = 2048 / 6400): 12.8k flop
//                            per output, 8 flop per byte moved into shared memory.
//   conv2d_backward_data     dx (+)= w^T · col2im(dy): GEMM M = C_in, N = N·H_in·W_in, K = C_out·KK.
//                            Added into dx, or (accumulate = 0, where the convolution is the only
//                            producer of that gradient) written without reading it, so the caller
//                            need not zero it either.
//   (and _strided)           A gathered from w (thread fixes one k offset, 4 ci rows); B gathered from dy
//                            through the K table: oh = (ih + pad_top − kh) / stride when that divides
//                            exactly and lies in range. The stride-1 kernel (the paper's) skips the
//                            division; stride > 1 runs conv2d_backward_data_strided, the same template
//                            with the divisibility tests. Each dx element is owned by one thread:
//                            accumulated (or written) without atomics.
//   conv2d_gather_table      the K table of the forward or backward-data gather: one int4 per k =
//                            (channel, kh, kw) with the k-dependent part of the address and (kh, kw),
//                            padded to whole BK steps; built once per shape (K threads; the wrapper
//                            caches it per geometry and direction), read by every
//                            block as broadcast loads, so the per-element gather is 2 adds, 2 unsigned
//                            bounds tests and a predicated load instead of index arithmetic.
//   conv2d_backward_filter   dw = dy · im2col(x)^T: GEMM M = C_out, N = C_in·KK, K = P (huge: 3.3M for the
//                            paper's conv2). Split-K over gridDim.z contiguous pixel chunks; each block writes
//                            its tile of partial sums to partials[z] (plain stores), and
//                            conv2d_sum_partials adds the chunks in fixed order — deterministic, no float
//                            atomics. With one chunk the kernel writes dw directly. A = dy rows, B = x
//                            patches gathered through the pixel ring (threads 0..7 describe the pixels
//                            of the step two ahead in shared memory; everyone else reads them); thread t
//                            owns filter column t, so lanes read consecutive kw: mostly contiguous.
//   conv2d_bias_grad_partial db, first stage (and the ReLU mask): block (c, z) sums dy over chunk z of
//                            channel c's N·H_out·W_out values (with g.relu, first zeroing dy in place where
//                            y <= 0), tree-reduces in the block (warp shuffles), writes partials[z][c].
//                            Memory-bound: one read of dy (and y), one write of the masked dy. Not run
//                            where the convolution's only reader is a max-pool: maxpool_relu_backward
//                            (maxpool.cu) emits these partials as it writes the masked dy.
//   conv2d_sum_partials      out[i] = sum over z in order of partials[z][i]: the second stage of the
//                            filter and bias gradients (and of the pool-emitted bias partials).
//
// All K and N edges are handled by zero-filled loads and guarded stores, so no size needs to be a
// multiple of any tile. Offsets inside one image are 32-bit; image bases are 64-bit.
#include "common.cuh"
#include "gemm_tile.cuh"
#include "channel_sum.cuh"

namespace {

using gemm::BK;
using gemm::LDB;
using gemm::THREADS;

// Far outside any map: a row offset that keeps every bounds test failing, for K padding entries and
// pixel columns past the end.
constexpr int FAR = 1 << 28;

// The K table of an implicit GEMM (built by conv2d_gather_table, one int4 per k = (c, kh, kw), padded
// with FAR entries to whole BK steps): what a gather needs from k, computed once per shape instead of
// per element. Every thread of a block reads the same entry at once: one broadcast L1 transaction.
//   forward:        {c·H_in·W_in + kh·W_in + kw, kh, kw, 0}
//   backward-data:  {c·H_out·W_out − kh·W_out − kw, kh, kw, 0}   (c = output channel)

// B of the forward GEMM: B[k = (ci, kh, kw)][p = (n, oh, ow)] = x[n, ci, oh·s − pad_top + kh, ow·s − pad_left + kw].
// Per element: one table read, two adds, two unsigned bounds tests, one predicated load.
struct ImageColumns {
    const float* image;  // x[n] of this thread's pixel
    const int4* entry;   // the next K step's first table entry
    int h, w;
    int ih0, iw0;  // input coordinates of tap (0, 0); ih0 = -FAR for a pixel past the end
    int origin;    // ih0·W_in + iw0: the pixel's offset in its image, to which the table adds
    float v[BK];

    __device__ ImageColumns(const ConvGeom& g, const float* x, const int4* table, int p0) : entry(table) {
        h = g.h_in;
        w = g.w_in;
        const int hw_out = g.h_out * g.w_out;
        const int p = p0 + (int)threadIdx.x;
        const bool valid = p < g.n * hw_out;
        const int n = valid ? p / hw_out : 0;
        const int q = p - n * hw_out;
        const int oh = q / g.w_out;
        const int ow = q - oh * g.w_out;
        ih0 = valid ? oh * g.stride - g.pad_top : -FAR;
        iw0 = ow * g.stride - g.pad_left;
        origin = valid ? ih0 * w + iw0 : 0;
        image = x + (long long)n * g.c_in * h * w;
    }
    __device__ __forceinline__ void fetch() {
#pragma unroll
        for (int j = 0; j < BK; ++j) {
            const int4 e = entry[j];
            const bool ok = (unsigned)(ih0 + e.y) < (unsigned)h && (unsigned)(iw0 + e.z) < (unsigned)w;
            v[j] = ok ? image[origin + e.x] : 0.0f;
        }
        entry += BK;
    }
    __device__ __forceinline__ void store(float* tile) const {
#pragma unroll
        for (int j = 0; j < BK; ++j) tile[j * LDB + threadIdx.x] = v[j];
    }
};

// A of the backward-data GEMM: A[ci][k = (co, kh, kw)] = w[co, ci, kh, kw]. Thread t loads k offset
// t % BK of each step for the BM/16 rows ci = t / BK + 16·i; (co, kh·K_w + kw) advance by BK per step.
template <int BM>
struct FilterRowsTransposed {
    static constexpr int ROW_STEP = THREADS / BK;           // 16
    static constexpr int PER_THREAD = BM * BK / THREADS;  // 4 (BM = 64) or 2 (BM = 32)
    static constexpr int LDA = gemm::Rows<BM>::LDA;
    const float* w;
    int c_in, c_out, kk, ci0;
    int co, khw;
    float v[PER_THREAD];

    __device__ FilterRowsTransposed(const ConvGeom& g, const float* w_, int m0) : w(w_) {
        c_in = g.c_in;
        c_out = g.c_out;
        kk = g.k_h * g.k_w;
        ci0 = m0 + (int)threadIdx.x / BK;
        const int k = (int)threadIdx.x % BK;
        co = k / kk;
        khw = k - co * kk;
    }
    __device__ __forceinline__ void fetch() {
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            const int ci = ci0 + i * ROW_STEP;
            v[i] = (co < c_out && ci < c_in) ? w[(co * c_in + ci) * kk + khw] : 0.0f;
        }
        khw += BK;
        if (khw >= kk) {
            co += khw / kk;
            khw %= kk;
        }
    }
    __device__ __forceinline__ void store(float* tile) const {
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i)
            tile[((int)threadIdx.x % BK) * LDA + (int)threadIdx.x / BK + i * ROW_STEP] = v[i];
    }
};

// B of the backward-data GEMM: B[k = (co, kh, kw)][p = (n, ih, iw)] = dy[n, co, oh, ow] where
// oh·s = ih + pad_top − kh and ow·s = iw + pad_left − kw exactly, inside the output; 0 otherwise.
// UNIT_STRIDE (the paper's convolutions) needs no division: like the forward gather, one table read,
// two adds, two unsigned tests and a predicated load per element. The general-stride instantiation
// divides, and is a separate kernel so that its registers do not weigh on the stride-1 one.
template <bool UNIT_STRIDE>
struct GradientColumns {
    const float* grad;  // dy[n] of this thread's pixel
    const int4* entry;
    int h_out, w_out, stride;
    int th0, tw0;  // ih + pad_top, iw + pad_left (th0 = -FAR for a pixel past the end)
    int origin;    // th0·W_out + tw0 (stride 1)
    float v[BK];

    __device__ GradientColumns(const ConvGeom& g, const float* dy, const int4* table, int p0) : entry(table) {
        h_out = g.h_out;
        w_out = g.w_out;
        stride = g.stride;
        const int hw_in = g.h_in * g.w_in;
        const int p = p0 + (int)threadIdx.x;
        const bool valid = p < g.n * hw_in;
        const int n = valid ? p / hw_in : 0;
        const int q = p - n * hw_in;
        const int ih = q / g.w_in;
        const int iw = q - ih * g.w_in;
        th0 = valid ? ih + g.pad_top : -FAR;
        tw0 = iw + g.pad_left;
        origin = valid ? th0 * w_out + tw0 : 0;
        grad = dy + (long long)n * g.c_out * h_out * w_out;
    }
    __device__ __forceinline__ void fetch() {
        if (UNIT_STRIDE) {
#pragma unroll
            for (int j = 0; j < BK; ++j) {
                const int4 e = entry[j];
                const bool ok = (unsigned)(th0 - e.y) < (unsigned)h_out && (unsigned)(tw0 - e.z) < (unsigned)w_out;
                v[j] = ok ? grad[origin + e.x] : 0.0f;
            }
        } else {
#pragma unroll
            for (int j = 0; j < BK; ++j) {
                const int4 e = entry[j];
                const int th = th0 - e.y;
                const int tw = tw0 - e.z;
                const int oh = th / stride;
                const int ow = tw / stride;
                // th, tw >= 0 and exact division; then the output tap (oh, ow) must exist
                const bool ok = th >= 0 && tw >= 0 && oh * stride == th && ow * stride == tw && oh < h_out &&
                                ow < w_out;
                // e.x + kh·W_out + kw is the channel's offset co·H_out·W_out
                v[j] = ok ? grad[e.x + e.y * w_out + e.z + oh * w_out + ow] : 0.0f;
            }
        }
        entry += BK;
    }
    __device__ __forceinline__ void store(float* tile) const {
#pragma unroll
        for (int j = 0; j < BK; ++j) tile[j * LDB + threadIdx.x] = v[j];
    }
};

// The pixel ring of the backward-filter GEMM, whose K index is the output pixel p = (n, oh, ow): one
// int4 per pixel of a K step, {x offset of tap (0, 0) = n·C_in·H_in·W_in + ih·W_in + iw, ih, iw, dy
// offset n·C_out·H_out·W_out + oh·W_out + ow} with ih = oh·s − pad_top, iw = ow·s − pad_left; a pixel
// outside [k_begin, k_end) gets ih = iw = −FAR, so every tap fails the bounds test. Threads 0..BK−1
// write the entries of step s + 2 while step s is fetched: every other thread reads them as
// broadcasts instead of walking (n, oh, ow) itself. Three slots in shared memory: the entries of step
// s are written during the fetch of step s − 2, and at least one of the main loop's barriers lies
// between that write and the fetch of step s (the constructor writes steps 0 and 1 and synchronises).
constexpr int RING_SLOTS = 3;

struct PixelRing {
    // RING_SLOTS x BK entries, then BK producer states {pixels left in the range, n, oh, ow}: the
    // pixel whose entry thread t < BK writes next. Kept in shared memory, not registers: only 8
    // threads need them, but registers are allocated for all 128.
    int4* slots;
    int slot;  // where the next entries go; the step being fetched sits in the slot after it

    __device__ PixelRing(const ConvGeom& g, int4* slots_, int k_begin, int k_end) : slots(slots_) {
        if (threadIdx.x < BK) {
            const int hw_out = g.h_out * g.w_out;
            const int p = k_begin + (int)threadIdx.x;
            const int n = p / hw_out;
            const int q = p - n * hw_out;
            const int oh = q / g.w_out;
            slots[RING_SLOTS * BK + threadIdx.x] = make_int4(k_end - p, n, oh, q - oh * g.w_out);
        }
        slot = 0;
        produce(g);
        produce(g);
        __syncthreads();
    }
    // The entries of the step being fetched: the slot after the one produced next (2 steps ahead).
    __device__ __forceinline__ const int4* current() const { return slots + (slot == RING_SLOTS - 1 ? 0 : slot + 1) * BK; }
    // Threads < BK write their entry of the step two ahead and move BK pixels on; every thread moves
    // its slot (all of them read through current()).
    __device__ __forceinline__ void produce(const ConvGeom& g) {
        if (threadIdx.x < BK) {
            int4& state = slots[RING_SLOTS * BK + threadIdx.x];
            int left = state.x, n = state.y, oh = state.z, ow = state.w;
            int4 e = make_int4(0, -FAR, -FAR, 0);
            if (left > 0) {
                const int ih = oh * g.stride - g.pad_top;
                const int iw = ow * g.stride - g.pad_left;
                e = make_int4((n * g.c_in * g.h_in + ih) * g.w_in + iw, ih, iw,
                              (n * g.c_out * g.h_out + oh) * g.w_out + ow);
            }
            slots[slot * BK + threadIdx.x] = e;
            left -= BK;
            ow += BK;
            while (ow >= g.w_out) {
                ow -= g.w_out;
                if (++oh == g.h_out) {
                    oh = 0;
                    ++n;
                }
            }
            state = make_int4(left, n, oh, ow);
        }
        slot = slot == RING_SLOTS - 1 ? 0 : slot + 1;
    }
};

// A of the backward-filter GEMM: A[co][p] = dy[n, co, oh, ow]. Thread t loads pixel t % BK of each
// step (8 lanes read 32 consecutive bytes of a row) for the BM/16 rows co = t / BK + 16·i. Rows past
// C_out only feed accumulator rows that are never stored, so they are clamped instead of tested; a
// pixel outside the range reads a harmless in-bounds value, the B side zeroes it.
template <int BM>
struct GradientRows {
    static constexpr int ROW_STEP = THREADS / BK;
    static constexpr int PER_THREAD = BM * BK / THREADS;
    static constexpr int LDA = gemm::Rows<BM>::LDA;
    const ConvGeom& g;
    const float* dy;
    const PixelRing& ring;
    int co0;
    float v[PER_THREAD];

    __device__ GradientRows(const ConvGeom& g_, const float* dy_, const PixelRing& ring_, int m0)
        : g(g_), dy(dy_), ring(ring_) {
        co0 = m0 + (int)threadIdx.x / BK;
    }
    __device__ __forceinline__ void fetch() {
        const int base = ring.current()[(int)threadIdx.x % BK].w;
        const int hw_out = g.h_out * g.w_out;
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) v[i] = dy[base + min(co0 + i * ROW_STEP, g.c_out - 1) * hw_out];
    }
    __device__ __forceinline__ void store(float* tile) const {
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i)
            tile[((int)threadIdx.x % BK) * LDA + (int)threadIdx.x / BK + i * ROW_STEP] = v[i];
    }
};

// B of the backward-filter GEMM: B[p][j = (ci, kh, kw)] = x[n, ci, oh·s − pad_top + kh, ow·s − pad_left
// + kw]. Thread t owns filter column j = n0 + t for the whole pixel range (lanes are consecutive kw,
// hence mostly consecutive addresses). Per element: one broadcast ring read, two adds, two unsigned
// bounds tests, one predicated load. Its fetch also advances the ring (it runs after the A fetch of the
// same step, which reads the slot being consumed, never the one being written).
struct PatchColumns {
    const ConvGeom& g;
    const float* x;
    PixelRing& ring;
    int column;  // ci·H_in·W_in + kh·W_in + kw
    int kh, kw;  // kh = FAR for a column past the filter: its taps fail the bounds test at every valid
                 // pixel; at a padding pixel (ih = iw = -FAR, offset 0) they pass and read x[0], in
                 // bounds, into an accumulator column that is never stored
    float v[BK];

    __device__ PatchColumns(const ConvGeom& g_, const float* x_, PixelRing& ring_, int n0)
        : g(g_), x(x_), ring(ring_) {
        const int kk = g.k_h * g.k_w;
        const int j = n0 + (int)threadIdx.x;
        const bool valid = j < g.c_in * kk;
        const int ci = valid ? j / kk : 0;
        const int khw = valid ? j - ci * kk : 0;
        kh = khw / g.k_w;
        kw = khw - kh * g.k_w;
        column = (ci * g.h_in + kh) * g.w_in + kw;
        if (!valid) kh = FAR;
    }
    __device__ __forceinline__ void fetch() {
        const int4* e = ring.current();
#pragma unroll
        for (int j = 0; j < BK; ++j) {
            const int4 px = e[j];
            const bool ok = (unsigned)(px.y + kh) < (unsigned)g.h_in && (unsigned)(px.z + kw) < (unsigned)g.w_in;
            v[j] = ok ? x[px.x + column] : 0.0f;
        }
        ring.produce(g);
    }
    __device__ __forceinline__ void store(float* tile) const {
#pragma unroll
        for (int j = 0; j < BK; ++j) tile[j * LDB + threadIdx.x] = v[j];
    }
};

// GEMM (m = channel, p = pixel) -> NCHW tensor out[n, m, q] with p = n·HW + q: (+ bias[m]) (then
// ReLU), written, or added when `accumulate`. float4 stores when HW % 4 == 0 (then the 4 columns of a
// group share one image) and the address is aligned.
struct StoreImages {
    float* out;
    const float* bias;  // (C) or nullptr
    int channels, hw, pixels;
    bool relu, accumulate;

    __device__ __forceinline__ float finish(float v, float b) const {
        v += b;
        return relu ? fmaxf(v, 0.0f) : v;
    }
    __device__ __forceinline__ void operator()(int m, int p, float v0, float v1, float v2, float v3) const {
        if (m >= channels) return;
        const float b = bias ? bias[m] : 0.0f;
        if (hw % 4 == 0 && p + 3 < pixels) {
            const int n = p / hw;
            float* dst = out + ((long long)n * channels + m) * hw + (p - n * hw);
            if (gemm::aligned16(dst)) {
                float4 v = make_float4(finish(v0, b), finish(v1, b), finish(v2, b), finish(v3, b));
                if (accumulate) {
                    const float4 o = *reinterpret_cast<const float4*>(dst);
                    v.x += o.x;
                    v.y += o.y;
                    v.z += o.z;
                    v.w += o.w;
                }
                if (accumulate) {
                    *reinterpret_cast<float4*>(dst) = v;  // the read above keeps it a vector store
                } else {
                    gemm::store_float4(dst, v);
                }
                return;
            }
        }
        const float vs[4] = {v0, v1, v2, v3};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (p + j >= pixels) break;
            const int n = (p + j) / hw;
            float* dst = out + ((long long)n * channels + m) * hw + (p + j - n * hw);
            const float v = finish(vs[j], b);
            *dst = accumulate ? *dst + v : v;
        }
    }
};

using channel_sum::block_sum;
using channel_sum::REDUCE_THREADS;

}  // namespace

extern "C" __global__ void conv2d_gather_table(
    ConvGeom g,
    int backward_data,          // 0: the forward table (k over C_in), 1: the backward-data table (k over C_out)
    int len,                    // entries: K rounded up to whole BK steps
    int4* __restrict__ table)   // (len)
{
    const int kk = g.k_h * g.k_w;
    const int channels = backward_data ? g.c_out : g.c_in;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < len; k += gridDim.x * blockDim.x) {
        const int c = k / kk;
        const int kh = (k - c * kk) / g.k_w;
        const int kw = k - c * kk - kh * g.k_w;
        // Padding fails every bounds test: ih0 + FAR is past any map, th0 − FAR below 0.
        int4 e = make_int4(0, FAR, FAR, 0);
        if (c < channels) {
            e = backward_data ? make_int4(c * g.h_out * g.w_out - kh * g.w_out - kw, kh, kw, 0)
                              : make_int4(c * g.h_in * g.w_in + kh * g.w_in + kw, kh, kw, 0);
        }
        table[k] = e;
    }
}

namespace {

template <int BM>
__device__ __forceinline__ void forward(const ConvGeom& g, const float* __restrict__ x, const float* __restrict__ w,
                                        const float* __restrict__ b, const int4* __restrict__ table,
                                        float* __restrict__ y) {
    RESCNN_DYNAMIC_SHARED(float, smem);
    const int k = g.c_in * g.k_h * g.k_w;
    const int m0 = blockIdx.y * BM;
    const int p0 = blockIdx.x * gemm::BN;
    gemm::LoadKContiguous<BM> a(w, g.c_out, k, m0, 0, k, k);
    ImageColumns bcols(g, x, table, p0);
    float acc[gemm::Rows<BM>::TM][gemm::TN];
    gemm::mainloop<BM>(a, bcols, (k + BK - 1) / BK, smem, acc);
    StoreImages store{y, b, g.c_out, g.h_out * g.w_out, g.n * g.h_out * g.w_out, g.relu != 0, false};
    gemm::store_tile<BM>(acc, m0, p0, store);
}

template <int BM, bool UNIT_STRIDE>
__device__ __forceinline__ void backward_data(const ConvGeom& g, const float* __restrict__ w,
                                              const float* __restrict__ dy, const int4* __restrict__ table,
                                              float* __restrict__ dx, bool accumulate) {
    RESCNN_DYNAMIC_SHARED(float, smem);
    const int k = g.c_out * g.k_h * g.k_w;
    const int m0 = blockIdx.y * BM;
    const int p0 = blockIdx.x * gemm::BN;
    FilterRowsTransposed<BM> a(g, w, m0);
    GradientColumns<UNIT_STRIDE> bcols(g, dy, table, p0);
    float acc[gemm::Rows<BM>::TM][gemm::TN];
    gemm::mainloop<BM>(a, bcols, (k + BK - 1) / BK, smem, acc);
    StoreImages store{dx, nullptr, g.c_in, g.h_in * g.w_in, g.n * g.h_in * g.w_in, false, accumulate};
    gemm::store_tile<BM>(acc, m0, p0, store);
}

template <int BM>
__device__ __forceinline__ void backward_filter(const ConvGeom& g, const float* __restrict__ x,
                                                const float* __restrict__ dy, float* __restrict__ partials,
                                                int k_chunk) {
    RESCNN_DYNAMIC_SHARED(float, smem);
    const int cols = g.c_in * g.k_h * g.k_w;
    const int pixels = g.n * g.h_out * g.w_out;
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * gemm::BN;
    const int k_begin = blockIdx.z * k_chunk;
    const int k_end = min(pixels, k_begin + k_chunk);
    PixelRing ring(g, reinterpret_cast<int4*>(smem + gemm::Rows<BM>::SMEM_FLOATS), k_begin, k_end);
    GradientRows<BM> a(g, dy, ring, m0);
    PatchColumns bcols(g, x, ring, n0);
    float acc[gemm::Rows<BM>::TM][gemm::TN];
    gemm::mainloop<BM>(a, bcols, (k_end - k_begin + BK - 1) / BK, smem, acc);
    gemm::StoreRowMajor store{partials + (long long)blockIdx.z * g.c_out * cols, nullptr, g.c_out, cols, cols,
                              false, false};
    gemm::store_tile<BM>(acc, m0, n0, store);
}

}  // namespace

// Every GEMM kernel has a 64-row and a 32-row block-tile entry point (the `_m32` one), with the same
// parameters; the wrapper picks one from M.

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void conv2d_forward(
    ConvGeom g,
    const float* __restrict__ x,     // (N, C_in, H_in, W_in)
    const float* __restrict__ w,     // (C_out, C_in, K_h, K_w)
    const float* __restrict__ b,     // (C_out)
    const int4* __restrict__ table,  // (K rounded up to BK): conv2d_gather_table(g, 0)
    float* __restrict__ y)           // (N, C_out, H_out, W_out)
{
    forward<64>(g, x, w, b, table, y);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void conv2d_forward_m32(
    ConvGeom g,
    const float* __restrict__ x,     // (N, C_in, H_in, W_in)
    const float* __restrict__ w,     // (C_out, C_in, K_h, K_w)
    const float* __restrict__ b,     // (C_out)
    const int4* __restrict__ table,  // (K rounded up to BK): conv2d_gather_table(g, 0)
    float* __restrict__ y)           // (N, C_out, H_out, W_out)
{
    forward<32>(g, x, w, b, table, y);
}

// stride 1
extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void conv2d_backward_data(
    ConvGeom g,
    const float* __restrict__ w,     // (C_out, C_in, K_h, K_w)
    const float* __restrict__ dy,    // (N, C_out, H_out, W_out), already ReLU-masked
    const int4* __restrict__ table,  // (K rounded up to BK): conv2d_gather_table(g, 1)
    float* __restrict__ dx,          // (N, C_in, H_in, W_in), accumulated or written
    int accumulate)                  // 1: dx += the gradient; 0: dx = it (dx is not read)
{
    backward_data<64, true>(g, w, dy, table, dx, accumulate != 0);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void conv2d_backward_data_m32(
    ConvGeom g,
    const float* __restrict__ w,     // (C_out, C_in, K_h, K_w)
    const float* __restrict__ dy,    // (N, C_out, H_out, W_out), already ReLU-masked
    const int4* __restrict__ table,  // (K rounded up to BK): conv2d_gather_table(g, 1)
    float* __restrict__ dx,          // (N, C_in, H_in, W_in), accumulated or written
    int accumulate)                  // 1: dx += the gradient; 0: dx = it (dx is not read)
{
    backward_data<32, true>(g, w, dy, table, dx, accumulate != 0);
}

// stride > 1: the divisions need more registers than 128; 3 blocks per SM (up to 170) keep it spill-free.
// Not on the paper's path (its convolutions have stride 1).
extern "C" __global__ __launch_bounds__(gemm::THREADS, 3) void conv2d_backward_data_strided(
    ConvGeom g,
    const float* __restrict__ w,     // (C_out, C_in, K_h, K_w)
    const float* __restrict__ dy,    // (N, C_out, H_out, W_out), already ReLU-masked
    const int4* __restrict__ table,  // (K rounded up to BK): conv2d_gather_table(g, 1)
    float* __restrict__ dx,          // (N, C_in, H_in, W_in), accumulated or written
    int accumulate)                  // 1: dx += the gradient; 0: dx = it (dx is not read)
{
    backward_data<64, false>(g, w, dy, table, dx, accumulate != 0);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, 3) void conv2d_backward_data_strided_m32(
    ConvGeom g,
    const float* __restrict__ w,     // (C_out, C_in, K_h, K_w)
    const float* __restrict__ dy,    // (N, C_out, H_out, W_out), already ReLU-masked
    const int4* __restrict__ table,  // (K rounded up to BK): conv2d_gather_table(g, 1)
    float* __restrict__ dx,          // (N, C_in, H_in, W_in), accumulated or written
    int accumulate)                  // 1: dx += the gradient; 0: dx = it (dx is not read)
{
    backward_data<32, false>(g, w, dy, table, dx, accumulate != 0);
}

// 3 resident blocks (up to 168 registers): at 128 the ring reads of a K step (8 int4) no longer fit
// beside the 64 accumulators and ptxas spills on sm_80/sm_90. 12 warps per SM still hide the global
// latency: a K step is 512 independent FFMA per thread between the loads and their use.
// Dynamic shared memory: gemm::Rows<BM>::SMEM_BYTES, then the pixel ring ((RING_SLOTS + 1) x BK int4).
extern "C" __global__ __launch_bounds__(gemm::THREADS, 3) void conv2d_backward_filter(
    ConvGeom g,
    const float* __restrict__ x,     // (N, C_in, H_in, W_in)
    const float* __restrict__ dy,    // (N, C_out, H_out, W_out), already ReLU-masked
    float* __restrict__ partials,    // (gridDim.z, C_out, C_in·K_h·K_w); with gridDim.z == 1 this is dw
    int k_chunk)                     // output pixels per split, a multiple of BK
{
    backward_filter<64>(g, x, dy, partials, k_chunk);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, 3) void conv2d_backward_filter_m32(
    ConvGeom g,
    const float* __restrict__ x,     // (N, C_in, H_in, W_in)
    const float* __restrict__ dy,    // (N, C_out, H_out, W_out), already ReLU-masked
    float* __restrict__ partials,    // (gridDim.z, C_out, C_in·K_h·K_w); with gridDim.z == 1 this is dw
    int k_chunk)                     // output pixels per split, a multiple of BK
{
    backward_filter<32>(g, x, dy, partials, k_chunk);
}

extern "C" __global__ __launch_bounds__(REDUCE_THREADS) void conv2d_bias_grad_partial(
    ConvGeom g,
    const float* __restrict__ y,   // (N, C_out, H_out, W_out); read only with g.relu
    float* __restrict__ dy,        // (N, C_out, H_out, W_out); with g.relu, zeroed in place where y <= 0
    float* __restrict__ partials,  // (gridDim.y, C_out)
    int chunk)                     // (n, h, w) positions per block, a multiple of REDUCE_THREADS
{
    const int c = blockIdx.x;
    const int hw = g.h_out * g.w_out;
    const int total = g.n * hw;
    const int begin = blockIdx.y * chunk;
    const int end = min(total, begin + chunk);
    int t = begin + (int)threadIdx.x;
    int n = t / hw;
    int q = t - n * hw;
    float sum = 0.0f;
    for (; t < end; t += REDUCE_THREADS) {
        const long long at = ((long long)n * g.c_out + c) * hw + q;
        float v = dy[at];
        if (g.relu && !(y[at] > 0.0f)) {
            v = 0.0f;
            dy[at] = 0.0f;
        }
        sum += v;
        q += REDUCE_THREADS;
        if (q >= hw) {
            n += q / hw;
            q %= hw;
        }
    }
    __shared__ float warp_sums[REDUCE_THREADS / 32];
    sum = block_sum(sum, warp_sums);
    if (threadIdx.x == 0) partials[blockIdx.y * g.c_out + c] = sum;
}

extern "C" __global__ __launch_bounds__(REDUCE_THREADS) void conv2d_sum_partials(
    int len,
    int splits,
    const float* __restrict__ partials,  // (splits, len)
    float* __restrict__ out)             // (len)
{
    gemm::StoreRowMajor store{out, nullptr, 1, len, len, false, false};
    gemm::splitk_reduce(1, len, splits, partials, store);
}
