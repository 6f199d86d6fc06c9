//! # osq — integer-only inference for Outlier-Suppression-quantized BERT encoders
//!
//! The library every osq front end uses (the `osq` CLI, `osq serve`, the Python wheel, the
//! benches). Load a parameter directory written by `osq calibrate`, embed texts on the integer
//! engine, verify it against the fake-quant simulation, or calibrate a new one.
//!
//! ```
//! # let params_dir = osq_model::testing::doc_params_dir();
//! let model = osq::Model::load(&params_dir)?;
//! let emb = model.embed(&["a gripping film", "dull and overlong"])?;
//! println!("{} × {}", emb.len(), emb.dim());
//! # Ok::<(), osq::Error>(())
//! ```
//!
//! A [`Model`] owns its thread pool ([`ModelOptions::threads`]) and is `Send + Sync`; the
//! integer engine gives the same bits for a text whatever the batch it is in, the thread count
//! or the ISA (`docs/arithmetic.md`).

#![warn(missing_docs)]

mod calibrate;
mod embeddings;
mod error;
mod model;
mod predictions;
#[cfg(feature = "serve")]
pub mod serve;
mod verify;

pub use calibrate::{calibrate, Bits, CalibOptions, Calibration, Loss, Method};
pub use embeddings::Embeddings;
pub use error::{error_message, Error, ErrorKind, Result};
pub use model::{EmbedOptions, Model, ModelInfo, ModelOptions};
pub use osq_kernels::Isa;
pub use predictions::Prediction;
pub use verify::{HeadVsFp32, IsaResult, VerifyOptions, VerifyReport};

/// Reads the texts of a file, one per line (LF, CRLF or CR), blank lines skipped, each line cut
/// at [`osq_model::text::MAX_LINE_CHARS`] characters; `-` reads standard input.
///
/// ```
/// let e = osq::read_texts("/nonexistent.txt").unwrap_err();
/// assert!(e.to_string().contains("/nonexistent.txt"));
/// ```
pub fn read_texts(path: impl AsRef<std::path::Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let (lines, stats) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        osq_model::text::lines_of_bytes(buf, "standard input")?
    } else {
        osq_model::text::read_lines(path)?
    };
    if stats.truncated > 0 {
        eprintln!(
            "osq: warning: {}: {} line(s) longer than {} characters were cut",
            path.display(),
            stats.truncated,
            osq_model::text::MAX_LINE_CHARS
        );
    }
    Ok(lines)
}
