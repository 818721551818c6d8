// gemm_tile.cuh — the one tiled SGEMM core behind conv2d.cu and dense.cu.
//
// C (M x N) = A (M x K) · B (K x N), every operand reached through a LOADER, so the same main loop
// serves plain matrices (dense layers, any transposition) and the implicit im2col gathers of the
// convolutions; the result goes through a STORE functor (bias/ReLU epilogue, accumulate, write, or
// raw split-K partials), so no kernel variant carries its own copy of the loop.
//
// Tiling (a template on the block's rows, Rows<BM>; the wrapper picks one per GEMM from M):
//   block tile BM x BN = 64 x 128 or 32 x 128, K step BK = 8, 128 threads (16 x 8), each thread an
//   8 x 8 (BM = 64: 64 accumulators, rows {ty*4 + 0..3, 32 + ty*4 + 0..3}) or 4 x 8 (BM = 32: rows
//   ty*4 + 0..3) register block; columns {tx*4 + 0..3, 64 + tx*4 + 0..3}. The 32-row tile serves the
//   GEMMs with M = 32, which the 64-row tile would pad with 32 rows of zeros.
//   The two 4-wide halves keep every shared-memory fragment read a conflict-free float4: a warp
//   (16 tx x 2 ty) reads 2 broadcast A addresses and 16 consecutive B float4s per k.
//   Per k step a thread does 64 FFMA for 4 LDS.128 (BM = 32: 32 for 3): FMA-bound, not shared-memory bound.
// Shared memory: A stored k-major As[BK][BM + 4], B as Bs[BK][BN + 4], double-buffered: 2 x (8 x 68 +
//   8 x 132) floats = 12.5 KiB per block (BM = 32: 2 x (8 x 36 + 8 x 132) = 10.5 KiB), so registers, not shared memory, bound occupancy
//   (4 blocks = 16 warps per SM at <= 128 registers). The +4 padding makes the transposed stores of
//   k-contiguous operands conflict-free (lanes k0 = 0 and k0 = 4 land 16 banks apart).
// Pipelining: global loads of tile t+1 go to registers before the FMAs on tile t and are stored to the
//   other buffer after them; ONE __syncthreads per K step (its absence shows up on the emulated device
//   as NaN reads of the NaN-filled dynamic shared memory).
// Memory traffic per block: (BM + BN) x BK floats (6 KiB) per K step for 2 x BM x BN x BK flops —
//   21 flop per byte fetched, before L1/L2 reuse (convolution halos and weights mostly hit in cache);
//   the H100 needs ~20 flop/B from L2 and the GTX 1080 ~28 from DRAM, so the tile is compute-bound
//   once the cache catches the halo overlap.
//
// Loader concept (each operand is an R x K slab, R = BM for A and BN for B; a loader owns the
// element-to-thread mapping of its slab and walks K in steps of BK):
//   void fetch();              // global -> registers for the current K step, then advance one step
//   void store(float* tile);   // registers -> shared tile[k * (R + PAD) + r]
// Store concept: void operator()(int m, int n, float v0, float v1, float v2, float v3) receives the four
//   accumulators of columns n..n+3 of row m (any of them may lie past N or m past M: the functor checks);
//   void one(int m, int n, float v) stores one in-range element (the split-K reduction).
#pragma once

namespace gemm {

// What every block tile shares: BN columns, one per thread, the K step, the thread grid, the B tile.
constexpr int BN = 128;
constexpr int BK = 8;
constexpr int TN = 8;
constexpr int THREADS_X = BN / TN;              // 16
constexpr int THREADS_Y = 8;
constexpr int THREADS = THREADS_X * THREADS_Y;  // 128
constexpr int PAD = 4;
constexpr int LDB = BN + PAD;
constexpr int B_TILE = BK * LDB;
// __launch_bounds__ minimum of resident blocks per SM: caps registers at 65536 / (4 x 128) = 128 per
// thread, i.e. 16 warps per SM on sm_61 .. sm_90 — the usual SGEMM operating point (64 accumulators,
// 16 fragment registers, loader staging), where ILP rather than occupancy hides latency.
constexpr int MIN_BLOCKS = 4;

// The block tile's rows: BM = 64 (8 x 8 accumulators per thread, rows in two halves of 4) or BM = 32
// (4 x 8 per thread, one quad of rows), for GEMMs whose M is 32 (the paper's conv1 forward and
// filter gradient, conv2's data gradient), where the 64-row tile multiplies zeros in half its rows.
// The wrapper picks the variant from M (src/backends/kernels/gemm.rs, Tile::for_rows).
template <int BM_>
struct Rows {
    static constexpr int BM = BM_;
    static constexpr int TM = BM / THREADS_Y;  // accumulator rows per thread: 8 or 4
    static constexpr int LDA = BM + PAD;
    static constexpr int A_TILE = BK * LDA;
    static constexpr int SMEM_FLOATS = 2 * (A_TILE + B_TILE);
    static constexpr int SMEM_BYTES = SMEM_FLOATS * (int)sizeof(float);
    static_assert(TM == 4 || TM == 8, "a thread's rows are one or two float4 fragments");
};
using Rows64 = Rows<64>;
using Rows32 = Rows<32>;

static_assert(BN == THREADS, "the gather loaders give each thread one B column");
static_assert(THREADS % BK == 0, "loaders keep one k offset per thread");

// Row (column) of this thread's i-th accumulator row (column) inside the block tile: fragment h = i / 4
// covers rows h·BM/2 + ty·4 .. +3.
template <int BM>
__device__ __forceinline__ int tile_row(int ty, int i) { return (i < 4 ? 0 : BM / 2) + ty * 4 + (i & 3); }
__device__ __forceinline__ int tile_col(int tx, int j) { return (j < 4 ? 0 : BN / 2) + tx * 4 + (j & 3); }

__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

// One 16-byte store to global memory at a 16-byte aligned `dst`. Under NVRTC an explicit
// st.global.v4.f32: written as a plain float4 store, the epilogues' vector path and their scalar
// fallback store the same values to the same addresses (when nothing is accumulated), so the
// optimiser merges the two into the fallback's scalar stores — conv2d_forward compiled to 384
// st.global.f32 and no vector store at all. The asm cannot be merged; a test reads the PTX for it
// (tests/ptx_stores.rs).
__device__ __forceinline__ void store_float4(float* dst, float4 v) {
#ifdef __CUDACC_RTC__
    // No "memory" clobber: nothing in the epilogues reads what another store writes (an accumulating
    // store's own read of dst feeds its operands), and a clobber would pin the surrounding loads.
    asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w));
#else
    *reinterpret_cast<float4*>(dst) = v;
#endif
}

// acc += ar ⊗ br: TM x 8 FFMA (NVRTC contracts a * b + c by default).
template <int TM>
__device__ __forceinline__ void fma_block(float (&acc)[TM][TN], const float (&ar)[TM], const float (&br)[TN]) {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += ar[i] * br[j];
}

// The main loop: acc = A[m0 .. m0+BM, k range] · B[k range, n0 .. n0+BN] for this thread's TM x 8 block.
// `k_steps` is the number of BK steps the loaders walk (uniform across the block).
template <int BM, class LoaderA, class LoaderB>
__device__ __forceinline__ void mainloop(LoaderA& la, LoaderB& lb, int k_steps, float* smem,
                                         float (&acc)[Rows<BM>::TM][TN]) {
    using R = Rows<BM>;
    constexpr int TM = R::TM;
    float* As = smem;                 // 2 x A_TILE
    float* Bs = smem + 2 * R::A_TILE;  // 2 x B_TILE
    const int tx = threadIdx.x % THREADS_X;
    const int ty = threadIdx.x / THREADS_X;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    if (k_steps <= 0) return;

    la.fetch();
    lb.fetch();
    la.store(As);
    lb.store(Bs);
    __syncthreads();
    for (int t = 0; t < k_steps; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < k_steps;
        if (more) {  // next tile's global loads are in flight during this tile's FMAs
            la.fetch();
            lb.fetch();
        }
        const float* a = As + cur * R::A_TILE;
        const float* b = Bs + cur * B_TILE;
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            const float4 a0 = *reinterpret_cast<const float4*>(a + k * R::LDA + ty * 4);
            // The second row fragment (TM = 8 only; with TM = 4 this re-reads a0's address, a load
            // nothing uses, which the compiler drops).
            const float4 a1 = *reinterpret_cast<const float4*>(a + k * R::LDA + (TM == 8 ? BM / 2 : 0) + ty * 4);
            const float4 b0 = *reinterpret_cast<const float4*>(b + k * LDB + tx * 4);
            const float4 b1 = *reinterpret_cast<const float4*>(b + k * LDB + BN / 2 + tx * 4);
            const float br[TN] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
            if constexpr (TM == 8) {
                const float ar[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                fma_block(acc, ar, br);
            } else {
                const float ar[4] = {a0.x, a0.y, a0.z, a0.w};
                fma_block(acc, ar, br);
            }
        }
        if (more) {  // the other buffer was last read before the previous barrier
            la.store(As + (cur ^ 1) * R::A_TILE);
            lb.store(Bs + (cur ^ 1) * B_TILE);
        }
        __syncthreads();
    }
}

// Hand this thread's accumulators to `store`, four consecutive columns at a time.
template <int BM, class Store>
__device__ __forceinline__ void store_tile(const float (&acc)[Rows<BM>::TM][TN], int m0, int n0, Store& store) {
    const int tx = threadIdx.x % THREADS_X;
    const int ty = threadIdx.x / THREADS_X;
#pragma unroll
    for (int i = 0; i < Rows<BM>::TM; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            store(m0 + tile_row<BM>(ty, i), n0 + tile_col(tx, 4 * h), acc[i][4 * h], acc[i][4 * h + 1],
                  acc[i][4 * h + 2], acc[i][4 * h + 3]);
}

// ---- loaders for plain row-major matrices -----------------------------------------------------------

// Both plain loaders move "quads": 4 consecutive elements along the operand's contiguous dimension,
// one float4 load when the pointer is 16-byte aligned and the leading dimension and the contiguous
// extent are multiples of 4 (then a quad is entirely in or out of range), else 4 guarded scalar loads
// from the same addresses. The quad a thread moves sits at a fixed row for the whole K loop, so the
// loader keeps one pointer per quad and bumps it by BK along K: no index math in the main loop.

// An R x K slab whose element (r, k) is p[r * ld + k] (contiguous along K): rows r0 .. r0+R of `rows`,
// K range [k_begin, k_end). Quad e = tid + i*THREADS -> r = e / 2, k = 4 * (e % 2): two lanes per
// 32-byte sector of a row, 16 rows per warp. Stored transposed into tile[k][r] (conflict-free thanks
// to the +4 padding).
template <int R>
struct LoadKContiguous {
    static constexpr int QUAD_COUNT = R * BK / 4;  // quads of the slab: 128 (R = 64), 64 (R = 32), 256
    static constexpr int QUADS = (QUAD_COUNT + THREADS - 1) / THREADS;  // per thread
    // With fewer quads than threads (R = 32), the upper threads move none.
    __device__ __forceinline__ static bool active(int i) {
        if constexpr (QUAD_COUNT % THREADS == 0) return true;
        else return (int)threadIdx.x + i * THREADS < QUAD_COUNT;
    }
    static constexpr int LD = R + PAD;
    static constexpr int QUADS_PER_ROW = BK / 4;
    const float* ptr[QUADS];
    bool row_ok[QUADS];
    int k, k_end;  // K position of the thread's first quad column (tile k + 4 * (tid % 2))
    bool vec;
    float v[4 * QUADS];

    __device__ LoadKContiguous(const float* p, int rows, int ld, int r0, int k_begin, int k_end_, int K) {
        vec = aligned16(p) && ld % 4 == 0 && K % 4 == 0;
        k = k_begin + 4 * ((int)threadIdx.x % QUADS_PER_ROW);
        k_end = k_end_;
#pragma unroll
        for (int i = 0; i < QUADS; ++i) {
            const int r = r0 + ((int)threadIdx.x + i * THREADS) / QUADS_PER_ROW;
            row_ok[i] = r < rows;
            if constexpr (QUAD_COUNT % THREADS != 0) row_ok[i] = row_ok[i] && active(i);
            ptr[i] = p + (long long)(row_ok[i] ? r : 0) * ld + k;
        }
    }
    __device__ __forceinline__ void fetch() {
#pragma unroll
        for (int i = 0; i < QUADS; ++i) {
            if (vec) {
                float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (row_ok[i] && k < k_end) x = *reinterpret_cast<const float4*>(ptr[i]);
                v[4 * i] = x.x;
                v[4 * i + 1] = x.y;
                v[4 * i + 2] = x.z;
                v[4 * i + 3] = x.w;
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j) v[4 * i + j] = (row_ok[i] && k + j < k_end) ? ptr[i][j] : 0.0f;
            }
            ptr[i] += BK;
        }
        k += BK;
    }
    __device__ __forceinline__ void store(float* tile) const {
#pragma unroll
        for (int i = 0; i < QUADS; ++i) {
            if constexpr (QUAD_COUNT % THREADS != 0) {
                if (!active(i)) continue;
            }
            const int e = (int)threadIdx.x + i * THREADS;
            const int r = e / QUADS_PER_ROW;
            const int kq = 4 * (e % QUADS_PER_ROW);
#pragma unroll
            for (int j = 0; j < 4; ++j) tile[(kq + j) * LD + r] = v[4 * i + j];
        }
    }
};

// An R x K slab whose element (r, k) is p[k * ld + r] (contiguous along R). Quad e -> k = e / (R/4),
// r = 4 * (e % (R/4)): a warp reads 512 contiguous bytes, and each quad goes to shared memory as one
// float4.
template <int R>
struct LoadRContiguous {
    static constexpr int QUAD_COUNT = R * BK / 4;
    static constexpr int QUADS = (QUAD_COUNT + THREADS - 1) / THREADS;
    __device__ __forceinline__ static bool active(int i) {
        if constexpr (QUAD_COUNT % THREADS == 0) return true;
        else return (int)threadIdx.x + i * THREADS < QUAD_COUNT;
    }
    static constexpr int LD = R + PAD;
    static constexpr int QUADS_PER_K = R / 4;
    static constexpr int K_PER_PASS = THREADS / QUADS_PER_K;  // k rows covered by one pass of the block
    const float* ptr[QUADS];
    int r, rows, k, k_end, ld;
    bool vec;
    float v[4 * QUADS];

    __device__ LoadRContiguous(const float* p, int rows_, int ld_, int r0, int k_begin, int k_end_)
        : rows(rows_), k_end(k_end_), ld(ld_) {
        static_assert(THREADS % QUADS_PER_K == 0, "a thread's quads share one r");
        vec = aligned16(p) && ld_ % 4 == 0 && rows_ % 4 == 0;
        r = r0 + 4 * ((int)threadIdx.x % QUADS_PER_K);
        k = k_begin + (int)threadIdx.x / QUADS_PER_K;
#pragma unroll
        for (int i = 0; i < QUADS; ++i) ptr[i] = p + (long long)(k + i * K_PER_PASS) * ld + r;
    }
    __device__ __forceinline__ void fetch() {
#pragma unroll
        for (int i = 0; i < QUADS; ++i) {
            bool k_ok = k + i * K_PER_PASS < k_end;
            if constexpr (QUAD_COUNT % THREADS != 0) k_ok = k_ok && active(i);
            if (vec) {
                float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (r < rows && k_ok) x = *reinterpret_cast<const float4*>(ptr[i]);
                v[4 * i] = x.x;
                v[4 * i + 1] = x.y;
                v[4 * i + 2] = x.z;
                v[4 * i + 3] = x.w;
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j) v[4 * i + j] = (r + j < rows && k_ok) ? ptr[i][j] : 0.0f;
            }
            ptr[i] += (long long)BK * ld;
        }
        k += BK;
    }
    __device__ __forceinline__ void store(float* tile) const {
#pragma unroll
        for (int i = 0; i < QUADS; ++i) {
            if constexpr (QUAD_COUNT % THREADS != 0) {
                if (!active(i)) continue;
            }
            const int e = (int)threadIdx.x + i * THREADS;
            *reinterpret_cast<float4*>(tile + (e / QUADS_PER_K) * LD + 4 * (e % QUADS_PER_K)) =
                make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
        }
    }
};

// ---- stores ---------------------------------------------------------------------------------------

// Row-major M x N output at out[m * ld + n]: v (+ bias[n]) (then ReLU), written, or added to what is
// there when `accumulate`. float4 stores when the four columns are in range and the address is
// 16-byte aligned; scalar otherwise.
struct StoreRowMajor {
    float* out;
    const float* bias;  // (N) or nullptr
    int rows, cols, ld;
    bool relu, accumulate;

    __device__ __forceinline__ float finish(int n, float v) const {
        if (bias) v += bias[n];
        return relu ? fmaxf(v, 0.0f) : v;
    }
    __device__ __forceinline__ void operator()(int m, int n, float v0, float v1, float v2, float v3) const {
        if (m >= rows) return;
        float* dst = out + (long long)m * ld + n;
        if (n + 3 < cols && aligned16(dst)) {
            float4 v = make_float4(finish(n, v0), finish(n + 1, v1), finish(n + 2, v2), finish(n + 3, v3));
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
                store_float4(dst, v);
            }
            return;
        }
        const float vs[4] = {v0, v1, v2, v3};
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (n + j < cols) one(m, n + j, vs[j]);
    }
    __device__ __forceinline__ void one(int m, int n, float v) const {
        float* dst = out + (long long)m * ld + n;
        v = finish(n, v);
        *dst = accumulate ? *dst + v : v;
    }
};

// Split-K, second stage: out(m, n) = sum over s = 0 .. splits-1, in that order, of partials[s][m][n]
// (deterministic: a fixed summation order, no atomics), handed to `store.one` one element per thread,
// grid-stride. Memory-bound: splits + 1 accesses per output.
template <class Store>
__device__ __forceinline__ void splitk_reduce(int M, int N, int splits, const float* partials, Store& store) {
    const long long total = (long long)M * N;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < splits; ++z) s += partials[z * total + e];
        store.one((int)(e / N), (int)(e % N), s);
    }
}

}  // namespace gemm
