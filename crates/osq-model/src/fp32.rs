//! FP32 reference forward of a post-LN BERT-family encoder (Hugging Face `BertModel`,
//! `RobertaModel`, `ElectraModel`, `DistilBertModel`, `MPNetModel` semantics: they differ only
//! in position ids, token types and MPNet's relative position bias, see [`crate::config`]).
//!
//! This is the float model that calibration observes and that every quantized result is
//! compared against, so it favours clarity and accuracy over speed: the Linear layers use the
//! `gemm` crate, LayerNorm statistics and GELU are computed in `f64` and rounded to `f32`.
//! Batches are right-padded; padded keys get probability exactly 0 (HF adds `f32::MIN`,
//! which underflows to the same 0). The attention products are plain loops over the real
//! keys in a fixed order, so a sentence gives bitwise the same result alone or padded.
//!
//! The building blocks ([`linear`], [`layer_norm`], [`gelu`], [`attention_scores`],
//! [`softmax_masked`], [`attention_context`]) are public for reuse, and [`forward_hooked`] calls
//! a hook at every intermediate [`Site`] with the tensor as `[rows, cols]` row-major (see
//! [`Site::shape`]); the hook may also rewrite the tensor in place (fake quantization).

use std::sync::OnceLock;

use crate::error::{ModelError, Result};
use crate::relative::RelativeBiasTable;
pub use crate::threads::ThreadPool;
use crate::tokenize::Batch;
use crate::weights::{BertWeights, LayerNormW, Linear};

// ---------------------------------------------------------------------------------------------
// erf and GELU
// ---------------------------------------------------------------------------------------------

const ERF_STEPS_PER_UNIT: f64 = 16.0;
const ERF_STEP: f64 = 1.0 / ERF_STEPS_PER_UNIT;
const ERF_INTERVALS: usize = 96; // covers [0, 6); erfc(6) ≈ 2.2e-17, so erf = 1 beyond.
const ERF_DEGREE: usize = 9;
type ErfTable = [[f64; ERF_DEGREE + 1]; ERF_INTERVALS];
const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// Reference erf by its everywhere-convergent, all-positive-terms series
/// `erf(x) = 2/√π · e^{−x²} · Σ_{n≥0} 2ⁿ x^{2n+1} / (1·3·…·(2n+1))`
/// (no cancellation; error ~1e-15, from rounding in e^{−x²}). Slow (O(x²) terms): used to build the table
/// of [`erf`] and in tests.
pub fn erf_series(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let ax = x.abs();
    if ax >= 6.0 {
        return x.signum();
    }
    let x2 = ax * ax;
    let mut term = ax;
    let mut sum = ax;
    let mut n = 0.0;
    loop {
        term *= 2.0 * x2 / (2.0 * n + 3.0);
        sum += term;
        n += 1.0;
        if term < sum * 1e-18 {
            break;
        }
    }
    (TWO_OVER_SQRT_PI * (-x2).exp() * sum).min(1.0) * x.signum()
}

/// Taylor coefficients of erf around the centre of each interval of width 1/16 on [0, 6).
/// `d^n/dx^n erf(x) = 2/√π · (−1)^{n−1} H_{n−1}(x) e^{−x²}` (physicists' Hermite polynomials),
/// so the coefficients are exact up to f64 rounding; with |t| ≤ 1/32 and degree 9 the
/// truncation error is below 1e-15 (|erf⁽¹⁰⁾/10!| ≲ 0.005 there).
fn erf_table() -> &'static ErfTable {
    static TABLE: OnceLock<ErfTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [[0.0; ERF_DEGREE + 1]; ERF_INTERVALS];
        for (i, row) in t.iter_mut().enumerate() {
            let c = (i as f64 + 0.5) * ERF_STEP;
            row[0] = erf_series(c);
            let g = TWO_OVER_SQRT_PI * (-c * c).exp();
            // H_0 = 1, H_1 = 2c, H_{k+1} = 2c·H_k − 2k·H_{k−1}
            let (mut h_prev, mut h) = (0.0f64, 1.0f64); // H_{-1} unused, H_0
            let mut fact = 1.0f64;
            for (n, coef) in row.iter_mut().enumerate().skip(1) {
                // here h = H_{n−1}
                fact *= n as f64;
                let sign = if (n - 1) % 2 == 0 { 1.0 } else { -1.0 };
                *coef = g * sign * h / fact;
                let k = (n - 1) as f64;
                let h_next = 2.0 * c * h - 2.0 * k * h_prev;
                h_prev = h;
                h = h_next;
            }
        }
        t
    })
}

/// The error function in `f64`, absolute error < 5e-15 everywhere (Rust's std has no erf).
/// Piecewise Taylor polynomials of degree 9 on 96 intervals of [0, 6), odd symmetry, ±1
/// beyond 6. See [`erf_series`] and `erf_table` for the construction of the table.
pub fn erf(x: f64) -> f64 {
    erf_with(erf_table(), x)
}

#[inline]
fn erf_with(table: &ErfTable, x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax >= 6.0 {
        return x.signum();
    }
    let i = ((ax * ERF_STEPS_PER_UNIT) as usize).min(ERF_INTERVALS - 1);
    let t = ax - (i as f64 + 0.5) * ERF_STEP;
    let c = &table[i];
    // Even/odd split (two independent Horner chains in t²) to halve the dependency chain.
    // Plain multiply-add, not `mul_add` (a slow libm call without the FMA target feature).
    let u = t * t;
    let even = (((c[8] * u + c[6]) * u + c[4]) * u + c[2]) * u + c[0];
    let odd = (((c[9] * u + c[7]) * u + c[5]) * u + c[3]) * u + c[1];
    (even + t * odd).min(1.0).copysign(x)
}

/// Exact GELU `x·Φ(x) = ½·x·(1 + erf(x/√2))`, evaluated in `f64` and rounded once.
#[inline]
pub fn gelu(x: f32) -> f32 {
    gelu_with(erf_table(), x)
}

#[inline]
fn gelu_with(table: &ErfTable, x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf_with(table, x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// In-place GELU over a slice.
pub fn gelu_inplace(exec: &ThreadPool, x: &mut [f32]) {
    let table = erf_table();
    exec.for_each_chunk(x, 4096, |_, c| {
        c.iter_mut().for_each(|v| *v = gelu_with(table, *v))
    });
}

// ---------------------------------------------------------------------------------------------
// Dense layers
// ---------------------------------------------------------------------------------------------

/// `out[rows, out_features] = x[rows, in_features] · Wᵀ + b` with the `gemm` crate.
pub fn linear(exec: &ThreadPool, x: &[f32], rows: usize, lin: &Linear, out: &mut [f32]) {
    let (n, k) = (lin.out_features, lin.in_features);
    assert_eq!(
        x.len(),
        rows * k,
        "linear: input is not [rows, in_features]"
    );
    assert_eq!(
        out.len(),
        rows * n,
        "linear: output is not [rows, out_features]"
    );
    assert_eq!(lin.weight.len(), n * k, "linear: weight is not [out, in]");
    assert_eq!(lin.bias.len(), n, "linear: bias is not [out]");
    for r in out.chunks_exact_mut(n) {
        r.copy_from_slice(&lin.bias);
    }
    if rows == 0 {
        return;
    }
    let par = exec.gemm_parallelism();
    let w = &lin.weight;
    exec.run(|| {
        // SAFETY: dims and strides describe exactly the slices checked above:
        // dst [rows, n] (rs n, cs 1), lhs x [rows, k] (rs k, cs 1),
        // rhs Wᵀ [k, n]: element (kk, nn) = W[nn·k + kk] → rs 1, cs k.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                k as isize,
                1,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            )
        }
    });
}

/// Row-wise LayerNorm `(x − μ)/√(σ² + eps)·γ + β` (biased variance, statistics in f64).
pub fn layer_norm(exec: &ThreadPool, x: &[f32], ln: &LayerNormW, out: &mut [f32]) {
    let h = ln.gamma.len();
    assert_eq!(x.len(), out.len(), "layer_norm: in/out length differ");
    assert_eq!(ln.beta.len(), h, "layer_norm: gamma/beta length differ");
    let rows_per_chunk = (8192 / h.max(1)).max(1);
    exec.for_each_chunk(out, rows_per_chunk * h, |ci, o| {
        let xin = &x[ci * rows_per_chunk * h..ci * rows_per_chunk * h + o.len()];
        for (xr, or) in xin.chunks_exact(h).zip(o.chunks_exact_mut(h)) {
            layer_norm_row(xr, ln, or);
        }
    });
}

/// LayerNorm of one row (see [`layer_norm`]).
pub fn layer_norm_row(x: &[f32], ln: &LayerNormW, out: &mut [f32]) {
    let h = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / h;
    let var = x
        .iter()
        .map(|&v| {
            let d = v as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / h;
    let inv = 1.0 / (var + ln.eps as f64).sqrt();
    for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(&ln.gamma).zip(&ln.beta) {
        *o = ((v as f64 - mean) * inv * g as f64 + b as f64) as f32;
    }
}

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------

/// Scaled scores `Q·Kᵀ/√d` per (sequence, head): `q`, `k` are `[batch·seq, hidden]` with head
/// `h` in columns `h·d..(h+1)·d`; `scores` is `[batch, heads, seq, seq]`. No mask applied.
///
/// Written as plain loops (not `gemm`) on purpose: the summation order of one score
/// then does not depend on `seq`, so a sentence gives bitwise the same result alone or
/// padded in a batch (`gemm` picks shape-dependent kernels and differs by an ulp). The
/// attention matmuls are < 10 % of the FLOPs of an encoder layer.
#[allow(clippy::too_many_arguments)]
pub fn attention_scores(
    exec: &ThreadPool,
    q: &[f32],
    k: &[f32],
    batch: usize,
    seq: usize,
    heads: usize,
    bias: Option<&RelativeBiasTable>,
    scores: &mut [f32],
) {
    let hidden = q.len() / (batch * seq).max(1);
    let d = hidden / heads;
    assert_eq!(q.len(), batch * seq * hidden);
    assert_eq!(k.len(), q.len());
    assert_eq!(scores.len(), batch * heads * seq * seq);
    let sqrt_d = (d as f32).sqrt();
    let buckets = bias.map(|b| crate::relative::bucket_table(seq, b.buckets));
    exec.for_each_chunk(scores, seq * seq, |bh, s| {
        let (b, h) = (bh / heads, bh % heads);
        // Kᵀ of this (sequence, head): [d, seq], so each score row is a sum of d axpys
        // (vectorised over keys, summed over the head dimension in index order).
        let mut kt = vec![0.0f32; d * seq];
        for j in 0..seq {
            let ko = (b * seq + j) * hidden + h * d;
            for (kk, &kv) in k[ko..ko + d].iter().enumerate() {
                kt[kk * seq + j] = kv;
            }
        }
        for (i, row) in s.chunks_exact_mut(seq).enumerate() {
            let qo = (b * seq + i) * hidden + h * d;
            row.fill(0.0);
            for (&qv, kr) in q[qo..qo + d].iter().zip(kt.chunks_exact(seq)) {
                row.iter_mut().zip(kr).for_each(|(o, &kv)| *o += qv * kv);
            }
            row.iter_mut().for_each(|o| *o /= sqrt_d);
            if let (Some(b), Some(t)) = (bias, &buckets) {
                crate::relative::add_bias_row_f32(
                    row,
                    i,
                    t,
                    &b.per_head[h * b.buckets..(h + 1) * b.buckets],
                );
            }
        }
    });
}

/// Dot product with a fixed summation order (8 interleaved partial sums, then a fixed tree),
/// vectorisable by the compiler. The order depends only on the length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += x * y;
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// Softmax over the last axis of `scores` `[batch, heads, seq, seq]`, keys with `mask == 0`
/// get probability exactly 0 (a fully masked row becomes all zeros).
pub fn softmax_masked(
    exec: &ThreadPool,
    scores: &mut [f32],
    mask: &[u8],
    seq: usize,
    heads: usize,
) {
    exec.for_each_chunk(scores, seq * seq, |bh, s| {
        let b = bh / heads;
        let m = &mask[b * seq..(b + 1) * seq];
        for row in s.chunks_exact_mut(seq) {
            softmax_row_masked(row, m);
        }
    });
}

/// Masked softmax of one row (see [`softmax_masked`]).
pub fn softmax_row_masked(row: &mut [f32], mask: &[u8]) {
    let mut max = f32::NEG_INFINITY;
    let mut nan = false;
    for (v, &m) in row.iter().zip(mask) {
        if m != 0 {
            nan |= v.is_nan();
            if *v > max {
                max = *v;
            }
        }
    }
    // a NaN score stays visible (as numpy's softmax keeps it), never a silent zero row
    if nan {
        row.fill(f32::NAN);
        return;
    }
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0.0f64;
    for (v, &m) in row.iter_mut().zip(mask) {
        if m != 0 {
            *v = (*v - max).exp();
            sum += *v as f64;
        } else {
            *v = 0.0;
        }
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Context `P·V` per head, heads merged: `probs` `[batch, heads, seq, seq]`, `v`
/// `[batch·seq, hidden]`, `ctx` `[batch·seq, hidden]`. `key_lens[b]` is the number of real
/// (leading) keys of sequence `b`: the product only runs over those (the probabilities of
/// padded keys are 0), which makes the result for a sequence bitwise independent of how
/// much padding the batch adds.
#[allow(clippy::too_many_arguments)]
pub fn attention_context(
    exec: &ThreadPool,
    probs: &[f32],
    v: &[f32],
    key_lens: &[usize],
    batch: usize,
    seq: usize,
    heads: usize,
    ctx: &mut [f32],
) {
    let hidden = v.len() / (batch * seq).max(1);
    let d = hidden / heads;
    assert_eq!(probs.len(), batch * heads * seq * seq);
    assert_eq!(ctx.len(), v.len());
    assert_eq!(key_lens.len(), batch);
    // Head-major scratch [batch, heads, seq, d] so that every (b, h) owns a contiguous chunk.
    // Plain loops (not gemm) so the summation order does not depend on `seq`: see
    // [`attention_scores`].
    let mut hm = vec![0.0f32; batch * heads * seq * d];
    exec.for_each_chunk(&mut hm, seq * d, |bh, out| {
        let (b, h) = (bh / heads, bh % heads);
        let p = &probs[bh * seq * seq..(bh + 1) * seq * seq];
        let kl = key_lens[b].min(seq);
        for (i, o) in out.chunks_exact_mut(d).enumerate() {
            o.fill(0.0);
            for (j, &pij) in p[i * seq..i * seq + kl].iter().enumerate() {
                let vo = (b * seq + j) * hidden + h * d;
                o.iter_mut()
                    .zip(&v[vo..vo + d])
                    .for_each(|(acc, &vv)| *acc += pij * vv);
            }
        }
    });
    for b in 0..batch {
        for h in 0..heads {
            for t in 0..seq {
                let src = ((b * heads + h) * seq + t) * d;
                let dst = (b * seq + t) * hidden + h * d;
                ctx[dst..dst + d].copy_from_slice(&hm[src..src + d]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Observation sites
// ---------------------------------------------------------------------------------------------

/// An intermediate tensor of the forward, in execution order. Layer indices are 0-based.
/// Shapes (rows × cols, row-major; `rows = batch·seq` including padding rows):
/// see [`Site::shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// word + token type + position embeddings: input of the embedding LayerNorm.
    EmbeddingSum,
    /// Embedding LayerNorm output (node 1).
    EmbeddingLn,
    /// Query Linear output, bias included (node 2); head `h` = columns `h·d..(h+1)·d`.
    Query(usize),
    /// Key Linear output (node 3).
    Key(usize),
    /// Value Linear output (node 4).
    Value(usize),
    /// `Q·Kᵀ/√d` before the mask, `[batch·heads·seq, seq]`.
    Scores(usize),
    /// Softmax output (node 5), `[batch·heads·seq, seq]`, masked keys exactly 0.
    Probs(usize),
    /// Context, heads merged: input of the attention output Linear (node 6).
    Context(usize),
    /// Attention output dense (before the residual add).
    AttnOut(usize),
    /// Residual sum `AttnOut + layer input`: input of the MHA LayerNorm.
    AttnResidual(usize),
    /// MHA LayerNorm output (node 7).
    AttnLn(usize),
    /// FFN intermediate Linear output, `[rows, intermediate]`.
    Ffn1(usize),
    /// GELU output (node 8), `[rows, intermediate]`.
    Gelu(usize),
    /// FFN output Linear (before the residual add).
    Ffn2(usize),
    /// Residual sum `Ffn2 + AttnLn`: input of the FFN LayerNorm.
    FfnResidual(usize),
    /// FFN LayerNorm output (node 9) = the layer output.
    FfnLn(usize),
    /// Input of the task head's output Linear: sequence heads `act(dense(h_[CLS]))`
    /// `[batch, hidden]`, token heads the final hidden states `[rows, hidden]`.
    Pooler,
    /// Task head logits, `[batch, num_labels]` (token heads: `[rows, num_labels]`).
    Logits,
}

impl Site {
    /// Encoder layer of the site, if any.
    pub fn layer(&self) -> Option<usize> {
        use Site::*;
        match *self {
            Query(l) | Key(l) | Value(l) | Scores(l) | Probs(l) | Context(l) | AttnOut(l)
            | AttnResidual(l) | AttnLn(l) | Ffn1(l) | Gelu(l) | Ffn2(l) | FfnResidual(l)
            | FfnLn(l) => Some(l),
            EmbeddingSum | EmbeddingLn | Pooler | Logits => None,
        }
    }

    /// `(rows, cols)` of the tensor passed to the hook at this site.
    pub fn shape(&self, w: &BertWeights, batch: &Batch) -> (usize, usize) {
        use Site::*;
        let c = &w.config;
        let rows = batch.rows();
        match self {
            Scores(_) | Probs(_) => (
                batch.batch * c.num_attention_heads * batch.seq_len,
                batch.seq_len,
            ),
            Ffn1(_) | Gelu(_) => (rows, c.intermediate_size),
            Pooler | Logits => {
                let r = match &w.head {
                    Some(hd) if hd.task == crate::head::Task::Token => rows,
                    _ => batch.batch,
                };
                let cols = if *self == Pooler {
                    c.hidden_size
                } else {
                    w.num_labels().unwrap_or(0)
                };
                (r, cols)
            }
            _ => (rows, c.hidden_size),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

fn check_batch(w: &BertWeights, batch: &Batch) -> Result<()> {
    batch.validate()?;
    let c = &w.config;
    if batch.seq_len > c.max_tokens() {
        return Err(ModelError::Input(format!(
            "sequence length {} exceeds the model's {} positions",
            batch.seq_len,
            c.max_tokens()
        )));
    }
    if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
        return Err(ModelError::Input(format!(
            "token id {id} out of range (vocab_size {})",
            c.vocab_size
        )));
    }
    if let Some(&t) = batch
        .type_ids
        .iter()
        .find(|&&t| t as usize >= c.type_vocab_size)
    {
        return Err(ModelError::Input(format!(
            "token type id {t} out of range (type_vocab_size {})",
            c.type_vocab_size
        )));
    }
    Ok(())
}

/// Embedding sum `(word + token_type) + position` (HF order), `[batch·seq, hidden]`; position
/// ids per [`crate::BertConfig::position_ids`] of each padded row, as Hugging Face computes them
/// (the padding after a text never changes the positions of its tokens).
pub fn embed(w: &BertWeights, batch: &Batch) -> Vec<f32> {
    let h = w.config.hidden_size;
    let e = &w.embeddings;
    let mut out = vec![0.0f32; batch.rows() * h];
    let mut positions = Vec::with_capacity(batch.rows());
    let mut seq_pos = Vec::new();
    for row in batch.ids.chunks_exact(batch.seq_len.max(1)) {
        w.config.position_ids(row, &mut seq_pos);
        positions.extend_from_slice(&seq_pos);
    }
    for (r, o) in out.chunks_exact_mut(h).enumerate() {
        let id = batch.ids[r] as usize;
        let tt = batch.type_ids[r] as usize;
        let pos = positions[r];
        let we = &e.word[id * h..(id + 1) * h];
        let te = &e.token_type[tt * h..(tt + 1) * h];
        let pe = &e.position[pos * h..(pos + 1) * h];
        for j in 0..h {
            o[j] = (we[j] + te[j]) + pe[j];
        }
    }
    out
}

/// Last hidden states `[batch, seq, hidden]` (row-major, padding rows included).
pub fn forward(w: &BertWeights, batch: &Batch, exec: &ThreadPool) -> Result<Vec<f32>> {
    forward_hooked(w, batch, exec, &mut |_, _| {})
}

/// Like [`forward`], calling `observe(site, tensor)` at every [`Site`] in execution order.
pub fn forward_observed(
    w: &BertWeights,
    batch: &Batch,
    exec: &ThreadPool,
    observe: &mut impl FnMut(Site, &[f32]),
) -> Result<Vec<f32>> {
    forward_hooked(w, batch, exec, &mut |s, x| observe(s, x))
}

/// Like [`forward`], letting `hook(site, tensor)` read and rewrite every intermediate in
/// place (e.g. fake quantization). The rewritten tensor is what the next step consumes;
/// rewriting `Scores` happens before masking, masked keys still get probability 0.
pub fn forward_hooked(
    w: &BertWeights,
    batch: &Batch,
    exec: &ThreadPool,
    hook: &mut impl FnMut(Site, &mut [f32]),
) -> Result<Vec<f32>> {
    check_batch(w, batch)?;
    let c = &w.config;
    let (h, inter, heads) = (c.hidden_size, c.intermediate_size, c.num_attention_heads);
    let (bsz, seq) = (batch.batch, batch.seq_len);
    let rows = batch.rows();

    let mut x = embed(w, batch);
    hook(Site::EmbeddingSum, &mut x);
    let mut hs = vec![0.0f32; rows * h];
    layer_norm(exec, &x, &w.embeddings.ln, &mut hs);
    hook(Site::EmbeddingLn, &mut hs);

    let mut q = vec![0.0f32; rows * h];
    let mut k = vec![0.0f32; rows * h];
    let mut v = vec![0.0f32; rows * h];
    let mut scores = vec![0.0f32; bsz * heads * seq * seq];
    let mut ctx = vec![0.0f32; rows * h];
    let mut tmp = vec![0.0f32; rows * h];
    let mut mid = vec![0.0f32; rows * h];
    let mut f1 = vec![0.0f32; rows * inter];

    for (l, lw) in w.layers.iter().enumerate() {
        linear(exec, &hs, rows, &lw.query, &mut q);
        hook(Site::Query(l), &mut q);
        linear(exec, &hs, rows, &lw.key, &mut k);
        hook(Site::Key(l), &mut k);
        linear(exec, &hs, rows, &lw.value, &mut v);
        hook(Site::Value(l), &mut v);

        let bias = w.relative_attention_bias.as_ref();
        attention_scores(exec, &q, &k, bsz, seq, heads, bias, &mut scores);
        hook(Site::Scores(l), &mut scores);
        softmax_masked(exec, &mut scores, &batch.mask, seq, heads);
        hook(Site::Probs(l), &mut scores);
        attention_context(exec, &scores, &v, &batch.lengths, bsz, seq, heads, &mut ctx);
        hook(Site::Context(l), &mut ctx);

        linear(exec, &ctx, rows, &lw.attn_out, &mut tmp);
        hook(Site::AttnOut(l), &mut tmp);
        add_inplace(&mut tmp, &hs);
        hook(Site::AttnResidual(l), &mut tmp);
        layer_norm(exec, &tmp, &lw.attn_ln, &mut mid);
        hook(Site::AttnLn(l), &mut mid);

        linear(exec, &mid, rows, &lw.ffn1, &mut f1);
        hook(Site::Ffn1(l), &mut f1);
        gelu_inplace(exec, &mut f1);
        hook(Site::Gelu(l), &mut f1);
        linear(exec, &f1, rows, &lw.ffn2, &mut tmp);
        hook(Site::Ffn2(l), &mut tmp);
        add_inplace(&mut tmp, &mid);
        hook(Site::FfnResidual(l), &mut tmp);
        layer_norm(exec, &tmp, &lw.ffn_ln, &mut hs);
        hook(Site::FfnLn(l), &mut hs);
    }
    Ok(hs)
}

fn add_inplace(acc: &mut [f32], x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += *b);
}

// ---------------------------------------------------------------------------------------------
// Heads
// ---------------------------------------------------------------------------------------------

/// Mask-aware mean over the sequence (sentence-transformers `mean` pooling):
/// `hidden` `[batch, seq, h]` → `[batch, h]`; an all-padding row gives zeros.
pub fn mean_pool(hidden: &[f32], batch: &Batch, h: usize) -> Vec<f32> {
    let seq = batch.seq_len;
    let mut out = vec![0.0f32; batch.batch * h];
    for (b, o) in out.chunks_exact_mut(h).enumerate() {
        let mut acc = vec![0.0f64; h];
        let mut n = 0usize;
        for t in 0..seq {
            if batch.mask[b * seq + t] != 0 {
                n += 1;
                let r = &hidden[(b * seq + t) * h..(b * seq + t + 1) * h];
                acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v as f64);
            }
        }
        let denom = (n as f64).max(1e-9);
        o.iter_mut()
            .zip(&acc)
            .for_each(|(o, &a)| *o = (a / denom) as f32);
    }
    out
}

/// L2-normalise each row of `x` `[n, dim]` in place (`x / max(‖x‖, 1e-12)`, as torch).
pub fn l2_normalize(x: &mut [f32], dim: usize) {
    for r in x.chunks_exact_mut(dim.max(1)) {
        let norm = r
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt();
        let inv = 1.0 / norm.max(1e-12);
        r.iter_mut().for_each(|v| *v = (*v as f64 * inv) as f32);
    }
}

/// Sentence embeddings as the model's sentence-transformers metadata defines them
/// ([`crate::pooling`]; mean pooling then L2 normalisation by default), `[batch, hidden]`.
pub fn sentence_embeddings(w: &BertWeights, batch: &Batch, exec: &ThreadPool) -> Result<Vec<f32>> {
    let hs = forward(w, batch, exec)?;
    Ok(pool_hidden(w, &hs, batch))
}

/// [`sentence_embeddings`] of final hidden states `[batch, seq, hidden]`.
pub fn pool_hidden(w: &BertWeights, hidden: &[f32], batch: &Batch) -> Vec<f32> {
    let h = w.config.hidden_size;
    let head = w.sentence;
    let mut e = vec![0.0f32; batch.batch * h];
    for (b, o) in e.chunks_exact_mut(h).enumerate() {
        let start = b * batch.seq_len * h;
        let v = crate::pooling::pool_f32(head.pooling, &hidden[start..], batch.lengths[b], h);
        o.iter_mut().zip(&v).for_each(|(o, &x)| *o = x as f32);
    }
    if head.normalize {
        l2_normalize(&mut e, h);
    }
    e
}

/// First-token (`[CLS]` / `<s>`) rows of `hidden` `[batch, seq, h]` → `[batch, h]`.
pub fn cls_rows_of(hidden: &[f32], batch: usize, seq: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(batch * h);
    for b in 0..batch {
        let r = b * seq * h;
        out.extend_from_slice(&hidden[r..r + h]);
    }
    out
}

/// The task head on final hidden states (see [`crate::head::logits_f32`]): sequence heads give
/// `[batch, num_labels]`, token heads `[batch·seq, num_labels]`. Calls the hook at
/// [`Site::Pooler`] (the output Linear's input) and [`Site::Logits`]. Errors when the
/// checkpoint has no task head.
pub fn classify_hidden(
    w: &BertWeights,
    hidden: &[f32],
    batch: &Batch,
    exec: &ThreadPool,
    hook: &mut impl FnMut(Site, &mut [f32]),
) -> Result<Vec<f32>> {
    let head = w.head.as_ref().ok_or_else(|| {
        ModelError::Input(
            "the checkpoint has no task head (a *ForSequenceClassification or *ForTokenClassification model)"
                .into(),
        )
    })?;
    let h = w.config.hidden_size;
    if hidden.len() != batch.rows() * h {
        return Err(ModelError::Input(format!(
            "hidden states have {} values, expected {}",
            hidden.len(),
            batch.rows() * h
        )));
    }
    let mut logits = crate::head::logits_f32(
        head,
        hidden,
        batch.batch,
        batch.seq_len,
        h,
        exec,
        &mut |x| hook(Site::Pooler, x),
    );
    hook(Site::Logits, &mut logits);
    Ok(logits)
}

/// Full forward + task head (see [`classify_hidden`]).
pub fn classify(w: &BertWeights, batch: &Batch, exec: &ThreadPool) -> Result<Vec<f32>> {
    let hs = forward(w, batch, exec)?;
    classify_hidden(w, &hs, batch, exec, &mut |_, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from CPython's math.erf (correctly rounded to ~1 ulp).
        let known = [
            (0.0, 0.0),
            (1e-08, 1.1283791670955126e-08),
            (0.1, 0.1124629160182849),
            (0.3, 0.3286267594591274),
            (0.5, 0.5204998778130465),
            (0.75, 0.7111556336535151),
            (1.0, 0.8427007929497149),
            (1.25, 0.9229001282564582),
            (1.5, 0.9661051464753108),
            (2.0, 0.9953222650189527),
            (2.5, 0.999593047982555),
            (3.0, 0.9999779095030014),
            (3.7, 0.9999998328489421),
            (4.5, 0.9999999998033839),
            (5.5, 0.9999999999999927),
            (5.999, 1.0),
        ];
        for (x, y) in known {
            assert!(
                (erf(x) - y).abs() < 2e-15,
                "erf({x}) = {} vs {y}: {}",
                erf(x),
                erf(x) - y
            );
            assert!((erf(-x) + y).abs() < 2e-15);
            assert!(
                (erf_series(x) - y).abs() < 2e-15,
                "series {x}: {}",
                erf_series(x) - y
            );
        }
        assert_eq!(erf(7.0), 1.0);
        assert_eq!(erf(-40.0), -1.0);
        assert!(erf(f64::NAN).is_nan());
        // dense comparison of the table against the series
        let mut worst = 0.0f64;
        for i in 0..=12_000 {
            let x = -6.0 + i as f64 * 0.001;
            worst = worst.max((erf(x) - erf_series(x)).abs());
        }
        assert!(worst < 5e-15, "worst {worst}");
    }

    #[test]
    fn gelu_values() {
        assert_eq!(gelu(0.0), 0.0);
        // 0.5·x·(1 + math.erf(x/√2)) in f64 (CPython), rounded to f32
        let known = [
            (1.0f32, 0.841_344_8f32),
            (-1.0, -0.158_655_26),
            (2.0, 1.954_499_7),
            (-3.0, -0.004_049_694),
            (0.5, 0.345_731_23),
            (-0.25, -0.100_323_42),
            (-5.0, -1.433_257_8e-6),
        ];
        for (x, y) in known {
            assert!(
                (gelu(x) - y).abs() <= y.abs() * 1.2e-7,
                "gelu({x}) = {} vs {y}",
                gelu(x)
            );
        }
        assert_eq!(gelu(100.0), 100.0);
        assert_eq!(gelu(-100.0), -0.0);
    }

    #[test]
    fn linear_matches_naive() {
        let (rows, k, n) = (5, 7, 3);
        let mut rng = crate::testing::SplitMix64::new(1);
        let x = rng.normals(rows * k, 1.0);
        let lin = Linear {
            weight: rng.normals(n * k, 1.0),
            bias: rng.normals(n, 1.0),
            out_features: n,
            in_features: k,
        };
        for threads in [1, 2] {
            let exec = ThreadPool::new(threads).unwrap();
            let mut out = vec![0.0; rows * n];
            linear(&exec, &x, rows, &lin, &mut out);
            for r in 0..rows {
                for j in 0..n {
                    let want: f32 = lin.bias[j]
                        + (0..k)
                            .map(|i| x[r * k + i] * lin.weight[j * k + i])
                            .sum::<f32>();
                    assert!((out[r * n + j] - want).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn dot_matches_naive() {
        let mut rng = crate::testing::SplitMix64::new(4);
        for n in [0, 1, 7, 8, 9, 32, 37] {
            let (a, b) = (rng.normals(n, 1.0), rng.normals(n, 1.0));
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-5, "n={n}");
        }
    }

    #[test]
    fn softmax_masks_and_normalises() {
        let mut row = [1.0f32, 2.0, 3.0, 100.0];
        softmax_row_masked(&mut row, &[1, 1, 1, 0]);
        assert_eq!(row[3], 0.0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0]);
        let mut row = [1.0f32, 2.0];
        softmax_row_masked(&mut row, &[0, 0]);
        assert_eq!(row, [0.0, 0.0]);
    }

    #[test]
    fn layer_norm_row_normalises() {
        let ln = LayerNormW {
            gamma: vec![1.0; 4],
            beta: vec![0.0; 4],
            eps: 1e-12,
        };
        let mut out = [0.0f32; 4];
        layer_norm_row(&[1.0, 2.0, 3.0, 4.0], &ln, &mut out);
        let mean: f32 = out.iter().sum::<f32>() / 4.0;
        let var: f32 = out.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
