//! Runs one block: every CUDA thread of the block is a fiber (a corosensei coroutine with its own stack)
//! on the calling host thread. A fiber runs until it reaches `__syncthreads()` or a warp operation,
//! where it suspends itself; the scheduler then decides, from where every thread waits, whether the
//! block can go on (all live threads at one barrier; every lane of a warp operation's mask present) or
//! must be reported (divergent barrier, exit while others wait, deadlock, bad mask).
//!
//! Errors stop the block: suspended fibers are reset without unwinding (their stacks hold C++ kernel
//! frames, which must never be unwound from Rust) and their stacks go back to the pool.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::fmt::Write as _;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::ffi::{self, Context, Dim3, WarpOp};
use super::{EmuKernel, ThreadOrder};

/// Stack of one fiber. Kernels keep a few hundred bytes of locals; the rest is headroom for the
/// runtime's own frames (formatting an error message) and unoptimised builds. Pages are touched lazily.
const FIBER_STACK_BYTES: usize = 256 * 1024;
const WARP: usize = 32;

/// Where a thread waits: the `__LINE__` and `__FILE__` passed by the shim's macros.
#[derive(Clone, Copy, Debug)]
struct Site {
    line: c_int,
    file: *const c_char,
}

impl Site {
    fn file_name(&self) -> String {
        if self.file.is_null() {
            return "?".into();
        }
        // SAFETY: the shim passes `__FILE__`, a NUL-terminated string literal.
        let path = unsafe { CStr::from_ptr(self.file) }.to_string_lossy();
        path.rsplit('/').next().unwrap_or(&path).to_string()
    }
    fn describe(&self) -> String {
        format!("{}:{}", self.file_name(), self.line)
    }
    fn same(&self, other: &Site) -> bool {
        self.line == other.line
            && (self.file == other.file || self.file_name() == other.file_name())
    }
}

/// What a fiber says when it suspends itself.
enum Wait {
    Barrier(Site),
    Warp,
    /// The fiber found an error (stored in `BlockRun::fault`) and must not be resumed.
    Fault,
}

type Fiber = Coroutine<(), Wait, (), DefaultStack>;

#[derive(Clone, Copy, Debug)]
enum State {
    Runnable,
    Barrier(Site),
    Warp,
    Exited,
}

#[derive(Clone, Copy, Debug)]
struct WarpCall {
    op: WarpOp,
    mask: u32,
    value: u64,
    arg: i32,
    width: i32,
    site: Site,
    result: u64,
}

/// 16-byte aligned chunk of the dynamic shared memory arena (float4 loads need 16).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Chunk([u8; 16]);

/// The state of the block a host thread is running; reused from block to block on that thread.
struct BlockRun {
    ctx: *mut Context,
    /// Linear index (x fastest) of the fiber now running.
    current: usize,
    threads: usize,
    block_dim: Dim3,
    yielders: Vec<*const Yielder<(), Wait>>,
    warp: Vec<Option<WarpCall>>,
    state: Vec<State>,
    fault: Option<String>,
    stacks: Vec<DefaultStack>,
    arena: Vec<Chunk>,
}

thread_local! {
    static RUN: RefCell<Option<Box<BlockRun>>> = const { RefCell::new(None) };
    /// The block being run on this host thread, for the callbacks the kernels make.
    static CURRENT: Cell<*mut BlockRun> = const { Cell::new(std::ptr::null_mut()) };
}

/// Run block `block_idx` of a launch of `kernel`. `args` is the cuLaunchKernel-style argument array.
///
/// # Safety
/// `args` must match the kernel's parameters and stay valid for the call; every pointer argument must
/// address memory the kernel may access under this launch's dimensions.
pub(super) unsafe fn run_block(
    kernel: &EmuKernel,
    args: *mut *mut c_void,
    grid_dim: Dim3,
    block_dim: Dim3,
    block_idx: Dim3,
    dynamic_shared_bytes: usize,
    order: ThreadOrder,
) -> Result<(), String> {
    RUN.with(|cell| {
        let mut slot = cell.borrow_mut();
        let run: &mut BlockRun = slot.get_or_insert_with(|| {
            Box::new(BlockRun {
                // SAFETY: returns the address of this host thread's C++ thread_local context.
                ctx: unsafe { ffi::rescnn_emu_context() },
                current: 0,
                threads: 0,
                block_dim: Dim3::default(),
                yielders: Vec::new(),
                warp: Vec::new(),
                state: Vec::new(),
                fault: None,
                stacks: Vec::new(),
                arena: Vec::new(),
            })
        });
        let run: *mut BlockRun = run;
        CURRENT.with(|c| c.set(run));
        // SAFETY: `run` is this thread's block state, used only through this pointer until the end.
        let result = unsafe {
            schedule(
                run,
                kernel,
                args,
                grid_dim,
                block_dim,
                block_idx,
                dynamic_shared_bytes,
                order,
            )
        };
        CURRENT.with(|c| c.set(std::ptr::null_mut()));
        result.map_err(|e| {
            format!(
                "kernel {}::{}, block ({}, {}, {}) of grid ({}, {}, {}), block ({}, {}, {}): {e}",
                kernel.module,
                kernel.name,
                block_idx.x,
                block_idx.y,
                block_idx.z,
                grid_dim.x,
                grid_dim.y,
                grid_dim.z,
                block_dim.x,
                block_dim.y,
                block_dim.z
            )
        })
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn schedule(
    run: *mut BlockRun,
    kernel: &EmuKernel,
    args: *mut *mut c_void,
    grid_dim: Dim3,
    block_dim: Dim3,
    block_idx: Dim3,
    dynamic_shared_bytes: usize,
    order: ThreadOrder,
) -> Result<(), String> {
    let n = block_dim.volume();
    // Prepare the block state and the context the kernel reads.
    {
        // SAFETY: no fiber of this block runs yet, so this is the only access.
        let r = unsafe { &mut *run };
        r.threads = n;
        r.block_dim = block_dim;
        r.fault = None;
        r.yielders.clear();
        r.yielders.resize(n, std::ptr::null());
        r.warp.clear();
        r.warp.resize(n, None);
        r.state.clear();
        r.state.resize(n, State::Runnable);
        let chunks = dynamic_shared_bytes.div_ceil(16);
        if r.arena.len() < chunks {
            r.arena.resize(chunks, Chunk([0; 16]));
        }
        // A NaN for every float/double and -1 for every integer: reads before writes show up.
        r.arena[..chunks].fill(Chunk([0xff; 16]));
        // SAFETY: the context is this host thread's; no kernel code runs concurrently on this thread.
        let ctx = unsafe { &mut *r.ctx };
        ctx.block_idx = block_idx;
        ctx.block_dim = block_dim;
        ctx.grid_dim = grid_dim;
        ctx.dynamic_shared = if chunks == 0 {
            std::ptr::null_mut()
        } else {
            r.arena.as_mut_ptr().cast()
        };
        ctx.syncthreads = on_syncthreads;
        ctx.warp = on_warp;
        ctx.trap = on_trap;
        r.current = 0;
    }

    let mut fibers = Fibers {
        run,
        fibers: Vec::with_capacity(n),
    };
    for t in 0..n {
        // SAFETY: short exclusive access between fiber runs.
        let stack = match unsafe { (*run).stacks.pop() } {
            Some(s) => s,
            None => DefaultStack::new(FIBER_STACK_BYTES)
                .map_err(|e| format!("cannot allocate a fiber stack: {e}"))?,
        };
        let entry = kernel.entry;
        let args = args as usize;
        fibers.fibers.push(Coroutine::with_stack(
            stack,
            move |yielder: &Yielder<(), Wait>, ()| {
                let run = CURRENT.with(|c| c.get());
                // SAFETY: `run` is the block being scheduled on this host thread; only this fiber runs now.
                unsafe { (&mut (*run).yielders)[t] = yielder };
                // SAFETY: the launch checked the arguments against the kernel's parameters.
                unsafe { entry(args as *mut *mut c_void) };
            },
        ));
    }

    drive(run, &mut fibers.fibers, order)
}

/// The fibers of one block. Dropping them (after the block, after an error, or if the scheduler itself
/// panicked) resets every unfinished fiber WITHOUT unwinding — its frames are C++ kernel code and the
/// runtime's callbacks, which must never be unwound from Rust and own nothing that needs dropping — and
/// returns the stacks to the host thread's pool.
struct Fibers {
    run: *mut BlockRun,
    fibers: Vec<Fiber>,
}

impl Drop for Fibers {
    fn drop(&mut self) {
        for mut fiber in self.fibers.drain(..) {
            if !fiber.done() {
                // SAFETY: see above; the fiber is suspended (or never started) and is never resumed.
                unsafe { fiber.force_reset() };
            }
            // SAFETY: no fiber runs now, so this is the only access to the block state.
            unsafe { (*self.run).stacks.push(fiber.into_stack()) };
        }
    }
}

fn drive(run: *mut BlockRun, fibers: &mut [Fiber], order: ThreadOrder) -> Result<(), String> {
    let n = fibers.len();
    let sequence: Vec<usize> = match order {
        ThreadOrder::Forward => (0..n).collect(),
        ThreadOrder::Reverse => (0..n).rev().collect(),
    };
    // SAFETY (for every `(*run)` below): fibers run only inside `resume`, and no reference into the
    // block state is held across a `resume`, so each access here is exclusive while it lasts.
    let block_dim = unsafe { (*run).block_dim };
    loop {
        for &t in &sequence {
            if !matches!(unsafe { (&(*run).state)[t] }, State::Runnable) {
                continue;
            }
            unsafe {
                (*run).current = t;
                (*(*run).ctx).thread_idx = block_dim.unlinear(t);
            }
            let next = match fibers[t].resume(()) {
                CoroutineResult::Yield(Wait::Barrier(site)) => State::Barrier(site),
                CoroutineResult::Yield(Wait::Warp) => State::Warp,
                CoroutineResult::Yield(Wait::Fault) => {
                    let fault = unsafe { (*run).fault.take() };
                    return Err(fault.unwrap_or_else(|| "a thread faulted".into()));
                }
                CoroutineResult::Return(()) => State::Exited,
            };
            unsafe { (&mut (*run).state)[t] = next };
        }
        // Nobody is runnable now: every thread has exited or waits.
        let r = unsafe { &mut *run };
        if resolve_warps(r)? {
            continue;
        }
        let mut at_barrier: Vec<(usize, Site)> = Vec::new();
        let mut exited = Vec::new();
        for (t, s) in r.state.iter().enumerate() {
            match s {
                State::Barrier(site) => at_barrier.push((t, *site)),
                State::Exited => exited.push(t),
                State::Warp | State::Runnable => {
                    return Err("internal error: unresolved warp operation".into())
                }
            }
        }
        if at_barrier.is_empty() {
            return Ok(());
        }
        if !exited.is_empty() {
            return Err(format!(
                "threads {} exited while threads {} wait at __syncthreads() ({}); every thread of the block must reach each barrier",
                fmt_ids(&exited),
                fmt_ids(&at_barrier.iter().map(|&(t, _)| t).collect::<Vec<_>>()),
                describe_sites(&at_barrier)
            ));
        }
        let first = at_barrier[0].1;
        if at_barrier.iter().any(|(_, s)| !s.same(&first)) {
            return Err(format!(
                "divergent __syncthreads(): the block's threads wait at different barriers: {}",
                describe_sites(&at_barrier)
            ));
        }
        for s in r.state.iter_mut() {
            *s = State::Runnable;
        }
    }
}

/// "threads 0-31, 40 wait at a.cu:10; threads 32-39 wait at a.cu:12".
fn describe_sites(waiting: &[(usize, Site)]) -> String {
    let mut groups: Vec<(Site, Vec<usize>)> = Vec::new();
    for &(t, site) in waiting {
        match groups.iter_mut().find(|(s, _)| s.same(&site)) {
            Some((_, ids)) => ids.push(t),
            None => groups.push((site, vec![t])),
        }
    }
    groups
        .iter()
        .map(|(site, ids)| format!("threads {} at {}", fmt_ids(ids), site.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sorted linear thread ids as ranges, e.g. "0-31, 40, 64-95" (at most 8 ranges shown).
fn fmt_ids(ids: &[usize]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for id in ids {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => ranges.push((id, id)),
        }
    }
    let mut out = String::new();
    for (i, (a, b)) in ranges.iter().enumerate() {
        if i == 8 {
            write!(out, ", … ({} ranges in all)", ranges.len()).unwrap();
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        if a == b {
            write!(out, "{a}").unwrap();
        } else {
            write!(out, "{a}-{b}").unwrap();
        }
    }
    out
}

/// Complete every warp operation whose lanes have all arrived; report those that never can.
/// Returns whether any completed. Called when no thread is runnable, so every lane is either waiting
/// or has exited.
fn resolve_warps(r: &mut BlockRun) -> Result<bool, String> {
    let n = r.threads;
    let mut progressed = false;
    for base in (0..n).step_by(WARP) {
        let lanes = (n - base).min(WARP);
        let mut done = 0u32;
        for lane in 0..lanes {
            let t = base + lane;
            if !matches!(r.state[t], State::Warp) || done & (1 << lane) != 0 {
                continue;
            }
            let call = r.warp[t].ok_or("internal error: warp call without its record")?;
            let mask = call.mask;
            let warp_no = base / WARP;
            for other in (0..lanes).filter(|l| mask & (1 << l) != 0) {
                let u = base + other;
                match r.state[u] {
                    State::Warp => {
                        let c = r.warp[u].ok_or("internal error: warp call without its record")?;
                        if c.mask != mask || c.op != call.op {
                            return Err(format!(
                                "warp {warp_no}: thread {t} calls {}(mask {mask:#010x}) at {} while thread {u}, named in that mask, calls {}(mask {:#010x}) at {}; every lane of a mask must call the same warp operation with the same mask",
                                call.op.cuda_name(), call.site.describe(), c.op.cuda_name(), c.mask, c.site.describe()
                            ));
                        }
                    }
                    State::Exited => {
                        return Err(format!(
                            "warp {warp_no}: thread {t} calls {}(mask {mask:#010x}) at {}, but thread {u} (lane {other}), named in the mask, has exited",
                            call.op.cuda_name(), call.site.describe()
                        ));
                    }
                    State::Barrier(site) => {
                        return Err(format!(
                            "deadlock: thread {t} waits in {}(mask {mask:#010x}) at {} for thread {u} (lane {other}), which waits at __syncthreads() at {}",
                            call.op.cuda_name(), call.site.describe(), site.describe()
                        ));
                    }
                    State::Runnable => {
                        return Err("internal error: runnable lane at resolution".into())
                    }
                }
            }
            // Every lane of the mask is here: compute each lane's result from the mask's lanes.
            let value = |l: usize| r.warp[base + l].map_or(0, |c| c.value);
            let ballot = (0..lanes)
                .filter(|&l| mask & (1 << l) != 0 && value(l) != 0)
                .fold(0u32, |acc, l| acc | (1 << l));
            let mut results = [0u64; WARP];
            for l in (0..lanes).filter(|l| mask & (1 << l) != 0) {
                let c = r.warp[base + l].ok_or("internal error: warp call without its record")?;
                results[l] = match c.op {
                    WarpOp::ShflIdx | WarpOp::ShflUp | WarpOp::ShflDown | WarpOp::ShflXor => {
                        let width = c.width as usize;
                        let segment = l & !(width - 1);
                        let arg = c.arg as u32 as usize;
                        let src = match c.op {
                            WarpOp::ShflIdx => segment + (arg & (width - 1)),
                            WarpOp::ShflUp => match l.checked_sub(arg) {
                                Some(s) if s >= segment => s,
                                _ => l,
                            },
                            WarpOp::ShflDown => match l.checked_add(arg) {
                                Some(s) if s < segment + width => s,
                                _ => l,
                            },
                            _ => {
                                let s = l ^ (arg & (WARP - 1));
                                if s & !(width - 1) == segment {
                                    s
                                } else {
                                    l
                                }
                            }
                        };
                        if src >= lanes || mask & (1 << src) == 0 {
                            return Err(format!(
                                "warp {warp_no}: thread {} (lane {l}) reads lane {src} in {}(mask {mask:#010x}) at {}, but lane {src} is not in the mask (the value would be undefined)",
                                base + l, c.op.cuda_name(), c.site.describe()
                            ));
                        }
                        value(src)
                    }
                    WarpOp::Ballot => ballot as u64,
                    WarpOp::Any => (ballot != 0) as u64,
                    WarpOp::All => (ballot == mask) as u64,
                    WarpOp::SyncWarp => 0,
                };
            }
            for l in (0..lanes).filter(|l| mask & (1 << l) != 0) {
                if let Some(c) = r.warp[base + l].as_mut() {
                    c.result = results[l];
                }
                r.state[base + l] = State::Runnable;
            }
            done |= mask;
            progressed = true;
        }
    }
    Ok(progressed)
}

/// The running fiber's block state and yielder. Only called from kernel code, i.e. inside a fiber.
fn current() -> (*mut BlockRun, &'static Yielder<(), Wait>) {
    let run = CURRENT.with(|c| c.get());
    if run.is_null() {
        // A kernel function called outside a launch: there is no block to report to.
        eprintln!("rescnn emulator: a CUDA intrinsic was called outside a kernel launch");
        std::process::abort();
    }
    // SAFETY: `run` is set for the duration of the block, and the yielder of the running fiber was
    // stored when it started; it lives on that fiber's stack, which outlives this call.
    unsafe { (run, &*(&(*run).yielders)[(*run).current]) }
}

/// Record `message` as the block's error and stop this fiber for good.
fn fault(run: *mut BlockRun, yielder: &Yielder<(), Wait>, message: String) -> ! {
    // SAFETY: only this fiber runs; no other reference to the block state is live.
    unsafe { (*run).fault = Some(message) };
    yielder.suspend(Wait::Fault);
    // The scheduler never resumes a faulted fiber.
    std::process::abort();
}

extern "C" fn on_syncthreads(line: c_int, file: *const c_char) {
    let (_, yielder) = current();
    yielder.suspend(Wait::Barrier(Site { line, file }));
}

extern "C" fn on_trap(what: *const c_char, line: c_int, file: *const c_char) {
    let (run, yielder) = current();
    // Build the message first so that nothing owned stays on this stack while it is suspended for good.
    let message = {
        // SAFETY: the shim passes a string literal.
        let what = unsafe { CStr::from_ptr(what) }.to_string_lossy();
        // SAFETY: short read while only this fiber runs.
        let t = unsafe { (*run).current };
        format!(
            "thread {t} called {what} at {}",
            Site { line, file }.describe()
        )
    };
    fault(run, yielder, message);
}

extern "C" fn on_warp(
    op: c_int,
    mask: c_uint,
    value: u64,
    arg: c_int,
    width: c_int,
    line: c_int,
    file: *const c_char,
) -> u64 {
    let (run, yielder) = current();
    let site = Site { line, file };
    // SAFETY: short reads while only this fiber runs.
    let (t, n) = unsafe { ((*run).current, (*run).threads) };
    let (base, lane) = (t / WARP * WARP, t % WARP);
    let lanes = (n - base).min(WARP);
    let Some(op) = WarpOp::from_c(op) else {
        fault(
            run,
            yielder,
            format!(
                "thread {t}: unknown warp operation {op} at {}",
                site.describe()
            ),
        );
    };
    let name = op.cuda_name();
    if mask & (1 << lane) == 0 {
        fault(
            run,
            yielder,
            format!("thread {t} (lane {lane} of warp {}) calls {name} at {} with mask {mask:#010x}, which does not include its own lane", t / WARP, site.describe()),
        );
    }
    if lanes < WARP && mask >> lanes != 0 {
        fault(
            run,
            yielder,
            format!("thread {t} calls {name} at {} with mask {mask:#010x}, but warp {} has only {lanes} lanes (the block has {n} threads): the mask names lanes that do not exist", site.describe(), t / WARP),
        );
    }
    if !(1..=32).contains(&width) || (width & (width - 1)) != 0 {
        fault(
            run,
            yielder,
            format!("thread {t} calls {name} at {} with width {width}; it must be a power of two from 1 to 32", site.describe()),
        );
    }
    // SAFETY: short write while only this fiber runs.
    unsafe {
        (&mut (*run).warp)[t] = Some(WarpCall {
            op,
            mask,
            value,
            arg,
            width,
            site,
            result: 0,
        });
    }
    yielder.suspend(Wait::Warp);
    // SAFETY: the scheduler stored this lane's result before resuming it.
    unsafe { (&(*run).warp)[t].map_or(0, |c| c.result) }
}
