// The C++ half of the emulated device's runtime, linked with every kernel: the per-host-thread CUDA
// context the shim's threadIdx/blockIdx/... read, the math functions glibc declares but libm does not
// export. (The geometry layout the Rust tests compare is generated: build/geometry.rs.)
#include "common.cuh"

thread_local rescnn_emu::Context rescnn_emu::ctx;

extern "C" rescnn_emu::Context* rescnn_emu_context() { return &rescnn_emu::ctx; }

// glibc's math.h declares these (for its own use); CUDA's fast variants are approximations, ours are
// the exact functions, so a kernel compared against the reference on the emulator is held to the exact
// result and the GPU's approximation error is covered by the op's tolerance.
extern "C" float __expf(float x) noexcept { return expf(x); }
extern "C" float __logf(float x) noexcept { return logf(x); }
extern "C" float __powf(float x, float y) noexcept { return powf(x, y); }
