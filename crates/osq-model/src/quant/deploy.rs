//! Deploy-mode fake-quant executor: the quantized graph written out plainly, one sequence at a
//! time, with exact i64 dot products of codes (scales factored out) and the ReQuant/nonlinear
//! steps of docs/quant-graph.md. It shares only the derived constants and the scalar definitions
//! (`Requant::apply`, `nonlin`) with the integer executor — no packing, no zero-point folding, no
//! strides, no batching, no threads inside a sequence — and must produce the same codes at every
//! node of every layer.

use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::tokenize::Batch;

use super::graph::{LinDerived, QuantModel};
use super::nonlin::sat_i32;
use super::trace::Trace;
use super::Node;

/// Final hidden codes `[L, hidden]`, the task head's logits (empty without a head) and the
/// trace of one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqOutput {
    pub hidden: Vec<u8>,
    /// `[labels]` (token heads `[L, labels]`).
    pub logits: Vec<f32>,
    pub trace: Trace,
}

pub(crate) fn check_ids(c: &crate::config::BertConfig, ids: &[u32], types: &[u32]) -> Result<()> {
    if ids.len() != types.len() {
        return Err(ModelError::Input(format!(
            "{} token ids but {} type ids",
            ids.len(),
            types.len()
        )));
    }
    if ids.len() > c.max_tokens() {
        return Err(ModelError::Input(format!(
            "sequence length {} exceeds the model's {} positions",
            ids.len(),
            c.max_tokens()
        )));
    }
    if let Some(&id) = ids.iter().find(|&&i| i as usize >= c.vocab_size) {
        return Err(ModelError::Input(format!(
            "token id {id} out of range (vocab_size {})",
            c.vocab_size
        )));
    }
    if let Some(&t) = types.iter().find(|&&t| t as usize >= c.type_vocab_size) {
        return Err(ModelError::Input(format!(
            "token type id {t} out of range (type_vocab_size {})",
            c.type_vocab_size
        )));
    }
    Ok(())
}

/// `Σ_k (x[k] − z)·w[k]` exactly, then the scalar i32 the kernels would see.
pub(crate) fn dot_acc(x: &[u8], z: i32, w: &[i8]) -> i32 {
    let mut acc = 0i64;
    for (&a, &b) in x.iter().zip(w) {
        acc += (a as i64 - z as i64) * b as i64;
    }
    // Legal inputs never leave i32 (K·255·127 < 2^31); the kernels wrap, we check.
    debug_assert!(acc >= i32::MIN as i64 && acc <= i32::MAX as i64);
    acc as i32
}

/// A Linear to codes: `[L, N]`.
fn linear_codes(
    x: &[u8],
    rows: usize,
    z: i32,
    lin: &super::graph::QLinear,
    d: &LinDerived,
) -> Vec<u8> {
    let (n, k) = (lin.n(), lin.k());
    let mut out = vec![0u8; rows * n];
    for t in 0..rows {
        let xr = &x[t * k..(t + 1) * k];
        for j in 0..n {
            let acc = dot_acc(xr, z, lin.w.row(j));
            out[t * n + j] = d.code(d.requant.apply_i32(acc, j), j);
        }
    }
    out
}

/// A Linear to fixed point, bias included: `[L, N]` i64 (not saturated).
fn linear_fixed(
    x: &[u8],
    rows: usize,
    z: i32,
    lin: &super::graph::QLinear,
    d: &LinDerived,
) -> Vec<i64> {
    let (n, k) = (lin.n(), lin.k());
    let mut out = vec![0i64; rows * n];
    for t in 0..rows {
        let xr = &x[t * k..(t + 1) * k];
        for j in 0..n {
            let acc = dot_acc(xr, z, lin.w.row(j));
            out[t * n + j] = d.fixed(d.requant.apply_i32(acc, j), j);
        }
    }
    out
}

/// Runs one sequence (no padding).
pub fn forward_sequence(qm: &QuantModel, ids: &[u32], types: &[u32]) -> Result<SeqOutput> {
    check_ids(qm.config(), ids, types)?;
    let p = &qm.params;
    let c = &p.config;
    let (h, inter, heads, dh) = (
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.head_dim(),
    );
    let l_len = ids.len();
    let mut trace = Trace::new(p.layers.len());

    // Embedding sum in fixed point, then the embedding LN (node 1).
    let mut pos = Vec::with_capacity(l_len);
    c.position_ids(ids, &mut pos);
    let mut r = vec![0i32; l_len * h];
    for t in 0..l_len {
        let (wi, ti, pi) = (ids[t] as usize, types[t] as usize, pos[t]);
        let (mw, mt, mp) = (
            &qm.emb.word[wi],
            &qm.emb.token_type[ti],
            &qm.emb.position[pi],
        );
        for j in 0..h {
            let v = mw.apply(p.word.codes[wi * h + j] as i64)
                + mt.apply(p.token_type.codes[ti * h + j] as i64)
                + mp.apply(p.position.codes[pi * h + j] as i64);
            r[t * h + j] = sat_i32(v);
        }
    }
    let mut x = vec![0u8; l_len * h];
    for t in 0..l_len {
        qm.emb
            .ln
            .row(&r[t * h..(t + 1) * h], &mut x[t * h..(t + 1) * h]);
    }
    trace.set(0, Node::Emb, x.clone());
    let buckets = p
        .relative_bias
        .as_ref()
        .map(|t| crate::relative::bucket_table(l_len, t.buckets));

    for (l, (lp, ld)) in p.layers.iter().zip(&qm.layers).enumerate() {
        let (xin, _) = p.layer_input(l);
        let zx = xin.zero_point;
        let q = linear_codes(&x, l_len, zx, &lp.query, &ld.query);
        let k = linear_codes(&x, l_len, zx, &lp.key, &ld.key);
        let v = linear_codes(&x, l_len, zx, &lp.value, &ld.value);
        let (zq, zk, zv) = (
            lp.node(Node::Query).zero_point as i64,
            lp.node(Node::Key).zero_point as i64,
            lp.node(Node::Value).zero_point as i64,
        );
        let zp = lp.node(Node::Probs).zero_point as i64;
        // Attention: probs [heads, L, L], context [L, H].
        let mut probs = vec![0u8; heads * l_len * l_len];
        let mut ctx = vec![0u8; l_len * h];
        let mut scores = vec![0i32; l_len];
        let mut e = vec![0i64; l_len];
        for hd in 0..heads {
            let off = hd * dh;
            for i in 0..l_len {
                for (j, s) in scores.iter_mut().enumerate() {
                    let mut acc = 0i64;
                    for d in 0..dh {
                        acc += (q[i * h + off + d] as i64 - zq) * (k[j * h + off + d] as i64 - zk);
                    }
                    *s = acc as i32;
                }
                if let (Some(b), Some(t)) = (&ld.rel_bias, &buckets) {
                    let u = b.head(hd);
                    crate::relative::add_bias_row_i32(&mut scores, i, t, u, b.shift);
                }
                let row = &mut probs[(hd * l_len + i) * l_len..(hd * l_len + i + 1) * l_len];
                ld.softmax.row(&scores, &mut e, row);
            }
            for i in 0..l_len {
                let prow = &probs[(hd * l_len + i) * l_len..(hd * l_len + i + 1) * l_len];
                for d in 0..dh {
                    let mut acc = 0i64;
                    for (j, &pj) in prow.iter().enumerate() {
                        acc += (pj as i64 - zp) * (v[j * h + off + d] as i64 - zv);
                    }
                    ctx[i * h + off + d] = ld.context.apply(acc as i32, d) as u8;
                }
            }
        }
        // Attention output + shortcut → MHA-LN (node 7).
        let zc = lp.node(Node::Context).zero_point;
        let dense = linear_fixed(&ctx, l_len, zc, &lp.attn_out, &ld.attn_out);
        let mut r = vec![0i32; l_len * h];
        for t in 0..l_len {
            for j in 0..h {
                let sc = ld.attn_shortcut[j].apply(x[t * h + j] as i64 - zx as i64);
                r[t * h + j] = sat_i32(dense[t * h + j] + sc);
            }
        }
        let mut x7 = vec![0u8; l_len * h];
        for t in 0..l_len {
            ld.attn_ln
                .row(&r[t * h..(t + 1) * h], &mut x7[t * h..(t + 1) * h]);
        }
        // FFN1 → GELU (node 8).
        let z7 = lp.node(Node::MhaLn).zero_point;
        let hh = linear_fixed(&x7, l_len, z7, &lp.ffn1, &ld.ffn1);
        let x8: Vec<u8> = hh.iter().map(|&v| ld.gelu.code(sat_i32(v))).collect();
        // FFN2 + shortcut → FFN-LN (node 9).
        let z8 = lp.node(Node::Gelu).zero_point;
        let dense = linear_fixed(&x8, l_len, z8, &lp.ffn2, &ld.ffn2);
        for t in 0..l_len {
            for j in 0..h {
                let sc = ld.ffn_shortcut[j].apply(x7[t * h + j] as i64 - z7 as i64);
                r[t * h + j] = sat_i32(dense[t * h + j] + sc);
            }
        }
        let mut x9 = vec![0u8; l_len * h];
        for t in 0..l_len {
            ld.ffn_ln
                .row(&r[t * h..(t + 1) * h], &mut x9[t * h..(t + 1) * h]);
        }
        debug_assert_eq!(x8.len(), l_len * inter);
        trace.set(l, Node::Query, q);
        trace.set(l, Node::Key, k);
        trace.set(l, Node::Value, v);
        trace.set(l, Node::Probs, probs);
        trace.set(l, Node::Context, ctx);
        trace.set(l, Node::MhaLn, x7);
        trace.set(l, Node::Gelu, x8);
        trace.set(l, Node::FfnLn, x9.clone());
        x = x9;
    }
    let mut logits = vec![];
    if let (Some(hp), Some(hd)) = (&p.head, &qm.head) {
        let z = p.output_node().zero_point;
        let o = super::head::reference(hp, hd, z, &x, l_len);
        trace.set_head(o.input_codes, &o.logits);
        logits = o.logits;
    }
    Ok(SeqOutput {
        hidden: x,
        logits,
        trace,
    })
}

/// Every sequence of a padded batch (padding ignored), sequences in parallel.
pub fn forward(qm: &QuantModel, batch: &Batch) -> Result<Vec<SeqOutput>> {
    batch.validate()?;
    (0..batch.batch)
        .into_par_iter()
        .map(|b| {
            let row = b * batch.seq_len;
            let len = batch.lengths[b];
            forward_sequence(
                qm,
                &batch.ids[row..row + len],
                &batch.type_ids[row..row + len],
            )
        })
        .collect()
}
