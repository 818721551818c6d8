// concat.cu — feature concatenation along the row, forward and backward:
//   y[n, j] = a[n, j] for j < A,   y[n, A + k] = b[n, k] for k < B
// (ConcatGeom). The network appends a side input (the utterance vector) to the pooled features
// this way, before its dense layers.
//
// Kernels
//   concat_forward: element-wise, one thread per OUTPUT element (grid-stride over N·(A+B)): copies
//     from a or b (WRITES y). Consecutive threads write consecutive y, and read consecutive a or b.
//   concat_backward_a: one thread per element of a (grid-stride over N·A): da += dy[:, :A]
//     (ACCUMULATES da). Every da element has one writer: no atomics, deterministic.
//   concat_backward_b: the same for the second part: db += dy[:, A:] (ACCUMULATES db).
//   Memory-bound: no arithmetic besides the accumulating add.
#include "common.cuh"

extern "C" __global__ void concat_forward(ConcatGeom g,
                                          const float* __restrict__ a,  // (N, A)
                                          const float* __restrict__ b,  // (N, B)
                                          float* __restrict__ y) {      // (N, A + B)
    const int row = g.a + g.b;
    const unsigned total = (unsigned)g.n * row;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int j = i % row;
        const int n = i / row;
        y[i] = j < g.a ? __ldg(a + (size_t)n * g.a + j) : __ldg(b + (size_t)n * g.b + (j - g.a));
    }
}

extern "C" __global__ void concat_backward_a(ConcatGeom g,
                                             const float* __restrict__ dy,  // (N, A + B)
                                             float* __restrict__ da) {      // (N, A)
    const int row = g.a + g.b;
    const unsigned total = (unsigned)g.n * g.a;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int j = i % g.a;
        const int n = i / g.a;
        da[i] += __ldg(dy + (size_t)n * row + j);
    }
}

extern "C" __global__ void concat_backward_b(ConcatGeom g,
                                             const float* __restrict__ dy,  // (N, A + B)
                                             float* __restrict__ db) {      // (N, B)
    const int row = g.a + g.b;
    const unsigned total = (unsigned)g.n * g.b;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int k = i % g.b;
        const int n = i / g.b;
        db[i] += __ldg(dy + (size_t)n * row + g.a + k);
    }
}
