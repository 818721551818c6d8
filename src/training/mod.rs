//! Training: the configuration ([`config`]) and command line ([`args`]), device choice and memory
//! check ([`device`]), the training loop of one split ([`trainer`]), whole runs, folds and sweeps
//! ([`run`]), checkpoints ([`checkpoint`]), the run directory ([`run_dir`]) and the report
//! ([`report`], [`plots`]). What is measured on a network's predictions is in
//! [`crate::evaluation`]; using a trained model is the `inference` module.

pub mod args;
pub mod checkpoint;
pub mod config;
pub mod device;
mod folds;
pub mod plots;
pub mod prepare;
pub mod report;
pub mod run;
pub mod run_dir;
pub mod sweep;
pub mod trainer;

pub use config::{DeviceChoice, ProtocolChoice, TrainConfig};
