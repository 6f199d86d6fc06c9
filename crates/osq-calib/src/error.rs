//! Error type of the calibration crate.

use std::path::PathBuf;

/// Errors of `osq-calib`. Everything that comes from user input names the file or the option.
#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    /// Reading or writing a file failed. The I/O error is part of the message, not a `source`
    /// (otherwise `anyhow`'s `{:#}` prints it twice).
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// The calibration data file is unusable (not UTF-8, empty, ...).
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    /// An option has an invalid value.
    #[error("invalid option {option}: {msg}")]
    Option { option: String, msg: String },
    /// Error from the model crate (config, weights, tokenizer, quantized graph).
    #[error(transparent)]
    Model(#[from] osq_model::ModelError),
    /// Internal failure of a calibration step (non-finite values, empty observations, ...).
    #[error("calibration failed: {0}")]
    Failed(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, CalibError>;

impl CalibError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CalibError::Io {
            path: path.into(),
            err: source,
        }
    }
}
