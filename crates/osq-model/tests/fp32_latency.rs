//! FP32 latency of all-MiniLM-L6-v2, batch 1, seq 128 (ignored by default; needs the model).
//! `cargo test --release -p osq-model --test fp32_latency -- --ignored --nocapture`
//! Env `OSQ_THREADS` (default 1), `OSQ_REPS` (default 20). Reports min and median.

use std::path::PathBuf;

use osq_model::fp32::{self, ThreadPool};
use osq_model::BertModel;

#[test]
#[ignore = "benchmark; run in release with --ignored"]
fn minilm_batch1_seq128_latency() {
    let dir = std::env::var_os("OSQ_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
        });
    let m = BertModel::load(&dir).unwrap_or_else(|e| panic!("{e}: run tools/fetch_model.sh first"));
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let threads = env("OSQ_THREADS", 1);
    let reps = env("OSQ_REPS", 20).max(1);
    let text = "the quick brown fox jumps over the lazy dog ".repeat(20);
    let b = m.tokenizer.encode_batch(&[&text], 128).unwrap();
    assert_eq!(b.seq_len, 128);
    let exec = ThreadPool::new(threads).unwrap();
    for _ in 0..3 {
        fp32::forward(&m.weights, &b, &exec).unwrap();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = std::time::Instant::now();
            std::hint::black_box(fp32::forward(&m.weights, &b, &exec).unwrap());
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!(
        "MiniLM-L6 fp32 batch 1 seq 128, {threads} thread(s): min {:.2} ms, median {:.2} ms ({reps} reps)",
        t[0],
        t[t.len() / 2]
    );
}
