//! rescnn: speech emotion recognition with the multi-level residual CNN of Zheng et al., trained on
//! handwritten CUDA kernels, a CPU reference, or an emulated device that runs the same kernels on the CPU.
//!
//! The modules follow the data: audio → features → data → prosody → backends → model → evaluation
//! → training → inference → export → timeline (→ the command line, [`cli`]). Each imports only from
//! the modules before it (the backends run ops; the model is a network of them).

pub mod audio;
pub mod backends;
pub mod cli;
pub mod data;
pub mod error;
pub mod evaluation;
pub mod export;
pub mod features;
pub mod fsutil;
pub mod inference;
pub mod model;
pub mod prosody;
pub mod tensor;
pub mod timeline;
pub mod training;

pub use error::{Error, Result};
pub use tensor::{Real, Shape, Tensor};
