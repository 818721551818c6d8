//! One error type for the library. Every message names what was wrong (the file, option, shape or
//! token) and, where there is one, what was expected.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// Tensor shapes or op geometry that cannot work together.
    Shape(String),
    /// An invalid setting: a CLI option, a config value, an architecture spec.
    Config(String),
    /// A file that could not be read or written, with the path.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Input data that is malformed (a WAV, a manifest, a checkpoint).
    Data {
        path: Option<PathBuf>,
        message: String,
    },
    /// A compute device failed or is unavailable (CUDA, NVRTC, the emulator).
    Device(String),
    /// Training diverged at `step`: `what` is the non-finite or exploding loss, or the first
    /// non-finite tensor; `hint` says what to change.
    Diverged {
        step: u64,
        what: String,
        hint: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: Some(path.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Config(m) => write!(f, "{m}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Data {
                path: Some(p),
                message,
            } => write!(f, "{}: {message}", p.display()),
            Error::Data {
                path: None,
                message,
            } => write!(f, "{message}"),
            Error::Device(m) => write!(f, "device error: {m}"),
            Error::Diverged { step, what, hint } => {
                write!(f, "diverged at step {step} ({what}): {hint}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Build an [`Error::Shape`] with `format!` syntax.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::Error::Shape(format!($($arg)*)) };
}

/// Build an [`Error::Config`] with `format!` syntax.
#[macro_export]
macro_rules! config_err {
    ($($arg:tt)*) => { $crate::error::Error::Config(format!($($arg)*)) };
}
