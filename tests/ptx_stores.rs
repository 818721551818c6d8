//! The GEMM epilogues store through st.global.v4.f32 in the PTX NVRTC made at build time, on every
//! architecture: a source that asks for float4 stores does not guarantee them (conv2d_forward once
//! compiled to 384 scalar st.global.f32 and no vector store, its vector path merged into the scalar
//! fallback), so a regression must show here rather than as lost bandwidth on a GPU.

use rescnn::backends::cuda::embedded::KERNELS;

/// Every tiled-GEMM kernel whose epilogue writes float4 groups of an output tensor.
const VECTOR_EPILOGUES: [(&str, &str); 14] = [
    ("conv2d", "conv2d_forward"),
    ("conv2d", "conv2d_forward_m32"),
    ("conv2d", "conv2d_backward_data"),
    ("conv2d", "conv2d_backward_data_m32"),
    ("conv2d", "conv2d_backward_data_strided"),
    ("conv2d", "conv2d_backward_data_strided_m32"),
    ("conv2d", "conv2d_backward_filter"),
    ("conv2d", "conv2d_backward_filter_m32"),
    ("dense", "dense_forward"),
    ("dense", "dense_forward_m32"),
    ("dense", "dense_backward_data"),
    ("dense", "dense_backward_data_m32"),
    ("dense", "dense_backward_filter"),
    ("dense", "dense_backward_filter_m32"),
];

/// The body of `.entry name(` in a PTX text, up to the closing brace at the start of a line.
fn entry_body<'a>(ptx: &'a str, name: &str) -> Option<&'a str> {
    let start = ptx.find(&format!(".entry {name}("))?;
    let rest = &ptx[start..];
    let end = rest.find("\n}\n").map_or(rest.len(), |e| e + 3);
    Some(&rest[..end])
}

#[test]
fn gemm_epilogues_compile_to_vector_stores() {
    if !KERNELS.compiled() {
        // Without NVRTC at build time there is no PTX to read (CI builds with RESCNN_REQUIRE_NVRTC=1,
        // where a missing NVRTC fails the build instead).
        assert!(
            std::env::var_os("RESCNN_REQUIRE_NVRTC").is_none(),
            "RESCNN_REQUIRE_NVRTC is set but the kernels were built without NVRTC"
        );
        eprintln!("kernels built without NVRTC: no PTX to check");
        return;
    }
    let mut checked = 0;
    for (module, name) in VECTOR_EPILOGUES {
        let m = KERNELS
            .module(module)
            .unwrap_or_else(|| panic!("no module {module}"));
        assert!(!m.ptx.is_empty(), "{module}: no PTX embedded");
        for p in m.ptx {
            let body = entry_body(p.text, name)
                .unwrap_or_else(|| panic!("{name}: no entry in the compute_{} PTX", p.arch));
            let vector = body.matches("st.global.v4.f32").count();
            let scalar = body.matches("st.global.f32").count();
            assert!(
                vector > 0,
                "{name} (compute_{}): {scalar} st.global.f32 and no st.global.v4.f32",
                p.arch
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        VECTOR_EPILOGUES.len() * 3,
        "three architectures each"
    );
}
