//! GPU timing for the benchmarks: CUDA events around the work on the device's stream, after warm-up
//! runs, with the L2 cache flushed before every timed run, reported as the median of the repeats.
//!
//! ```no_run
//! use rescnn::backends::cuda::{timing::{GpuTimer, TimingConfig}, CudaDevice, peak};
//! # fn main() -> rescnn::Result<()> {
//! let dev = CudaDevice::new(0)?;
//! let mut timer = GpuTimer::new(&dev)?;
//! let t = timer.time(&TimingConfig::default(), || {
//!     // queue the kernel(s) to measure on `dev` here (a kernel wrapper call); nothing else
//!     Ok(())
//! })?;
//! let flops = 2.0 * 4096f64.powi(3);
//! let peak = peak::peak_for(&dev)?;
//! println!("{:.3} ms, {:.0} GFLOP/s, {:.0} % of FP32 peak", t.median_ms, t.gflops(flops),
//!          100.0 * peak.fraction_of_fp32(t.gflops(flops)));
//! # Ok(()) }
//! ```
//!
//! Why each step:
//! - **events, not host clocks**: they time the GPU work itself, without launch latency or the host
//!   thread's scheduling;
//! - **warm-up**: the first launches pay for module JIT, clock ramp-up and allocator growth;
//! - **L2 flush**: a benchmark that reruns the same kernel on the same buffers finds its inputs in L2
//!   (50 MB on an H100) and reports bandwidth no real training step sees; writing a buffer twice the
//!   size of L2 between runs evicts them. The flush is queued before the start event, so it is not
//!   timed;
//! - **median**: robust to the odd run disturbed by another process or a clock change; min and max are
//!   kept to show the spread.

use cudarc::driver::{sys, CudaEvent, CudaSlice, DevicePtrMut as _};

use rescnn::backends::cuda::CudaDevice;
use rescnn::{Error, Result};

/// How to time.
#[derive(Clone, Copy, Debug)]
pub struct TimingConfig {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs (≥ 1).
    pub repeats: usize,
    /// Evict L2 before each timed run.
    pub flush_l2: bool,
}

impl Default for TimingConfig {
    fn default() -> Self {
        TimingConfig {
            warmup: 3,
            repeats: 20,
            flush_l2: true,
        }
    }
}

/// The result of timing one piece of GPU work.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Every timed run, in milliseconds, ascending.
    pub samples_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Timing {
    /// From raw samples (any order). Errors on an empty set.
    pub fn from_samples(mut samples_ms: Vec<f64>) -> Result<Self> {
        if samples_ms.is_empty() {
            return Err(Error::Config("timing needs at least one repeat".into()));
        }
        samples_ms.sort_by(f64::total_cmp);
        let n = samples_ms.len();
        let median_ms = if n % 2 == 1 {
            samples_ms[n / 2]
        } else {
            0.5 * (samples_ms[n / 2 - 1] + samples_ms[n / 2])
        };
        Ok(Timing {
            median_ms,
            min_ms: samples_ms[0],
            max_ms: samples_ms[n - 1],
            samples_ms,
        })
    }
    /// Throughput in GFLOP/s for work of `flops` floating-point operations, at the median time.
    pub fn gflops(&self, flops: f64) -> f64 {
        flops / (self.median_ms * 1e-3) / 1e9
    }
    /// Bandwidth in GB/s for work that moves `bytes` bytes, at the median time.
    pub fn gbs(&self, bytes: f64) -> f64 {
        bytes / (self.median_ms * 1e-3) / 1e9
    }
}

/// Events and the L2-flush buffer of one device; reuse it across measurements.
pub struct GpuTimer<'d> {
    device: &'d CudaDevice,
    start: CudaEvent,
    stop: CudaEvent,
    /// Twice the L2 size, allocated on first use.
    flush: Option<CudaSlice<u8>>,
}

fn err(what: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> Error {
    move |e| Error::Device(format!("{what}: {e}"))
}

impl<'d> GpuTimer<'d> {
    pub fn new(device: &'d CudaDevice) -> Result<Self> {
        let ctx = device.context();
        // CU_EVENT_DEFAULT: timing enabled (cudarc's default, `None`, disables it).
        let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        Ok(GpuTimer {
            device,
            start: ctx.new_event(flags).map_err(err("creating a CUDA event"))?,
            stop: ctx.new_event(flags).map_err(err("creating a CUDA event"))?,
            flush: None,
        })
    }

    /// Queue writes to a buffer of twice the L2 size, evicting whatever L2 held.
    pub fn flush_l2(&mut self) -> Result<()> {
        let stream = self.device.stream();
        if self.flush.is_none() {
            let bytes = (2 * self.device.info().l2_cache_bytes as usize).max(8 << 20);
            // SAFETY: the contents are never read; the memset below writes every byte.
            let buf = unsafe { stream.alloc::<u8>(bytes) }
                .map_err(err("allocating the L2 flush buffer"))?;
            self.flush = Some(buf);
        }
        let buf = self.flush.as_mut().unwrap();
        let bytes = buf.len();
        let (ptr, _guard) = buf.device_ptr_mut(stream);
        // SAFETY: `ptr` addresses `bytes` bytes owned by `buf`, which outlives the queued memset (it is
        // only freed with this timer, and freeing is ordered after queued work on the stream).
        unsafe { cudarc::driver::result::memset_d8_async(ptr, 0xA5, bytes, stream.cu_stream()) }
            .map_err(err("flushing L2"))
    }

    /// Time `op`, which must queue its GPU work on the device's stream (every [`CudaDevice`] operation
    /// does). Runs it `warmup` times untimed, then `repeats` times between events.
    pub fn time(
        &mut self,
        cfg: &TimingConfig,
        mut op: impl FnMut() -> Result<()>,
    ) -> Result<Timing> {
        let stream = self.device.stream().clone();
        for _ in 0..cfg.warmup {
            op()?;
        }
        stream
            .synchronize()
            .map_err(err("GPU work failed during warm-up"))?;
        let mut samples = Vec::with_capacity(cfg.repeats);
        for _ in 0..cfg.repeats {
            if cfg.flush_l2 {
                self.flush_l2()?;
            }
            self.start
                .record(&stream)
                .map_err(err("recording an event"))?;
            op()?;
            self.stop
                .record(&stream)
                .map_err(err("recording an event"))?;
            // elapsed_ms waits for both events.
            let ms = self
                .start
                .elapsed_ms(&self.stop)
                .map_err(err("GPU work failed while timed"))?;
            samples.push(ms as f64);
        }
        Timing::from_samples(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_rates() {
        let t = Timing::from_samples(vec![3.0, 1.0, 100.0, 2.0, 2.5]).unwrap();
        assert_eq!((t.median_ms, t.min_ms, t.max_ms), (2.5, 1.0, 100.0));
        assert_eq!(t.samples_ms, vec![1.0, 2.0, 2.5, 3.0, 100.0]);
        let even = Timing::from_samples(vec![4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(even.median_ms, 2.5);
        // 2.5 GFLOP in 2.5 ms is 1000 GFLOP/s; 1 GB in 2.5 ms is 400 GB/s.
        assert!((t.gflops(2.5e9) - 1000.0).abs() < 1e-9);
        assert!((t.gbs(1e9) - 400.0).abs() < 1e-9);
        assert!(Timing::from_samples(vec![]).is_err());
    }
}
