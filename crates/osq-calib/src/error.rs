//! Error type of the calibration crate.

use std::path::PathBuf;

/// Errors of `osq-calib`. Everything that comes from user input names the file or the option.
#[derive(Debug, thiserror::Error)]
pub enum CalibError {
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
