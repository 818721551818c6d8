//! The utterance vector and the prosody branch, from the audio to the fitted classifier:
//!
//! 1. [`pitch`]: F0, voicing and energy per frame (YIN);
//! 2. [`basic`] (29 prosody and voice-quality statistics) and [`functionals`] (statistics of ~60
//!    frame-level descriptors and their deltas), both built on the contour statistics of [`stats`];
//! 3. [`vector`]: which set, with which pitch settings ([`ProsodyConfig`]), and the vector of one
//!    utterance;
//! 4. [`store`]: the vectors of a corpus, computed once per run and cached on disk, and their
//!    z-normalisation ([`ProsodyNorm`]);
//! 5. [`linear`]: a class-balanced multinomial logistic regression;
//! 6. [`branch`]: that regression fitted on a fold's training utterances, and its late fusion with
//!    the network's probabilities.
//!
//! It reads audio, features (STFT, mel bands) and data (the corpus, the cache options); training,
//! inference and the command line use it. Each file imports only files listed before it.

pub mod basic;
pub mod branch;
pub mod functionals;
pub mod linear;
pub mod pitch;
pub mod stats;
pub mod store;
pub mod vector;

pub use store::{ProsodyNorm, ProsodyStore};
pub use vector::{ProsodyConfig, ProsodySet};
