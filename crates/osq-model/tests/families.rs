//! The FP32 forward of every BERT-family architecture against Hugging Face transformers: the
//! golden fixtures of `tools/make_family_fixtures.py` (tiny random models saved by
//! `save_pretrained`, their `last_hidden_state` on fixed ids, padded in one batch).

use std::path::{Path, PathBuf};

use osq_model::{fp32, relative, Batch, BertWeights, Family, ThreadPool};
use safetensors::SafeTensors;

/// Largest |osq − transformers| accepted on a hidden state.
const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/families")
}

struct Expected {
    hidden: Vec<f32>,
    seqs: Vec<(Vec<u32>, Vec<u32>)>,
    buckets: Option<Vec<i64>>,
}

fn i64s(st: &SafeTensors, name: &str) -> Vec<i64> {
    let t = st.tensor(name).unwrap();
    t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn expected(dir: &Path) -> Expected {
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let hidden = if st.tensor("hidden").is_ok() {
        f32s(&st, "hidden")
    } else {
        f32s(&st, "logits")
    };
    let (ids, types, lengths) = (
        i64s(&st, "ids"),
        i64s(&st, "type_ids"),
        i64s(&st, "lengths"),
    );
    let mut seqs = Vec::new();
    let mut at = 0;
    for &n in &lengths {
        let r = at..at + n as usize;
        seqs.push((
            ids[r.clone()].iter().map(|&x| x as u32).collect(),
            types[r].iter().map(|&x| x as u32).collect(),
        ));
        at += n as usize;
    }
    let buckets = st.tensor("buckets").ok().map(|_| i64s(&st, "buckets"));
    Expected {
        hidden,
        seqs,
        buckets,
    }
}

#[test]
fn fp32_forward_matches_transformers_for_every_family() {
    let exec = ThreadPool::new(2).unwrap();
    let mut seen = Vec::new();
    for family in Family::ALL {
        let dir = fixtures().join(family.model_type());
        let w = BertWeights::load_dir(&dir).unwrap_or_else(|e| panic!("{family:?}: {e}"));
        assert_eq!(w.config.family, family);
        let e = expected(&dir);
        let pad = w.config.pad_token_id.unwrap_or(0);
        let batch = Batch::from_typed_ids(&e.seqs, pad);
        let hs = fp32::forward(&w, &batch, &exec).unwrap();
        let h = w.config.hidden_size;
        let mut max = 0f32;
        let mut at = 0;
        for (b, (ids, _)) in e.seqs.iter().enumerate() {
            for t in 0..ids.len() {
                let got = &hs[(b * batch.seq_len + t) * h..][..h];
                let want = &e.hidden[(at + t) * h..][..h];
                for (g, w) in got.iter().zip(want) {
                    max = max.max((g - w).abs());
                }
            }
            at += ids.len();
        }
        println!(
            "{:12} max |osq − transformers| = {max:.2e} over {at} tokens",
            family.model_type()
        );
        assert!(max <= TOL, "{family:?}: max abs {max} > {TOL}");
        // the same sequence alone gives the same bits (padding never leaks)
        let alone = Batch::from_typed_ids(&e.seqs[2..3], pad);
        let ha = fp32::forward(&w, &alone, &exec).unwrap();
        let n = e.seqs[2].0.len() * h;
        assert_eq!(&ha[..n], &hs[2 * batch.seq_len * h..][..n], "{family:?}");
        seen.push(family);
    }
    assert_eq!(seen.len(), 6);
}

#[test]
fn mpnet_buckets_match_torch() {
    let e = expected(&fixtures().join("mpnet"));
    let want = e
        .buckets
        .expect("the mpnet fixture records torch's buckets");
    assert_eq!(want.len(), 1201);
    for (i, &b) in want.iter().enumerate() {
        let rel = i as i64 - 600;
        assert_eq!(
            relative::bucket(rel, 32) as i64,
            b,
            "relative position {rel}"
        );
    }
}

/// Every family × head (single-label with named labels, multi-label, regression, token): the
/// head's tensors, task and labels are read from the checkpoint and `config.json`, and the FP32
/// logits equal transformers'.
#[test]
fn fp32_heads_match_transformers_for_every_family() {
    use osq_model::head::{Activation, Task};
    let exec = ThreadPool::new(2).unwrap();
    let heads = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/heads");
    let mut seen = 0;
    for family in Family::ALL {
        for (task, want, labels) in [
            ("single", Task::SingleLabel, 3),
            ("multi", Task::MultiLabel, 4),
            ("regression", Task::Regression, 1),
            ("token", Task::Token, 5),
        ] {
            let dir = heads.join(format!("{}-{task}", family.model_type()));
            let label = format!("{family:?} {task}");
            let w = BertWeights::load_dir(&dir).unwrap_or_else(|e| panic!("{label}: {e}"));
            let hd = w
                .head
                .as_ref()
                .unwrap_or_else(|| panic!("{label}: no head read"));
            assert_eq!(hd.task, want, "{label}");
            assert_eq!(hd.num_labels(), labels, "{label}");
            match task {
                "single" => assert_eq!(hd.labels, ["negative", "neutral", "positive"], "{label}"),
                "token" => assert!(hd.dense.is_none(), "{label}"),
                _ => {
                    let act = hd.dense.as_ref().unwrap().1;
                    assert_eq!(act, Activation::of_family(family), "{label}");
                }
            }
            let e = expected(&dir);
            let pad = w.config.pad_token_id.unwrap_or(0);
            let batch = Batch::from_typed_ids(&e.seqs, pad);
            let logits = fp32::classify(&w, &batch, &exec).unwrap();
            let mut got = Vec::new();
            if want == Task::Token {
                for (b, (ids, _)) in e.seqs.iter().enumerate() {
                    let r = b * batch.seq_len * labels;
                    got.extend_from_slice(&logits[r..r + ids.len() * labels]);
                }
            } else {
                got = logits;
            }
            assert_eq!(got.len(), e.hidden.len(), "{label}");
            let max = got
                .iter()
                .zip(&e.hidden)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            println!("{label:24} max |osq - transformers| logits {max:.2e}");
            assert!(max <= TOL, "{label}: {max}");
            seen += 1;
        }
    }
    assert_eq!(seen, 24);
}
