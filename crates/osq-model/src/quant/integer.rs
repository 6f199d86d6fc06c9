//! The integer executor: weights packed once at load, batched ragged input (padding tokens are
//! never computed), Q/K/V/FFN GEMMs on osq-kernels with the zero points and biases folded into
//! the epilogue, attention per (sequence, head) on in-place strided views of Q/K/V, integer
//! softmax/LayerNorm/GELU through the bounded fast forms of [`super::rows`] (definitions of
//! [`super::nonlin`] as fallback). No floating point between the token ids and the final codes;
//! float appears only in the sentence embedding (mean pooling of dequantized codes, L2 norm).
//! Threads: the ambient rayon pool. Each layer is three parallel steps: per row block (one per
//! thread, at most 256 rows) the QKV GEMM and the Q/K/V codes; per (sequence, head) the attention; per row block
//! the whole chain attention output → LN → FFN1 → GELU → FFN2 → LN (rows are independent there,
//! and a block's i32 intermediates stay in its thread's caches). With one block the GEMMs split
//! their own tiles. Every element is computed by the same code whatever the split, so outputs do
//! not depend on the thread count. Optional per-stage timers (`forward_timed`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use osq_kernels::rowops::{self, emb_row};
use osq_kernels::{gemm, Epilogue, GemmOptions, Isa, MatMut, MatRef, Output, PackedB, Requant};
use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::tokenize::Batch;

use super::deploy::check_ids;
use super::graph::{QLinear, QuantModel};
use super::nonlin::sat_i32;
use super::rows::{self, codes_row, gelu_row, ln_row, residual_row, softmax_row, LayerRows};
use super::trace::Trace;
use super::Node;

/// Options of one forward call.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntOptions {
    /// Force a kernel ISA (`None`: the active one).
    pub isa: Option<Isa>,
    /// Capture the codes of every node (costs copies).
    pub trace: bool,
}

/// Stages timed by [`IntegerModel::forward_timed`]: the first four are wall time summed over
/// layers; the indented ones are thread time summed over the parallel tasks of their block
/// (row blocks for the Linear chains, (sequence, head) tasks for attention).
pub const STAGES: [&str; 17] = [
    "embeddings+LN",
    "QKV block (wall)",
    "attention (wall)",
    "post-attention block (wall)",
    "  QKV GEMM",
    "  QKV codes",
    "  K/V packing",
    "  Q.K^T GEMM",
    "  softmax",
    "  P.V GEMM",
    "  attn-out GEMM",
    "  attn residual+LN",
    "  FFN1 GEMM",
    "  GELU",
    "  FFN2 GEMM",
    "  FFN residual+LN",
    "  context scatter",
];

/// First thread-time stage.
const SUB: usize = 4;

/// Result of a batch: final hidden codes of the valid tokens, sequences concatenated.
#[derive(Clone, Debug, Default)]
pub struct IntOutput {
    /// `[Σ lengths, hidden]`.
    pub hidden: Vec<u8>,
    /// Token offset of each sequence in `hidden`.
    pub offsets: Vec<usize>,
    pub lengths: Vec<usize>,
    /// One trace per sequence when requested.
    pub traces: Option<Vec<Trace>>,
    /// Nanoseconds per [`STAGES`] entry (from [`IntegerModel::forward_timed`]).
    pub stage_ns: Option<Vec<u64>>,
    /// The task head's output, when the model has one: logits `[sequences, labels]` (token
    /// heads `[Σ lengths, labels]`, sequences concatenated).
    pub head: Option<super::head::HeadOutput>,
}

impl IntOutput {
    /// Final codes `[L, hidden]` of sequence `b`.
    pub fn sequence(&self, b: usize, hidden: usize) -> &[u8] {
        &self.hidden[self.offsets[b] * hidden..(self.offsets[b] + self.lengths[b]) * hidden]
    }
}

struct IntLayer {
    /// Q, K and V weights stacked `[3H, H]`: one GEMM with per-channel multipliers.
    qkv: PackedB,
    qkv_requant: Requant,
    attn_out: PackedB,
    ffn1: PackedB,
    ffn2: PackedB,
    rows: LayerRows,
}

/// i32 buffers of one row block, reused across layers and calls.
#[derive(Default)]
struct BlockScratch {
    qkv: Vec<i32>,
    dense: Vec<i32>,
    ffn1: Vec<i32>,
    row: Vec<i32>,
}

/// Buffers of one attention worker (rayon `map_init`), sized for the longest sequence.
struct AttnScratch {
    scores: Vec<i32>,
    probs: Vec<u8>,
    e: Vec<u32>,
    /// Only when the definition runs the softmax.
    e64: Vec<i64>,
}

impl AttnScratch {
    fn new(len: usize, def_softmax: bool) -> AttnScratch {
        AttnScratch {
            scores: vec![0; len * len],
            probs: vec![0; len * len],
            e: vec![0; len],
            e64: if def_softmax { vec![0; len] } else { vec![] },
        }
    }
}

/// A quantized model ready to run on integers.
pub struct IntegerModel {
    qm: QuantModel,
    layers: Vec<IntLayer>,
    emb_ln: Option<rowops::LayerNorm>,
    /// Row-block scratch kept between calls (one per task that ran at once, grown to the
    /// largest block seen): a fresh multi-hundred-KiB buffer per call costs page faults and
    /// zeroing on every forward.
    scratch: Mutex<Vec<BlockScratch>>,
    /// The GELU codes buffer `[tokens, intermediate]` kept between calls, for the same reason.
    gelu_codes: Mutex<Vec<u8>>,
    /// The task head's packed weights: (sequence heads' dense, output).
    head: Option<(Option<PackedB>, PackedB)>,
}

fn pack(lin: &QLinear, four_bit: bool, what: &str) -> Result<PackedB> {
    pack_codes(&lin.w.codes, lin.n(), lin.k(), four_bit, what)
}

fn pack_codes(codes: &[i8], n: usize, k: usize, four_bit: bool, what: &str) -> Result<PackedB> {
    let m = MatRef::new(codes, n, k, k).map_err(|e| ModelError::Input(format!("{what}: {e}")))?;
    if four_bit {
        PackedB::pack_s4(m)
    } else {
        PackedB::pack_s8(m)
    }
    .map_err(|e| ModelError::Input(format!("{what}: {e}")))
}

fn kerr(what: &str) -> impl Fn(osq_kernels::KernelError) -> ModelError + '_ {
    move |e| ModelError::Input(format!("{what}: {e}"))
}

/// Largest row block of the Linear chains (large batches get more blocks than threads).
const MAX_BLOCK_ROWS: usize = 256;

/// Rows per rayon task for the embedding rows.
const ROWS_PER_TASK: usize = 16;

/// Stage clock: a no-op unless timing was requested.
struct Clock {
    on: bool,
    last: Instant,
    ns: [u64; STAGES.len()],
    sub: [AtomicU64; STAGES.len() - SUB],
}

impl Clock {
    fn new(on: bool) -> Clock {
        Clock {
            on,
            last: Instant::now(),
            ns: [0; STAGES.len()],
            sub: Default::default(),
        }
    }
    /// Charges the time since the last lap to `stage`.
    fn lap(&mut self, stage: usize) {
        if self.on {
            let now = Instant::now();
            self.ns[stage] += (now - self.last).as_nanos() as u64;
            self.last = now;
        }
    }
    fn start(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }
    /// Adds thread time since `*t0` to thread-time stage `stage` and restarts `*t0`.
    fn add(&self, stage: usize, t0: &mut Option<Instant>) {
        if let Some(t) = t0 {
            let now = Instant::now();
            self.sub[stage - SUB].fetch_add((now - *t).as_nanos() as u64, Ordering::Relaxed);
            *t = now;
        }
    }
    fn finish(self) -> Option<Vec<u64>> {
        self.on.then(|| {
            let mut v = self.ns.to_vec();
            for (i, s) in self.sub.iter().enumerate() {
                v[SUB + i] = s.load(Ordering::Relaxed);
            }
            v
        })
    }
}

impl IntegerModel {
    /// Packs every weight matrix once (S8 for 8/6-bit weights, S4 for 4-bit) and builds the fast
    /// row forms.
    pub fn new(qm: QuantModel) -> Result<Self> {
        let four = qm.params.bits.weight_bits() == 4;
        let layers = qm
            .params
            .layers
            .iter()
            .enumerate()
            .map(|(l, lp)| {
                let w = |s: &str| format!("layer {l} {s}");
                let ld = &qm.layers[l];
                let mut codes = lp.query.w.codes.clone();
                codes.extend_from_slice(&lp.key.w.codes);
                codes.extend_from_slice(&lp.value.w.codes);
                let (n, k) = (lp.query.n(), lp.query.k());
                let (mut m0, mut sh) = (Vec::new(), Vec::new());
                for d in [&ld.query, &ld.key, &ld.value] {
                    m0.extend_from_slice(&d.requant.m0()[..n]);
                    sh.extend_from_slice(&d.requant.shift()[..n]);
                }
                Ok(IntLayer {
                    qkv: pack_codes(&codes, 3 * n, k, four, &w("query/key/value"))?,
                    qkv_requant: Requant::from_parts(&m0, &sh, 0, 0, 0)
                        .map_err(kerr(&w("QKV requant")))?,
                    attn_out: pack(&lp.attn_out, four, &w("attention output"))?,
                    ffn1: pack(&lp.ffn1, four, &w("FFN1"))?,
                    ffn2: pack(&lp.ffn2, four, &w("FFN2"))?,
                    rows: LayerRows::new(ld),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let emb_ln = rows::layer_norm(&qm.emb.ln);
        let head = match &qm.params.head {
            Some(hd) => Some((
                match &hd.dense {
                    Some(d) => Some(pack(&d.lin, four, "head dense")?),
                    None => None,
                },
                pack(&hd.out, four, "head output")?,
            )),
            None => None,
        };
        Ok(IntegerModel {
            qm,
            layers,
            emb_ln,
            scratch: Mutex::new(Vec::new()),
            gelu_codes: Mutex::new(Vec::new()),
            head,
        })
    }

    pub fn quant(&self) -> &QuantModel {
        &self.qm
    }

    /// Which per-row steps run their fast form (the rest run the definitions), for reports.
    pub fn fast_rows(&self) -> Vec<(usize, &'static str, bool)> {
        let mut v = vec![(0, "embedding LN", self.emb_ln.is_some())];
        for (l, il) in self.layers.iter().enumerate() {
            let r = &il.rows;
            v.extend([
                (
                    l,
                    "Q/K/V codes",
                    r.query.is_some() && r.key.is_some() && r.value.is_some(),
                ),
                (l, "softmax", r.softmax.is_some()),
                (
                    l,
                    "softmax e(d) table",
                    r.softmax.as_ref().is_some_and(|s| s.table_len().is_some()),
                ),
                (l, "attention residual", r.attn_res.is_some()),
                (l, "attention LN", r.attn_ln.is_some()),
                (l, "GELU table", r.gelu.is_some()),
                (l, "FFN residual", r.ffn_res.is_some()),
                (l, "FFN LN", r.ffn_ln.is_some()),
            ]);
        }
        v
    }

    /// `out = rq(Σ (x − za)·w)` saturated to i32 (bias added by the caller at fixed point).
    #[allow(clippy::too_many_arguments)]
    fn linear_fixed(
        &self,
        x: &[u8],
        rows: usize,
        za: u8,
        b: &PackedB,
        requant: &Requant,
        out: &mut [i32],
        gopt: &GemmOptions,
        what: &str,
    ) -> Result<()> {
        let (k, n) = (b.k(), b.n());
        gemm(
            MatRef::new(x, rows, k, k).map_err(kerr(what))?,
            b,
            &Epilogue {
                a_zero: za,
                bias: None,
            },
            Output::Fixed {
                out: MatMut::new(out, rows, n, n).map_err(kerr(what))?,
                requant,
            },
            gopt,
        )
        .map_err(kerr(what))
    }

    /// Runs a padded batch; padding tokens are dropped before any computation.
    pub fn forward(&self, batch: &Batch, opts: &IntOptions) -> Result<IntOutput> {
        self.run(batch, opts, false)
    }

    /// [`IntegerModel::forward`] with per-stage timers (`IntOutput::stage_ns`, [`STAGES`]).
    pub fn forward_timed(&self, batch: &Batch, opts: &IntOptions) -> Result<IntOutput> {
        self.run(batch, opts, true)
    }

    fn run(&self, batch: &Batch, opts: &IntOptions, timed: bool) -> Result<IntOutput> {
        batch.validate()?;
        let isa = rowops::resolve(opts.isa).map_err(kerr("ISA"))?;
        let mut clock = Clock::new(timed);
        let p = &self.qm.params;
        let c = &p.config;
        let (h, inter, heads, dh) = (
            c.hidden_size,
            c.intermediate_size,
            c.num_attention_heads,
            c.head_dim(),
        );
        let nb = batch.batch;
        let mut ids = Vec::new();
        let mut types = Vec::new();
        let mut pos = Vec::new();
        let mut seq_pos = Vec::new();
        let mut offsets = Vec::with_capacity(nb);
        for b in 0..nb {
            let row = b * batch.seq_len;
            let len = batch.lengths[b];
            check_ids(
                &self.qm.params.config,
                &batch.ids[row..row + len],
                &batch.type_ids[row..row + len],
            )?;
            offsets.push(ids.len());
            ids.extend_from_slice(&batch.ids[row..row + len]);
            types.extend_from_slice(&batch.type_ids[row..row + len]);
            c.position_ids(&batch.ids[row..row + len], &mut seq_pos);
            pos.extend_from_slice(&seq_pos);
        }
        let t_all = ids.len();
        let lengths = batch.lengths.clone();
        let mut traces = opts.trace.then(|| vec![Trace::new(p.layers.len()); nb]);
        let capture =
            |traces: &mut Option<Vec<Trace>>, l: usize, n: Node, buf: &[u8], width: usize| {
                if let Some(ts) = traces.as_mut() {
                    for (b, t) in ts.iter_mut().enumerate() {
                        let s = offsets[b] * width;
                        t.set(l, n, buf[s..s + lengths[b] * width].to_vec());
                    }
                }
            };
        if t_all == 0 {
            return Ok(IntOutput {
                hidden: vec![],
                offsets,
                lengths,
                traces,
                stage_ns: clock.finish(),
                head: None,
            });
        }
        let gopt = GemmOptions {
            isa: opts.isa,
            parallel: true,
        };
        let inner = GemmOptions {
            isa: opts.isa,
            parallel: false,
        };

        // Embeddings → fixed-point sum → LN (node 1).
        let emb = &self.qm.emb;
        let mut x = vec![0u8; t_all * h];
        x.par_chunks_mut(h * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(ci, xo)| {
                let mut r = vec![0i32; h];
                for (ti, xr) in xo.chunks_exact_mut(h).enumerate() {
                    let t = ci * ROWS_PER_TASK + ti;
                    let (wi, yi, pi) = (ids[t] as usize, types[t] as usize, pos[t]);
                    let (mw, my, mp) = (&emb.word[wi], &emb.token_type[yi], &emb.position[pi]);
                    let (cw, cy, cp) = (
                        &p.word.codes[wi * h..(wi + 1) * h],
                        &p.token_type.codes[yi * h..(yi + 1) * h],
                        &p.position.codes[pi * h..(pi + 1) * h],
                    );
                    let fast = emb_row(
                        isa,
                        [cw, cy, cp],
                        [(mw.m0, mw.shift), (my.m0, my.shift), (mp.m0, mp.shift)],
                        &mut r,
                    );
                    if !fast {
                        for j in 0..h {
                            r[j] = sat_i32(
                                mw.apply(cw[j] as i64)
                                    + my.apply(cy[j] as i64)
                                    + mp.apply(cp[j] as i64),
                            );
                        }
                    }
                    ln_row(isa, &emb.ln, self.emb_ln.as_ref(), &r, xr);
                }
            });
        capture(&mut traces, 0, Node::Emb, &x, h);
        clock.lap(0);

        let mut q = vec![0u8; t_all * h];
        let mut k = vec![0u8; t_all * h];
        let mut v = vec![0u8; t_all * h];
        let mut ctx = vec![0u8; t_all * h];
        let mut x7 = vec![0u8; t_all * h];
        // Every row block writes all of its rows before FFN2 reads them: stale contents of the
        // kept buffer are never read.
        let mut x8 = self
            .gelu_codes
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default();
        x8.resize(t_all * inter, 0);
        // Row blocks of the Linear chains: one per thread (a multiple of 8 rows), so each thread
        // streams the weights once and the i32 intermediates of its rows stay in its caches.
        // Large batches: blocks of at most MAX_BLOCK_ROWS rows, more blocks than threads.
        let threads = rayon::current_num_threads().max(1);
        let blk = t_all.div_ceil(threads).min(MAX_BLOCK_ROWS).div_ceil(8) * 8;
        let gemm_opt = if blk >= t_all { gopt } else { inner };
        // i32 scratch of the row blocks (QKV output, attn-out / FFN2 output, FFN1 output, one
        // residual row), taken from the model's pool by each block task and returned, so buffers
        // are allocated once per concurrently running task, not per layer or per call (fresh
        // buffers cost page faults and zeroing).
        let rows_max = blk.min(t_all);
        let take = || {
            let got = self.scratch.lock().ok().and_then(|mut p| p.pop());
            let mut sc = got.unwrap_or_default();
            let grow = |v: &mut Vec<i32>, n: usize| {
                if v.len() < n {
                    *v = vec![0; n];
                }
            };
            grow(&mut sc.qkv, rows_max * 3 * h);
            grow(&mut sc.dense, rows_max * h);
            grow(&mut sc.ffn1, rows_max * inter);
            grow(&mut sc.row, h);
            sc
        };
        let give = |sc: BlockScratch| {
            if let Ok(mut p) = self.scratch.lock() {
                p.push(sc);
            }
        };

        for (l, (lp, (ld, il))) in p
            .layers
            .iter()
            .zip(self.qm.layers.iter().zip(&self.layers))
            .enumerate()
        {
            let w = |s: &str| format!("layer {l} {s}");
            let fr = &il.rows;
            let (xin, _) = p.layer_input(l);
            let zx = xin.zero_point as u8;
            let clk = &clock;

            // QKV GEMM → Q/K/V codes, per row block.
            q.par_chunks_mut(h * blk)
                .zip(k.par_chunks_mut(h * blk))
                .zip(v.par_chunks_mut(h * blk))
                .zip(x.par_chunks(h * blk))
                .try_for_each(|(((qo, ko), vo), xb)| -> Result<()> {
                    let mut scr = take();
                    let sc = &mut scr;
                    let rows = xb.len() / h;
                    let mut t0 = clk.start();
                    let y = &mut sc.qkv[..rows * 3 * h];
                    let rq = &il.qkv_requant;
                    self.linear_fixed(xb, rows, zx, &il.qkv, rq, y, &gemm_opt, &w("QKV"))?;
                    clk.add(4, &mut t0);
                    for (t, yr) in y.chunks_exact(3 * h).enumerate() {
                        let o = t * h..(t + 1) * h;
                        let (yq, yk, yv) = (&yr[..h], &yr[h..2 * h], &yr[2 * h..]);
                        codes_row(isa, &ld.query, fr.query.as_ref(), yq, &mut qo[o.clone()]);
                        codes_row(isa, &ld.key, fr.key.as_ref(), yk, &mut ko[o.clone()]);
                        codes_row(isa, &ld.value, fr.value.as_ref(), yv, &mut vo[o]);
                    }
                    clk.add(5, &mut t0);
                    give(scr);
                    Ok(())
                })?;
            clock.lap(1);
            let clk = &clock;
            let zq = lp.node(Node::Query).zero_point as u8;
            let zk = lp.node(Node::Key).zero_point as u8;
            let zv = lp.node(Node::Value).zero_point as u8;
            let zp = lp.node(Node::Probs).zero_point as u8;

            // Attention: one task per (sequence, head), reading Q/K/V heads in place.
            let want_probs = traces.is_some();
            let (qr, kr, vr) = (&q, &k, &v);
            let max_len = lengths.iter().copied().max().unwrap_or(0);
            // MPNet: each head's bias by relative offset, once per layer for every sequence.
            let rel = ld.rel_bias.as_ref().map(|b| {
                let table = crate::relative::bucket_table(max_len, b.buckets);
                let by_head: Vec<Vec<i32>> = (0..heads)
                    .map(|hd| crate::relative::units_by_offset(&table, b.head(hd)))
                    .collect();
                (b.shift, by_head)
            });
            let results: Vec<(Vec<u8>, Vec<u8>)> = (0..nb * heads)
                .into_par_iter()
                .map_init(
                    || AttnScratch::new(max_len, fr.softmax.is_none()),
                    |sc, task| -> Result<(Vec<u8>, Vec<u8>)> {
                        let (b, hd) = (task / heads, task % heads);
                        let len = lengths[b];
                        if len == 0 {
                            return Ok((vec![], vec![]));
                        }
                        let base = offsets[b] * h + hd * dh;
                        let qv =
                            MatRef::new(&qr[base..], len, dh, h).map_err(kerr("attention Q"))?;
                        let kv =
                            MatRef::new(&kr[base..], len, dh, h).map_err(kerr("attention K"))?;
                        let vv =
                            MatRef::new(&vr[base..], len, dh, h).map_err(kerr("attention V"))?;
                        let mut t0 = clk.start();
                        let kp = PackedB::pack_u8_nk(kv, zk).map_err(kerr("attention K pack"))?;
                        let vp = PackedB::pack_u8_kn(vv, zv).map_err(kerr("attention V pack"))?;
                        clk.add(6, &mut t0);
                        let scores = &mut sc.scores[..len * len];
                        gemm(
                            qv,
                            &kp,
                            &Epilogue {
                                a_zero: zq,
                                bias: None,
                            },
                            Output::Acc {
                                out: MatMut::new(scores, len, len, len).map_err(kerr("scores"))?,
                            },
                            &inner,
                        )
                        .map_err(kerr("Q·Kᵀ"))?;
                        if let Some((shift, by_head)) = &rel {
                            for (i, row) in scores.chunks_exact_mut(len).enumerate() {
                                crate::relative::add_bias_row_i32_by_offset(
                                    row,
                                    i,
                                    &by_head[hd],
                                    *shift,
                                );
                            }
                        }
                        clk.add(7, &mut t0);
                        let probs = &mut sc.probs[..len * len];
                        let (e, e64) = (&mut sc.e[..len], &mut sc.e64[..]);
                        for (srow, prow) in
                            scores.chunks_exact(len).zip(probs.chunks_exact_mut(len))
                        {
                            let f = fr.softmax.as_ref();
                            softmax_row(isa, &ld.softmax, f, srow, e, e64, prow);
                        }
                        clk.add(8, &mut t0);
                        let mut out = vec![0u8; len * dh];
                        gemm(
                            MatRef::new(probs, len, len, len).map_err(kerr("probs"))?,
                            &vp,
                            &Epilogue {
                                a_zero: zp,
                                bias: None,
                            },
                            Output::Codes {
                                out: MatMut::new(&mut out, len, dh, dh).map_err(kerr("context"))?,
                                requant: &ld.context,
                            },
                            &inner,
                        )
                        .map_err(kerr("P·V"))?;
                        clk.add(9, &mut t0);
                        Ok((if want_probs { probs.to_vec() } else { vec![] }, out))
                    },
                )
                .collect::<Result<Vec<_>>>()?;
            let mut t0 = clock.start();
            for (task, (_, out)) in results.iter().enumerate() {
                let (b, hd) = (task / heads, task % heads);
                for (i, row) in out.chunks_exact(dh).enumerate() {
                    let dst = (offsets[b] + i) * h + hd * dh;
                    ctx[dst..dst + dh].copy_from_slice(row);
                }
            }
            clock.add(16, &mut t0);
            if let Some(ts) = traces.as_mut() {
                for (b, t) in ts.iter_mut().enumerate() {
                    let len = lengths[b];
                    let mut all = Vec::with_capacity(heads * len * len);
                    for hd in 0..heads {
                        all.extend_from_slice(&results[b * heads + hd].0);
                    }
                    t.set(l, Node::Probs, all);
                }
            }
            drop(results);
            clock.lap(2);
            let clk = &clock;

            // Per row block: attention output + shortcut → MHA-LN (node 7) → FFN1 → GELU
            // (node 8) → FFN2 + shortcut → FFN-LN (node 9), the block's rows of x overwritten.
            let zc = lp.node(Node::Context).zero_point as u8;
            let z7 = lp.node(Node::MhaLn).zero_point as u8;
            let z8 = lp.node(Node::Gelu).zero_point as u8;
            x.par_chunks_mut(h * blk)
                .zip(ctx.par_chunks(h * blk))
                .zip(x7.par_chunks_mut(h * blk))
                .zip(x8.par_chunks_mut(inter * blk))
                .try_for_each(|(((xb, cb), x7b), x8b)| -> Result<()> {
                    let mut scr = take();
                    let sc = &mut scr;
                    let rows = xb.len() / h;
                    let mut t0 = clk.start();
                    let dense = &mut sc.dense[..rows * h];
                    let (ao, aorq) = (&il.attn_out, &ld.attn_out.requant);
                    let wa = w("attention output");
                    self.linear_fixed(cb, rows, zc, ao, aorq, dense, &gemm_opt, &wa)?;
                    clk.add(10, &mut t0);
                    let r = &mut sc.row[..h];
                    for ((orow, drow), xrow) in x7b
                        .chunks_exact_mut(h)
                        .zip(dense.chunks_exact(h))
                        .zip(xb.chunks_exact(h))
                    {
                        let (sc, f) = (&ld.attn_shortcut, fr.attn_res.as_ref());
                        residual_row(isa, &ld.attn_out, sc, f, drow, xrow, zx, r);
                        ln_row(isa, &ld.attn_ln, fr.attn_ln.as_ref(), r, orow);
                    }
                    clk.add(11, &mut t0);
                    let hb = &mut sc.ffn1[..rows * inter];
                    let (f1, f1rq) = (&il.ffn1, &ld.ffn1.requant);
                    self.linear_fixed(x7b, rows, z7, f1, f1rq, hb, &gemm_opt, &w("FFN1"))?;
                    clk.add(12, &mut t0);
                    for (orow, hrow) in x8b.chunks_exact_mut(inter).zip(hb.chunks_exact(inter)) {
                        gelu_row(isa, &ld.gelu, &ld.ffn1, fr.gelu.as_ref(), hrow, orow);
                    }
                    clk.add(13, &mut t0);
                    let (f2, f2rq) = (&il.ffn2, &ld.ffn2.requant);
                    self.linear_fixed(x8b, rows, z8, f2, f2rq, dense, &gemm_opt, &w("FFN2"))?;
                    clk.add(14, &mut t0);
                    for ((orow, drow), xrow) in xb
                        .chunks_exact_mut(h)
                        .zip(dense.chunks_exact(h))
                        .zip(x7b.chunks_exact(h))
                    {
                        let (sc, f) = (&ld.ffn_shortcut, fr.ffn_res.as_ref());
                        residual_row(isa, &ld.ffn2, sc, f, drow, xrow, z7, r);
                        ln_row(isa, &ld.ffn_ln, fr.ffn_ln.as_ref(), r, orow);
                    }
                    clk.add(15, &mut t0);
                    give(scr);
                    Ok(())
                })?;
            clock.lap(3);

            capture(&mut traces, l, Node::Query, &q, h);
            capture(&mut traces, l, Node::Key, &k, h);
            capture(&mut traces, l, Node::Value, &v, h);
            capture(&mut traces, l, Node::Context, &ctx, h);
            capture(&mut traces, l, Node::MhaLn, &x7, h);
            capture(&mut traces, l, Node::Gelu, &x8, inter);
            capture(&mut traces, l, Node::FfnLn, &x, h);
        }
        if let Ok(mut g) = self.gelu_codes.lock() {
            *g = x8;
        }
        let head = self.run_head(&x, &offsets, &lengths, &gopt)?;
        if let (Some(ts), Some(o)) = (traces.as_mut(), &head) {
            let nl = self.qm.params.head.as_ref().map_or(0, |hd| hd.num_labels());
            for (b, t) in ts.iter_mut().enumerate() {
                match &self.qm.params.head {
                    Some(hd) if hd.dense.is_some() => t.set_head(
                        o.input_codes[b * h..(b + 1) * h].to_vec(),
                        &o.logits[b * nl..(b + 1) * nl],
                    ),
                    _ => t.set_head(
                        vec![],
                        &o.logits[offsets[b] * nl..(offsets[b] + lengths[b]) * nl],
                    ),
                }
            }
        }
        Ok(IntOutput {
            hidden: x,
            offsets,
            lengths,
            traces,
            stage_ns: clock.finish(),
            head,
        })
    }

    /// The task head on the final codes `x` `[tokens, hidden]` (see [`super::head`]): the
    /// first token of each sequence through the dense GEMM, the activation table, and the
    /// output GEMM's accumulators to float logits; token heads the output GEMM on every token.
    fn run_head(
        &self,
        x: &[u8],
        offsets: &[usize],
        lengths: &[usize],
        gopt: &GemmOptions,
    ) -> Result<Option<super::head::HeadOutput>> {
        let (Some(hp), Some(hd), Some((dense_b, out_b))) =
            (&self.qm.params.head, &self.qm.head, &self.head)
        else {
            return Ok(None);
        };
        let h = self.qm.config().hidden_size;
        let z_final = self.qm.params.output_node().zero_point as u8;
        let mut out = super::head::HeadOutput::default();
        let (input, rows): (&[u8], usize) = match (&hp.dense, dense_b) {
            (Some(_), Some(db)) => {
                let nb = offsets.len();
                let mut cls = Vec::with_capacity(nb * h);
                for &o in offsets {
                    cls.extend_from_slice(&x[o * h..(o + 1) * h]);
                }
                let (ld, _) = hd.dense.as_ref().expect("derived with the head");
                let mut y = vec![0i32; nb * h];
                self.linear_fixed(
                    &cls,
                    nb,
                    z_final,
                    db,
                    &ld.requant,
                    &mut y,
                    gopt,
                    "head dense",
                )?;
                out.input_codes = y
                    .chunks_exact(h)
                    .flat_map(|r| r.iter().enumerate().map(|(j, &v)| hd.input_code(v, j)))
                    .collect();
                (&out.input_codes[..], nb)
            }
            _ => (x, lengths.iter().sum()),
        };
        let nl = out_b.n();
        let mut acc = vec![0i32; rows * nl];
        gemm(
            MatRef::new(input, rows, h, h).map_err(kerr("head output"))?,
            out_b,
            &Epilogue {
                a_zero: hd.out_zero as u8,
                bias: None,
            },
            Output::Acc {
                out: MatMut::new(&mut acc, rows, nl, nl).map_err(kerr("head output"))?,
            },
            gopt,
        )
        .map_err(kerr("head output GEMM"))?;
        out.logits = acc
            .chunks_exact(nl)
            .flat_map(|r| r.iter().enumerate().map(|(n, &a)| hd.logit(a, n)))
            .collect();
        Ok(Some(out))
    }

    /// Sentence embeddings `[batch, hidden]` as the parameters' [`SentenceHead`] defines them
    /// (integer sums or maxima of the final codes, dequantized once).
    ///
    /// [`SentenceHead`]: crate::pooling::SentenceHead
    pub fn embed(&self, batch: &Batch, opts: &IntOptions) -> Result<Vec<f32>> {
        let out = self.forward(batch, opts)?;
        Ok(pool_embeddings(&self.qm, &out))
    }
}

/// The model's pooling of the final codes, normalised when its metadata says so.
pub fn pool_embeddings(qm: &QuantModel, out: &IntOutput) -> Vec<f32> {
    pool_codes_with(qm, out, qm.params.sentence.normalize)
}

/// The model's pooling of the final codes ([`crate::pooling::pool_codes`]), L2-normalized
/// when `normalize`.
pub fn pool_codes_with(qm: &QuantModel, out: &IntOutput, normalize: bool) -> Vec<f32> {
    let h = qm.config().hidden_size;
    let q = qm.params.output_node();
    let pooling = qm.params.sentence.pooling;
    let mut res = vec![0f32; out.lengths.len() * h];
    for (b, e) in res.chunks_exact_mut(h).enumerate() {
        let len = out.lengths[b];
        let v =
            crate::pooling::pool_codes(pooling, out.sequence(b, h), len, h, q.zero_point, q.scale);
        crate::pooling::finish(&v, normalize, e);
    }
    res
}
