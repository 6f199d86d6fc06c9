//! Rust FP32 forward vs the independent numpy float64 reference (`tools/ref_fp32.py`) on the
//! real all-MiniLM-L6-v2 checkpoint: token ids must be identical, last hidden states within
//! 1e-4 (max abs), sentence embeddings within 1e-5.
//!
//! Prerequisites (CI runs them before `cargo test`):
//!   ./tools/fetch_model.sh && python3 tools/ref_fp32.py
//! Set `OSQ_SKIP_REAL_MODEL=1` to skip when the model is deliberately absent. Paths can be
//! overridden with `OSQ_MODEL_DIR` and `OSQ_REF_FP32`.

use std::path::PathBuf;

use osq_model::fp32::{self, ThreadPool};
use osq_model::{Batch, BertModel};

#[derive(serde::Deserialize)]
struct Reference {
    max_len: usize,
    sentences: Vec<RefSentence>,
}

#[derive(serde::Deserialize)]
struct RefSentence {
    text: String,
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    hidden: Vec<Vec<f64>>,
    embedding: Vec<f64>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skip() -> bool {
    std::env::var("OSQ_SKIP_REAL_MODEL").is_ok_and(|v| v == "1")
}

/// Model and reference, or `None` when skipping is requested; panics with instructions otherwise.
fn setup() -> Option<(BertModel, Reference)> {
    let dir = std::env::var_os("OSQ_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/all-MiniLM-L6-v2"));
    if !dir.join("model.safetensors").is_file() {
        if skip() {
            eprintln!(
                "OSQ_SKIP_REAL_MODEL=1: skipping, {} is missing",
                dir.display()
            );
            return None;
        }
        panic!(
            "{} is missing: run tools/fetch_model.sh (or set OSQ_SKIP_REAL_MODEL=1 to skip)",
            dir.display()
        );
    }
    let refp = std::env::var_os("OSQ_REF_FP32")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("out/ref_fp32/all-MiniLM-L6-v2.json"));
    let text = match std::fs::read_to_string(&refp) {
        Ok(t) => t,
        Err(e) => {
            if skip() {
                eprintln!("OSQ_SKIP_REAL_MODEL=1: skipping, {}: {e}", refp.display());
                return None;
            }
            panic!(
                "{}: {e}: run `python3 tools/ref_fp32.py` (needs `python3 -m pip install numpy tokenizers`)",
                refp.display()
            )
        }
    };
    let reference: Reference = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with tools/ref_fp32.py", refp.display()));
    let model = BertModel::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    Some((model, reference))
}

/// Forward `sentences` (indices into the reference) as one padded batch and return the
/// worst hidden-state and embedding differences.
fn compare(m: &BertModel, r: &Reference, idx: &[usize], exec: &ThreadPool) -> (f64, String, f64) {
    let texts: Vec<&str> = idx.iter().map(|&i| r.sentences[i].text.as_str()).collect();
    let batch = m.tokenizer.encode_batch(&texts, r.max_len).unwrap();
    for (bi, &i) in idx.iter().enumerate() {
        let s = &r.sentences[i];
        assert_eq!(batch.sequence(bi), &s.ids[..], "token ids of {:?}", s.text);
        let row = bi * batch.seq_len;
        assert_eq!(
            &batch.type_ids[row..row + s.ids.len()],
            &s.type_ids[..],
            "type ids of {:?}",
            s.text
        );
    }
    let h = m.config().hidden_size;
    let hs = fp32::forward(&m.weights, &batch, exec).unwrap();
    let mut worst = 0.0f64;
    let mut worst_at = String::new();
    for (bi, &i) in idx.iter().enumerate() {
        for (t, want) in r.sentences[i].hidden.iter().enumerate() {
            let off = (bi * batch.seq_len + t) * h;
            for (j, (&g, &w)) in hs[off..off + h].iter().zip(want).enumerate() {
                let d = (g as f64 - w).abs();
                if d > worst {
                    worst = d;
                    worst_at = format!("sentence {i} token {t} dim {j}: {g} vs {w}");
                }
            }
        }
    }
    let mut emb = fp32::mean_pool(&hs, &batch, h);
    fp32::l2_normalize(&mut emb, h);
    let mut worst_e = 0.0f64;
    for (bi, &i) in idx.iter().enumerate() {
        for (&g, &w) in emb[bi * h..(bi + 1) * h]
            .iter()
            .zip(&r.sentences[i].embedding)
        {
            worst_e = worst_e.max((g as f64 - w).abs());
        }
    }
    (worst, worst_at, worst_e)
}

#[test]
fn fp32_matches_numpy_reference() {
    let Some((m, r)) = setup() else { return };
    // Length buckets, as a server would batch them: the short sentences padded together,
    // the long (truncated to max_len) one alone. Threads: 2 (1 vs 2 is covered by fp32_tiny).
    let exec = ThreadPool::new(2).unwrap();
    let (long, short): (Vec<usize>, Vec<usize>) =
        (0..r.sentences.len()).partition(|&i| r.sentences[i].ids.len() > 48);
    let mut worst = (0.0f64, String::new(), 0.0f64);
    for idx in [short, long] {
        if idx.is_empty() {
            continue;
        }
        let w = compare(&m, &r, &idx, &exec);
        if w.0 >= worst.0 {
            worst.0 = w.0;
            worst.1 = w.1;
        }
        worst.2 = worst.2.max(w.2);
    }
    let (worst, worst_at, worst_e) = worst;
    println!(
        "max |hidden − numpy f64| = {worst:.3e} ({worst_at}); \
         max |embedding − numpy f64| = {worst_e:.3e}"
    );
    assert!(
        worst <= 1e-4,
        "hidden states differ by {worst} at {worst_at}"
    );
    assert!(worst_e <= 1e-5, "embeddings differ by {worst_e}");
}

#[test]
fn real_model_padding_invariance() {
    let Some((m, r)) = setup() else { return };
    let exec = ThreadPool::single();
    let h = m.config().hidden_size;
    // a short sentence alone and padded next to a longer one
    let short = r.sentences[4].text.as_str();
    let longer = r.sentences[2].text.as_str();
    let alone = m.tokenizer.encode_batch(&[short], 128).unwrap();
    let padded = m.tokenizer.encode_batch(&[longer, short], 128).unwrap();
    assert!(padded.seq_len > alone.seq_len);
    let ea = fp32::sentence_embeddings(&m.weights, &alone, &exec).unwrap();
    let eb = fp32::sentence_embeddings(&m.weights, &padded, &exec).unwrap();
    let d = ea
        .iter()
        .zip(&eb[h..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "{d}");
    // explicit ids path agrees with the tokenizer path
    let b2 = Batch::from_ids(&[alone.sequence(0).to_vec()], m.tokenizer.pad_id());
    assert_eq!(b2, alone);
}
