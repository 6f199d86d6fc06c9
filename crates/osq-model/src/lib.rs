//! osq-model: BERT-family loading, the FP32 reference forward, the nine-node quantized graph and its
//! executors (deploy-mode and paper-mode fake-quant, integer).
//!
//! FP32 half: [`config`] (HF `config.json` of BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, MPNet),
//! [`relative`] (MPNet's relative position buckets), [`pooling`] (sentence-transformers pooling), [`weights`] (safetensors → owned `f32`),
//! [`tokenize`] (padded batches), [`fp32`] (forward with observation hooks, pooling, heads),
//! `testing` (deterministic tiny checkpoints and temp dirs for the tests of every crate; feature
//! `testing`, off in the runtime).

pub mod atomic;
pub mod config;
pub mod error;
pub mod fp32;
pub mod head;
pub mod metrics;
pub mod pooling;
pub mod relative;
pub mod rng;
pub mod svg;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod threads;
pub mod tokenize;
pub mod weights;

pub use config::{BertConfig, Family};
pub use error::{ModelError, Result};
pub use fp32::Site;
pub use threads::ThreadPool;
pub use tokenize::{Batch, Tokenizer};
pub use weights::{BertModel, BertWeights, LayerNormW, Linear};
pub mod quant;
