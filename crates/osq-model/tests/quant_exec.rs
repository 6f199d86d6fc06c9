//! Integer executor == deploy reference at all nine nodes, every layer, every bit config (the P8
//! ones too), every ISA, batched with padding, 1 and 2 threads; paper-mode agreement on the tiny
//! model.

mod quant_support;

use osq_kernels::Isa;
use osq_model::quant::integer::{IntOptions, IntegerModel};
use osq_model::quant::paper::PaperModel;
use osq_model::quant::{deploy, BitsConfig, Node, TraceStats};
use quant_support::*;

#[test]
fn integer_equals_reference_everywhere() {
    let t = tiny(7);
    let texts: Vec<&str> = SENTENCES.iter().rev().copied().collect();
    let b = batch(&t, &texts);
    assert!(
        b.lengths.iter().any(|&l| l < b.seq_len),
        "batch must have padding"
    );
    for bits in BitsConfig::SUPPORTED {
        let qm = model(&t, bits);
        let refs = deploy::forward(&qm, &b).unwrap();
        let im = IntegerModel::new(qm).unwrap();
        let nl = im.quant().params.layers.len();
        for isa in Isa::available() {
            for threads in [1usize, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let out = pool
                    .install(|| {
                        im.forward(
                            &b,
                            &IntOptions {
                                isa: Some(isa),
                                trace: true,
                            },
                        )
                    })
                    .unwrap();
                let traces = out.traces.as_ref().unwrap();
                let mut st = TraceStats::new(nl);
                for (s, r) in refs.iter().enumerate() {
                    st.add(&traces[s], &r.trace, &im.quant().params);
                    assert_eq!(out.sequence(s, 32), &r.hidden[..]);
                }
                for (l, ls) in st.layers.iter().enumerate() {
                    for n in Node::ALL {
                        if !n.in_layer(l) {
                            continue;
                        }
                        let s = &ls[n.index()];
                        assert!(s.total > 0, "{bits} {isa:?} layer {l} {n:?} empty");
                        assert!(
                            s.exact(),
                            "{bits} {isa:?} threads {threads} layer {l} node {}: {} of {} equal, max diff {}",
                            n.name(),
                            s.equal,
                            s.total,
                            s.max_abs_diff
                        );
                    }
                }
            }
        }
    }
}

/// The buffers the executor keeps between calls (row-block scratch, GELU codes) give the
/// reference's codes when a batch is followed by a smaller one (stale contents beyond the new
/// rows) and then by a larger one (buffers grow), on 1 and 2 threads.
#[test]
fn kept_buffers_across_batch_sizes() {
    let t = tiny(11);
    let im = IntegerModel::new(model(&t, BitsConfig::W8A8)).unwrap();
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for texts in [SENTENCES, &SENTENCES[..1], &SENTENCES[1..3], SENTENCES] {
            let b = batch(&t, texts);
            let refs = deploy::forward(im.quant(), &b).unwrap();
            let out = pool
                .install(|| im.forward(&b, &IntOptions::default()))
                .unwrap();
            assert_eq!(out.lengths.len(), texts.len());
            for (s, r) in refs.iter().enumerate() {
                assert_eq!(
                    out.sequence(s, 32),
                    &r.hidden[..],
                    "{threads} threads, seq {s}"
                );
            }
        }
    }
}

#[test]
fn paper_mode_agrees_on_the_tiny_model() {
    let t = tiny(3);
    let b = batch(&t, SENTENCES);
    for bits in BitsConfig::SUPPORTED {
        let qm = model(&t, bits);
        let refs = deploy::forward(&qm, &b).unwrap();
        let pm = PaperModel::new(&qm.params);
        let paper = pm.forward(&b).unwrap();
        let forced: Vec<_> = refs.iter().map(|r| r.trace.clone()).collect();
        let step = pm.forward_forced(&b, &forced).unwrap();
        let mut st = TraceStats::new(qm.params.layers.len());
        let mut ss = TraceStats::new(qm.params.layers.len());
        for ((r, p), q) in refs.iter().zip(&paper).zip(&step) {
            st.add(&r.trace, &p.trace, &qm.params);
            ss.add(&r.trace, &q.trace, &qm.params);
        }
        let ts = ss.total();
        eprintln!(
            "{bits}: paper-mode per step {:.4} % of {} codes, max |diff| {}",
            ts.percent_equal(),
            ts.total,
            ts.max_abs_diff
        );
        assert!(
            ts.max_abs_diff <= 1,
            "{bits}: per-step diff {}",
            ts.max_abs_diff
        );
        assert!(
            ts.percent_equal() >= 99.9,
            "{bits}: per step {}",
            ts.percent_equal()
        );
        let tot = st.total();
        eprintln!(
            "{bits}: paper-mode agreement (cascaded) {:.4} % of {} codes, max |diff| {}, >1: {}",
            tot.percent_equal(),
            tot.total,
            tot.max_abs_diff,
            tot.beyond_one
        );
        for n in Node::ALL {
            let s = st.node_total(n);
            eprintln!(
                "   {:7} {:.4} % max {} cos {:.6}",
                n.name(),
                s.percent_equal(),
                s.max_abs_diff,
                s.cosine()
            );
        }
        if bits == BitsConfig::W8A8 {
            assert!(
                tot.percent_equal() >= 99.0,
                "{bits}: {}",
                tot.percent_equal()
            );
        }
    }
}
