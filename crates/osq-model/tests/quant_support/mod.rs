//! Shared setup of the quant tests: a tiny generated BERT, MinMax calibration, quantization.
#![allow(dead_code)]

use osq_model::fp32::ThreadPool;
use osq_model::quant::{minmax, BitsConfig, QuantModel, QuantParams};
pub use osq_model::testing::SENTENCES;
use osq_model::testing::{temp_dir, write_tiny_bert};
use osq_model::{Batch, BertWeights, Tokenizer};

pub struct Tiny {
    pub dir: osq_model::testing::TestDir,
    pub weights: BertWeights,
    pub tok: Tokenizer,
}

pub fn tiny(seed: u64) -> Tiny {
    let dir = temp_dir("quant-tiny").unwrap();
    write_tiny_bert(&dir, seed).unwrap();
    let weights = BertWeights::load_dir(&dir).unwrap();
    let tok = Tokenizer::from_file(
        &dir.join("tokenizer.json"),
        weights.config.max_position_embeddings,
    )
    .unwrap();
    Tiny { dir, weights, tok }
}

pub fn batch(t: &Tiny, texts: &[&str]) -> Batch {
    t.tok.encode_batch(texts, 64).unwrap()
}

pub fn quantize(t: &Tiny, bits: BitsConfig) -> QuantParams {
    let b = batch(t, SENTENCES);
    let ranges = minmax::collect(&t.weights, &[b], &ThreadPool::single(), true).unwrap();
    QuantParams::build(&t.weights, &ranges, bits, "minmax", true).unwrap()
}

pub fn model(t: &Tiny, bits: BitsConfig) -> QuantModel {
    QuantModel::new(quantize(t, bits)).unwrap()
}
