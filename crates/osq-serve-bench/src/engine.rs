//! The engines under test and the thread contexts they run in.
//!
//! - `osq-fp32`: the FP32 reference forward of `osq_model::fp32` (f32 weights, `gemm` crate).
//! - `osq-int8` / `osq-int4`: the integer executor `osq_model::quant::integer::IntegerModel`
//!   loaded from a parameter directory (`quant.safetensors` + `quant.json`); the f32 checkpoint
//!   is never read by these engines.
//!
//! A [`Threads`] context owns a dedicated rayon pool of `n` threads (the integer executor uses
//! the ambient pool, so it runs inside `pool.install`) and an FP32 [`ThreadPool`] with the same count.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::integer::{pool_embeddings, IntOptions, IntegerModel};
use osq_model::quant::{format, QuantModel};
use osq_model::{Batch, BertModel, BertWeights, Tokenizer};

/// Which engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    Fp32,
    Int8,
    Int4,
}

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [EngineKind::Fp32, EngineKind::Int8, EngineKind::Int4];

    /// Name used in records, tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Fp32 => "osq-fp32",
            EngineKind::Int8 => "osq-int8",
            EngineKind::Int4 => "osq-int4",
        }
    }

    /// Short name used on the command line (`fp32`, `int8`, `int4`; the `osq-` prefix is optional).
    pub fn parse(s: &str) -> Result<EngineKind> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_prefix("osq-").unwrap_or(&t);
        match t {
            "fp32" => Ok(EngineKind::Fp32),
            "int8" => Ok(EngineKind::Int8),
            "int4" => Ok(EngineKind::Int4),
            _ => bail!("unknown engine '{s}': expected fp32, int8 or int4"),
        }
    }

    pub fn is_integer(self) -> bool {
        self != EngineKind::Fp32
    }
}

/// A thread context: a dedicated rayon pool and an FP32 `ThreadPool`, both of `n` threads.
pub struct Threads {
    n: usize,
    pool: rayon::ThreadPool,
    exec: ThreadPool,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Threads({})", self.n)
    }
}

impl Threads {
    pub fn new(n: usize) -> Result<Threads> {
        if n == 0 {
            bail!("thread count must be at least 1");
        }
        let n = osq_model::threads::resolve_threads(n);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(move |i| format!("osq-bench-{n}t-{i}"))
            .build()
            .with_context(|| format!("cannot build a {n}-thread rayon pool"))?;
        let exec =
            ThreadPool::new(n).map_err(|e| anyhow!("FP32 ThreadPool with {n} threads: {e}"))?;
        Ok(Threads { n, pool, exec })
    }

    pub fn count(&self) -> usize {
        self.n
    }

    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    pub fn exec(&self) -> &ThreadPool {
        &self.exec
    }
}

enum Inner {
    Fp32(Box<BertWeights>),
    Int(Box<IntegerModel>),
}

/// A loaded engine plus the tokenizer that goes with it.
pub struct Engine {
    kind: EngineKind,
    inner: Inner,
    tokenizer: Tokenizer,
    source: PathBuf,
}

/// Output of one forward call: the last hidden states of the valid tokens of each sequence
/// (`Hidden` for FP32, `Codes` for the integer engines), sequences concatenated.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Hidden {
        data: Vec<f32>,
        offsets: Vec<usize>,
        lengths: Vec<usize>,
        hidden: usize,
    },
    Codes {
        data: Vec<u8>,
        offsets: Vec<usize>,
        lengths: Vec<usize>,
        hidden: usize,
    },
}

impl Output {
    pub fn sequences(&self) -> usize {
        match self {
            Output::Hidden { lengths, .. } | Output::Codes { lengths, .. } => lengths.len(),
        }
    }

    /// Bytes of sequence `b` (f32 bit patterns for FP32, codes for integer engines): the
    /// unit of the bit-identity checks.
    pub fn sequence_bytes(&self, b: usize) -> Vec<u8> {
        match self {
            Output::Hidden {
                data,
                offsets,
                lengths,
                hidden,
            } => data[offsets[b] * hidden..(offsets[b] + lengths[b]) * hidden]
                .iter()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect(),
            Output::Codes {
                data,
                offsets,
                lengths,
                hidden,
            } => data[offsets[b] * hidden..(offsets[b] + lengths[b]) * hidden].to_vec(),
        }
    }

    /// FNV-1a digest of every sequence's bytes (for logs and records).
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::new();
        for b in 0..self.sequences() {
            h.write(&self.sequence_bytes(b));
            h.write(&[0xff]);
        }
        h.finish()
    }
}

/// FNV-1a 64.
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Engine {
    /// FP32 engine from a Hugging Face model directory.
    pub fn load_fp32(model_dir: &Path) -> Result<Engine> {
        let m = BertModel::load(model_dir)
            .with_context(|| format!("loading the FP32 model from {}", model_dir.display()))?;
        Ok(Engine {
            kind: EngineKind::Fp32,
            inner: Inner::Fp32(Box::new(m.weights)),
            tokenizer: m.tokenizer,
            source: model_dir.to_path_buf(),
        })
    }

    /// Integer engine from a parameter directory (`osq quantize` output). The tokenizer is the
    /// directory's own `tokenizer.json` (copied there by `osq quantize`), else `tokenizer_dir`'s.
    pub fn load_int(
        kind: EngineKind,
        params_dir: &Path,
        tokenizer_dir: Option<&Path>,
    ) -> Result<Engine> {
        if !kind.is_integer() {
            bail!("load_int called for {}", kind.name());
        }
        let p = format::load(params_dir)
            .with_context(|| format!("loading parameters from {}", params_dir.display()))?;
        let wb = p.bits.weight_bits();
        match (kind, wb) {
            (EngineKind::Int8, 8) | (EngineKind::Int4, 4) => {}
            _ => bail!(
                "{}: parameter directory {} holds {} ({}-bit weights)",
                kind.name(),
                params_dir.display(),
                p.bits,
                wb
            ),
        }
        let max_pos = p.config.max_position_embeddings;
        let qm = QuantModel::new(p)
            .with_context(|| format!("deriving constants of {}", params_dir.display()))?;
        let model = IntegerModel::new(qm)
            .with_context(|| format!("packing weights of {}", params_dir.display()))?;
        let own = params_dir.join("tokenizer.json");
        let tok_path = if own.is_file() {
            own
        } else if let Some(d) = tokenizer_dir {
            d.join("tokenizer.json")
        } else {
            bail!(
                "{} has no tokenizer.json and no --model directory was given",
                params_dir.display()
            )
        };
        let tokenizer = Tokenizer::from_file(&tok_path, max_pos)
            .with_context(|| format!("loading tokenizer {}", tok_path.display()))?;
        let inner = Inner::Int(Box::new(model));
        Ok(Engine {
            kind,
            inner,
            tokenizer,
            source: params_dir.to_path_buf(),
        })
    }

    /// Wraps an already built integer model (tests, criterion benches).
    pub fn from_integer(kind: EngineKind, model: IntegerModel, tokenizer: Tokenizer) -> Engine {
        Engine {
            kind,
            inner: Inner::Int(Box::new(model)),
            tokenizer,
            source: PathBuf::new(),
        }
    }

    /// Wraps already loaded FP32 weights.
    pub fn from_fp32(weights: BertWeights, tokenizer: Tokenizer) -> Engine {
        Engine {
            kind: EngineKind::Fp32,
            inner: Inner::Fp32(Box::new(weights)),
            tokenizer,
            source: PathBuf::new(),
        }
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn hidden_size(&self) -> usize {
        match &self.inner {
            Inner::Fp32(w) => w.config.hidden_size,
            Inner::Int(m) => m.quant().config().hidden_size,
        }
    }

    /// The model's configuration.
    pub fn config(&self) -> &osq_model::BertConfig {
        match &self.inner {
            Inner::Fp32(w) => &w.config,
            Inner::Int(m) => m.quant().config(),
        }
    }

    pub fn max_positions(&self) -> usize {
        match &self.inner {
            Inner::Fp32(w) => w.config.max_position_embeddings,
            Inner::Int(m) => m.quant().config().max_position_embeddings,
        }
    }

    /// The integer model, if this is an integer engine.
    pub fn integer(&self) -> Option<&IntegerModel> {
        match &self.inner {
            Inner::Int(m) => Some(m),
            Inner::Fp32(_) => None,
        }
    }

    /// The FP32 weights, if this is the FP32 engine.
    pub fn fp32_weights(&self) -> Option<&BertWeights> {
        match &self.inner {
            Inner::Fp32(w) => Some(w),
            Inner::Int(_) => None,
        }
    }

    /// One forward of `batch` with `threads`: last hidden states of the valid tokens.
    pub fn run(&self, batch: &Batch, threads: &Threads) -> Result<Output> {
        match &self.inner {
            Inner::Fp32(w) => {
                let h = w.config.hidden_size;
                let f = || fp32::forward(w, batch, threads.exec());
                // ThreadPool::run installs the ThreadPool's own pool; with one thread the ThreadPool has none, so
                // the dedicated 1-thread pool catches any parallel iterator.
                let hs = if threads.count() > 1 {
                    threads.exec().run(f)
                } else {
                    threads.pool().install(f)
                }
                .map_err(|e| anyhow!("{}: {e}", self.name()))?;
                let (mut data, mut offsets) = (Vec::new(), Vec::with_capacity(batch.batch));
                for b in 0..batch.batch {
                    offsets.push(data.len() / h);
                    let row = b * batch.seq_len;
                    data.extend_from_slice(&hs[row * h..(row + batch.lengths[b]) * h]);
                }
                Ok(Output::Hidden {
                    data,
                    offsets,
                    lengths: batch.lengths.clone(),
                    hidden: h,
                })
            }
            Inner::Int(m) => {
                let h = m.quant().config().hidden_size;
                let out = threads
                    .pool()
                    .install(|| m.forward(batch, &IntOptions::default()))
                    .map_err(|e| anyhow!("{}: {e}", self.name()))?;
                Ok(Output::Codes {
                    data: out.hidden,
                    offsets: out.offsets,
                    lengths: out.lengths,
                    hidden: h,
                })
            }
        }
    }

    /// Sentence embeddings `[batch, hidden]` (mean pooling + L2 norm) from an [`Output`] of
    /// this engine.
    pub fn embeddings(&self, out: &Output) -> Vec<f32> {
        match (&self.inner, out) {
            (
                Inner::Int(m),
                Output::Codes {
                    data,
                    offsets,
                    lengths,
                    ..
                },
            ) => {
                let io = osq_model::quant::integer::IntOutput {
                    hidden: data.clone(),
                    offsets: offsets.clone(),
                    lengths: lengths.clone(),
                    traces: None,
                    stage_ns: None,
                    head: None,
                };
                pool_embeddings(m.quant(), &io)
            }
            (
                _,
                Output::Hidden {
                    data,
                    offsets,
                    lengths,
                    hidden,
                },
            ) => {
                let h = *hidden;
                let mut e = vec![0f32; lengths.len() * h];
                for (b, o) in e.chunks_exact_mut(h).enumerate() {
                    let mut acc = vec![0f64; h];
                    for t in 0..lengths[b] {
                        let r = &data[(offsets[b] + t) * h..(offsets[b] + t + 1) * h];
                        acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v as f64);
                    }
                    let d = (lengths[b] as f64).max(1e-9);
                    o.iter_mut()
                        .zip(&acc)
                        .for_each(|(o, &a)| *o = (a / d) as f32);
                }
                fp32::l2_normalize(&mut e, h);
                e
            }
            // An integer engine never produces Hidden; keep the function total anyway.
            (Inner::Fp32(_), Output::Codes { .. }) => Vec::new(),
        }
    }
}
