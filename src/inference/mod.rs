//! A trained model put to use: loaded from its run folder with everything its training fitted
//! ([`model_dir`]), an ensemble fold's members averaged ([`ensemble`]), and speakers enrolled with
//! a few of their utterances ([`enrollment`]).

pub mod enrollment;
pub mod ensemble;
pub mod model_dir;
