//! One wrapper module per `kernels/*.cu` file: each owns its kernels' names, argument order and launch
//! configuration, and hands (kernel, configuration, arguments) to a [`Device`](super::device::Device).

pub mod conv2d;
pub mod dense;
pub mod gemm;
