//! FP32 forward on the deterministic tiny BERT: runs, pooling, padding invariance, hooks.

use osq_model::fp32::{self, Site, ThreadPool};
use osq_model::testing::{
    temp_dir, write_tiny_bert, write_tiny_bert_with, TestDir, TinyBertOptions,
};
use osq_model::{Batch, BertModel};

fn tiny(seed: u64) -> (BertModel, TestDir) {
    let d = temp_dir("fp32tiny").unwrap();
    write_tiny_bert(&d, seed).unwrap();
    (BertModel::load(&d).unwrap(), d)
}

const TEXTS: [&str; 4] = [
    "The cat sat on the mat.",
    "I love this movie, it was very good!",
    "",
    "they hate running dogs",
];

#[test]
fn forward_runs_and_is_finite() {
    let (m, _t) = tiny(7);
    let b = m.tokenizer.encode_batch(&TEXTS, 32).unwrap();
    let exec = ThreadPool::single();
    let hs = fp32::forward(&m.weights, &b, &exec).unwrap();
    assert_eq!(hs.len(), b.batch * b.seq_len * 32);
    assert!(hs.iter().all(|v| v.is_finite()));
    // rows of real tokens are LayerNorm outputs: not all equal
    assert!(hs[..32].iter().any(|&v| (v - hs[0]).abs() > 1e-3));
    let e = fp32::sentence_embeddings(&m.weights, &b, &exec).unwrap();
    for r in e.chunks_exact(32) {
        let n: f32 = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
    }
    let logits = fp32::classify(&m.weights, &b, &exec).unwrap();
    assert_eq!(logits.len(), 4 * 2);
    assert!(logits.iter().all(|v| v.is_finite()));
}

#[test]
fn tiny_model_is_deterministic() {
    let (a, _ta) = tiny(11);
    let (b, _tb) = tiny(11);
    let (c, _tc) = tiny(12);
    assert_eq!(a.weights, b.weights);
    assert_ne!(
        a.weights.layers[0].query.weight,
        c.weights.layers[0].query.weight
    );
}

#[test]
fn mean_pool_respects_mask() {
    let b = Batch::from_ids(&[vec![1, 2, 3], vec![4]], 0);
    // hidden [2, 3, 2]: padding rows hold huge values that must not leak in
    let hidden = vec![
        1.0, 2.0, 3.0, 4.0, 5.0, 6.0, //
        7.0, 8.0, 1e6, 1e6, -1e6, 1e6,
    ];
    let p = fp32::mean_pool(&hidden, &b, 2);
    assert_eq!(p, vec![3.0, 4.0, 7.0, 8.0]);
    let mut n = p.clone();
    fp32::l2_normalize(&mut n, 2);
    assert!((n[0] - 0.6).abs() < 1e-7 && (n[1] - 0.8).abs() < 1e-7);
}

#[test]
fn padding_invariance() {
    let (m, _t) = tiny(5);
    let exec = ThreadPool::single();
    let alone = m.tokenizer.encode_batch(&[TEXTS[0]], 64).unwrap();
    let long = "the cat and the dog sat on a very good mat, it was great. ".repeat(3);
    let batch = m
        .tokenizer
        .encode_batch(&[&long, TEXTS[0], TEXTS[2]], 64)
        .unwrap();
    assert!(batch.seq_len > alone.seq_len);
    let h = 32;
    let ea = fp32::sentence_embeddings(&m.weights, &alone, &exec).unwrap();
    let eb = fp32::sentence_embeddings(&m.weights, &batch, &exec).unwrap();
    let d = ea
        .iter()
        .zip(&eb[h..2 * h])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "embedding differs by {d}");
    // hidden states of the real tokens too
    let ha = fp32::forward(&m.weights, &alone, &exec).unwrap();
    let hb = fp32::forward(&m.weights, &batch, &exec).unwrap();
    let n = alone.lengths[0];
    let off = batch.seq_len * h;
    // (in practice bitwise equal: attention sums only over real keys in a fixed order)
    let d = ha[..n * h]
        .iter()
        .zip(&hb[off..off + n * h])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "hidden differs by {d}");
}

#[test]
fn threads_give_same_result() {
    let (m, _t) = tiny(9);
    let b = m.tokenizer.encode_batch(&TEXTS, 64).unwrap();
    let h1 = fp32::forward(&m.weights, &b, &ThreadPool::single()).unwrap();
    let h2 = fp32::forward(&m.weights, &b, &ThreadPool::new(2).unwrap()).unwrap();
    let d = h1
        .iter()
        .zip(&h2)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "{d}");
}

#[test]
fn observer_sees_every_site_in_order_with_shapes() {
    let (m, _t) = tiny(3);
    let b = m.tokenizer.encode_batch(&TEXTS, 64).unwrap();
    let mut seen: Vec<(Site, usize)> = Vec::new();
    let mut ok = true;
    let hs = fp32::forward_observed(&m.weights, &b, &ThreadPool::single(), &mut |s, x| {
        let (r, c) = s.shape(&m.weights, &b);
        ok &= r * c == x.len();
        seen.push((s, x.len()));
    })
    .unwrap();
    assert!(ok, "a tensor does not match Site::shape");
    let mut want = vec![Site::EmbeddingSum, Site::EmbeddingLn];
    for l in 0..2 {
        want.extend([
            Site::Query(l),
            Site::Key(l),
            Site::Value(l),
            Site::Scores(l),
            Site::Probs(l),
            Site::Context(l),
            Site::AttnOut(l),
            Site::AttnResidual(l),
            Site::AttnLn(l),
            Site::Ffn1(l),
            Site::Gelu(l),
            Site::Ffn2(l),
            Site::FfnResidual(l),
            Site::FfnLn(l),
        ]);
    }
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), want);
    // probs: rows sum to 1 and padded keys are 0
    let mut probs = Vec::new();
    let mut last = Vec::new();
    fp32::forward_observed(&m.weights, &b, &ThreadPool::single(), &mut |s, x| {
        if s == Site::Probs(1) {
            probs = x.to_vec();
        }
        if s == Site::FfnLn(1) {
            last = x.to_vec();
        }
    })
    .unwrap();
    assert_eq!(last, hs);
    let seq = b.seq_len;
    for (i, row) in probs.chunks_exact(seq).enumerate() {
        let bi = i / (4 * seq);
        let s: f32 = row.iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
        for (j, &p) in row.iter().enumerate() {
            if b.mask[bi * seq + j] == 0 {
                assert_eq!(p, 0.0);
            }
        }
    }
}

#[test]
fn hook_can_rewrite_tensors() {
    let (m, _t) = tiny(3);
    let b = m.tokenizer.encode_batch(&TEXTS[..2], 64).unwrap();
    let exec = ThreadPool::single();
    let plain = fp32::forward(&m.weights, &b, &exec).unwrap();
    // identity rewrite keeps the result
    let same = fp32::forward_hooked(&m.weights, &b, &exec, &mut |_, _| {}).unwrap();
    assert_eq!(plain, same);
    // zeroing the last FFN2 output makes the output LN(AttnLn) — differs
    let changed = fp32::forward_hooked(&m.weights, &b, &exec, &mut |s, x| {
        if s == Site::Ffn2(1) {
            x.fill(0.0);
        }
    })
    .unwrap();
    assert_ne!(plain, changed);
}

#[test]
fn bad_batches_are_errors() {
    let (m, _t) = tiny(1);
    let exec = ThreadPool::single();
    let b = Batch::from_ids(&[vec![2, 10_000, 3]], 0);
    let e = fp32::forward(&m.weights, &b, &exec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("10000"), "{e}");
    let b = Batch::from_ids(&[vec![2; 65]], 0);
    assert!(fp32::forward(&m.weights, &b, &exec).is_err());
    let mut b = Batch::from_ids(&[vec![2, 3]], 0);
    b.type_ids[0] = 2;
    assert!(fp32::forward(&m.weights, &b, &exec).is_err());
    // empty batch is fine
    let b = Batch::from_ids(&[], 0);
    assert!(fp32::forward(&m.weights, &b, &exec).unwrap().is_empty());
    // no classifier → error, not panic
    let d = temp_dir("nocls").unwrap();
    write_tiny_bert_with(
        &d,
        &TinyBertOptions {
            num_labels: None,
            ..Default::default()
        },
    )
    .unwrap();
    let m2 = BertModel::load(&d).unwrap();
    let b = m2.tokenizer.encode_batch(&["a"], 8).unwrap();
    assert!(fp32::classify(&m2.weights, &b, &exec).is_err());
}
