//! The cost model on paper: what every kernel launch of a run computes and moves, and how long a
//! roofline says it takes on a named card, known without a GPU.
//!
//! The launch list is not kept by hand. [`CostDevice`] is a [`Device`] that runs nothing: the real
//! op code ([`KernelBackend`](super::kernel_backend::KernelBackend) and the wrappers in
//! [`super::kernels`]) drives it exactly as it drives the CUDA device, and it records every launch with
//! its real [`LaunchConfig`], every memset and every host↔device copy. Each wrapper states the
//! [`Cost`] of the launch it is about to make through [`Device::note_cost`], computed from the same
//! geometry and launch configuration it launches with; a launch without a stated cost is reported as
//! such (and the tests refuse it).
//!
//! # Traffic model (bytes moved to and from DRAM)
//! - A GEMM moves its operands once and its output once (read too when it accumulates): the tile
//!   re-reads of A and B across blocks and the convolution halos are assumed to hit in L2/L1, which
//!   is what the tiles are shaped for. Split-K partial sums are written once and read once.
//! - An element-wise or reduction kernel moves what it touches, once. A masked in-place write (the
//!   ReLU mask of dy) is counted in full: a 32-byte sector is written as soon as one of its eight
//!   floats is zeroed, which for a ReLU output is nearly always.
//! - A re-read is counted again when its reuse distance is far beyond any L2 (the shortcut forward
//!   reads each source window once per target channel that maps to it, a whole source tensor apart).
//! - Host↔device copies are timed at the card's PCIe rate, not DRAM's, and listed apart.
//!
//! Roofline time of a launch = max(executed FLOPs / FP32 peak, bytes / DRAM bandwidth), no launch
//! overhead, no occupancy effects: a lower bound that makes waste visible, not a prediction of
//! achieved speed.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use super::device::Cost;
use super::device::{
    Device, DevicePtr, Kernel, KernelArgs, LaunchConfig, MemoryMeter, MeteredBytes,
};
use crate::Result;

/// Peak figures of a card, the roofline's two ceilings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Card {
    pub name: &'static str,
    /// FP32 FMA peak (no tensor cores), TFLOP/s.
    pub fp32_tflops: f64,
    /// DRAM bandwidth, GB/s.
    pub dram_gbs: f64,
    /// Host↔device copy rate, GB/s (pinned memory; pageable is slower).
    pub pcie_gbs: f64,
}

/// The users' card: GTX 1080 (Pascal GP104, 2560 cores at 1733 MHz boost, GDDR5X, PCIe 3.0 x16).
pub const GTX_1080: Card = Card {
    name: "GTX 1080",
    fp32_tflops: 8.87,
    dram_gbs: 320.0,
    pcie_gbs: 12.0,
};
/// H100 SXM5: FP32 non-tensor peak, HBM3, PCIe 5.0 x16.
pub const H100_SXM: Card = Card {
    name: "H100 SXM",
    fp32_tflops: 67.0,
    dram_gbs: 3350.0,
    pcie_gbs: 50.0,
};
pub const CARDS: [Card; 2] = [GTX_1080, H100_SXM];

/// What a recorded event was.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventKind {
    Launch {
        kernel: Kernel,
        config: LaunchConfig,
    },
    Memset,
    HostToDevice,
    DeviceToHost,
}

/// One recorded device operation with its cost (`None`: a launch whose wrapper stated no cost).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub cost: Option<Cost>,
}

impl Event {
    pub fn label(&self) -> String {
        match self.kind {
            EventKind::Launch { kernel, .. } => kernel.name.to_string(),
            EventKind::Memset => "memset (zero)".to_string(),
            EventKind::HostToDevice => "copy host -> device".to_string(),
            EventKind::DeviceToHost => "copy device -> host".to_string(),
        }
    }
    pub fn is_copy(&self) -> bool {
        matches!(self.kind, EventKind::HostToDevice | EventKind::DeviceToHost)
    }
    /// Roofline seconds on `card` (copies at the PCIe rate).
    pub fn seconds(&self, card: &Card) -> f64 {
        let c = self.cost.unwrap_or_default();
        if self.is_copy() {
            return c.bytes / (card.pcie_gbs * 1e9);
        }
        (c.executed_flops / (card.fp32_tflops * 1e12)).max(c.bytes / (card.dram_gbs * 1e9))
    }
}

/// A buffer of the cost device: a length and a fake, 256-byte aligned address; no storage.
pub struct CostBuffer<T> {
    len: usize,
    addr: u64,
    _bytes: MeteredBytes,
    _elem: PhantomData<fn() -> T>,
}

/// A [`Device`] that records instead of running (see the module documentation).
#[derive(Default)]
pub struct CostDevice {
    events: Mutex<Vec<Event>>,
    pending: Mutex<Option<(Kernel, Cost)>>,
    next_addr: AtomicU64,
    memory: Arc<MemoryMeter>,
}

impl CostDevice {
    pub fn new() -> Self {
        CostDevice {
            next_addr: AtomicU64::new(1 << 20),
            ..Self::default()
        }
    }
    /// Take the events recorded so far (the list starts empty again).
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn record(&self, kind: EventKind, cost: Option<Cost>) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Event { kind, cost });
    }
}

impl Device for CostDevice {
    type Buffer<T: bytemuck::Pod + Send + Sync> = CostBuffer<T>;

    fn name(&self) -> String {
        "cost model (records launches, runs nothing)".to_string()
    }
    fn alloc_zeroed<T: bytemuck::Pod + Send + Sync>(&self, len: usize) -> Result<CostBuffer<T>> {
        let _bytes = self.memory.allocate(len * std::mem::size_of::<T>());
        let bytes = (len * std::mem::size_of::<T>())
            .max(1)
            .next_multiple_of(256) as u64;
        let addr = self.next_addr.fetch_add(bytes, Ordering::Relaxed);
        Ok(CostBuffer {
            len,
            addr,
            _bytes,
            _elem: PhantomData,
        })
    }
    fn copy_to_device<T: bytemuck::Pod + Send + Sync>(
        &self,
        src: &[T],
        dst: &mut CostBuffer<T>,
    ) -> Result<()> {
        assert!(src.len() <= dst.len, "copy past the end of a buffer");
        self.record(
            EventKind::HostToDevice,
            Some(Cost::memory(std::mem::size_of_val(src))),
        );
        Ok(())
    }
    fn copy_to_host<T: bytemuck::Pod + Send + Sync>(&self, src: &CostBuffer<T>) -> Result<Vec<T>> {
        self.record(
            EventKind::DeviceToHost,
            Some(Cost::memory(src.len * std::mem::size_of::<T>())),
        );
        Ok(vec![T::zeroed(); src.len])
    }
    fn memset_zero<T: bytemuck::Pod + Send + Sync>(&self, buf: &mut CostBuffer<T>) -> Result<()> {
        self.record(
            EventKind::Memset,
            Some(Cost::memory(buf.len * std::mem::size_of::<T>())),
        );
        Ok(())
    }
    fn memory(&self) -> &MemoryMeter {
        &self.memory
    }
    fn buffer_len<T: bytemuck::Pod + Send + Sync>(&self, buf: &CostBuffer<T>) -> usize {
        buf.len
    }
    fn device_ptr<T: bytemuck::Pod + Send + Sync>(&self, buf: &CostBuffer<T>) -> DevicePtr {
        DevicePtr(buf.addr)
    }
    fn note_cost(&self, kernel: Kernel, cost: impl FnOnce() -> Cost) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((kernel, cost()));
    }
    unsafe fn launch(
        &self,
        kernel: Kernel,
        config: &LaunchConfig,
        _args: &mut KernelArgs,
    ) -> Result<()> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let cost = pending.filter(|(k, _)| *k == kernel).map(|(_, c)| c);
        self.record(
            EventKind::Launch {
                kernel,
                config: *config,
            },
            cost,
        );
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

/// Totals of a list of events.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub launches: usize,
    pub uncosted: usize,
    pub useful_flops: f64,
    pub executed_flops: f64,
    pub gemm_useful_flops: f64,
    pub gemm_executed_flops: f64,
    /// DRAM bytes of the kernels and memsets.
    pub bytes: f64,
    /// Host↔device bytes.
    pub copy_bytes: f64,
}

impl Totals {
    pub fn of(events: &[Event]) -> Self {
        let mut t = Totals::default();
        for e in events {
            let c = e.cost.unwrap_or_default();
            if let EventKind::Launch { .. } = e.kind {
                t.launches += 1;
                t.uncosted += e.cost.is_none() as usize;
            }
            if e.is_copy() {
                t.copy_bytes += c.bytes;
                continue;
            }
            t.useful_flops += c.useful_flops;
            t.executed_flops += c.executed_flops;
            t.bytes += c.bytes;
            if c.gemm {
                t.gemm_useful_flops += c.useful_flops;
                t.gemm_executed_flops += c.executed_flops;
            }
        }
        t
    }
    /// Fraction of the GEMMs' executed FLOPs that multiply tile padding.
    pub fn gemm_waste(&self) -> f64 {
        if self.gemm_executed_flops == 0.0 {
            return 0.0;
        }
        1.0 - self.gemm_useful_flops / self.gemm_executed_flops
    }
}

/// Roofline seconds of the device work (kernels and memsets) and of the copies on `card`.
pub fn step_seconds(events: &[Event], card: &Card) -> (f64, f64) {
    let (mut device, mut copies) = (0.0, 0.0);
    for e in events {
        if e.is_copy() {
            copies += e.seconds(card);
        } else {
            device += e.seconds(card);
        }
    }
    (device, copies)
}

/// The table: one line per event (with `measured_ms` beside it when given, one per event), then
/// the totals on every card of [`CARDS`].
pub fn report(title: &str, events: &[Event], measured_ms: Option<&[f64]>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{title}");
    let _ = writeln!(
        s,
        "peaks: {} = {} TFLOP/s FP32, {} GB/s DRAM, {} GB/s PCIe; {} = {} TFLOP/s FP32 (non-tensor), {} GB/s DRAM, {} GB/s PCIe",
        GTX_1080.name, GTX_1080.fp32_tflops, GTX_1080.dram_gbs, GTX_1080.pcie_gbs,
        H100_SXM.name, H100_SXM.fp32_tflops, H100_SXM.dram_gbs, H100_SXM.pcie_gbs
    );
    let _ = writeln!(
        s,
        "{:>3} {:<30} {:>18} {:>10} {:>10} {:>6} {:>9} {:>8} {:>10} {:>10}{}",
        "#",
        "kernel",
        "grid x block",
        "useful GF",
        "exec GF",
        "waste",
        "MB",
        "flop/B",
        "1080 ms",
        "H100 ms",
        if measured_ms.is_some() {
            "  measured ms"
        } else {
            ""
        }
    );
    for (i, e) in events.iter().enumerate() {
        let c = e.cost.unwrap_or_default();
        let grid = match e.kind {
            EventKind::Launch { config, .. } => format!(
                "{}x{}x{} x {}",
                config.grid.0,
                config.grid.1,
                config.grid.2,
                config.threads_per_block()
            ),
            _ => String::new(),
        };
        let waste = if c.executed_flops > 0.0 {
            format!("{:.1}%", 100.0 * (1.0 - c.useful_flops / c.executed_flops))
        } else {
            String::new()
        };
        let intensity = if c.bytes > 0.0 {
            c.executed_flops / c.bytes
        } else {
            0.0
        };
        let label = if e.cost.is_none() {
            format!("{} (NO COST STATED)", e.label())
        } else {
            e.label()
        };
        let _ = write!(
            s,
            "{:>3} {:<30} {:>18} {:>10.2} {:>10.2} {:>6} {:>9.1} {:>8.1} {:>10.3} {:>10.3}",
            i + 1,
            label,
            grid,
            c.useful_flops / 1e9,
            c.executed_flops / 1e9,
            waste,
            c.bytes / 1e6,
            intensity,
            1e3 * e.seconds(&GTX_1080),
            1e3 * e.seconds(&H100_SXM),
        );
        if let Some(m) = measured_ms {
            let _ = write!(s, "  {:>11.3}", m.get(i).copied().unwrap_or(f64::NAN));
        }
        s.push('\n');
    }
    let t = Totals::of(events);
    let _ = writeln!(
        s,
        "total: {} launches{}; useful {:.3} TFLOP, executed {:.3} TFLOP; GEMM waste {:.2} % of GEMM FLOPs executed; DRAM traffic {:.2} GB (kernels and memsets); host<->device {:.1} MB",
        t.launches,
        if t.uncosted > 0 { format!(" ({} WITHOUT a stated cost)", t.uncosted) } else { String::new() },
        t.useful_flops / 1e12,
        t.executed_flops / 1e12,
        100.0 * t.gemm_waste(),
        t.bytes / 1e9,
        t.copy_bytes / 1e6
    );
    for card in CARDS {
        let (device, copies) = step_seconds(events, &card);
        let _ = writeln!(
            s,
            "roofline step time on {}: {:.1} ms of device work + {:.1} ms of copies ({:.1} ms if they do not overlap)",
            card.name,
            1e3 * device,
            1e3 * copies,
            1e3 * (device + copies)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roofline_takes_the_slower_ceiling() {
        let e = Event {
            kind: EventKind::Memset,
            cost: Some(Cost {
                useful_flops: 0.0,
                executed_flops: 8.87e12,
                bytes: 640e9,
                gemm: false,
            }),
        };
        // 1 s of FLOPs, 2 s of bytes on the GTX 1080.
        assert!((e.seconds(&GTX_1080) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn gemm_cost_counts_the_tile_padding() {
        // 32 × 128 output on a 64 × 128 tile: half the executed FLOPs are padding.
        let cfg = LaunchConfig::linear(1, 128);
        let c = Cost::gemm(&cfg, 64, 128, 2, 8, (32, 128, 16), 0);
        assert_eq!(c.useful_flops * 2.0, c.executed_flops);
        let t = Totals::of(&[Event {
            kind: EventKind::Memset,
            cost: Some(c),
        }]);
        assert!((t.gemm_waste() - 0.5).abs() < 1e-12);
    }
}
