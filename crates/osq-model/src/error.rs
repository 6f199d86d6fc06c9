//! Error type of the crate.
//!
//! Every error that comes from user input (files, JSON fields, tensors, token ids) names the
//! file and the field or tensor involved, so a user can fix a checkpoint without a debugger.

use std::path::PathBuf;

/// Errors of `osq-model`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed at all.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A configuration field is missing or has an invalid value.
    #[error("{path}: field `{field}`: {msg}")]
    Config {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// The safetensors container itself is malformed.
    #[error("{path}: invalid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    /// A required tensor is absent (all accepted spellings are listed).
    #[error("{path}: tensor `{tensor}` not found (tried: {tried})")]
    MissingTensor {
        path: PathBuf,
        tensor: String,
        tried: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{tensor}`: expected shape {expected:?}, found {actual:?}")]
    Shape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A tensor has a dtype we do not convert.
    #[error(
        "{path}: tensor `{tensor}`: unsupported dtype {dtype} (expected F32, F16, BF16 or F64)"
    )]
    Dtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// Loading or running the tokenizer failed.
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    /// Invalid runtime input (batch shape, token id out of range, missing head, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// A file does not match what the directory recorded for it (digest, cross-check).
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// A file's SHA-256 differs from the one its directory recorded.
    #[error("{path}: {msg}")]
    Digest { path: PathBuf, msg: String },
    /// A text input file is unusable (encoding, no text).
    #[error("{name}: {msg}")]
    Text { name: String, msg: String },
    /// An input text has more tokens than the model's maximum length (truncation off).
    #[error(
        "input {index}: {tokens} tokens, more than the maximum length {max} (truncate it, or allow truncation)"
    )]
    TooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
