//! Peak FP32 throughput and memory bandwidth of the GPUs we expect, for the benchmarks' "fraction of
//! peak" column.
//!
//! Figures are the vendor's datasheet numbers at boost clock: FP32 on the CUDA cores (no tensor cores,
//! no TF32), DRAM bandwidth. They are upper bounds: sustained clocks under load are often lower, so a
//! kernel at 80 % of these is doing very well. For a GPU not in the table, [`peak_for`] estimates both
//! from the device's attributes (SM count × FP32 lanes per SM × 2 × boost clock; 2 × memory clock ×
//! bus width), and says so.

use super::GpuInfo;

/// One GPU model's peaks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuPeak {
    /// Name as the table knows it.
    pub model: &'static str,
    /// Peak FP32 (non-tensor) throughput, TFLOP/s.
    pub fp32_tflops: f64,
    /// Peak DRAM bandwidth, GB/s (10⁹ bytes per second).
    pub bandwidth_gbs: f64,
    /// `false` when estimated from device attributes rather than taken from the table.
    pub from_table: bool,
}

impl GpuPeak {
    /// `gflops` as a fraction of this GPU's FP32 peak.
    pub fn fraction_of_fp32(&self, gflops: f64) -> f64 {
        gflops / (self.fp32_tflops * 1e3)
    }
    /// `gbs` (GB/s) as a fraction of this GPU's DRAM bandwidth.
    pub fn fraction_of_bandwidth(&self, gbs: f64) -> f64 {
        gbs / self.bandwidth_gbs
    }
}

/// (substrings that all must occur in the driver's device name, model, TFLOP/s, GB/s). More specific
/// names come first: the first match wins.
const TABLE: &[(&[&str], &str, f64, f64)] = &[
    // Pascal (the paper's GPU is a GTX 1080: 2560 cores × 1733 MHz × 2).
    (&["GTX 1080 Ti"], "GeForce GTX 1080 Ti", 11.34, 484.0),
    (&["GTX 1080"], "GeForce GTX 1080", 8.87, 320.0),
    (&["GTX 1070"], "GeForce GTX 1070", 6.46, 256.0),
    (&["P100", "SXM2"], "Tesla P100 SXM2", 10.6, 732.0),
    (&["P100"], "Tesla P100 PCIe", 9.3, 732.0),
    // Volta / Turing.
    (&["V100", "SXM2"], "Tesla V100 SXM2", 15.7, 900.0),
    (&["V100"], "Tesla V100 PCIe", 14.0, 900.0),
    (&["Tesla T4"], "Tesla T4", 8.1, 320.0),
    // Ampere.
    (&["A100", "40GB"], "A100 40GB", 19.5, 1555.0),
    (&["A100", "PCIe"], "A100 80GB PCIe", 19.5, 1935.0),
    (&["A100"], "A100 80GB SXM", 19.5, 2039.0),
    (&["A10G"], "A10G", 31.2, 600.0),
    (&["A10"], "A10", 31.2, 600.0),
    (&["RTX 3090"], "GeForce RTX 3090", 35.6, 936.0),
    (&["RTX A6000"], "RTX A6000", 38.7, 768.0),
    // Ada.
    (&["L40S"], "L40S", 91.6, 864.0),
    (&["L40"], "L40", 90.5, 864.0),
    (&["L4"], "L4", 30.3, 300.0),
    (&["RTX 4090"], "GeForce RTX 4090", 82.6, 1008.0),
    (&["RTX 6000 Ada"], "RTX 6000 Ada", 91.1, 960.0),
    // Hopper.
    (&["H100", "PCIe"], "H100 PCIe", 51.2, 2000.0),
    (&["H100", "NVL"], "H100 NVL", 60.0, 3900.0),
    (&["H100"], "H100 SXM", 66.9, 3350.0),
    (&["GH200"], "GH200", 66.9, 4000.0), // before H200: "GH200" contains "H200"
    (&["H200", "NVL"], "H200 NVL", 60.0, 4800.0),
    (&["H200"], "H200 SXM", 66.9, 4800.0),
];

/// The table's entry for a device name as the driver reports it (e.g. "NVIDIA H100 80GB HBM3").
pub fn lookup(device_name: &str) -> Option<GpuPeak> {
    TABLE
        .iter()
        .find(|(keys, ..)| keys.iter().all(|k| device_name.contains(k)))
        .map(|&(_, model, fp32_tflops, bandwidth_gbs)| GpuPeak {
            model,
            fp32_tflops,
            bandwidth_gbs,
            from_table: true,
        })
}

/// FP32 lanes (CUDA cores) per SM for compute capability `cc` (10 × major + minor).
pub fn fp32_lanes_per_sm(cc: u32) -> u32 {
    match cc {
        60 | 70 | 72 | 75 | 80 => 64,
        _ => 128, // 5.x, 6.1/6.2, 8.6-8.9, 9.0, 10.x, 12.x
    }
}

/// Peaks from the device's own figures: `clock_khz` is the SM boost clock, `mem_clock_khz` the memory
/// clock and `bus_bits` the memory bus width, as the driver reports them.
pub fn estimate(info: &GpuInfo, clock_khz: u32, mem_clock_khz: u32, bus_bits: u32) -> GpuPeak {
    let lanes = fp32_lanes_per_sm(info.compute_capability) as f64;
    GpuPeak {
        model: "estimated from device attributes",
        fp32_tflops: info.multiprocessors as f64 * lanes * 2.0 * clock_khz as f64 * 1e3 / 1e12,
        // Double data rate: two transfers per memory clock.
        bandwidth_gbs: 2.0 * mem_clock_khz as f64 * 1e3 * bus_bits as f64 / 8.0 / 1e9,
        from_table: false,
    }
}

/// The peaks of the GPU a [`super::CudaDevice`] runs on: the table, else an estimate.
pub fn peak_for(device: &super::CudaDevice) -> crate::Result<GpuPeak> {
    if let Some(p) = lookup(&device.info().name) {
        return Ok(p);
    }
    use cudarc::driver::sys::CUdevice_attribute as A;
    let ctx = device.context();
    let attr = |a: A| {
        ctx.attribute(a)
            .map(|v| v.max(0) as u32)
            .map_err(|e| crate::Error::Device(format!("reading a device attribute: {e}")))
    };
    Ok(estimate(
        device.info(),
        attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?,
        attr(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?,
        attr(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_find_the_right_model() {
        // Names as the driver reports them; the more specific entry must win over the generic one.
        let cases = [
            ("NVIDIA GeForce GTX 1080", "GeForce GTX 1080"),
            ("NVIDIA GeForce GTX 1080 Ti", "GeForce GTX 1080 Ti"),
            ("NVIDIA H100 80GB HBM3", "H100 SXM"),
            ("NVIDIA H100 PCIe", "H100 PCIe"),
            ("NVIDIA H100 NVL", "H100 NVL"),
            ("NVIDIA H200", "H200 SXM"),
            ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
            ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM"),
            ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"),
            ("NVIDIA L4", "L4"),
            ("NVIDIA L40S", "L40S"),
            ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
            ("NVIDIA A10G", "A10G"),
            ("NVIDIA L40", "L40"),
            ("NVIDIA GH200 480GB", "GH200"),
        ];
        for (name, model) in cases {
            assert_eq!(lookup(name).map(|p| p.model), Some(model), "{name}");
        }
        assert_eq!(lookup("NVIDIA GeForce RTX 2060"), None);
    }

    #[test]
    fn estimate_reproduces_datasheet_peaks() {
        // GTX 1080: 20 SMs of 128 lanes at 1733 MHz; GDDR5X at 5005 MHz (as the driver reports it) on
        // a 256-bit bus. H100 SXM: 132 SMs at 1980 MHz; HBM3 2619 MHz on 5120 bits.
        let gtx = GpuInfo {
            ordinal: 0,
            name: "GTX 1080".into(),
            compute_capability: 61,
            multiprocessors: 20,
            total_memory_bytes: 8 << 30,
            l2_cache_bytes: 2 << 20,
            max_shared_per_block_optin: 48 << 10,
        };
        let p = estimate(&gtx, 1_733_000, 5_005_000, 256);
        let table = lookup("NVIDIA GeForce GTX 1080").unwrap();
        assert!((p.fp32_tflops - table.fp32_tflops).abs() < 0.01, "{p:?}");
        assert!((p.bandwidth_gbs - table.bandwidth_gbs).abs() < 1.0, "{p:?}");

        let h100 = GpuInfo {
            compute_capability: 90,
            multiprocessors: 132,
            ..gtx
        };
        let p = estimate(&h100, 1_980_000, 2_619_000, 5120);
        let table = lookup("NVIDIA H100 80GB HBM3").unwrap();
        assert!((p.fp32_tflops - table.fp32_tflops).abs() < 0.1, "{p:?}");
        assert!((p.bandwidth_gbs - table.bandwidth_gbs).abs() < 5.0, "{p:?}");
        assert!(!p.from_table && table.from_table);
        assert!((table.fraction_of_fp32(33_450.0) - 0.5).abs() < 1e-3);
    }
}
