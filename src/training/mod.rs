//! Training and evaluation: the configuration ([`config`]) and command line ([`args`]), device choice
//! and memory check ([`device`]), the training loop of one split ([`trainer`]), whole runs, folds and
//! sweeps ([`run`]), checkpoints ([`checkpoint`]), metrics ([`metrics`]), the report ([`report`],
//! [`plots`]) and loading a trained model for prediction ([`model_dir`]).

pub mod args;
pub mod checkpoint;
pub mod config;
pub mod crop_eval;
pub mod device;
pub mod enrollment;
pub mod ensemble;
pub mod inference;
pub mod metrics;
pub mod model_dir;
pub mod model_file;
pub mod plots;
pub mod prepare;
pub mod report;
pub mod run;
pub mod run_dir;
pub mod sweep;
pub mod trainer;

pub use config::{DeviceChoice, ProtocolChoice, TrainConfig};
