//! Training and evaluation: metrics, reports and plots, checkpoints, the training loop.

pub mod metrics;
pub mod plots;
