//! OS+ channel-wise shifting and scaling (OS+ §4, reference `quantization/migration.py`,
//! `Migrator1DRangeSearch`), applied to the three LayerNorm → Linear edges of post-LN BERT:
//! embedding-LN → Q/K/V of layer 0, MHA-LN(l) → FFN1(l), FFN-LN(l) → Q/K/V(l+1).
//!
//! For an edge with LN output `X̃` (valid calibration tokens):
//! - shift `z_j = (max_j + min_j)/2`, so channel `j` of `X̃ − z` lies in `[−r_j, r_j]`;
//! - scale `s_j = max(1, r_j/t)`; `t` is searched downward from `max_j r_j` to 1 in
//!   `max(100, ⌊max/0.5⌋)` steps; the loss is the reference's: quantize `(X̃ − z)/s` per tensor on
//!   `[−t, t]` and `W ⊙ s` per output channel (weight bits, MinMax), and compare the output with the
//!   FP32 one — `Σ_j (ŷ − y)²` averaged over tokens — where the output is the FFN1 product
//!   (no bias) for FC1 edges, and the attention context (Q/K/V with biases, softmax, P·V) for
//!   Q/K/V edges.
//!
//! Fold (exact in real arithmetic): the LN becomes `γ ← γ/s`, `β ← (β − z)/s`; its consumers
//! receive `s ⊙ X̂`, i.e. the next Linear's weight columns are multiplied by `s` and its bias gains
//! `W·z`, and the shortcut carries `s ⊙ X̂` with `z` added to the bias of the dense layer that
//! feeds the same residual sum (attention output dense or FFN2). The last FFN-LN has no following
//! Linear and is left alone. OS+ replaces Gamma Migration (applying both would undo the scaling).

use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::qparams::quantize_rows_symmetric;
use osq_model::quant::{BitsConfig, MinMax, QParams};
use osq_model::{Batch, Linear};

use crate::engine::{fq_inplace, Engine, FakeQ, LnId, QGraph, Tap};
use crate::error::{CalibError, Result};
use crate::progress::Progress;

/// Minimum number of `t` steps (reference: `max(100, amx/0.5)`).
pub const MIN_STEPS: usize = 100;

/// Consumer of an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumer {
    /// Q/K/V of this layer (loss: the attention context).
    Qkv(usize),
    /// FFN1 of this layer.
    Fc1(usize),
}

/// One LN → Linear edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub ln: LnId,
    pub consumer: Consumer,
}

/// The edges of a post-LN BERT with `nl` layers.
pub fn edges(nl: usize) -> Vec<Edge> {
    let mut v = vec![Edge {
        ln: LnId::Emb,
        consumer: Consumer::Qkv(0),
    }];
    for l in 0..nl {
        v.push(Edge {
            ln: LnId::Attn(l),
            consumer: Consumer::Fc1(l),
        });
        if l + 1 < nl {
            v.push(Edge {
                ln: LnId::Ffn(l),
                consumer: Consumer::Qkv(l + 1),
            });
        }
    }
    v
}

/// What the search found for one edge.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EdgeResult {
    pub ln: String,
    /// Largest |shifted value| (`max_j r_j`): the starting `t`.
    pub bound: f32,
    pub t: f32,
    pub steps: usize,
    /// Loss at `t = bound` (shift only) and at the chosen `t`.
    pub loss_shift_only: f64,
    pub loss: f64,
    pub max_scale: f32,
    /// Largest |z_j|.
    pub max_shift: f32,
    /// Channels with `s_j > 1`.
    pub scaled_channels: usize,
}

/// Per-channel min/max of `X̃` over valid rows.
fn channel_ranges(xs: &[(Vec<f32>, &Batch)], h: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mn = vec![f32::INFINITY; h];
    let mut mx = vec![f32::NEG_INFINITY; h];
    for (x, b) in xs {
        crate::engine::valid_rows(b, x, h, |r| {
            for j in 0..h {
                mn[j] = mn[j].min(r[j]);
                mx[j] = mx[j].max(r[j]);
            }
        });
    }
    (mn, mx)
}

fn dequant_scaled(lin: &Linear, s: &[f32], bits: BitsConfig) -> Linear {
    let (n, k) = (lin.out_features, lin.in_features);
    let w: Vec<f32> = lin
        .weight
        .chunks_exact(k)
        .flat_map(|row| row.iter().zip(s).map(|(&w, &sj)| w * sj))
        .collect();
    let (qmin, qmax) = bits.weight_range();
    let (codes, scales) = quantize_rows_symmetric(&w, n, k, qmin, qmax);
    let mut weight = vec![0f32; n * k];
    for r in 0..n {
        for c in 0..k {
            weight[r * k + c] = codes[r * k + c] as f32 * scales[r];
        }
    }
    Linear {
        weight,
        bias: lin.bias.clone(),
        out_features: n,
        in_features: k,
    }
}

/// `b + W·z`.
fn shifted_bias(lin: &Linear, z: &[f32]) -> Vec<f32> {
    let k = lin.in_features;
    lin.weight
        .chunks_exact(k)
        .zip(&lin.bias)
        .map(|(row, &b)| {
            (b as f64
                + row
                    .iter()
                    .zip(z)
                    .map(|(&w, &zj)| w as f64 * zj as f64)
                    .sum::<f64>()) as f32
        })
        .collect()
}

/// Attention context of Q/K/V Linears on input `x` (padded batch layout).
fn attention_ctx(
    exec: &ThreadPool,
    x: &[f32],
    batch: &Batch,
    lins: [&Linear; 3],
    heads: usize,
    bias: Option<&osq_model::relative::RelativeBiasTable>,
) -> Vec<f32> {
    let rows = batch.rows();
    let h = lins[0].out_features;
    let mut q = vec![0f32; rows * h];
    let mut k = vec![0f32; rows * h];
    let mut v = vec![0f32; rows * h];
    fp32::linear(exec, x, rows, lins[0], &mut q);
    fp32::linear(exec, x, rows, lins[1], &mut k);
    fp32::linear(exec, x, rows, lins[2], &mut v);
    let (bsz, seq) = (batch.batch, batch.seq_len);
    let mut p = vec![0f32; bsz * heads * seq * seq];
    fp32::attention_scores(exec, &q, &k, bsz, seq, heads, bias, &mut p);
    fp32::softmax_masked(exec, &mut p, &batch.mask, seq, heads);
    let mut ctx = vec![0f32; rows * h];
    fp32::attention_context(exec, &p, &v, &batch.lengths, bsz, seq, heads, &mut ctx);
    ctx
}

/// `Σ_j (a − b)²` averaged over valid tokens.
fn token_loss(batch: &Batch, a: &[f32], b: &[f32], cols: usize) -> (f64, usize) {
    let (s, n) = crate::engine::sq_err_valid(batch, a, b, cols);
    (s, n / cols.max(1))
}

/// Search `(z, s)` for one edge of the graph `g` (FP, plain LNs) on the given batches.
fn search_edge(
    g: &QGraph,
    edge: Edge,
    batches: &[Batch],
    exec: &ThreadPool,
    bits: BitsConfig,
    progress: &Progress,
) -> Result<(Vec<f32>, Vec<f32>, EdgeResult)> {
    let c = &g.w.config;
    let h = c.hidden_size;
    let heads = c.num_attention_heads;
    let (tl, tn) = edge.ln.node();
    // capture X̃ of this LN (FP)
    let eng = Engine::new(g, exec, None);
    let mut xs: Vec<Vec<f32>> = Vec::with_capacity(batches.len());
    for b in batches {
        let mut got = Vec::new();
        let mut obs = |tap: Tap, x: &[f32], _cols: usize| {
            if tap == Tap::Node(tl, tn) {
                got = x.to_vec();
            }
        };
        // only the layers up to the LN are needed
        let mut o: Option<&mut crate::engine::Observer<'_>> = Some(&mut obs);
        let mut u = eng.embed_stage(b, &mut o, None);
        let upto = match edge.ln {
            LnId::Emb => None,
            LnId::Attn(l) | LnId::Ffn(l) => Some(l),
        };
        if let Some(last) = upto {
            for l in 0..=last {
                u = eng.layer_stage(l, b, &u, &mut o, None);
            }
        }
        if got.is_empty() {
            return Err(CalibError::Failed(format!(
                "{}: not observed",
                edge.ln.name()
            )));
        }
        xs.push(got);
    }
    let pairs: Vec<(Vec<f32>, &Batch)> = xs.iter().cloned().zip(batches.iter()).collect();
    let (mn, mx) = channel_ranges(&pairs, h);
    if mn.iter().chain(&mx).any(|v| !v.is_finite()) {
        return Err(CalibError::Failed(format!(
            "{}: channel range not finite",
            edge.ln.name()
        )));
    }
    let z: Vec<f32> = mn.iter().zip(&mx).map(|(a, b)| (a + b) / 2.0).collect();
    let r: Vec<f32> = mn.iter().zip(&mx).map(|(a, b)| (b - a) / 2.0).collect();
    let bound = r.iter().copied().fold(0f32, f32::max);
    // shifted inputs
    let shifted: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| {
            let mut y = x.clone();
            for row in y.chunks_exact_mut(h) {
                row.iter_mut().zip(&z).for_each(|(v, zj)| *v -= zj);
            }
            y
        })
        .collect();
    let lw_idx = match edge.consumer {
        Consumer::Qkv(l) | Consumer::Fc1(l) => l,
    };
    let lw = &g.w.layers[lw_idx];
    let rel_bias = g.w.relative_attention_bias.as_ref();
    // FP targets
    let targets: Vec<Vec<f32>> = batches
        .iter()
        .zip(&xs)
        .map(|(b, x)| match edge.consumer {
            Consumer::Qkv(_) => {
                attention_ctx(exec, x, b, [&lw.query, &lw.key, &lw.value], heads, rel_bias)
            }
            Consumer::Fc1(_) => {
                let mut o = vec![0f32; b.rows() * lw.ffn1.out_features];
                let nb = Linear {
                    bias: vec![0.0; lw.ffn1.out_features],
                    ..lw.ffn1.clone()
                };
                let xs_shift: Vec<f32> = x
                    .chunks_exact(h)
                    .flat_map(|row| row.iter().zip(&z).map(|(v, zj)| v - zj))
                    .collect();
                fp32::linear(exec, &xs_shift, b.rows(), &nb, &mut o);
                o
            }
        })
        .collect();
    let qkv_bias: Option<[Vec<f32>; 3]> = matches!(edge.consumer, Consumer::Qkv(_)).then(|| {
        [
            shifted_bias(&lw.query, &z),
            shifted_bias(&lw.key, &z),
            shifted_bias(&lw.value, &z),
        ]
    });
    let scales_for = |t: f32| -> Vec<f32> { r.iter().map(|&rj| (rj / t).max(1.0)).collect() };
    let loss_for = |t: f32| -> f64 {
        let s = scales_for(t);
        let aq = FakeQ::from_qparams(&QParams::activation(-t, t, bits.act_bits()));
        let (mut tot, mut cnt) = (0f64, 0usize);
        match edge.consumer {
            Consumer::Fc1(_) => {
                let mut wq = dequant_scaled(&lw.ffn1, &s, bits);
                wq.bias = vec![0.0; wq.out_features];
                for ((b, xsh), tgt) in batches.iter().zip(&shifted).zip(&targets) {
                    let mut xq = xsh.clone();
                    for row in xq.chunks_exact_mut(h) {
                        row.iter_mut().zip(&s).for_each(|(v, sj)| *v /= sj);
                    }
                    exec.run(|| fq_inplace(&mut xq, &aq));
                    let mut o = vec![0f32; b.rows() * wq.out_features];
                    fp32::linear(exec, &xq, b.rows(), &wq, &mut o);
                    let (e, n) = token_loss(b, &o, tgt, wq.out_features);
                    tot += e;
                    cnt += n;
                }
            }
            Consumer::Qkv(_) => {
                let bias = qkv_bias
                    .as_ref()
                    .expect("qkv bias computed for Q/K/V edges");
                let mut lq = dequant_scaled(&lw.query, &s, bits);
                let mut lk = dequant_scaled(&lw.key, &s, bits);
                let mut lv = dequant_scaled(&lw.value, &s, bits);
                lq.bias = bias[0].clone();
                lk.bias = bias[1].clone();
                lv.bias = bias[2].clone();
                for ((b, xsh), tgt) in batches.iter().zip(&shifted).zip(&targets) {
                    let mut xq = xsh.clone();
                    for row in xq.chunks_exact_mut(h) {
                        row.iter_mut().zip(&s).for_each(|(v, sj)| *v /= sj);
                    }
                    exec.run(|| fq_inplace(&mut xq, &aq));
                    let o = attention_ctx(exec, &xq, b, [&lq, &lk, &lv], heads, rel_bias);
                    let (e, n) = token_loss(b, &o, tgt, h);
                    tot += e;
                    cnt += n;
                }
            }
        }
        tot / cnt.max(1) as f64
    };
    // t grid: from bound down to 1 (reference), always at least the shift-only point
    let num = MIN_STEPS.max((bound / 0.5) as usize);
    let mut ts = Vec::with_capacity(num + 1);
    if bound > 1.0 {
        let step = (bound - 1.0) / num as f32;
        let mut st = bound;
        while st >= 1.0 && ts.len() <= num {
            ts.push(st);
            st -= step;
        }
    } else if bound > 0.0 {
        ts.push(bound);
    }
    let bar = progress.bar(ts.len() as u64, &format!("OS+ {}", short_name(edge.ln)));
    let mut best = (bound, f64::INFINITY);
    let mut loss_shift_only = f64::NAN;
    for (i, &t) in ts.iter().enumerate() {
        let loss = loss_for(t);
        if i == 0 {
            loss_shift_only = loss;
        }
        if loss < best.1 {
            best = (t, loss);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (t, loss) = if ts.is_empty() { (1.0, 0.0) } else { best };
    let s = if ts.is_empty() {
        vec![1.0; h]
    } else {
        scales_for(t)
    };
    let res = EdgeResult {
        ln: edge.ln.name(),
        bound,
        t,
        steps: ts.len(),
        loss_shift_only,
        loss,
        max_scale: s.iter().copied().fold(1.0, f32::max),
        max_shift: z.iter().fold(0f32, |a, v| a.max(v.abs())),
        scaled_channels: s.iter().filter(|&&v| v > 1.0).count(),
    };
    Ok((z, s, res))
}

fn short_name(id: LnId) -> String {
    match id {
        LnId::Emb => "emb LN".into(),
        LnId::Attn(l) => format!("L{l} MHA-LN"),
        LnId::Ffn(l) => format!("L{l} FFN-LN"),
    }
}

/// Fold a shift `z` and scale `s` into the graph (see the module docs).
pub fn fold(g: &mut QGraph, edge: Edge, z: &[f32], s: &[f32]) {
    {
        let spec = g.ln_mut(edge.ln);
        for j in 0..s.len() {
            spec.a[j] /= s[j];
            spec.c[j] = (spec.c[j] - z[j]) / s[j];
        }
        spec.m = Some(s.to_vec());
    }
    // consumers receive s ⊙ X̂ = X − z: the next Linear's bias gains W·z
    match edge.consumer {
        Consumer::Qkv(l) => {
            let lw = &mut g.w.layers[l];
            for lin in [&mut lw.query, &mut lw.key, &mut lw.value] {
                lin.bias = shifted_bias(lin, z);
            }
        }
        Consumer::Fc1(l) => {
            let lin = &mut g.w.layers[l].ffn1;
            lin.bias = shifted_bias(lin, z);
        }
    }
    // the shortcut carries X − z: the dense feeding the same residual adds z
    let dense = match edge.ln {
        LnId::Emb => &mut g.w.layers[0].attn_out,
        LnId::Attn(l) => &mut g.w.layers[l].ffn2,
        LnId::Ffn(l) => &mut g.w.layers[l + 1].attn_out,
    };
    for (b, zj) in dense.bias.iter_mut().zip(z) {
        *b += zj;
    }
}

/// Search and fold every edge, in order, on `batches`. `g` must be un-migrated.
pub fn apply(
    g: &mut QGraph,
    batches: &[Batch],
    exec: &ThreadPool,
    bits: BitsConfig,
    progress: &Progress,
) -> Result<Vec<EdgeResult>> {
    if g.migrate {
        return Err(CalibError::Failed(
            "OS+ needs the un-migrated graph (it replaces Gamma Migration)".into(),
        ));
    }
    let nl = g.num_layers();
    let mut out = Vec::new();
    for e in edges(nl) {
        let (z, s, r) = search_edge(g, e, batches, exec, bits, progress)?;
        fold(g, e, &z, &s);
        out.push(r);
    }
    g.osplus = true;
    Ok(out)
}

/// Range of a tensor (helper for tests).
pub fn range_of(x: &[f32]) -> MinMax {
    let mut m = MinMax::EMPTY;
    x.iter().for_each(|&v| m.update(v));
    m
}
