//! Hand-written backward pass of the fake-quantized graph, for the LSQ+ fine stage: gradients of
//! the loss with respect to every activation quantizer's scale and zero point, through the whole
//! encoder (Linear inputs, attention, softmax, GELU, LayerNorm, shortcuts). Weights are constants
//! (no weight gradients are formed).
//!
//! Fake-quant node (LSQ+, `u = x/s + ⌊z⌉`, `r = ⌊u⌉`, STE for both roundings):
//! - inside (`qmin ≤ r ≤ qmax`): `∂x̂/∂x = 1`, `∂x̂/∂s = r − u`, `∂x̂/∂z = 0`;
//! - clipped to `Q ∈ {qmin, qmax}`: `∂x̂/∂x = 0`, `∂x̂/∂s = Q − ⌊z⌉`, `∂x̂/∂z = −s`.
//!
//! The caller multiplies the parameter gradients by LSQ's `g = 1/sqrt(numel·qmax)`.

use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::Node;
use osq_model::{Batch, Linear};
use rayon::prelude::*;

use crate::engine::{transposed, Engine, FakeQ, LayerTape, LnId, Tape};

/// `(∂L/∂s, ∂L/∂z)` of every node of every layer (before the LSQ gradient scale).
pub type QGrads = Vec<[(f64, f64); 9]>;

/// Transposed Linear weights of every layer: query, key, value, attention output, FFN1, FFN2.
pub struct BackCtx {
    pub lin_t: Vec<[Linear; 6]>,
}

impl BackCtx {
    pub fn new(eng: &Engine<'_>) -> Self {
        BackCtx {
            lin_t: eng
                .g
                .w
                .layers
                .iter()
                .map(|lw| {
                    [
                        transposed(&lw.query),
                        transposed(&lw.key),
                        transposed(&lw.value),
                        transposed(&lw.attn_out),
                        transposed(&lw.ffn1),
                        transposed(&lw.ffn2),
                    ]
                })
                .collect(),
        }
    }
}

const CHUNK: usize = 8192;

/// Backward of a fake-quant node over a whole tensor: `d` in = ∂L/∂x̂, out = ∂L/∂x.
/// Returns `(∂L/∂s, ∂L/∂z)`; deterministic (fixed chunking, ordered reduction).
pub fn fq_backward(x_pre: &[f32], d: &mut [f32], q: Option<FakeQ>) -> (f64, f64) {
    let Some(q) = q else {
        return (0.0, 0.0);
    };
    let parts: Vec<(f64, f64)> = d
        .par_chunks_mut(CHUNK)
        .zip(x_pre.par_chunks(CHUNK))
        .map(|(dc, xc)| fq_backward_slice(xc, dc, &q))
        .collect();
    parts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1))
}

fn fq_backward_slice(x: &[f32], d: &mut [f32], q: &FakeQ) -> (f64, f64) {
    let inv = 1.0 / q.s;
    let zr = q.zr();
    let (mut ds, mut dz) = (0f64, 0f64);
    for (g, &xv) in d.iter_mut().zip(x) {
        if *g == 0.0 {
            continue;
        }
        let xs = xv * inv;
        let r = q.code(xv, inv, zr);
        let gv = *g as f64;
        if r < q.qmin {
            ds += gv * (q.qmin - zr) as f64;
            dz -= gv * q.s as f64;
            *g = 0.0;
        } else if r > q.qmax {
            ds += gv * (q.qmax - zr) as f64;
            dz -= gv * q.s as f64;
            *g = 0.0;
        } else {
            ds += gv * (r - (xs + zr)) as f64;
        }
    }
    (ds, dz)
}

/// LayerNorm backward in graph form (`X_q = a ⊙ n + c`): `d` in = ∂L/∂X_q, out = ∂L/∂x.
fn ln_backward(a: &[f32], n: &[f32], inv: &[f32], d: &mut [f32]) {
    let h = a.len();
    d.par_chunks_mut(h)
        .zip(n.par_chunks(h))
        .zip(inv.par_iter())
        .for_each(|((dr, nr), &iv)| {
            let mut m1 = 0f64;
            let mut m2 = 0f64;
            for j in 0..h {
                let dn = (a[j] * dr[j]) as f64;
                m1 += dn;
                m2 += dn * nr[j] as f64;
            }
            m1 /= h as f64;
            m2 /= h as f64;
            for j in 0..h {
                let dn = (a[j] * dr[j]) as f64;
                dr[j] = (iv as f64 * (dn - m1 - nr[j] as f64 * m2)) as f32;
            }
        });
}

/// `gelu'(x) = Φ(x) + x·φ(x)`.
pub fn gelu_grad(x: f32) -> f32 {
    let x = x as f64;
    let cdf = 0.5 * (1.0 + crate::engine::erf_fast(x * std::f64::consts::FRAC_1_SQRT_2));
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (cdf + x * pdf) as f32
}

fn mul_cols(x: &mut [f32], m: &[f32]) {
    let h = m.len();
    x.par_chunks_mut(h)
        .for_each(|r| r.iter_mut().zip(m).for_each(|(v, g)| *v *= g));
}

fn add_into(acc: &mut [f32], x: &[f32]) {
    acc.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}

/// `out += dY · W` (dY `[rows, out]`, W `[out, in]` given transposed).
fn linear_back(exec: &ThreadPool, dy: &[f32], rows: usize, wt: &Linear) -> Vec<f32> {
    let mut out = vec![0f32; rows * wt.out_features];
    fp32::linear(exec, dy, rows, wt, &mut out);
    out
}

fn accum(g: &mut QGrads, l: usize, n: Node, v: (f64, f64)) {
    g[l][n.index()].0 += v.0;
    g[l][n.index()].1 += v.1;
}

/// Attention backward: from ∂L/∂ctx (pre-quant context, `[rows, H]`) to ∂L/∂Q̂, ∂L/∂K̂, ∂L/∂V̂.
/// Returns them and the probs quantizer gradient.
#[allow(clippy::type_complexity)]
fn attention_backward(
    eng: &Engine<'_>,
    l: usize,
    batch: &Batch,
    t: &LayerTape,
    dctx: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>, (f64, f64)) {
    let c = &eng.g.w.config;
    let (h, heads, d) = (c.hidden_size, c.num_attention_heads, c.head_dim());
    let (bsz, seq) = (batch.batch, batch.seq_len);
    let rows = batch.rows();
    let qp = eng.quant.and_then(|q| q[l][Node::Probs.index()]);
    let sc = 1.0 / (d as f32).sqrt();
    let chunk = 3 * seq * d;
    let mut hm = vec![0f32; bsz * heads * chunk];
    let parts: Vec<(f64, f64)> = eng.exec.run(|| {
        hm.par_chunks_mut(chunk.max(1))
            .enumerate()
            .map(|(bh, out)| {
                let (b, hd) = (bh / heads, bh % heads);
                let len = batch.lengths[b].min(seq);
                let (dq, rest) = out.split_at_mut(seq * d);
                let (dk, dv) = rest.split_at_mut(seq * d);
                let row = |i: usize| (b * seq + i) * h + hd * d;
                let pbase = bh * seq * seq;
                let mut dp = vec![0f32; len];
                let (mut gs, mut gz) = (0f64, 0f64);
                for i in 0..len {
                    let dci = &dctx[row(i)..row(i) + d];
                    let ph = &t.p_hat[pbase + i * seq..pbase + i * seq + len];
                    let pp = &t.p_pre[pbase + i * seq..pbase + i * seq + len];
                    for j in 0..len {
                        let vj = &t.v_hat[row(j)..row(j) + d];
                        dp[j] = fp32::dot(dci, vj);
                        let pij = ph[j];
                        if pij != 0.0 {
                            for (o, &g) in dv[j * d..(j + 1) * d].iter_mut().zip(dci) {
                                *o += pij * g;
                            }
                        }
                    }
                    let (a, bz) = fq_backward_slice_opt(pp, &mut dp, qp);
                    gs += a;
                    gz += bz;
                    // softmax backward
                    let dot: f64 = dp.iter().zip(pp).map(|(&g, &p)| g as f64 * p as f64).sum();
                    let qi = &t.q_hat[row(i)..row(i) + d];
                    for j in 0..len {
                        let ds = pp[j] * (dp[j] - dot as f32) * sc;
                        if ds == 0.0 {
                            continue;
                        }
                        let kj = &t.k_hat[row(j)..row(j) + d];
                        for (o, &kv) in dq[i * d..(i + 1) * d].iter_mut().zip(kj) {
                            *o += ds * kv;
                        }
                        for (o, &qv) in dk[j * d..(j + 1) * d].iter_mut().zip(qi) {
                            *o += ds * qv;
                        }
                    }
                }
                (gs, gz)
            })
            .collect()
    });
    let pg = parts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let mut dq = vec![0f32; rows * h];
    let mut dk = vec![0f32; rows * h];
    let mut dv = vec![0f32; rows * h];
    for bh in 0..bsz * heads {
        let (b, hd) = (bh / heads, bh % heads);
        let base = bh * chunk;
        for i in 0..seq {
            let o = (b * seq + i) * h + hd * d;
            dq[o..o + d].copy_from_slice(&hm[base + i * d..base + (i + 1) * d]);
            dk[o..o + d].copy_from_slice(&hm[base + (seq + i) * d..base + (seq + i + 1) * d]);
            dv[o..o + d]
                .copy_from_slice(&hm[base + (2 * seq + i) * d..base + (2 * seq + i + 1) * d]);
        }
    }
    (dq, dk, dv, pg)
}

fn fq_backward_slice_opt(x: &[f32], d: &mut [f32], q: Option<FakeQ>) -> (f64, f64) {
    match q {
        Some(q) => fq_backward_slice(x, d, &q),
        None => (0.0, 0.0),
    }
}

/// Backward of one layer: ∂L/∂u_out → ∂L/∂u_in, accumulating quantizer gradients.
pub fn layer_backward(
    eng: &Engine<'_>,
    ctx: &BackCtx,
    l: usize,
    batch: &Batch,
    t: &LayerTape,
    mut d: Vec<f32>,
    grads: &mut QGrads,
) -> Vec<f32> {
    let exec = eng.exec;
    let g = eng.g;
    let rows = batch.rows();
    let q = |n: Node| eng.quant.and_then(|qs| qs[l][n.index()]);
    let lt = &ctx.lin_t[l];
    let ffn_ln = g.ln(LnId::Ffn(l));
    let attn_ln = g.ln(LnId::Attn(l));

    // node 9 and the FFN LayerNorm
    if let Some(m) = &ffn_ln.m {
        exec.run(|| mul_cols(&mut d, m));
    }
    let v = exec.run(|| fq_backward(&t.x9_pre, &mut d, q(Node::FfnLn)));
    accum(grads, l, Node::FfnLn, v);
    exec.run(|| ln_backward(&ffn_ln.a, &t.n2, &t.inv2, &mut d));
    // b = FFN2(ĝ) + u7
    let mut du7 = d.clone();
    let mut dg = linear_back(exec, &d, rows, &lt[5]);
    let v = exec.run(|| fq_backward(&t.g_pre, &mut dg, q(Node::Gelu)));
    accum(grads, l, Node::Gelu, v);
    exec.run(|| {
        dg.par_chunks_mut(CHUNK)
            .zip(t.f1.par_chunks(CHUNK))
            .for_each(|(dc, fc)| {
                dc.iter_mut()
                    .zip(fc)
                    .for_each(|(gv, &x)| *gv *= gelu_grad(x))
            })
    });
    let tmp = linear_back(exec, &dg, rows, &lt[4]);
    exec.run(|| add_into(&mut du7, &tmp));
    // node 7 and the MHA LayerNorm
    if let Some(m) = &attn_ln.m {
        exec.run(|| mul_cols(&mut du7, m));
    }
    let v = exec.run(|| fq_backward(&t.x7_pre, &mut du7, q(Node::MhaLn)));
    accum(grads, l, Node::MhaLn, v);
    exec.run(|| ln_backward(&attn_ln.a, &t.n1, &t.inv1, &mut du7));
    // a = attn_out(ĉtx) + u_in
    let mut du_in = du7.clone();
    let mut dctx = linear_back(exec, &du7, rows, &lt[3]);
    let v = exec.run(|| fq_backward(&t.ctx_pre, &mut dctx, q(Node::Context)));
    accum(grads, l, Node::Context, v);
    let (mut dq, mut dk, mut dv, pg) = attention_backward(eng, l, batch, t, &dctx);
    accum(grads, l, Node::Probs, pg);
    let v = exec.run(|| fq_backward(&t.q_pre, &mut dq, q(Node::Query)));
    accum(grads, l, Node::Query, v);
    let v = exec.run(|| fq_backward(&t.k_pre, &mut dk, q(Node::Key)));
    accum(grads, l, Node::Key, v);
    let v = exec.run(|| fq_backward(&t.v_pre, &mut dv, q(Node::Value)));
    accum(grads, l, Node::Value, v);
    for (dx, wt) in [(&dq, &lt[0]), (&dk, &lt[1]), (&dv, &lt[2])] {
        let tmp = linear_back(exec, dx, rows, wt);
        exec.run(|| add_into(&mut du_in, &tmp));
    }
    du_in
}

/// Full backward: `dout` = ∂L/∂(final output). Accumulates into `grads`.
pub fn backward(
    eng: &Engine<'_>,
    ctx: &BackCtx,
    batch: &Batch,
    tape: &Tape,
    dout: Vec<f32>,
    grads: &mut QGrads,
) {
    let nl = eng.g.num_layers();
    let mut d = dout;
    for l in (0..nl).rev() {
        d = layer_backward(eng, ctx, l, batch, &tape.layers[l], d, grads);
    }
    // embedding LN node
    if let Some(m) = &eng.g.emb_ln.m {
        eng.exec.run(|| mul_cols(&mut d, m));
    }
    let q = eng.quant.and_then(|qs| qs[0][Node::Emb.index()]);
    let v = eng.exec.run(|| fq_backward(&tape.emb_pre, &mut d, q));
    accum(grads, 0, Node::Emb, v);
}
