//! End-to-end tests of the bench on the tiny generated BERT: thread identity (1 vs 2 threads,
//! every engine), the concurrent mode's checks, the input builder, the parameter-dir path.

use std::sync::Arc;
use std::time::Duration;

use osq_model::fp32::ThreadPool;
use osq_model::quant::integer::IntegerModel;
use osq_model::quant::{format, minmax, BitsConfig, QuantModel, QuantParams};
use osq_model::testing::{temp_dir, write_tiny_bert, SENTENCES};
use osq_model::{BertWeights, Tokenizer};
use osq_serve_bench::engine::{Engine, EngineKind, Threads};
use osq_serve_bench::grid::{cell_batch, run_grid, Grid, Timing};
use osq_serve_bench::inputs::{encode_each, make_batch, Fill};
use osq_serve_bench::serve::{load_test, references, LoadOpts, QueueOpts};

fn sentences() -> Vec<String> {
    SENTENCES.iter().map(|s| s.to_string()).collect()
}

struct Tiny {
    dir: osq_model::testing::TestDir,
    weights: BertWeights,
}

fn tiny() -> Tiny {
    let dir = temp_dir("serve-bench").unwrap();
    write_tiny_bert(&dir, 7).unwrap();
    let weights = BertWeights::load_dir(&dir).unwrap();
    Tiny { dir, weights }
}

fn tok(t: &Tiny) -> Tokenizer {
    Tokenizer::from_file(
        &t.dir.join("tokenizer.json"),
        t.weights.config.max_position_embeddings,
    )
    .unwrap()
}

fn params(t: &Tiny, bits: BitsConfig) -> QuantParams {
    let b = tok(t).encode_batch(SENTENCES, 64).unwrap();
    let ranges = minmax::collect(&t.weights, &[b], &ThreadPool::single(), true).unwrap();
    QuantParams::build(&t.weights, &ranges, bits, "minmax", true).unwrap()
}

fn int_engine(t: &Tiny, bits: BitsConfig) -> Engine {
    let kind = if bits.weight_bits() == 4 {
        EngineKind::Int4
    } else {
        EngineKind::Int8
    };
    let m = IntegerModel::new(QuantModel::new(params(t, bits)).unwrap()).unwrap();
    Engine::from_integer(kind, m, tok(t))
}

fn engines(t: &Tiny) -> Vec<Engine> {
    vec![
        Engine::from_fp32(t.weights.clone(), tok(t)),
        int_engine(t, BitsConfig::W8A8),
        int_engine(t, BitsConfig::W4A8),
    ]
}

#[test]
fn full_fill_gives_exactly_seq_real_tokens() {
    let t = tiny();
    let k = tok(&t);
    let s = sentences();
    for seq in [3, 16, 40, 64] {
        let b = make_batch(&k, &s, 3, seq, Fill::Full, 0).unwrap();
        assert_eq!(b.seq_len, seq);
        assert_eq!(b.lengths, vec![seq; 3]);
        assert!(b.mask.iter().all(|&m| m == 1));
        // Rows differ (different starting sentences).
        assert_ne!(b.sequence(0), b.sequence(1));
        assert_eq!(b.ids[0], k.token_to_id("[CLS]").unwrap());
        assert_eq!(b.ids[seq - 1], k.token_to_id("[SEP]").unwrap());
    }
    let p = make_batch(&k, &s, 2, 32, Fill::Pad, 0).unwrap();
    assert_eq!(p.seq_len, 32);
    assert!(p.lengths.iter().all(|&l| l < 32));
    assert!(make_batch(&k, &s, 1, 2, Fill::Full, 0).is_err());
}

/// Results identical with 1 and 2 threads, every engine, several shapes (the grid asserts it).
#[test]
fn one_and_two_threads_give_identical_outputs() {
    let t = tiny();
    let es = engines(&t);
    let s = sentences();
    let ctx = [Threads::new(1).unwrap(), Threads::new(2).unwrap()];
    for (b, seq) in [(1, 16), (3, 64), (8, 40)] {
        let batch = cell_batch(&es, &s, b, seq, Fill::Full).unwrap();
        for e in &es {
            let o1 = e.run(&batch, &ctx[0]).unwrap();
            let o2 = e.run(&batch, &ctx[1]).unwrap();
            assert_eq!(o1, o2, "{} b{b} s{seq}", e.name());
            assert_eq!(o1.sequences(), b);
        }
    }
    let grid = Grid {
        batches: vec![1, 4],
        seqs: vec![8, 32],
        threads: vec![1, 2],
        fill: Fill::Full,
        timing: Timing {
            warmup: 1,
            min_runs: 3,
            max_runs: 5,
            max_seconds: 0.0,
            block_seconds: 0.01,
            settle_seconds: 0.001,
            alone: false,
        },
    };
    // Interleaved, then every engine alone (back to back): the same cells and run counts.
    for alone in [false, true] {
        let grid = Grid {
            timing: Timing {
                alone,
                ..grid.timing
            },
            ..grid.clone()
        };
        let mut lines = Vec::new();
        let res = run_grid(&es, &s, &grid, &ctx, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(res.records.len(), 2 * 2 * 2 * es.len());
        assert_eq!(res.identity.len(), 2 * 2 * es.len());
        res.assert_identical().unwrap();
        assert!(res.records.iter().all(|r| r.runs >= 3 && r.runs <= 5));
        assert!(res.records.iter().all(|r| r.gmac.is_some_and(|g| g > 0.0)));
        assert_eq!(lines.len(), 8);
    }
}

/// A sentence gives the same output alone and inside a ragged batch (what the concurrent mode
/// relies on), for the integer engines. (FP32 is not bit-identical: the gemm crate's rounding
/// depends on the number of rows; see `fp32_batched_is_close_to_alone`.)
#[test]
fn batched_equals_alone() {
    let t = tiny();
    let th = Threads::new(2).unwrap();
    for e in engines(&t).into_iter().filter(|e| e.kind().is_integer()) {
        let ids = encode_each(e.tokenizer(), &sentences(), 64).unwrap();
        let refs = references(&e, ids.clone(), &th).unwrap();
        let batch = osq_model::Batch::from_ids(&ids, e.tokenizer().pad_id());
        let out = e.run(&batch, &th).unwrap();
        let emb = e.embeddings(&out);
        let h = e.hidden_size();
        for i in 0..ids.len() {
            assert_eq!(out.sequence_bytes(i), refs.outputs[i], "{} #{i}", e.name());
            let a = &emb[i * h..(i + 1) * h];
            assert!(
                a.iter()
                    .zip(&refs.embeddings[i])
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} embedding #{i}",
                e.name()
            );
        }
    }
}

#[test]
fn fp32_batched_is_close_to_alone() {
    let t = tiny();
    let th = Threads::new(1).unwrap();
    let e = Engine::from_fp32(t.weights.clone(), tok(&t));
    let ids = encode_each(e.tokenizer(), &sentences(), 64).unwrap();
    let refs = references(&e, ids.clone(), &th).unwrap();
    let batch = osq_model::Batch::from_ids(&ids, e.tokenizer().pad_id());
    let out = e.run(&batch, &th).unwrap();
    let f = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    for i in 0..ids.len() {
        let (a, r) = (f(&out.sequence_bytes(i)), f(&refs.outputs[i]));
        assert_eq!(a.len(), r.len());
        let d = a
            .iter()
            .zip(&r)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "#{i}: max |d| {d}");
    }
}

#[test]
fn concurrent_mode_answers_every_request_correctly() {
    let t = tiny();
    for e in [
        int_engine(&t, BitsConfig::W8A8),
        Engine::from_fp32(t.weights.clone(), tok(&t)),
    ] {
        let ids = encode_each(e.tokenizer(), &sentences(), 64).unwrap();
        let refs = Arc::new(references(&e, ids, &Threads::new(1).unwrap()).unwrap());
        let e = Arc::new(e);
        for max_batch in [1, 4] {
            let o = LoadOpts {
                clients: 4,
                requests: 203,
                queue: QueueOpts {
                    max_batch,
                    max_wait: Duration::from_micros(200),
                },
                seed: 1,
                tolerance: (!e.kind().is_integer()).then_some(1e-4),
            };
            let r = load_test(
                Arc::clone(&e),
                Threads::new(2).unwrap(),
                Arc::clone(&refs),
                &o,
            )
            .unwrap();
            r.assert_ok().unwrap();
            assert_eq!(r.correct, 203);
            if e.kind().is_integer() {
                assert_eq!(r.bit_identical, 203);
            }
            assert_eq!(r.server.requests, 203);
            assert!(r.server.max_batch_seen <= max_batch);
            assert_eq!(r.latency.unwrap().runs, 203);
        }
    }
}

/// The checker catches wrong answers: corrupt the reference of one sentence.
#[test]
fn concurrent_mode_detects_wrong_answers() {
    let t = tiny();
    let e = int_engine(&t, BitsConfig::W8A8);
    let ids = encode_each(e.tokenizer(), &sentences(), 64).unwrap();
    let mut refs = references(&e, ids, &Threads::new(1).unwrap()).unwrap();
    refs.outputs[3][0] ^= 1;
    let o = LoadOpts {
        clients: 2,
        requests: 100,
        queue: QueueOpts {
            max_batch: 4,
            max_wait: Duration::ZERO,
        },
        seed: 3,
        tolerance: None,
    };
    let r = load_test(Arc::new(e), Threads::new(1).unwrap(), Arc::new(refs), &o).unwrap();
    assert!(r.wrong_output > 0);
    assert_eq!(r.correct + r.wrong_output, 100);
    assert!(r.assert_ok().is_err());
}

/// The parameter-directory path used by the binary (format::save → Engine::load_int), with the
/// bits checked against the engine kind.
#[test]
fn int_engine_loads_from_param_dir() {
    let t = tiny();
    let d = temp_dir("serve-bench-params").unwrap();
    format::save(&params(&t, BitsConfig::W8A8), &d, Some(&t.dir)).unwrap();
    let e = Engine::load_int(EngineKind::Int8, &d, None).unwrap();
    assert_eq!(e.kind(), EngineKind::Int8);
    assert!(Engine::load_int(EngineKind::Int4, &d, None).is_err());
    let direct = int_engine(&t, BitsConfig::W8A8);
    let th = Threads::new(1).unwrap();
    let b = make_batch(e.tokenizer(), &sentences(), 2, 24, Fill::Full, 0).unwrap();
    assert_eq!(e.run(&b, &th).unwrap(), direct.run(&b, &th).unwrap());
    let wb = osq_serve_bench::memory::weight_bytes(&e).unwrap();
    assert!(wb.packed > 0 && wb.embedding_codes > 0 && wb.redundant_linear_codes > 0);
    let fw = osq_serve_bench::memory::weight_bytes(&Engine::load_fp32(&t.dir).unwrap()).unwrap();
    assert!(wb.total < fw.total);
}

/// The profiler times the executor itself; timed and untimed forwards agree.
#[test]
fn profile_times_the_executor() {
    let t = tiny();
    for bits in [BitsConfig::W8A8, BitsConfig::W4A8] {
        let e = int_engine(&t, bits);
        let b = make_batch(e.tokenizer(), &sentences(), 3, 40, Fill::Full, 0).unwrap();
        for n in [1, 2] {
            let p = osq_serve_bench::profile::profile(
                e.integer().unwrap(),
                e.name(),
                &b,
                &Threads::new(n).unwrap(),
                2,
            )
            .unwrap();
            assert_eq!(p.stages.len(), osq_model::quant::integer::STAGES.len());
        }
    }
}
