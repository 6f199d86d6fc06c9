//! Paper-mode fake-quant executor: the quantized graph as a PyTorch user of the OS code would
//! run it — dequantized weights, f32 matmuls, f32 softmax/LayerNorm, erf GELU, and
//! quantize→dequantize (`torch.fake_quantize_per_tensor_affine`: `x·(1/s)`, round half to even)
//! at the nine nodes only. No fixed-point intermediates, no integer nonlinearities. Its codes
//! are compared with the integer executor's to report what the paper's code would see.

use rayon::prelude::*;

use crate::error::Result;
use crate::fp32::{gelu, linear, ThreadPool};
use crate::tokenize::Batch;
use crate::weights::Linear;

use super::deploy::SeqOutput;
use super::graph::{LnParams, QTable, QuantParams};
use super::qparams::QParams;
use super::trace::Trace;
use super::Node;

fn dequant_table(t: &QTable) -> Vec<f32> {
    let mut out = vec![0f32; t.rows * t.cols];
    for r in 0..t.rows {
        let s = t.scales[r];
        for (o, &c) in out[r * t.cols..(r + 1) * t.cols].iter_mut().zip(t.row(r)) {
            *o = c as f32 * s;
        }
    }
    out
}

struct PaperLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    ffn1: Linear,
    ffn2: Linear,
}

/// Dequantized weights, prepared once.
pub struct PaperModel<'a> {
    pub params: &'a QuantParams,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    layers: Vec<PaperLayer>,
    /// The task head's dequantized dense and output Linears.
    head: Option<(Option<Linear>, Linear)>,
}

/// Fake-quantize a tensor in place, returning its codes. With `force`, the tensor then holds the
/// dequantized forced codes instead (teacher forcing: the next step sees the reference's input).
fn fake_quant(x: &mut [f32], q: &QParams, force: Option<&[u8]>) -> Vec<u8> {
    let codes: Vec<u8> = x
        .iter_mut()
        .map(|v| {
            let c = q.quantize_torch(*v);
            *v = q.dequantize(c);
            c as u8
        })
        .collect();
    if let Some(f) = force {
        for (v, &c) in x.iter_mut().zip(f) {
            *v = q.dequantize(c as i32);
        }
    }
    codes
}

/// f32 LayerNorm of one row (two-pass statistics in f32); non-scaling when migrated.
/// [`layer_norm_f32`] on every row of `h` values.
fn layer_norm_rows(x: &[f32], ln: &LnParams, eps: f32, h: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        layer_norm_f32(xr, ln, eps, or);
    }
}

fn layer_norm_f32(x: &[f32], ln: &LnParams, eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for j in 0..x.len() {
        let y = (x[j] - mean) * inv;
        out[j] = if ln.migrated {
            y + ln.beta[j] / ln.gamma[j]
        } else {
            y * ln.gamma[j] + ln.beta[j]
        };
    }
}

impl<'a> PaperModel<'a> {
    pub fn new(params: &'a QuantParams) -> Self {
        PaperModel {
            params,
            word: dequant_table(&params.word),
            position: dequant_table(&params.position),
            token_type: dequant_table(&params.token_type),
            layers: params
                .layers
                .iter()
                .map(|l| PaperLayer {
                    query: l.query.dequantize(),
                    key: l.key.dequantize(),
                    value: l.value.dequantize(),
                    attn_out: l.attn_out.dequantize(),
                    ffn1: l.ffn1.dequantize(),
                    ffn2: l.ffn2.dequantize(),
                })
                .collect(),
            head: params.head.as_ref().map(|hd| {
                (
                    hd.dense.as_ref().map(|d| d.lin.dequantize()),
                    hd.out.dequantize(),
                )
            }),
        }
    }

    /// One sequence (no padding): final hidden codes and the trace (cascaded: every node sees
    /// this executor's own previous codes).
    pub fn forward_sequence(&self, ids: &[u32], types: &[u32]) -> Result<SeqOutput> {
        self.run(ids, types, None)
    }

    /// Per-step (teacher-forced) mode: every node is computed with paper-mode arithmetic from the
    /// codes of `force` (normally the deploy reference's trace of the same sequence) at its
    /// inputs, so the trace measures the arithmetic difference of each step alone, without the
    /// cascade of earlier flips.
    pub fn forward_sequence_forced(
        &self,
        ids: &[u32],
        types: &[u32],
        force: &Trace,
    ) -> Result<SeqOutput> {
        self.run(ids, types, Some(force))
    }

    fn run(&self, ids: &[u32], types: &[u32], force: Option<&Trace>) -> Result<SeqOutput> {
        let p = self.params;
        let c = &p.config;
        let (h, inter, heads, dh) = (
            c.hidden_size,
            c.intermediate_size,
            c.num_attention_heads,
            c.head_dim(),
        );
        super::deploy::check_ids(c, ids, types)?;
        let exec = ThreadPool::single();
        let n = ids.len();
        let eps = p.eps as f32;
        let mut trace = Trace::new(p.layers.len());
        let mut e = vec![0f32; n * h];
        let mut pos = Vec::with_capacity(n);
        c.position_ids(ids, &mut pos);
        for t in 0..n {
            let (wi, ti, pi) = (ids[t] as usize, types[t] as usize, pos[t]);
            for j in 0..h {
                e[t * h + j] = (self.word[wi * h + j] + self.token_type[ti * h + j])
                    + self.position[pi * h + j];
            }
        }
        let rel = p.relative_bias.as_ref();
        let buckets = rel.map(|t| crate::relative::bucket_table(n, t.buckets));
        let mut x = vec![0f32; n * h];
        layer_norm_rows(&e, &p.emb_ln, eps, h, &mut x);
        trace.set(
            0,
            Node::Emb,
            fake_quant(
                &mut x,
                p.layers[0].node(Node::Emb),
                force.map(|f| f.get(0, Node::Emb)),
            ),
        );
        let shortcut_gamma = |ln: &LnParams, j: usize| ln.shortcut_mul().map_or(1.0, |m| m[j]);
        let scale = 1.0 / (dh as f32).sqrt();
        for (l, (lp, pl)) in p.layers.iter().zip(&self.layers).enumerate() {
            let in_ln = if l == 0 {
                &p.emb_ln
            } else {
                &p.layers[l - 1].ffn_ln
            };
            // Fake-quantize node `nd` of this layer in place and record its codes.
            let node = |trace: &mut Trace, nd: Node, buf: &mut [f32]| {
                trace.set(
                    l,
                    nd,
                    fake_quant(buf, lp.node(nd), force.map(|f| f.get(l, nd))),
                );
            };
            let mut q = vec![0f32; n * h];
            let mut k = vec![0f32; n * h];
            let mut v = vec![0f32; n * h];
            linear(&exec, &x, n, &pl.query, &mut q);
            linear(&exec, &x, n, &pl.key, &mut k);
            linear(&exec, &x, n, &pl.value, &mut v);
            node(&mut trace, Node::Query, &mut q);
            node(&mut trace, Node::Key, &mut k);
            node(&mut trace, Node::Value, &mut v);
            let mut probs = vec![0f32; heads * n * n];
            for hd in 0..heads {
                let off = hd * dh;
                for i in 0..n {
                    let row = &mut probs[(hd * n + i) * n..(hd * n + i + 1) * n];
                    for (j, s) in row.iter_mut().enumerate() {
                        let mut acc = 0f32;
                        for d in 0..dh {
                            acc += q[i * h + off + d] * k[j * h + off + d];
                        }
                        *s = acc * scale;
                    }
                    if let (Some(b), Some(t)) = (rel, &buckets) {
                        crate::relative::add_bias_row_f32(row, i, t, b.head(hd));
                    }
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for s in row.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    row.iter_mut().for_each(|s| *s /= sum);
                }
            }
            node(&mut trace, Node::Probs, &mut probs);
            let mut ctx = vec![0f32; n * h];
            for hd in 0..heads {
                let off = hd * dh;
                for i in 0..n {
                    for d in 0..dh {
                        let mut acc = 0f32;
                        for j in 0..n {
                            acc += probs[(hd * n + i) * n + j] * v[j * h + off + d];
                        }
                        ctx[i * h + off + d] = acc;
                    }
                }
            }
            node(&mut trace, Node::Context, &mut ctx);
            let mut r = vec![0f32; n * h];
            linear(&exec, &ctx, n, &pl.attn_out, &mut r);
            for t in 0..n {
                for j in 0..h {
                    r[t * h + j] += shortcut_gamma(in_ln, j) * x[t * h + j];
                }
            }
            let mut x7 = vec![0f32; n * h];
            layer_norm_rows(&r, &lp.attn_ln, eps, h, &mut x7);
            node(&mut trace, Node::MhaLn, &mut x7);
            let mut f1 = vec![0f32; n * inter];
            linear(&exec, &x7, n, &pl.ffn1, &mut f1);
            f1.iter_mut().for_each(|v| *v = gelu(*v));
            node(&mut trace, Node::Gelu, &mut f1);
            linear(&exec, &f1, n, &pl.ffn2, &mut r);
            for t in 0..n {
                for j in 0..h {
                    r[t * h + j] += shortcut_gamma(&lp.attn_ln, j) * x7[t * h + j];
                }
            }
            layer_norm_rows(&r, &lp.ffn_ln, eps, h, &mut x);
            node(&mut trace, Node::FfnLn, &mut x);
        }
        // The task head: f32 matmuls, the activation in f32, fake quant at its input node.
        let mut logits = vec![];
        if let (Some(hp), Some((dense, out))) = (&p.head, &self.head) {
            let (mut xin, rows) = match (&hp.dense, dense) {
                (Some(d), Some(dl)) => {
                    let mut y = vec![0f32; h];
                    linear(&exec, &x[..h], 1, dl, &mut y);
                    y.iter_mut().for_each(|v| *v = d.act.apply_f32(*v));
                    (y, 1)
                }
                _ => (x.clone(), n),
            };
            let codes = match &hp.dense {
                Some(d) => fake_quant(&mut xin, &d.node, force.map(|f| &f.head[..])),
                None => vec![],
            };
            logits = vec![0f32; rows * out.out_features];
            linear(&exec, &xin, rows, out, &mut logits);
            trace.set_head(codes, &logits);
        }
        let last = p.layers.len() - 1;
        Ok(SeqOutput {
            hidden: trace.get(last, Node::FfnLn).to_vec(),
            logits,
            trace,
        })
    }

    /// Per-step mode over a padded batch: `force[b]` is the trace forced for sequence `b`.
    pub fn forward_forced(&self, batch: &Batch, force: &[Trace]) -> Result<Vec<SeqOutput>> {
        batch.validate()?;
        if force.len() != batch.batch {
            return Err(crate::error::ModelError::Input(format!(
                "{} forced traces for a batch of {}",
                force.len(),
                batch.batch
            )));
        }
        (0..batch.batch)
            .into_par_iter()
            .map(|b| {
                let row = b * batch.seq_len;
                let len = batch.lengths[b];
                self.forward_sequence_forced(
                    &batch.ids[row..row + len],
                    &batch.type_ids[row..row + len],
                    &force[b],
                )
            })
            .collect()
    }

    /// Every sequence of a padded batch, sequences in parallel.
    pub fn forward(&self, batch: &Batch) -> Result<Vec<SeqOutput>> {
        batch.validate()?;
        (0..batch.batch)
            .into_par_iter()
            .map(|b| {
                let row = b * batch.seq_len;
                let len = batch.lengths[b];
                self.forward_sequence(&batch.ids[row..row + len], &batch.type_ids[row..row + len])
            })
            .collect()
    }
}
