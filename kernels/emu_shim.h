// emu_shim.h — the host side of the emulated device: just enough CUDA for kernels/*.cu to compile as
// ordinary C++ and run on the CPU, one CUDA thread per fiber (see src/backends/emu/).
//
// Never include this directly: kernels include "common.cuh", which includes this file only when the
// compiler is NOT NVRTC. Under NVRTC every name below is the real CUDA one.
//
// WHAT IT PROVIDES
//   - qualifiers: __global__ __device__ __host__ __forceinline__ __noinline__ __launch_bounds__(...)
//     __restrict__ (native in GCC/Clang) __align__(n); `#pragma unroll` is ignored;
//   - threadIdx, blockIdx, blockDim, gridDim, warpSize; uint3, dim3, float2, float4, int2, int4 and
//     make_float2/make_float4/make_int2/make_int4;
//   - `__shared__` variables (static, declared in the kernel) and dynamic shared memory through
//     RESCNN_DYNAMIC_SHARED(type, name) (common.cuh); see SHARED MEMORY below;
//   - __syncthreads(), __syncwarp([mask]), __shfl_sync, __shfl_up_sync, __shfl_down_sync,
//     __shfl_xor_sync (4- and 8-byte types, optional width), __ballot_sync, __any_sync, __all_sync;
//   - atomicAdd (float, int, unsigned, unsigned long long), atomicMax/atomicMin (int, unsigned),
//     atomicExch, atomicCAS: real host atomics, correct across blocks running on parallel host threads;
//   - math: the C library's float functions (expf, logf, sqrtf, fmaxf, fminf, fabsf, fmaf, ...) plus
//     __expf, __logf, __powf, __fdividef, rsqrtf, __saturatef, min/max overloads, __int_as_float and
//     friends, __ldg; __trap() aborts the block with an error naming the site.
//
// HOW IT CHECKS
//   The runtime (src/backends/emu/) runs a block's threads as fibers on one host thread, one fiber at a
//   time, switching only inside __syncthreads() and the warp intrinsics. __syncthreads() releases when
//   every live thread of the block has arrived; it reports threads waiting at different call sites,
//   threads that exited while others wait, and deadlocks, naming the threads and the sites. A warp
//   intrinsic waits for every lane named in its mask and computes each lane's result from those lanes;
//   it reports a calling lane missing from its own mask, a mask naming lanes that do not exist or have
//   exited, lanes in one mask calling different intrinsics, and reading a lane outside the mask.
//   Between two switch points a thread runs alone, so the order in which threads run (forward or
//   reverse, chosen per device) decides what a racing read sees: a missing barrier gives wrong results
//   in at least one order.
//
// SHARED MEMORY
//   `__shared__` becomes `static thread_local`: one copy per host thread, and a host thread runs one
//   block at a time from start to end, so every block has its own copy. Its contents at block start are
//   whatever the previous block on that host thread left (CUDA leaves them undefined too); they are NOT
//   poisoned. Dynamic shared memory (RESCNN_DYNAMIC_SHARED) is a per-host-thread arena refilled with
//   0xFF bytes (a NaN for float and double, -1 for integers) before every block, so reading it before
//   writing shows up. The build measures each kernel's static shared bytes from the object file's
//   symbols, and the launch checks static + dynamic ≤ 48 KiB unless the launch opts in
//   (LaunchConfig::large_shared). `__shared__` declared inside a __device__ helper is not counted.
//
// WHAT IT DOES NOT EMULATE (a kernel that relies on these is wrong even if it passes here)
//   - implicit warp lockstep: lanes do not run in step between _sync operations; code that exchanges
//     data through shared memory inside a warp without __syncwarp()/__syncthreads() is a race here as
//     on Volta and later GPUs, and only the thread order decides what it reads;
//   - the memory model: no caches, no reordering, no fences (__threadfence is a no-op), no volatile
//     semantics; every write is visible to the next fiber that runs;
//   - communication between blocks other than atomics: blocks run in any order, several at once;
//     spinning on another block's flag deadlocks or races;
//   - out-of-bounds accesses: nothing checks them (the host process may crash or corrupt memory);
//   - a thread that never reaches a switch point (an endless loop) hangs the launch, as on a GPU;
//     deadlocks are detected only among threads waiting at barriers and warp operations;
//   - deep recursion or huge local arrays: each fiber has a 256 KiB stack ending in a guard page, and
//     overflowing it kills the process;
//   - __activemask(), cooperative groups, textures, clocks, warp-level matrix operations, 16-bit types;
//   - floating point details of the GPU: host libm rounding, no FTZ, __expf is exact expf, fmaf is the
//     C library's, contraction into FMA follows the host compiler.

#pragma once

#ifdef __CUDACC_RTC__
#error "emu_shim.h is the host emulation of CUDA and must not be compiled by NVRTC"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <type_traits>
#include <utility>

// Host headers define these; NVRTC does not. Remove them so a kernel that uses one fails here too
// (use RESCNN_INFINITY / RESCNN_NAN from common.cuh).
#undef INFINITY
#undef NAN
#undef HUGE_VALF
#undef HUGE_VAL
#undef FLT_MAX
#undef FLT_MIN

// ---- qualifiers -----------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static thread_local

// ---- vector types -------------------------------------------------------------------------------
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

// ---- the runtime's side (src/backends/emu/) -------------------------------------------------------
namespace rescnn_emu {
// Mirrored by `Context` in src/backends/emu/ffi.rs. The runtime fills it in before each block and
// rewrites thread_idx before it resumes each fiber. The callbacks are function pointers rather than
// linked symbols so that the C++ archive never depends on where the linker put the Rust runtime.
struct Context {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    void* dynamic_shared;
    // Suspend the calling thread until every live thread of the block is here (or report why not).
    void (*syncthreads)(int line, const char* file);
    // Suspend until every lane of `mask` calls the same warp operation; returns this lane's result.
    uint64_t (*warp)(int op, unsigned int mask, uint64_t value, int arg, int width, int line,
                     const char* file);
    // Abort the block with `what` at the given site; never returns.
    void (*trap)(const char* what, int line, const char* file);
};
// One per host thread; the runtime rewrites thread_idx before it resumes each fiber.
extern thread_local Context ctx;

// Warp operations, in the order of `WarpOp` in src/backends/emu/ffi.rs.
enum WarpOp : int {
    SHFL_IDX = 0,
    SHFL_UP = 1,
    SHFL_DOWN = 2,
    SHFL_XOR = 3,
    BALLOT = 4,
    ANY = 5,
    ALL = 6,
    SYNCWARP = 7,
};
}  // namespace rescnn_emu

namespace rescnn_emu {
[[noreturn]] inline void trap(const char* what, int line, const char* file) {
    ctx.trap(what, line, file);
    __builtin_unreachable();
}
inline uint64_t warp(int op, unsigned int mask, uint64_t value, int arg, int width, int line,
                     const char* file) {
    return ctx.warp(op, mask, value, arg, width, line, file);
}
}  // namespace rescnn_emu

#define threadIdx (rescnn_emu::ctx.thread_idx)
#define blockIdx (rescnn_emu::ctx.block_idx)
#define blockDim (rescnn_emu::ctx.block_dim)
#define gridDim (rescnn_emu::ctx.grid_dim)
#define warpSize 32

#define __syncthreads() rescnn_emu::ctx.syncthreads(__LINE__, __FILE__)
#define __trap() rescnn_emu::trap("__trap()", __LINE__, __FILE__)
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)

namespace rescnn_emu {
template <typename T>
inline T warp_value(int op, int line, const char* file, unsigned int mask, T var, int arg,
                    int width = 32) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "warp shuffles move 4- or 8-byte values");
    static_assert(std::is_trivially_copyable<T>::value, "warp shuffles move plain values");
    uint64_t bits = 0;
    memcpy(&bits, &var, sizeof(T));
    uint64_t result = rescnn_emu::warp(op, mask, bits, arg, width, line, file);
    T out;
    memcpy(&out, &result, sizeof(T));
    return out;
}
inline unsigned int warp_vote(int op, int line, const char* file, unsigned int mask, int predicate) {
    return (unsigned int)rescnn_emu::warp(op, mask, predicate != 0, 0, 32, line, file);
}
inline void syncwarp(int line, const char* file, unsigned int mask = 0xffffffffu) {
    rescnn_emu::warp(SYNCWARP, mask, 0, 0, 32, line, file);
}
}  // namespace rescnn_emu

#define __shfl_sync(mask, var, ...) \
    rescnn_emu::warp_value(rescnn_emu::SHFL_IDX, __LINE__, __FILE__, mask, var, __VA_ARGS__)
#define __shfl_up_sync(mask, var, ...) \
    rescnn_emu::warp_value(rescnn_emu::SHFL_UP, __LINE__, __FILE__, mask, var, __VA_ARGS__)
#define __shfl_down_sync(mask, var, ...) \
    rescnn_emu::warp_value(rescnn_emu::SHFL_DOWN, __LINE__, __FILE__, mask, var, __VA_ARGS__)
#define __shfl_xor_sync(mask, var, ...) \
    rescnn_emu::warp_value(rescnn_emu::SHFL_XOR, __LINE__, __FILE__, mask, var, __VA_ARGS__)
#define __ballot_sync(mask, pred) \
    rescnn_emu::warp_vote(rescnn_emu::BALLOT, __LINE__, __FILE__, mask, pred)
#define __any_sync(mask, pred) rescnn_emu::warp_vote(rescnn_emu::ANY, __LINE__, __FILE__, mask, pred)
#define __all_sync(mask, pred) rescnn_emu::warp_vote(rescnn_emu::ALL, __LINE__, __FILE__, mask, pred)
#define __syncwarp(...) rescnn_emu::syncwarp(__LINE__, __FILE__, ##__VA_ARGS__)

// ---- atomics: relaxed, like CUDA's ---------------------------------------------------------------
static inline float atomicAdd(float* address, float value) {
    uint32_t* word = reinterpret_cast<uint32_t*>(address);
    uint32_t old = __atomic_load_n(word, __ATOMIC_RELAXED);
    for (;;) {
        float old_value;
        memcpy(&old_value, &old, 4);
        float new_value = old_value + value;
        uint32_t desired;
        memcpy(&desired, &new_value, 4);
        if (__atomic_compare_exchange_n(word, &old, desired, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            return old_value;
        }
    }
}
static inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
static inline unsigned int atomicAdd(unsigned int* a, unsigned int v) {
    return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
static inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
template <typename T>
static inline T rescnn_emu_atomic_update(T* a, T v, bool want_max) {
    T old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while ((want_max ? v > old : v < old) &&
           !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
static inline int atomicMax(int* a, int v) { return rescnn_emu_atomic_update(a, v, true); }
static inline unsigned int atomicMax(unsigned int* a, unsigned int v) {
    return rescnn_emu_atomic_update(a, v, true);
}
static inline int atomicMin(int* a, int v) { return rescnn_emu_atomic_update(a, v, false); }
static inline unsigned int atomicMin(unsigned int* a, unsigned int v) {
    return rescnn_emu_atomic_update(a, v, false);
}
template <typename T>
static inline T atomicExch(T* a, T v) {
    return __atomic_exchange_n(a, v, __ATOMIC_RELAXED);
}
static inline float atomicExch(float* a, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    uint32_t old = __atomic_exchange_n(reinterpret_cast<uint32_t*>(a), bits, __ATOMIC_RELAXED);
    float out;
    memcpy(&out, &old, 4);
    return out;
}
template <typename T>
static inline T atomicCAS(T* a, T compare, T value) {
    __atomic_compare_exchange_n(a, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}

// ---- math -----------------------------------------------------------------------------------------
// glibc declares __expf, __logf and __powf but libm does not export them: the runtime defines them
// (src/backends/emu/runtime.cpp) as the exact functions.
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float __int_as_float(int v) {
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static inline float __uint_as_float(unsigned int v) {
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static inline int __float_as_int(float f) {
    int v;
    memcpy(&v, &f, 4);
    return v;
}
static inline unsigned int __float_as_uint(float f) {
    unsigned int v;
    memcpy(&v, &f, 4);
    return v;
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
static inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
template <typename T>
static inline T __ldg(const T* p) {
    return *p;
}

// ---- trampolines: the build generates one per entry point (build/emu.rs) ----------------------------
namespace rescnn_emu {
template <typename... P, size_t... I>
inline void invoke_with(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<typename std::remove_reference<P>::type*>(args[I])...);
}
// Call `kernel` with its parameters read from a cuLaunchKernel-style `void**` array.
template <typename... P>
inline void invoke(void (*kernel)(P...), void** args) {
    invoke_with(kernel, args, std::index_sequence_for<P...>{});
}
template <typename... P>
constexpr size_t arity(void (*)(P...)) {
    return sizeof...(P);
}
// The byte size of each parameter, in order, for the launch-time argument check.
template <typename... P>
inline const size_t* param_sizes(void (*)(P...)) {
    static const size_t sizes[] = {sizeof(P)..., 0};
    return sizes;
}
}  // namespace rescnn_emu
