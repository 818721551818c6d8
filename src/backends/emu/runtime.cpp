// The C++ half of the emulated device's runtime, linked with every kernel: the per-host-thread CUDA
// context the shim's threadIdx/blockIdx/... read, the math functions glibc declares but libm does not
// export, and the geometry layout the Rust tests compare with the #[repr(C)] structs.
#include "common.cuh"

thread_local rescnn_emu::Context rescnn_emu::ctx;

extern "C" rescnn_emu::Context* rescnn_emu_context() { return &rescnn_emu::ctx; }

// glibc's math.h declares these (for its own use); CUDA's fast variants are approximations, ours are
// the exact functions, so a kernel compared against the reference on the emulator is held to the exact
// result and the GPU's approximation error is covered by the op's tolerance.
extern "C" float __expf(float x) noexcept { return expf(x); }
extern "C" float __logf(float x) noexcept { return logf(x); }
extern "C" float __powf(float x, float y) noexcept { return powf(x, y); }

#define RESCNN_FIELD(type, field) offsetof(type, field)
extern "C" const size_t rescnn_emu_layout_conv[] = {
    sizeof(ConvGeom),
    RESCNN_FIELD(ConvGeom, n),      RESCNN_FIELD(ConvGeom, c_in),     RESCNN_FIELD(ConvGeom, h_in),
    RESCNN_FIELD(ConvGeom, w_in),   RESCNN_FIELD(ConvGeom, c_out),    RESCNN_FIELD(ConvGeom, k_h),
    RESCNN_FIELD(ConvGeom, k_w),    RESCNN_FIELD(ConvGeom, stride),   RESCNN_FIELD(ConvGeom, pad_top),
    RESCNN_FIELD(ConvGeom, pad_left), RESCNN_FIELD(ConvGeom, h_out),  RESCNN_FIELD(ConvGeom, w_out),
    RESCNN_FIELD(ConvGeom, relu)};
extern "C" const size_t rescnn_emu_layout_pool[] = {
    sizeof(PoolGeom),
    RESCNN_FIELD(PoolGeom, n),     RESCNN_FIELD(PoolGeom, c),      RESCNN_FIELD(PoolGeom, h_in),
    RESCNN_FIELD(PoolGeom, w_in),  RESCNN_FIELD(PoolGeom, k),      RESCNN_FIELD(PoolGeom, stride),
    RESCNN_FIELD(PoolGeom, h_out), RESCNN_FIELD(PoolGeom, w_out)};
extern "C" const size_t rescnn_emu_layout_shortcut[] = {
    sizeof(ShortcutGeom),
    RESCNN_FIELD(ShortcutGeom, n),     RESCNN_FIELD(ShortcutGeom, c_src),
    RESCNN_FIELD(ShortcutGeom, h_src), RESCNN_FIELD(ShortcutGeom, w_src),
    RESCNN_FIELD(ShortcutGeom, c_dst), RESCNN_FIELD(ShortcutGeom, h_dst),
    RESCNN_FIELD(ShortcutGeom, w_dst), RESCNN_FIELD(ShortcutGeom, ratio)};
extern "C" const size_t rescnn_emu_layout_dense[] = {
    sizeof(DenseGeom), RESCNN_FIELD(DenseGeom, n), RESCNN_FIELD(DenseGeom, in_features),
    RESCNN_FIELD(DenseGeom, out_features), RESCNN_FIELD(DenseGeom, relu)};
extern "C" const size_t rescnn_emu_layout_xent[] = {sizeof(XentGeom), RESCNN_FIELD(XentGeom, n),
                                                    RESCNN_FIELD(XentGeom, classes)};
extern "C" const size_t rescnn_emu_layout_rmsprop[] = {
    sizeof(RmsPropParams),
    RESCNN_FIELD(RmsPropParams, len),  RESCNN_FIELD(RmsPropParams, lr),
    RESCNN_FIELD(RmsPropParams, rho),  RESCNN_FIELD(RmsPropParams, eps),
    RESCNN_FIELD(RmsPropParams, weight_decay)};
extern "C" const size_t rescnn_emu_layout_batchnorm[] = {
    sizeof(BatchNormGeom),
    RESCNN_FIELD(BatchNormGeom, n),    RESCNN_FIELD(BatchNormGeom, c),   RESCNN_FIELD(BatchNormGeom, h),
    RESCNN_FIELD(BatchNormGeom, w),    RESCNN_FIELD(BatchNormGeom, relu), RESCNN_FIELD(BatchNormGeom, eps),
    RESCNN_FIELD(BatchNormGeom, momentum)};
extern "C" const size_t rescnn_emu_layout_statspool[] = {
    sizeof(StatsPoolGeom),          RESCNN_FIELD(StatsPoolGeom, n), RESCNN_FIELD(StatsPoolGeom, c),
    RESCNN_FIELD(StatsPoolGeom, h), RESCNN_FIELD(StatsPoolGeom, w), RESCNN_FIELD(StatsPoolGeom, eps)};
extern "C" const size_t rescnn_emu_layout_dropout[] = {
    sizeof(DropoutParams),
    RESCNN_FIELD(DropoutParams, len),    RESCNN_FIELD(DropoutParams, threshold),
    RESCNN_FIELD(DropoutParams, scale),  RESCNN_FIELD(DropoutParams, key_lo),
    RESCNN_FIELD(DropoutParams, key_hi)};
