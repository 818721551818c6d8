//! One folder per op. Each holds the op's `#[repr(C)]` parameter struct (mirrored in
//! `kernels/geometry.cuh`), its contract (a trait, `Conv2dOp`, `DenseOp`, …, whose sum is
//! [`super::Backend`], and the `…Io` structs that name its methods' buffers), its named
//! [`Tolerance`], the CPU reference implementing that trait for [`super::cpu::CpuBackend`]
//! (`cpu.rs`) and the wrapper of `kernels/<op>.cu` implementing it for
//! [`super::kernel_backend::KernelBackend`] (`kernel.rs`), the only code that knows the kernels'
//! names, parameter order and launch configuration.
//!
//! # Adding an op `foo`
//! 1. `kernels/foo.cu`: `#include "common.cuh"` first, a header comment listing the kernels and their
//!    strategy, `extern "C" __global__` entry points with a shape comment on every pointer. The build
//!    registers the entry points with the emulated device by itself and NVRTC compiles the file for
//!    the CUDA device. A by-value parameter struct goes into `kernels/geometry.cuh`.
//! 2. `src/backends/ops/foo/`: `mod.rs`, which declares its `cpu` and `kernel` modules and then,
//!    in the order its module doc lists them, the parameter struct (`#[repr(C)]` + `Pod`), the
//!    contract (any `…Io` structs its methods take, then the trait `FooOp: Buffers`), and an
//!    `op_folder!` naming the kernel file `"foo"` and the tolerance;
//!    `cpu.rs` and `kernel.rs`. A method whose buffers include two of the same type and access
//!    (two `&Buf`, two `&mut Buf`), which a call could swap without a type error, takes its
//!    parameter struct and one `FooForwardIo`-style struct that names every buffer; a method that
//!    reads one buffer and writes another takes them in order. A kernel
//!    wrapper checks every buffer against the geometry with [`kernels::need`], packs
//!    [`KernelArgs`](super::device::KernelArgs) in the kernel's parameter order, computes the launch
//!    configuration and calls [`Device::launch`](super::device::Device::launch) in an `unsafe` block
//!    whose `SAFETY:` comment says why the arguments match.
//! 3. Here: `pub mod foo;`, its trait in the `pub use` list and its module in [`ALL`].
//! 4. In `backends/mod.rs`: `FooOp` in [`super::Backend`]'s supertraits, and the parameter struct
//!    and the `…Io` structs in the `pub use` list (the layout test names the parameter struct from
//!    there).
//! 5. Its test bodies in tests/kernels.rs and tests/gradcheck.rs.
//!
//! The tests below keep this honest: every `kernels/*.cu` is an op folder listed in [`ALL`] and
//! vice versa, and every `#[repr(C)]` struct of the op folders matches its `geometry.cuh` mirror.

use crate::tensor::Shape;
use crate::{shape_err, Result};

/// What every op folder's `mod.rs` declares alike, written once: `KERNEL_MODULE`, the name of the
/// `kernels/*.cu` file it wraps, and its [`Tolerance`]s, each a named constant with its doc, bounds
/// and reason. (The `cpu` and `kernel` modules stay outside it, where `cargo fmt` finds them.)
macro_rules! op_folder {
    (
        kernel_file: $file:literal;
        $(
            $(#[$doc:meta])*
            $tolerance:ident = $name:literal, atol $atol:expr, rtol $rtol:expr,
            because $reason:literal;
        )+
    ) => {
        #[doc = concat!("The kernel file of this op: `kernels/", $file, ".cu`.")]
        pub const KERNEL_MODULE: &str = $file;

        $(
            $(#[$doc])*
            pub const $tolerance: $crate::backends::ops::Tolerance = $crate::backends::ops::Tolerance {
                name: $name,
                atol: $atol,
                rtol: $rtol,
                reason: $reason,
            };
        )+
    };
}

pub mod adamw;
pub mod batchnorm;
pub mod concat;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod maxpool;
pub mod rmsprop;
pub mod shortcut;
pub mod softmax_xent;
pub mod statspool;

pub use adamw::AdamWOp;
pub use batchnorm::BatchNormOp;
pub use concat::ConcatOp;
pub use conv2d::Conv2dOp;
pub use dense::DenseOp;
pub use dropout::DropoutOp;
pub use maxpool::MaxPoolOp;
pub use rmsprop::RmsPropOp;
pub use shortcut::ShortcutOp;
pub use softmax_xent::SoftmaxXentOp;
pub use statspool::StatsPoolOp;

/// The kernel file (`kernels/<name>.cu`) of every op: what a kernel-running device must have loaded
/// to run the network.
pub const ALL: &[&str] = &[
    adamw::KERNEL_MODULE,
    batchnorm::KERNEL_MODULE,
    concat::KERNEL_MODULE,
    conv2d::KERNEL_MODULE,
    dense::KERNEL_MODULE,
    dropout::KERNEL_MODULE,
    maxpool::KERNEL_MODULE,
    rmsprop::KERNEL_MODULE,
    shortcut::KERNEL_MODULE,
    softmax_xent::KERNEL_MODULE,
    statspool::KERNEL_MODULE,
];

/// The tolerance of one op's comparison with the CPU reference, |a − b| ≤ atol + rtol · |ref|.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub name: &'static str,
    pub atol: f64,
    pub rtol: f64,
    /// Why this much difference is legitimate.
    pub reason: &'static str,
}

/// The one validity rule of an op's parameter struct: every one of `sizes` at least 1 and `consistent`
/// true. The fields are public, so a struct not built by its `new` must be refused here, by the CPU
/// reference and the kernel wrapper alike, rather than wrap into an index.
pub(crate) fn check_geometry(
    what: &str,
    g: &impl std::fmt::Debug,
    sizes: &[i32],
    consistent: bool,
) -> Result<()> {
    if sizes.iter().any(|&v| v < 1) || !consistent {
        return Err(shape_err!("invalid {what} {g:?}"));
    }
    Ok(())
}

/// The shape (N, C, H, W) of a parameter struct's 32-bit sizes, which its `validate` has checked.
pub(crate) fn nchw(n: i32, c: i32, h: i32, w: i32) -> Shape {
    Shape::new(n as usize, c as usize, h as usize, w as usize)
}

/// A size as the kernels' 32-bit field, or an error naming it.
pub(crate) fn to_i32(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| shape_err!("{what} = {v} does not fit in 32 bits"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    // Every parameter struct is re-exported at the backends' root, where the generated test names it.
    #[allow(unused_imports)]
    use crate::backends::*;

    // The struct list, field order and C offsets come from kernels/geometry.cuh (build/geometry.rs
    // generates both halves), so a struct is checked as soon as it is in the header.
    include!(concat!(env!("OUT_DIR"), "/geometry_layout.rs"));

    fn manifest() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// The names of the `#[repr(C)]` structs declared in the op folders' sources.
    fn repr_c_structs() -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let ops = manifest().join("src/backends/ops");
        for folder in std::fs::read_dir(&ops).unwrap() {
            let folder = folder.unwrap().path();
            if !folder.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&folder).unwrap() {
                let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
                let mut lines = text.lines().map(str::trim);
                while let Some(line) = lines.next() {
                    if line != "#[repr(C)]" {
                        continue;
                    }
                    let decl = lines
                        .find(|l| l.starts_with("pub struct "))
                        .expect("#[repr(C)] without a struct");
                    let name = decl["pub struct ".len()..]
                        .split([' ', '{'])
                        .next()
                        .unwrap();
                    names.insert(name.to_string());
                }
            }
        }
        names
    }

    #[test]
    fn every_parameter_struct_matches_its_geometry_cuh_mirror() {
        let layouts = geometry_layouts();
        let mirrored: BTreeSet<String> = layouts.iter().map(|(n, _, _)| n.to_string()).collect();
        assert_eq!(
            mirrored.len(),
            layouts.len(),
            "a struct appears twice in geometry.cuh"
        );
        let declared = repr_c_structs();
        assert_eq!(
            mirrored, declared,
            "the structs of kernels/geometry.cuh and the #[repr(C)] structs of src/backends/ops differ"
        );
        for (name, rust, c) in layouts {
            assert_eq!(
                rust.as_slice(),
                c,
                "{name}: [size, field offsets…] in geometry.cuh's field order differ between \
                 the Rust struct and geometry.cuh"
            );
        }
    }

    #[test]
    fn every_kernel_file_has_an_op_folder_and_every_op_folder_a_kernel_file() {
        let stems = |dir: &str, want_dir: bool, ext: Option<&str>| -> BTreeSet<String> {
            std::fs::read_dir(manifest().join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_dir() == want_dir)
                .filter(|p| ext.is_none() || p.extension().and_then(|e| e.to_str()) == ext)
                .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
                .collect()
        };
        let kernel_files = stems("kernels", false, Some("cu"));
        let folders = stems("src/backends/ops", true, None);
        let listed: BTreeSet<String> = super::ALL.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            listed.len(),
            super::ALL.len(),
            "ops::ALL names a module twice"
        );
        assert_eq!(
            kernel_files, folders,
            "kernels/*.cu versus src/backends/ops/*/"
        );
        assert_eq!(listed, folders, "ops::ALL versus src/backends/ops/*/");
    }
}
