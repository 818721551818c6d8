//! The Rust side of `kernels/gemm_tile.cuh`, shared by the [`conv2d`](super::conv2d) and
//! [`dense`](super::dense) wrappers: the block tile, the launch shape of a tiled GEMM, the split-K plan,
//! and [`Scratch`], the one reusable device buffer that holds split-K partial sums.

use std::sync::Mutex;

use crate::backends::cost::Cost;
use crate::backends::device::{Device, Kernel, LaunchConfig};
use crate::{shape_err, Result};

/// Block tile columns (N), `gemm::BN`.
pub const BN: usize = 128;
/// K step, `gemm::BK`; split-K chunks are multiples of it.
pub const BK: usize = 8;
/// Threads per GEMM block, `gemm::THREADS`.
pub const THREADS: u32 = 128;

/// The block tile's rows, `gemm::Rows<BM>` in kernels/gemm_tile.cuh: every GEMM kernel has an entry
/// point for each (the 32-row one named `<kernel>_m32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    Rows64,
    Rows32,
}

/// The two block-tile entry points of one GEMM kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variants {
    pub rows64: Kernel,
    pub rows32: Kernel,
}

impl Tile {
    /// THE place where a GEMM's tile is chosen, from its M alone: the tile that pads M to fewer rows;
    /// on a tie the 64-row one, which does twice the FMAs per shared-memory fragment load. So M = 32
    /// (the paper's conv1 forward and filter gradient, conv2's data gradient) takes 32 rows, M = 64 or
    /// 50 takes 64, M = 96 takes 32 (3 tiles, no padding, instead of 2 with 32 rows of zeros).
    pub fn for_rows(m: usize) -> Tile {
        if m.div_ceil(32) * 32 < m.div_ceil(64) * 64 {
            Tile::Rows32
        } else {
            Tile::Rows64
        }
    }
    /// Block tile rows (M), `gemm::Rows<BM>::BM`.
    pub fn rows(self) -> usize {
        match self {
            Tile::Rows64 => 64,
            Tile::Rows32 => 32,
        }
    }
    /// Dynamic shared memory of a block: two buffers of (BK × (BM + 4) + BK × (BN + 4)) floats,
    /// `gemm::Rows<BM>::SMEM_BYTES`.
    pub fn smem_bytes(self) -> u32 {
        (2 * (BK * (self.rows() + 4) + BK * (BN + 4)) * 4) as u32
    }
    /// This tile's entry point of `kernel`.
    pub fn kernel(self, kernel: Variants) -> Kernel {
        match self {
            Tile::Rows64 => kernel.rows64,
            Tile::Rows32 => kernel.rows32,
        }
    }
}

/// Blocks a GEMM launch should reach before splitting K stops paying. Not one wave but many: with
/// about 400-530 resident GEMM blocks on an H100 (132 SMs × 3-4), a launch of 512 blocks would run as
/// a full wave plus a 30 % one; 4096 blocks make the last partial wave a few per cent of the time.
/// The price is partial-sum traffic, at most splits × M × N floats written and read once (≈ 130 MB
/// for the paper's conv2/conv3 filter gradients: tens of µs against their ~10 ms of FMAs).
const TARGET_BLOCKS: usize = 4096;
/// Outputs with this many tiles (about two full waves) are never split: their waves are already
/// reasonably full, and partial sums would add an M × N round trip per split.
const UNSPLIT_TILES: usize = 1024;
/// Smallest K chunk worth a block: 32 K steps, so the main loop dwarfs the prologue and the partial
/// tile it writes.
const MIN_CHUNK: usize = 32 * BK;

/// Largest value a kernel's `int` index may take.
const INT_MAX: usize = i32::MAX as usize;

/// How K is divided among `splits` blocks of each output tile: block z covers
/// `[z·chunk, min(K, (z+1)·chunk))`. With one split the GEMM writes its output directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitK {
    pub splits: usize,
    pub chunk: usize,
}

impl SplitK {
    /// Split K when an `m` × `n` output has too few tiles to fill the GPU on its own.
    pub fn plan(m: usize, n: usize, k: usize) -> Self {
        let tiles = m.div_ceil(Tile::for_rows(m).rows()) * n.div_ceil(BN);
        if tiles >= UNSPLIT_TILES {
            return Self::with_splits(k, 1);
        }
        let wanted = (TARGET_BLOCKS / tiles.max(1)).max(1);
        let worthwhile = k.div_ceil(MIN_CHUNK).max(1);
        Self::with_splits(k, wanted.min(worthwhile))
    }
    /// K divided into (about) `splits` chunks, each a multiple of BK.
    pub fn with_splits(k: usize, splits: usize) -> Self {
        let chunk = k.div_ceil(splits.max(1)).next_multiple_of(BK).max(BK);
        SplitK {
            splits: k.div_ceil(chunk).max(1),
            chunk,
        }
    }
    /// K steps (of BK) the splits of a GEMM over `k` walk in all: what each output tile executes.
    pub fn k_steps(&self, k: usize) -> usize {
        (0..self.splits)
            .map(|z| (k.min((z + 1) * self.chunk) - (z * self.chunk).min(k)).div_ceil(BK))
            .sum()
    }
    /// Floats of scratch the partial sums of an `m` × `n` output need (0 without a split).
    pub fn scratch_len(&self, m: usize, n: usize) -> usize {
        if self.splits > 1 {
            self.splits * m * n
        } else {
            0
        }
    }
}

/// Launch shape of a tiled GEMM with an `m` × `n` output on the tile [`Tile::for_rows`] picks: column
/// tiles along x (no 65535 limit there), row tiles along y, K splits along z.
pub fn launch(m: usize, n: usize, splits: usize) -> Result<LaunchConfig> {
    let tile = Tile::for_rows(m);
    let (tiles_y, splits_z) = (m.div_ceil(tile.rows()), splits);
    if tiles_y > 65535 || splits_z > 65535 {
        return Err(shape_err!(
            "a {m} × {n} GEMM in {splits} K chunks needs {tiles_y} row tiles and {splits_z} splits; at most 65535 each"
        ));
    }
    let mut cfg = LaunchConfig::linear(n.div_ceil(BN) as u32, THREADS);
    cfg.grid.1 = tiles_y as u32;
    cfg.grid.2 = splits_z as u32;
    cfg.dynamic_shared_bytes = tile.smem_bytes();
    Ok(cfg)
}

/// The cost of the tiled GEMM launch `cfg` for an `m` × `n` × `k` product split as `split`, moving
/// `bytes` (see [`crate::backends::cost`] for the traffic model).
pub fn cost(
    cfg: &LaunchConfig,
    (m, n, k): (usize, usize, usize),
    split: SplitK,
    bytes: usize,
) -> Cost {
    let rows = Tile::for_rows(m).rows();
    Cost::gemm(cfg, rows, BN, split.k_steps(k), BK, (m, n, k), bytes)
}

/// Launch shape of `gemm::splitk_reduce` (grid-stride) over `len` outputs.
pub fn reduce_launch(len: usize) -> LaunchConfig {
    const THREADS: u32 = 256;
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 4096) as u32;
    LaunchConfig::linear(blocks, THREADS)
}

/// Error unless every index a kernel computes in `int` fits.
pub fn check_int_range(what: &str, values: &[usize]) -> Result<()> {
    match values.iter().find(|&&v| v > INT_MAX) {
        Some(v) => Err(shape_err!(
            "{what}: {v} elements exceed the kernels' 32-bit indexing"
        )),
        None => Ok(()),
    }
}

/// A device buffer for intermediate results — split-K partial sums and partial bias gradients (the
/// convolution gathers' K tables have their own cache, `conv2d::GatherTables`) — allocated on first
/// use, grown to the largest request, and reused by every later call: the training loop allocates nothing after its first step. Uses are serialised
/// by a lock; on the CUDA device the kernels that use it are ordered on the one stream, so a later op
/// cannot overwrite what an earlier op's kernels have not read yet (and a buffer replaced by a larger
/// one is freed in stream order).
pub struct Scratch<D: Device> {
    buf: Mutex<Option<D::Buffer<f32>>>,
}

impl<D: Device> Default for Scratch<D> {
    fn default() -> Self {
        Scratch {
            buf: Mutex::new(None),
        }
    }
}

impl<D: Device> Scratch<D> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `f` with a scratch buffer of at least `len` values (contents unspecified).
    pub fn with<R>(
        &self,
        dev: &D,
        len: usize,
        f: impl FnOnce(&mut D::Buffer<f32>) -> Result<R>,
    ) -> Result<R> {
        let mut guard = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let big_enough = guard
            .as_ref()
            .is_some_and(|b| dev.buffer_len(b) >= len.max(1));
        if !big_enough {
            *guard = None; // free the old one first: peak memory is the new size only
            *guard = Some(dev.alloc_zeroed::<f32>(len.max(1))?);
        }
        f(guard.as_mut().expect("allocated above"))
    }

    /// Values currently held (0 before first use).
    pub fn capacity(&self, dev: &D) -> usize {
        let guard = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map_or(0, |b| dev.buffer_len(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smem_matches_the_cuda_constant() {
        // gemm::Rows<64>::SMEM_FLOATS = 2 * (8 * 68 + 8 * 132) = 3200 floats, Rows<32> 2 * (8 * 36 +
        // 8 * 132) = 2688.
        assert_eq!(Tile::Rows64.smem_bytes(), 12_800);
        assert_eq!(Tile::Rows32.smem_bytes(), 10_752);
    }

    #[test]
    fn the_tile_pads_m_least() {
        for (m, tile) in [
            (1, Tile::Rows32),
            (32, Tile::Rows32),
            (33, Tile::Rows64),
            (50, Tile::Rows64),
            (64, Tile::Rows64),
            (70, Tile::Rows32),
            (96, Tile::Rows32),
            (97, Tile::Rows64),
            (704, Tile::Rows64),
            (716, Tile::Rows32),
        ] {
            assert_eq!(Tile::for_rows(m), tile, "M = {m}");
        }
        let cfg = launch(32, 1000, 1).unwrap();
        assert_eq!((cfg.grid.1, cfg.dynamic_shared_bytes), (1, 10_752));
        assert_eq!(launch(96, 1000, 1).unwrap().grid.1, 3);
    }

    #[test]
    fn split_k_covers_k_in_bk_multiples() {
        for &(m, n, k) in &[
            (50, 716, 65_536),
            (64, 6_400, 819_200),
            (3, 7, 5),
            (50, 65_536, 716),
            (1, 1, 1),
        ] {
            let s = SplitK::plan(m, n, k);
            assert_eq!(s.chunk % BK, 0, "{m}x{n}x{k}: {s:?}");
            assert!(s.splits * s.chunk >= k, "{m}x{n}x{k}: {s:?}");
            assert!(
                (s.splits - 1) * s.chunk < k,
                "{m}x{n}x{k}: empty last chunk {s:?}"
            );
        }
        // FC1 forward of the paper: 6 tiles, K = 65536 -> many splits; FC1 dx (512 tiles, K = 716):
        // at most K / MIN_CHUNK.
        assert!(SplitK::plan(50, 716, 65_536).splits >= 64);
        assert!(SplitK::plan(50, 65_536, 716).splits <= 3);
        // A square 4096³ GEMM (2048 tiles) is not split.
        assert_eq!(SplitK::plan(4096, 4096, 4096).splits, 1);
        // A short K is never split below MIN_CHUNK.
        assert_eq!(SplitK::plan(3, 7, 200).splits, 1);
    }
}
