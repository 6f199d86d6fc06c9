//! The facade's one error type. Front ends map it by [`Error::kind`]: the CLI to exit status 2,
//! the server to an HTTP status, Python to `ValueError` / `OSError`.

use std::path::PathBuf;

/// What went wrong, for callers that react differently (see [`Error::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read or written.
    Io,
    /// The caller's input is unusable: texts, options, a corrupt or foreign file.
    InvalidInput,
    /// An input text is longer than the model's maximum length and truncation is off.
    TooLong,
}

/// Errors of the `osq` library. The message names the file, field, tensor or input involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading, validating or running the model.
    #[error(transparent)]
    Model(#[from] osq_model::ModelError),
    /// Calibration.
    #[error(transparent)]
    Calib(#[from] osq_calib::CalibError),
    /// An invalid argument of a facade call.
    #[error("{0}")]
    Input(String),
    /// Writing a report or output file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result alias of the library.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The class of the error.
    ///
    /// ```
    /// use osq::{Error, ErrorKind};
    /// assert_eq!(Error::Input("bad".into()).kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        use osq_model::ModelError as M;
        match self {
            Error::Io { .. } | Error::Model(M::Io { .. }) => ErrorKind::Io,
            Error::Calib(osq_calib::CalibError::Model(M::Io { .. })) => ErrorKind::Io,
            Error::Model(M::TooLong { .. }) => ErrorKind::TooLong,
            _ => ErrorKind::InvalidInput,
        }
    }
}

/// `e` and its causes joined by `: `, skipping a cause whose text the message before it already
/// ends with (errors that print their source inline would otherwise repeat it): the one-line
/// message every osq command prints.
///
/// ```
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
/// let e = osq::Error::Io { path: "x.txt".into(), source: io };
/// assert_eq!(osq::error_message(&e), "x.txt: gone");
/// ```
pub fn error_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}
