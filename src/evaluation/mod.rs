//! A trained network's predictions and what is measured on them, shared by the trainer (validation
//! and test evaluation) and by inference (`rescnn predict`, `eval`): class probabilities
//! ([`predict`]), evaluated whole, over crops or on the first frames as the configuration says
//! ([`eval_mode`]), averaged over ensemble members ([`ensemble`]), scored ([`metrics`]); and
//! `model.json`, what a prediction needs besides the network's weights ([`model_file`]), with the
//! prior a new speaker's few-utterance statistics are shrunk toward ([`speaker_prior`]).

pub mod ensemble;
pub mod eval_mode;
pub mod metrics;
pub mod model_file;
pub mod predict;
pub mod speaker_prior;
