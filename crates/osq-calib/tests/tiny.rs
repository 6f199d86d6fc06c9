//! Calibration on the tiny generated BERT: every method, the TWC range property, the OS+ fold,
//! the backward pass, determinism and input errors.

use std::path::{Path, PathBuf};

use osq_calib::backward::{layer_backward, BackCtx, QGrads};
use osq_calib::engine::{Engine, LayerTape, QGraph};
use osq_calib::observe::{self, Simple};
use osq_calib::{data, osplus, twc, CalibOptions, Method, Progress};
use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::{BitsConfig, Node};
use osq_model::testing::{temp_dir, write_tiny_bert, SplitMix64};
use osq_model::{Batch, BertModel};

const WORDS: [&str; 30] = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "and", "of", "to", "in", "it", "was", "good",
    "bad", "movie", "great", "not", "very", "film", "this", "that", "i", "you", "he", "she", "we",
    "love", "hate", "run",
];

fn sentences(n: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let len = 3 + (rng.next_u64() % 12) as usize;
            let mut s: Vec<&str> = (0..len)
                .map(|_| WORDS[(rng.next_u64() % WORDS.len() as u64) as usize])
                .collect();
            if rng.next_u64().is_multiple_of(3) {
                s.push("!");
            } else {
                s.push(".");
            }
            s.join(" ")
        })
        .collect()
}

struct Fixture {
    dir: osq_model::testing::TestDir,
    model: BertModel,
    data: PathBuf,
}

fn fixture(tag: &str, n: usize) -> Fixture {
    let dir = temp_dir(tag).unwrap();
    write_tiny_bert(&dir, 11).unwrap();
    let model = BertModel::load(&dir).unwrap();
    let data = dir.join("calib.txt");
    std::fs::write(&data, sentences(n, 5).join("\n")).unwrap();
    Fixture { dir, model, data }
}

fn batches(f: &Fixture) -> Vec<Batch> {
    data::load(&f.data, &f.model.tokenizer, 256, 0, data::CALIB_MAX_LEN).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn valid_max_diff(b: &Batch, x: &[f32], y: &[f32], h: usize) -> f32 {
    let mut m = 0f32;
    for (r, (xr, yr)) in x.chunks_exact(h).zip(y.chunks_exact(h)).enumerate() {
        if b.mask[r] != 0 {
            m = m.max(max_abs_diff(xr, yr));
        }
    }
    m
}

#[test]
fn engine_fp_matches_the_fp32_forward_with_and_without_migration() {
    let f = fixture("engine", 40);
    let w = &f.model.weights;
    let exec = ThreadPool::new(2).unwrap();
    let h = w.config.hidden_size;
    for b in batches(&f) {
        let want = fp32::forward(w, &b, &exec).unwrap();
        for migrate in [false, true] {
            let g = QGraph::new(w.clone(), migrate).unwrap();
            let got = Engine::new(&g, &exec, None).forward(&b, None, None);
            let d = valid_max_diff(&b, &got, &want, h);
            assert!(d < 1e-4, "migrate {migrate}: {d}");
        }
    }
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn every_method_produces_valid_ranges() {
    let f = fixture("methods", 48);
    let b = batches(&f);
    for bits in [BitsConfig::W8A8, BitsConfig::W4A4] {
        for m in Method::ALL {
            for gamma in [true, false] {
                let mut o = CalibOptions::new(m, bits);
                o.gamma = gamma;
                o.threads = 2;
                let c = osq_calib::calibrate(&f.model.weights, &b, &o)
                    .unwrap_or_else(|e| panic!("{} {bits}: {e}", m.name()));
                osq_calib::check_ranges(&c.ranges).unwrap();
                for (l, lr) in c.ranges.layers.iter().enumerate() {
                    for n in Node::ALL {
                        let r = lr.node(n);
                        assert_eq!(r.is_some(), n.in_layer(l));
                        if let Some(r) = r {
                            assert!(r.min <= r.max, "{} l{l} {}: {r:?}", m.name(), n.name());
                        }
                    }
                    assert!(lr.attn_residual_absmax > 0.0 && lr.ffn1_absmax > 0.0);
                }
                assert!(c.report.output_mse.is_finite());
                let p = c.params().unwrap_or_else(|e| panic!("{}: {e}", m.name()));
                assert_eq!(p.migrate_gamma, gamma && m != Method::OsPlus);
                assert_eq!(p.bits, bits);
                osq_model::quant::QuantModel::new(p).unwrap();
            }
        }
    }
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn token_wise_clipping_never_widens_the_minmax_range() {
    let f = fixture("twc", 64);
    let b = batches(&f);
    let exec = ThreadPool::new(2).unwrap();
    for migrate in [true, false] {
        let g = QGraph::new(f.model.weights.clone(), migrate).unwrap();
        let stats = observe::collect(&g, &b, &exec, true, &Progress::hidden()).unwrap();
        let mm = stats.simple(Simple::MinMax);
        for bits in [8u32, 6, 4] {
            for &a in &twc::ratio_grid(bits) {
                let r = twc::ranges_for(&stats, &vec![[a; 9]; stats.num_layers()]);
                for (lr, lm) in r.layers.iter().zip(&mm.layers) {
                    for (x, y) in lr.nodes.iter().zip(&lm.nodes) {
                        if let (Some(x), Some(y)) = (x, y) {
                            assert!(x.min >= y.min && x.max <= y.max, "α {a}: {x:?} ⊄ {y:?}");
                        }
                    }
                }
            }
        }
        // and the coarse search result itself
        let (_, r) = twc::coarse(
            &g,
            &osq_calib::objective::Objective::new(&g.w, osq_calib::Loss::Hidden)
                .expect("the hidden loss applies to every model"),
            &b,
            &exec,
            &stats,
            osq_model::quant::BitsConfig::W6A6,
            1,
            &Progress::hidden(),
        );
        for (lr, lm) in r.layers.iter().zip(&mm.layers) {
            for (x, y) in lr.nodes.iter().zip(&lm.nodes) {
                if let (Some(x), Some(y)) = (x, y) {
                    assert!(x.min >= y.min && x.max <= y.max, "{x:?} ⊄ {y:?}");
                }
            }
        }
    }
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn osplus_fold_keeps_the_fp32_output() {
    let f = fixture("osplus", 40);
    let b = batches(&f);
    let exec = ThreadPool::new(2).unwrap();
    let h = f.model.weights.config.hidden_size;
    let g0 = QGraph::new(f.model.weights.clone(), false).unwrap();
    let mut g = g0.clone();
    let res = osplus::apply(&mut g, &b, &exec, BitsConfig::W6A6, &Progress::hidden()).unwrap();
    assert_eq!(res.len(), 2 * f.model.weights.layers.len());
    assert!(
        res.iter().any(|r| r.scaled_channels > 0),
        "the γ outlier channel should be scaled: {res:?}"
    );
    // FP32 noise floor of this model: a 1-ulp change of the embedding LN's γ.
    let mut gu = g0.clone();
    for a in gu.emb_ln.a.iter_mut() {
        *a = f32::from_bits(a.to_bits() + 1);
    }
    let (mut worst, mut worst_rel, mut worst_emb, mut floor) = (0f32, 0f32, 0f32, 0f32);
    for batch in &b {
        let y0 = Engine::new(&g0, &exec, None).forward(batch, None, None);
        let y1 = Engine::new(&g, &exec, None).forward(batch, None, None);
        let yu = Engine::new(&gu, &exec, None).forward(batch, None, None);
        let d = valid_max_diff(batch, &y0, &y1, h);
        let mag = y0.iter().fold(1f32, |m, v| m.max(v.abs()));
        worst = worst.max(d);
        worst_rel = worst_rel.max(d / mag);
        floor = floor.max(valid_max_diff(batch, &y0, &yu, h));
        // the product output: mean-pooled, L2-normalized sentence embeddings
        let mut e0 = fp32::mean_pool(&y0, batch, h);
        let mut e1 = fp32::mean_pool(&y1, batch, h);
        fp32::l2_normalize(&mut e0, h);
        fp32::l2_normalize(&mut e1, h);
        worst_emb = worst_emb.max(max_abs_diff(&e0, &e1));
    }
    eprintln!(
        "OS+ fold: hidden states max |Δ| {worst} (relative {worst_rel}), sentence embeddings \
         max |Δ| {worst_emb}; FP32 noise floor (1-ulp γ change) {floor}"
    );
    assert!(
        worst_emb <= 1e-4,
        "OS+ fold changed the sentence embeddings by {worst_emb}"
    );
    assert!(
        worst_rel <= 1e-4,
        "OS+ fold changed the hidden states by {worst} ({worst_rel} rel.)"
    );
    assert!(
        worst <= 4.0 * floor.max(1e-5),
        "fold {worst} vs noise floor {floor}"
    );
    // the folded LN outputs are centred: the shifted channel ranges are symmetric
    let stats = observe::collect(&g, &b, &exec, false, &Progress::hidden()).unwrap();
    let r = stats.minmax(0, Node::Emb);
    assert!((r.max + r.min).abs() <= 0.05 * (r.max - r.min), "{r:?}");
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn layer_backward_matches_finite_differences() {
    let f = fixture("grad", 8);
    let b = batches(&f);
    let batch = &b[0];
    let exec = ThreadPool::single();
    for migrate in [false, true] {
        let g = QGraph::new(f.model.weights.clone(), migrate).unwrap();
        let eng = Engine::new(&g, &exec, None);
        let ctx = BackCtx::new(&eng);
        let u0 = eng.embed_stage(batch, &mut None, None);
        let mut rng = SplitMix64::new(3);
        let c = rng.normals(u0.len(), 1.0);
        let loss = |u: &[f32]| -> f64 {
            let y = eng.layer_stage(0, batch, u, &mut None, None);
            y.iter()
                .zip(&c)
                .enumerate()
                .filter(|(i, _)| batch.mask[i / g.w.config.hidden_size] != 0)
                .map(|(_, (a, b))| *a as f64 * *b as f64)
                .sum()
        };
        let mut tape = LayerTape::default();
        eng.layer_stage(0, batch, &u0, &mut None, Some(&mut tape));
        let h = g.w.config.hidden_size;
        let dout: Vec<f32> = c
            .iter()
            .enumerate()
            .map(|(i, &v)| if batch.mask[i / h] != 0 { v } else { 0.0 })
            .collect();
        let mut grads: QGrads = vec![[(0.0, 0.0); 9]; g.num_layers()];
        let du = layer_backward(&eng, &ctx, 0, batch, &tape, dout, &mut grads);
        let mut checked = 0;
        for k in 0..40 {
            let i = (k * 7919 + 13) % u0.len();
            if batch.mask[i / h] == 0 {
                continue;
            }
            let e = 1e-2f32;
            let mut up = u0.clone();
            up[i] += e;
            let mut dn = u0.clone();
            dn[i] -= e;
            let fd = (loss(&up) - loss(&dn)) / (2.0 * e as f64);
            let an = du[i] as f64;
            assert!(
                (fd - an).abs() <= 2e-2 * fd.abs().max(an.abs()) + 2e-2,
                "migrate {migrate} i {i}: fd {fd} vs backward {an}"
            );
            checked += 1;
        }
        assert!(checked > 10);
    }
    std::fs::remove_dir_all(&f.dir).ok();
}

fn params_bytes(f: &Fixture, b: &[Batch], m: Method) -> (Vec<u8>, Vec<u8>) {
    let mut o = CalibOptions::new(m, BitsConfig::W6A6);
    o.threads = 2;
    let c = osq_calib::calibrate(&f.model.weights, b, &o).unwrap();
    let p = c.params().unwrap();
    let out = temp_dir("det").unwrap();
    osq_model::quant::format::save(&p, &out, None).unwrap();
    let r = (
        std::fs::read(out.join("quant.safetensors")).unwrap(),
        std::fs::read(out.join("quant.json")).unwrap(),
    );
    std::fs::remove_dir_all(&out).ok();
    r
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let f = fixture("determinism", 48);
    for m in [Method::Os, Method::OsPlus, Method::Omse] {
        let b1 = data::load(&f.data, &f.model.tokenizer, 40, 9, data::CALIB_MAX_LEN).unwrap();
        let b2 = data::load(&f.data, &f.model.tokenizer, 40, 9, data::CALIB_MAX_LEN).unwrap();
        assert_eq!(b1, b2);
        assert_eq!(
            params_bytes(&f, &b1, m),
            params_bytes(&f, &b2, m),
            "{}",
            m.name()
        );
    }
    let b3 = data::load(&f.data, &f.model.tokenizer, 40, 10, data::CALIB_MAX_LEN).unwrap();
    let b1 = data::load(&f.data, &f.model.tokenizer, 40, 9, data::CALIB_MAX_LEN).unwrap();
    assert_ne!(b1, b3, "another seed samples other sentences");
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn max_len_truncates_the_calibration_texts() {
    let f = fixture("max-len", 48);
    let long = data::load(&f.data, &f.model.tokenizer, 40, 9, data::CALIB_MAX_LEN).unwrap();
    let longest = long.iter().map(|b| b.seq_len).max().unwrap();
    assert!(
        longest > 4,
        "the fixture has sentences of more than 4 tokens ({longest})"
    );
    let short = data::load(&f.data, &f.model.tokenizer, 40, 9, 4).unwrap();
    assert!(short
        .iter()
        .all(|b| b.seq_len <= 4 && b.lengths.iter().all(|&l| l <= 4)));
    // the same 40 sentences, only shorter
    let count = |bs: &[osq_model::Batch]| bs.iter().map(|b| b.batch).sum::<usize>();
    assert_eq!(count(&short), count(&long));
    let e = data::load(&f.data, &f.model.tokenizer, 40, 9, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--max-len") && e.contains('2'), "{e}");
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = temp_dir("bad").unwrap();
    let p = dir.join("empty.txt");
    std::fs::write(&p, "\n  \n\n").unwrap();
    let e = data::read_sentences(&p).unwrap_err().to_string();
    assert!(e.contains("empty.txt") && e.contains("no sentences"), "{e}");
    let p = dir.join("latin1.txt");
    std::fs::write(&p, b"good movie\ncaf\xe9 bad\n").unwrap();
    let e = data::read_sentences(&p).unwrap_err().to_string();
    assert!(
        e.contains("latin1.txt") && e.contains("UTF-8") && e.contains("line 2"),
        "{e}"
    );
    let e = data::read_sentences(Path::new("/nonexistent/calib.txt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/calib.txt"), "{e}");
    assert!(BitsConfig::parse("w7a7").is_none());
    assert!(Method::parse("magic").is_none());
    assert_eq!(Method::parse("OS+"), Some(Method::OsPlus));
    // missing model field
    write_tiny_bert(&dir, 1).unwrap();
    let cfg = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("intermediate_size");
    std::fs::write(&cfg, v.to_string()).unwrap();
    let e = BertModel::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("intermediate_size") && e.contains("missing"),
        "{e}"
    );
    // no batch at all
    write_tiny_bert(&dir, 1).unwrap();
    let m = BertModel::load(&dir).unwrap();
    let o = CalibOptions::new(Method::MinMax, BitsConfig::W8A8);
    let e = osq_calib::calibrate(&m.weights, &[], &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no calibration batch"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
