//! The boundary with the C++ half (kernels/emu_shim.h, runtime.cpp and the generated trampolines).
//! Only plain data and `extern "C"` function pointers cross it; nothing unwinds across it.

use std::ffi::{c_char, c_int, c_uint, c_void};

/// CUDA's `uint3`/`dim3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dim3 {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Dim3 {
    pub fn new((x, y, z): (u32, u32, u32)) -> Self {
        Dim3 { x, y, z }
    }
    pub fn volume(&self) -> usize {
        self.x as usize * self.y as usize * self.z as usize
    }
    /// The index whose linear number (x fastest) is `i`.
    pub fn unlinear(&self, i: usize) -> Dim3 {
        let (x, y) = (self.x as usize, self.y as usize);
        Dim3 {
            x: (i % x) as u32,
            y: (i / x % y) as u32,
            z: (i / (x * y)) as u32,
        }
    }
}

pub type SyncthreadsFn = extern "C" fn(line: c_int, file: *const c_char);
pub type WarpFn = extern "C" fn(
    op: c_int,
    mask: c_uint,
    value: u64,
    arg: c_int,
    width: c_int,
    line: c_int,
    file: *const c_char,
) -> u64;
pub type TrapFn = extern "C" fn(what: *const c_char, line: c_int, file: *const c_char);

/// Mirror of `rescnn_emu::Context` in kernels/emu_shim.h: one per host thread (a C++ thread_local).
#[repr(C)]
pub struct Context {
    pub thread_idx: Dim3,
    pub block_idx: Dim3,
    pub block_dim: Dim3,
    pub grid_dim: Dim3,
    pub dynamic_shared: *mut c_void,
    pub syncthreads: SyncthreadsFn,
    pub warp: WarpFn,
    pub trap: TrapFn,
}

extern "C" {
    /// The calling host thread's context (defined in runtime.cpp).
    pub fn rescnn_emu_context() -> *mut Context;
}

/// The warp operations, numbered as `rescnn_emu::WarpOp` in kernels/emu_shim.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarpOp {
    ShflIdx,
    ShflUp,
    ShflDown,
    ShflXor,
    Ballot,
    Any,
    All,
    SyncWarp,
}

impl WarpOp {
    pub fn from_c(op: c_int) -> Option<Self> {
        Some(match op {
            0 => WarpOp::ShflIdx,
            1 => WarpOp::ShflUp,
            2 => WarpOp::ShflDown,
            3 => WarpOp::ShflXor,
            4 => WarpOp::Ballot,
            5 => WarpOp::Any,
            6 => WarpOp::All,
            7 => WarpOp::SyncWarp,
            _ => return None,
        })
    }
    pub fn cuda_name(self) -> &'static str {
        match self {
            WarpOp::ShflIdx => "__shfl_sync",
            WarpOp::ShflUp => "__shfl_up_sync",
            WarpOp::ShflDown => "__shfl_down_sync",
            WarpOp::ShflXor => "__shfl_xor_sync",
            WarpOp::Ballot => "__ballot_sync",
            WarpOp::Any => "__any_sync",
            WarpOp::All => "__all_sync",
            WarpOp::SyncWarp => "__syncwarp",
        }
    }
}
