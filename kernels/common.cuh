// common.cuh — included first by every kernels/*.cu. Under NVRTC (__CUDACC_RTC__) this is plain CUDA;
// on the host (the emulated device, built by build/emu.rs) it pulls in emu_shim.h, which supplies the
// CUDA names. Kernels use only what both sides provide:
//
//   RESCNN_DYNAMIC_SHARED(type, name)  declares the block's dynamic shared memory as `type name[]`
//                                       (the launch's LaunchConfig::dynamic_shared_bytes of it);
//   RESCNN_INFINITY, RESCNN_NAN        instead of INFINITY / NAN, which NVRTC does not define;
//   RESCNN_FULL_MASK                   all 32 lanes, for the *_sync warp intrinsics.
//
// Entry points are written `extern "C" __global__ void name(...)` on one declaration (optionally with
// __launch_bounds__): build.rs reads them from the source to register them with both devices, so the
// names must be unique across kernels/ (the build checks). Parameters are pointers, int/unsigned/float
// and the geometry structs of geometry.cuh, passed by value.
#pragma once

#ifdef __CUDACC_RTC__
#define RESCNN_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#else
#include "emu_shim.h"
#define RESCNN_DYNAMIC_SHARED(type, name) \
    type* const name = static_cast<type*>(rescnn_emu::ctx.dynamic_shared)
#endif

#define RESCNN_INFINITY __int_as_float(0x7f800000)
#define RESCNN_NAN __int_as_float(0x7fffffff)
#define RESCNN_FULL_MASK 0xffffffffu

#include "geometry.cuh"
