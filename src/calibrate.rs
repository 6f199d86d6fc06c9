//! [`calibrate`]: FP32 checkpoint + calibration texts → a parameter directory, by any of the
//! methods of osq-calib (MinMax, the fast default; percentile, OMSE, OS, OS+). The directory is
//! written atomically with digests of its files, never over the model it came from.

use std::path::{Path, PathBuf};

use osq_calib::{CalibReport, Progress};
use osq_model::quant::{format, QuantModel, QuantParams};
use osq_model::BertModel;

pub use osq_calib::{Loss, Method};
pub use osq_model::quant::BitsConfig as Bits;

use crate::error::{Error, Result};

/// Options of [`calibrate`]. `Default`: MinMax, W8A8, Gamma Migration on, 256 sentences
/// sampled with seed 0 and truncated to 128 tokens, all cores, no progress bars.
#[derive(Clone, Debug)]
pub struct CalibOptions {
    /// Calibration method.
    pub method: Method,
    /// Weight and activation bits: the paper's four (`Bits::W8A8`, `W6A6`, `W4A8`, `W4A4`), or
    /// `Bits::W6A6P8` / `W4A4P8`, which keep the attention probabilities at 8 bits for long
    /// documents (`Bits::parse("w6a6p8")`).
    pub bits: Bits,
    /// Gamma Migration (OS); OS+ never migrates.
    pub gamma: bool,
    /// Token-Wise Clipping without its fine (LSQ+) stage.
    pub coarse_only: bool,
    /// Sentences sampled from the data.
    pub samples: usize,
    /// Seed of the sampling (the calibration is deterministic for a seed).
    pub seed: u64,
    /// Tokens per text (special tokens included; longer texts are truncated, and the model's
    /// `max_position_embeddings` caps it). 128 for sentences; a long-document task calibrates at
    /// the length it is deployed at.
    pub max_len: usize,
    /// Batches of the per-node Token-Wise Clipping search (0: one global ratio).
    pub twc_batches: usize,
    /// Batches of the OS+ shift/scale search (0: all).
    pub osplus_batches: usize,
    /// What Token-Wise Clipping compares with the FP32 model: every token's final hidden state
    /// (the default), or the task head's logits (the OS reference's loss for fine-tuned models).
    pub loss: Loss,
    /// Threads (0: all cores; capped at the machine's parallelism).
    pub threads: usize,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl Default for CalibOptions {
    fn default() -> Self {
        CalibOptions {
            method: Method::MinMax,
            bits: Bits::W8A8,
            gamma: true,
            coarse_only: false,
            samples: 256,
            seed: 0,
            max_len: osq_calib::data::CALIB_MAX_LEN,
            twc_batches: 2,
            osplus_batches: 0,
            loss: Loss::Hidden,
            threads: 0,
            progress: false,
        }
    }
}

/// A finished calibration: the quantized parameters and what the calibration did.
#[derive(Debug)]
pub struct Calibration {
    params: QuantParams,
    report: CalibReport,
    model_dir: PathBuf,
}

/// Calibrates the FP32 model in `model_dir` on the texts of the file `data` (one per line).
///
/// ```
/// # let tmp = tempfile::tempdir().unwrap();
/// # let model_dir = tmp.path().join("model");
/// # osq_model::testing::write_tiny_bert(&model_dir, 1).unwrap();
/// # let data = tmp.path().join("calib.txt");
/// # std::fs::write(&data, osq_model::testing::SENTENCES.join("\n")).unwrap();
/// let c = osq::calibrate(&model_dir, &data, &osq::CalibOptions::default())?;
/// c.save(tmp.path().join("params"))?;
/// let model = osq::Model::load(tmp.path().join("params"))?;
/// assert_eq!(model.info().method, "minmax");
/// # Ok::<(), osq::Error>(())
/// ```
pub fn calibrate(
    model_dir: impl AsRef<Path>,
    data: impl AsRef<Path>,
    opts: &CalibOptions,
) -> Result<Calibration> {
    let (model_dir, data) = (model_dir.as_ref(), data.as_ref());
    let m = BertModel::load(model_dir)?;
    let batches = osq_calib::data::load(data, &m.tokenizer, opts.samples, opts.seed, opts.max_len)?;
    let mut o = osq_calib::CalibOptions::new(opts.method, opts.bits);
    o.gamma = opts.gamma;
    o.coarse_only = opts.coarse_only;
    o.per_node_batches = opts.twc_batches;
    o.osplus_batches = opts.osplus_batches;
    o.loss = opts.loss;
    o.threads = opts.threads;
    o.progress = Progress::new(opts.progress);
    let c = osq_calib::calibrate(&m.weights, &batches, &o)?;
    // derive every integer constant now: an unusable calibration fails here, not at load
    let qm = QuantModel::new(c.params()?)?;
    Ok(Calibration {
        params: qm.params,
        report: c.report,
        model_dir: model_dir.to_path_buf(),
    })
}

impl Calibration {
    /// What the calibration did (method, samples, tokens, timings, output MSE).
    pub fn report(&self) -> &CalibReport {
        &self.report
    }

    /// Writes the parameter directory `dir` (with `calibration.json`), atomically: readers
    /// see the old directory or the new one. `dir` must not be or overlap the model directory.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let report = serde_json::to_vec_pretty(&self.report)
            .map_err(|e| Error::Input(format!("calibration report: {e}")))?;
        format::save_with(
            &self.params,
            dir,
            Some(&self.model_dir),
            &[("calibration.json", report)],
        )?;
        Ok(())
    }
}
