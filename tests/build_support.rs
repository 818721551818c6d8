//! The pure text parsers of the build script, fed with output recorded from the real NVRTC 12.9
//! (the wheel nvidia-cuda-nvrtc-cu12==12.9.86): the assembler's verbose log and PTX signatures.

#[path = "../build/ptx_signature.rs"]
mod ptx_signature;
#[path = "../build/ptxas_log.rs"]
mod ptxas_log;

/// `--gpu-architecture=sm_61 --ptxas-options=-v --maxrregcount=24` on a kernel `heavy` that needs far
/// more registers, a trivial kernel `light`, and a non-inlined device function `helper`.
const SPILLING_LOG_SM61: &str = "\
nvrtc: warning: Architectures prior to '<compute/sm>_75' are deprecated and may be removed in a future release
ptxas info    : Overriding maximum register limit 256 for 'light' with  24 of maxrregcount option
ptxas info    : Overriding maximum register limit 256 for 'heavy' with  24 of maxrregcount option
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'light' for 'sm_61'
ptxas info    : Function properties for light
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 4 registers, used 0 barriers, 328 bytes cmem[0]
ptxas info    : Compile time = 1.798 ms
ptxas info    : Compiling entry function 'heavy' for 'sm_61'
ptxas info    : Function properties for heavy
ptxas         .     7072 bytes stack frame, 9276 bytes spill stores, 10592 bytes spill loads
ptxas info    : Used 24 registers, used 0 barriers, 7072 bytes cumulative stack size, 340 bytes cmem[0]
ptxas info    : Compile time = 760.355 ms
ptxas info    : Function properties for _Z6helperPKfi
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
";

/// `--gpu-architecture=sm_90 --ptxas-options=-v` on a tiled GEMM with 2 KiB of static shared memory
/// (sm_90's log omits cmem).
const GEMM_LOG_SM90: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'tiled_gemm' for 'sm_90'
ptxas info    : Function properties for tiled_gemm
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 2048 bytes smem
ptxas info    : Compile time = 12.512 ms
";

#[test]
fn assembler_log_gives_registers_shared_memory_and_spills_per_entry() {
    let r = ptxas_log::parse(SPILLING_LOG_SM61).unwrap();
    assert_eq!(
        r.len(),
        2,
        "two entry points, the device function is not one: {r:?}"
    );
    let light = &r[0];
    assert_eq!(
        (
            light.entry.as_str(),
            light.registers,
            light.const_bytes,
            light.spills()
        ),
        ("light", 4, 328, false)
    );
    let heavy = &r[1];
    assert_eq!(heavy.entry, "heavy");
    assert_eq!(heavy.registers, 24);
    assert_eq!(heavy.const_bytes, 340);
    assert_eq!(
        (
            heavy.stack_frame_bytes,
            heavy.spill_store_bytes,
            heavy.spill_load_bytes
        ),
        (7072, 9276, 10592)
    );
    assert!(heavy.spills());

    let g = ptxas_log::parse(GEMM_LOG_SM90).unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(
        (
            g[0].registers,
            g[0].barriers,
            g[0].shared_bytes,
            g[0].const_bytes
        ),
        (32, 1, 2048, 0)
    );
}

#[test]
fn assembler_log_without_a_usage_line_is_an_error() {
    let truncated: String = GEMM_LOG_SM90
        .lines()
        .filter(|l| !l.contains("Used"))
        .map(|l| format!("{l}\n"))
        .collect();
    let err = ptxas_log::parse(&truncated).unwrap_err();
    assert!(err.contains("tiled_gemm"), "{err}");
}

#[test]
fn a_spilling_gemm_kernel_fails_the_build_and_other_spills_do_not() {
    // `heavy` spills in the recorded log; declared as a GEMM kernel it is an error naming it and the
    // architecture, declared without the GEMM launch bounds it is not.
    let r = ptxas_log::parse(SPILLING_LOG_SM61).unwrap();
    let gemm = "extern \"C\" __global__ void light(float* p) {}\n\
                extern \"C\" __global__ __launch_bounds__(gemm::THREADS, gemm::MIN_BLOCKS) void heavy(float* p) {}";
    let errors = ptxas_log::gemm_spill_errors("kernels/x.cu", gemm, "sm_61", &r);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("heavy")
            && errors[0].contains("sm_61")
            && errors[0].contains("kernels/x.cu"),
        "{}",
        errors[0]
    );
    let plain = "extern \"C\" __global__ void light(float* p) {}\n\
                 extern \"C\" __global__ __launch_bounds__(256) void heavy(float* p) {}";
    assert!(ptxas_log::gemm_spill_errors("kernels/x.cu", plain, "sm_61", &r).is_empty());
    // The real sources: every GEMM entry point is recognised, the element-wise ones are not.
    let conv = std::fs::read_to_string("kernels/conv2d.cu").unwrap();
    for name in [
        "conv2d_forward",
        "conv2d_forward_m32",
        "conv2d_backward_data_m32",
        "conv2d_backward_filter",
    ] {
        assert!(ptxas_log::is_gemm_entry(&conv, name), "{name}");
    }
    assert!(!ptxas_log::is_gemm_entry(&conv, "conv2d_sum_partials"));
    let dense = std::fs::read_to_string("kernels/dense.cu").unwrap();
    assert!(ptxas_log::is_gemm_entry(
        &dense,
        "dense_backward_filter_m32"
    ));
    assert!(!ptxas_log::is_gemm_entry(&dense, "dense_bias_grad"));
}

/// PTX signatures as NVRTC 12.9 writes them (compute_61): pointers, a 12-byte struct by value, ints.
const PTX: &str = "
.visible .entry scale_add(
	.param .u64 scale_add_param_0,
	.param .u64 scale_add_param_1,
	.param .align 4 .b8 scale_add_param_2[12]
)
{
	ld.param.u64 	%rd1, [scale_add_param_0];
}
.visible .entry scale_add_twice(
	.param .u64 .ptr .global .align 4 scale_add_twice_param_0,
	.param .f32 scale_add_twice_param_1,
	.param .u8 scale_add_twice_param_2
)
{
}
.visible .entry no_params()
{
}
";

#[test]
fn ptx_signature_gives_each_parameter_size() {
    assert_eq!(
        ptx_signature::param_sizes(PTX, "scale_add").unwrap(),
        vec![8, 8, 12]
    );
    // `scale_add` must not be confused with `scale_add_twice`.
    assert_eq!(
        ptx_signature::param_sizes(PTX, "scale_add_twice").unwrap(),
        vec![8, 4, 1]
    );
    assert_eq!(
        ptx_signature::param_sizes(PTX, "no_params").unwrap(),
        Vec::<u32>::new()
    );
    assert!(ptx_signature::param_sizes(PTX, "missing")
        .unwrap_err()
        .contains("missing"));
    assert!(ptx_signature::param_sizes(".entry bad(\n\t.param .weird x\n)", "bad").is_err());
}
