// dense.cu — fully connected layers: the three GEMMs of the forward and backward passes on the shared
// tiled SGEMM core (gemm_tile.cuh: 64 x 128 or 32 x 128 block tile — the `_m32` entry points — BK = 8,
// 128 threads, 8 x 8 or 4 x 8 accumulators per thread, double-buffered shared memory, float4 global loads where aligned, scalar fallback), plus the
// split-K reductions and the bias gradient. x (N, IN), w (OUT, IN) row-major, y (N, OUT).
//
// Kernels:
//   dense_forward              y = [ReLU](x · w^T + b)   (NT: both operands contiguous along K = IN,
//                              float4 loads along K, transposed into k-major shared tiles).
//   dense_backward_data        dx += dy · w              (NN: dy contiguous along K = OUT; w contiguous
//                              along the output columns, loaded as 512-byte warp-wide float4 runs).
//   dense_backward_filter      dw = dy^T · x             (TN: K = N, the batch; both operands contiguous
//                              along their M/N side). For the paper's FC1 (716 x 65536, K = 50) this is a
//                              store-bound GEMM of 6144 tiles with 7 K steps each: float4 stores, each
//                              operand element read from global memory about once per tile.
//   All three split K over gridDim.z when the output has too few tiles to fill the GPU (FC1 forward:
//   50 x 716 outputs, K = 65536): block z writes raw partial sums to partials[z] and the matching
//   *_reduce kernel adds the chunks in fixed order and applies the epilogue — deterministic, no float
//   atomics. With gridDim.z == 1 the GEMM applies the epilogue itself and `partials` is unused.
//   dense_forward_reduce       y = [ReLU](sum_z partials[z] + b)
//   dense_reduce_partials      out (+)= sum_z partials[z] (dx accumulates, dw writes)
//   dense_bias_grad            db[o] = sum_n dy[n, o], one thread per column (coalesced across o); with
//                              g.relu it first zeroes dy in place where y <= 0.
#include "common.cuh"
#include "gemm_tile.cuh"

namespace {
constexpr int BIAS_THREADS = 128;
}

namespace {

template <int BM>
__device__ __forceinline__ void forward(DenseGeom g, const float* __restrict__ x, const float* __restrict__ w,
                                        const float* __restrict__ b, float* __restrict__ y,
                                        float* __restrict__ partials, int k_chunk) {
    RESCNN_DYNAMIC_SHARED(float, smem);
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * gemm::BN;
    const int k_begin = blockIdx.z * k_chunk;
    const int k_end = min(g.in_features, k_begin + k_chunk);
    gemm::LoadKContiguous<BM> a(x, g.n, g.in_features, m0, k_begin, k_end, g.in_features);
    gemm::LoadKContiguous<gemm::BN> bw(w, g.out_features, g.in_features, n0, k_begin, k_end, g.in_features);
    float acc[gemm::Rows<BM>::TM][gemm::TN];
    gemm::mainloop<BM>(a, bw, (k_end - k_begin + gemm::BK - 1) / gemm::BK, smem, acc);
    if (gridDim.z == 1) {
        gemm::StoreRowMajor store{y, b, g.n, g.out_features, g.out_features, g.relu != 0, false};
        gemm::store_tile<BM>(acc, m0, n0, store);
    } else {
        gemm::StoreRowMajor store{partials + (long long)blockIdx.z * g.n * g.out_features, nullptr, g.n,
                                  g.out_features, g.out_features, false, false};
        gemm::store_tile<BM>(acc, m0, n0, store);
    }
}

template <int BM>
__device__ __forceinline__ void backward_data(DenseGeom g, const float* __restrict__ dy,
                                              const float* __restrict__ w, float* __restrict__ dx,
                                              float* __restrict__ partials, int k_chunk) {
    RESCNN_DYNAMIC_SHARED(float, smem);
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * gemm::BN;
    const int k_begin = blockIdx.z * k_chunk;
    const int k_end = min(g.out_features, k_begin + k_chunk);
    gemm::LoadKContiguous<BM> a(dy, g.n, g.out_features, m0, k_begin, k_end, g.out_features);
    gemm::LoadRContiguous<gemm::BN> bw(w, g.in_features, g.in_features, n0, k_begin, k_end);
    float acc[gemm::Rows<BM>::TM][gemm::TN];
    gemm::mainloop<BM>(a, bw, (k_end - k_begin + gemm::BK - 1) / gemm::BK, smem, acc);
    const bool direct = gridDim.z == 1;
    gemm::StoreRowMajor store{direct ? dx : partials + (long long)blockIdx.z * g.n * g.in_features, nullptr,
                              g.n, g.in_features, g.in_features, false, direct};
    gemm::store_tile<BM>(acc, m0, n0, store);
}

template <int BM>
__device__ __forceinline__ void backward_filter(DenseGeom g, const float* __restrict__ dy,
                                                const float* __restrict__ x, float* __restrict__ dw,
                                                float* __restrict__ partials, int k_chunk) {
    RESCNN_DYNAMIC_SHARED(float, smem);
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * gemm::BN;
    const int k_begin = blockIdx.z * k_chunk;
    const int k_end = min(g.n, k_begin + k_chunk);
    gemm::LoadRContiguous<BM> a(dy, g.out_features, g.out_features, m0, k_begin, k_end);
    gemm::LoadRContiguous<gemm::BN> bx(x, g.in_features, g.in_features, n0, k_begin, k_end);
    float acc[gemm::Rows<BM>::TM][gemm::TN];
    gemm::mainloop<BM>(a, bx, (k_end - k_begin + gemm::BK - 1) / gemm::BK, smem, acc);
    const bool direct = gridDim.z == 1;
    gemm::StoreRowMajor store{direct ? dw : partials + (long long)blockIdx.z * g.out_features * g.in_features,
                              nullptr, g.out_features, g.in_features, g.in_features, false, false};
    gemm::store_tile<BM>(acc, m0, n0, store);
}

}  // namespace

// Each GEMM has a 64-row and a 32-row block-tile entry point (the `_m32` one); same parameters.

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void dense_forward(
    DenseGeom g,
    const float* __restrict__ x,  // (N, IN)
    const float* __restrict__ w,  // (OUT, IN)
    const float* __restrict__ b,  // (OUT)
    float* __restrict__ y,        // (N, OUT), written when gridDim.z == 1
    float* __restrict__ partials, // (gridDim.z, N, OUT), written when gridDim.z > 1
    int k_chunk)                  // IN values per split, a multiple of BK
{
    forward<64>(g, x, w, b, y, partials, k_chunk);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void dense_forward_m32(
    DenseGeom g,
    const float* __restrict__ x,  // (N, IN)
    const float* __restrict__ w,  // (OUT, IN)
    const float* __restrict__ b,  // (OUT)
    float* __restrict__ y,        // (N, OUT), written when gridDim.z == 1
    float* __restrict__ partials, // (gridDim.z, N, OUT), written when gridDim.z > 1
    int k_chunk)                  // IN values per split, a multiple of BK
{
    forward<32>(g, x, w, b, y, partials, k_chunk);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void dense_backward_data(
    DenseGeom g,
    const float* __restrict__ dy,  // (N, OUT), already ReLU-masked
    const float* __restrict__ w,   // (OUT, IN)
    float* __restrict__ dx,        // (N, IN), accumulated when gridDim.z == 1
    float* __restrict__ partials,  // (gridDim.z, N, IN), written when gridDim.z > 1
    int k_chunk)                   // OUT values per split, a multiple of BK
{
    backward_data<64>(g, dy, w, dx, partials, k_chunk);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void dense_backward_data_m32(
    DenseGeom g,
    const float* __restrict__ dy,  // (N, OUT), already ReLU-masked
    const float* __restrict__ w,   // (OUT, IN)
    float* __restrict__ dx,        // (N, IN), accumulated when gridDim.z == 1
    float* __restrict__ partials,  // (gridDim.z, N, IN), written when gridDim.z > 1
    int k_chunk)                   // OUT values per split, a multiple of BK
{
    backward_data<32>(g, dy, w, dx, partials, k_chunk);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void dense_backward_filter(
    DenseGeom g,
    const float* __restrict__ dy,  // (N, OUT), already ReLU-masked
    const float* __restrict__ x,   // (N, IN)
    float* __restrict__ dw,        // (OUT, IN), written when gridDim.z == 1
    float* __restrict__ partials,  // (gridDim.z, OUT, IN), written when gridDim.z > 1
    int k_chunk)                   // batch rows per split, a multiple of BK
{
    backward_filter<64>(g, dy, x, dw, partials, k_chunk);
}

extern "C" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void dense_backward_filter_m32(
    DenseGeom g,
    const float* __restrict__ dy,  // (N, OUT), already ReLU-masked
    const float* __restrict__ x,   // (N, IN)
    float* __restrict__ dw,        // (OUT, IN), written when gridDim.z == 1
    float* __restrict__ partials,  // (gridDim.z, OUT, IN), written when gridDim.z > 1
    int k_chunk)                   // batch rows per split, a multiple of BK
{
    backward_filter<32>(g, dy, x, dw, partials, k_chunk);
}

extern "C" __global__ void dense_forward_reduce(
    DenseGeom g,
    int splits,
    const float* __restrict__ partials,  // (splits, N, OUT)
    const float* __restrict__ b,         // (OUT)
    float* __restrict__ y)               // (N, OUT)
{
    gemm::StoreRowMajor store{y, b, g.n, g.out_features, g.out_features, g.relu != 0, false};
    gemm::splitk_reduce(g.n, g.out_features, splits, partials, store);
}

extern "C" __global__ void dense_reduce_partials(
    int rows,
    int cols,
    int splits,
    int accumulate,                      // 1: out += sum (dx); 0: out = sum (dw)
    const float* __restrict__ partials,  // (splits, rows, cols)
    float* __restrict__ out)             // (rows, cols)
{
    gemm::StoreRowMajor store{out, nullptr, rows, cols, cols, false, accumulate != 0};
    gemm::splitk_reduce(rows, cols, splits, partials, store);
}

extern "C" __global__ __launch_bounds__(BIAS_THREADS) void dense_bias_grad(
    DenseGeom g,
    const float* __restrict__ y,  // (N, OUT); read only with g.relu
    float* __restrict__ dy,       // (N, OUT); with g.relu, zeroed in place where y <= 0
    float* __restrict__ db)       // (OUT)
{
    const int o = blockIdx.x * BIAS_THREADS + threadIdx.x;
    if (o >= g.out_features) return;
    float sum = 0.0f;
    for (int n = 0; n < g.n; ++n) {
        const long long at = (long long)n * g.out_features + o;
        float v = dy[at];
        if (g.relu && !(y[at] > 0.0f)) {
            v = 0.0f;
            dy[at] = 0.0f;
        }
        sum += v;
    }
    db[o] = sum;
}
