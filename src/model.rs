//! [`Model`]: a parameter directory loaded for integer inference, with its tokenizer and its
//! own thread pool. One `Model` is `Send + Sync`: serve many threads from one instance; calls
//! queue on its pool, and every answer is the same bits whatever the batch or thread count.

use std::path::{Path, PathBuf};

use osq_kernels::Isa;
use osq_model::quant::integer::{pool_codes_with, IntOptions, IntegerModel};
use osq_model::quant::{format, QuantModel};
use osq_model::threads::resolve_threads;
use osq_model::{Batch, Tokenizer};

use crate::embeddings::Embeddings;
use crate::error::{Error, Result};

/// How a [`Model`] runs. `Default` is all cores, the best ISA, the model's maximum length,
/// truncation on, batches of 32 texts.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Threads of the model's pool (0: all cores; more than the machine has is capped, with a
    /// warning on stderr).
    pub threads: usize,
    /// Kernel ISA (`None`: the best this CPU has, or `OSQ_ISA`).
    pub isa: Option<Isa>,
    /// Maximum tokens per text, special tokens included (`None`: the model's maximum, its
    /// `max_position_embeddings` less the position offset; larger values are capped there).
    pub max_length: Option<usize>,
    /// Cut texts longer than the maximum length (`false`: such a text is an error).
    pub truncate: bool,
    /// Texts per forward pass inside one call (bounds memory on long lists).
    pub batch_size: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            threads: 0,
            isa: None,
            max_length: None,
            truncate: true,
            batch_size: 32,
        }
    }
}

/// Per-call options of [`Model::embed_with`]; `Default` follows the model for both.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbedOptions {
    /// Cut texts longer than the maximum length (`None`: the model's [`ModelOptions::truncate`]).
    pub truncate: Option<bool>,
    /// L2-normalise each embedding (`None`: as the model's sentence-transformers metadata
    /// says, normalised when it has none).
    pub normalize: Option<bool>,
}

/// What a loaded model is and how it runs (`osq serve`'s `/info`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelInfo {
    /// The parameter directory.
    pub params: PathBuf,
    /// Bit configuration (`w8a8`, ...).
    pub bits: String,
    /// Calibration method label (`os`, `minmax`, ...).
    pub method: String,
    /// Kernel ISA in use.
    pub isa: String,
    /// Threads of the model's pool.
    pub threads: usize,
    /// Maximum tokens per text.
    pub max_length: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Encoder layers.
    pub layers: usize,
}

/// A quantized model on the integer engine.
///
/// ```
/// # let dir = osq_model::testing::doc_params_dir();
/// let model = osq::Model::load(&dir)?;
/// let e = model.embed(&["a cat sat on the mat", "the dog"])?;
/// assert_eq!(e.len(), 2);
/// assert_eq!(e.dim(), model.info().dim);
/// # Ok::<(), osq::Error>(())
/// ```
pub struct Model {
    int: IntegerModel,
    tok: Tokenizer,
    pool: rayon::ThreadPool,
    isa: Isa,
    max_length: usize,
    opts: ModelOptions,
    dir: PathBuf,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dir", &self.dir)
            .field("isa", &self.isa)
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl Model {
    /// Loads a parameter directory (written by [`crate::calibrate`] / `osq calibrate`) with
    /// default [`ModelOptions`].
    ///
    /// ```
    /// let e = osq::Model::load("/nonexistent").unwrap_err();
    /// assert!(e.to_string().contains("/nonexistent"));
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(dir, ModelOptions::default())
    }

    /// Loads a parameter directory with `opts`.
    ///
    /// ```
    /// # let dir = osq_model::testing::doc_params_dir();
    /// let opts = osq::ModelOptions { threads: 1, truncate: false, ..Default::default() };
    /// let model = osq::Model::load_with(&dir, opts)?;
    /// let long = "word ".repeat(1000);
    /// assert!(model.embed(&[long.as_str()]).is_err()); // too long, truncation off
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn load_with(dir: impl AsRef<Path>, opts: ModelOptions) -> Result<Model> {
        let dir = dir.as_ref();
        if opts.batch_size == 0 {
            return Err(Error::Input("batch size must be at least 1".into()));
        }
        let isa = match opts.isa {
            Some(i) => i.require().map_err(|e| Error::Input(e.to_string()))?,
            None => osq_kernels::active_isa().map_err(|e| Error::Input(e.to_string()))?,
        };
        let loaded = format::load_files(dir)?;
        let p = loaded.params;
        let max_pos = p.config.max_tokens();
        let max_length = opts.max_length.unwrap_or(max_pos).min(max_pos);
        let tpath = dir.join("tokenizer.json");
        let tok = match &loaded.tokenizer_json {
            Some(bytes) => Tokenizer::from_bytes(bytes, &tpath, max_pos)?,
            None => Tokenizer::from_file(&tpath, max_pos)?,
        };
        tok.check_against(p.config.vocab_size)?;
        // a constant that cannot be derived comes from the files: say which
        let files = || {
            format!(
                "{} / {}",
                dir.join(format::JSON_FILE).display(),
                dir.join(format::TENSORS_FILE).display()
            )
        };
        let qm = QuantModel::new(p).map_err(|e| {
            Error::Input(format!(
                "{}: {e} (the parameters are corrupt or were edited)",
                files()
            ))
        })?;
        let int = IntegerModel::new(qm).map_err(|e| Error::Input(format!("{}: {e}", files())))?;
        let threads = resolve_threads(opts.threads);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("osq-{i}"))
            .build()
            .map_err(|e| Error::Input(format!("cannot start {threads} threads: {e}")))?;
        Ok(Model {
            int,
            tok,
            pool,
            isa,
            max_length,
            opts: ModelOptions { threads, ..opts },
            dir: dir.to_path_buf(),
        })
    }

    /// What this model is and how it runs.
    pub fn info(&self) -> ModelInfo {
        let p = &self.int.quant().params;
        ModelInfo {
            params: self.dir.clone(),
            bits: p.bits.name().into(),
            method: p.method.clone(),
            isa: self.isa.name().into(),
            threads: self.opts.threads,
            max_length: self.max_length,
            dim: p.config.hidden_size,
            layers: p.config.num_hidden_layers,
        }
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.int.quant().config().hidden_size
    }

    /// Maximum tokens per text (special tokens included).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Token count of each text (special tokens included, before truncation), without
    /// running the model. Errors as [`Model::embed`] would on a too-long text.
    ///
    /// ```
    /// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
    /// assert_eq!(model.count_tokens(&["the cat"])?, vec![4]); // [CLS] the cat [SEP]
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn count_tokens<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<usize>> {
        Ok(self.encode(texts, self.opts.truncate)?.1)
    }

    /// [`Model::count_tokens`] with truncation chosen by the call.
    pub fn count_tokens_with<S: AsRef<str>>(
        &self,
        texts: &[S],
        truncate: bool,
    ) -> Result<Vec<usize>> {
        Ok(self.encode(texts, truncate)?.1)
    }

    fn encode<S: AsRef<str>>(&self, texts: &[S], truncate: bool) -> Result<(Batch, Vec<usize>)> {
        let refs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        Ok(self
            .tok
            .encode_batch_checked(&refs, self.max_length, truncate)?)
    }

    /// Sentence embeddings of `texts` on the integer engine: mean pooling of the final codes
    /// over each text's tokens, L2-normalised (n × dim, in input order).
    ///
    /// ```
    /// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
    /// let e = model.embed(&["good movie", "bad movie"])?;
    /// let norm: f32 = e.row(0).iter().map(|x| x * x).sum::<f32>().sqrt();
    /// assert!((norm - 1.0).abs() < 1e-5);
    /// // the same text alone gives the same bits
    /// assert_eq!(model.embed(&["bad movie"])?.row(0), e.row(1));
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Embeddings> {
        self.embed_with(texts, &EmbedOptions::default())
    }

    /// [`Model::embed`] with per-call options.
    ///
    /// ```
    /// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
    /// let raw = model.embed_with(&["good movie"], &osq::EmbedOptions { normalize: Some(false), ..Default::default() })?;
    /// let unit = model.embed(&["good movie"])?;
    /// let norm = raw.row(0).iter().map(|x| x * x).sum::<f32>().sqrt();
    /// assert!((raw.row(0)[0] / norm - unit.row(0)[0]).abs() < 1e-5);
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn embed_with<S: AsRef<str>>(&self, texts: &[S], eo: &EmbedOptions) -> Result<Embeddings> {
        let truncate = eo.truncate.unwrap_or(self.opts.truncate);
        let dim = self.dim();
        let mut data = Vec::with_capacity(texts.len() * dim);
        let mut tokens = Vec::with_capacity(texts.len());
        let opts = IntOptions {
            isa: Some(self.isa),
            trace: false,
        };
        for chunk in texts.chunks(self.opts.batch_size) {
            let (batch, _) = self.encode(chunk, truncate)?;
            let out = self.pool.install(|| self.int.forward(&batch, &opts))?;
            data.extend(pool_codes_with(
                self.int.quant(),
                &out,
                eo.normalize
                    .unwrap_or(self.int.quant().params.sentence.normalize),
            ));
            tokens.extend_from_slice(&batch.lengths);
        }
        Ok(Embeddings::new(data, dim, tokens))
    }

    /// The integer model, its tokenizer and ISA, for the verifier.
    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }
    pub(crate) fn batch_size(&self) -> usize {
        self.opts.batch_size
    }
    pub(crate) fn truncates(&self) -> bool {
        self.opts.truncate
    }

    pub(crate) fn parts(&self) -> (&IntegerModel, &Tokenizer, &rayon::ThreadPool, usize) {
        (&self.int, &self.tok, &self.pool, self.max_length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Model>();
    }
}
