//! Per-stage timing of the integer forward.
//!
//! `perf` is not available on every machine (no PMU in most VMs), and the integer executor has
//! no timers, so this module runs a stage-by-stage replica of
//! `osq_model::quant::integer::IntegerModel::forward` (same public constants of `QuantModel`, same
//! osq-kernels calls, same packing, same rayon splits) with a timer around each stage, and
//! checks that its final codes are bit-identical to the executor's, so the profile describes
//! the computation actually benchmarked. Parallel attention tasks are timed per task (thread
//! time, summed over threads) and the attention block as a whole (wall time).

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use osq_kernels::{gemm, Epilogue, GemmOptions, MatMut, MatRef, Output, PackedB, Requant};
use osq_model::quant::integer::{IntOptions, IntegerModel};
use osq_model::quant::nonlin::sat_i32;
use osq_model::quant::{Node, QuantModel};
use osq_model::Batch;
use rayon::prelude::*;
use serde::Serialize;

use crate::engine::{Engine, EngineKind, Threads};
use crate::fastpath::{codes_row, FastLn, FastShortcut, FastSoftmax, GeluLut};
use crate::inputs::{make_batch, read_sentences, Fill};

const ROWS_PER_TASK: usize = 16;

struct PLayer {
    qkv: PackedB,
    qkv_requant: Requant,
    attn_out: PackedB,
    ffn1: PackedB,
    ffn2: PackedB,
}

/// Stages, in execution order.
pub const STAGES: [&str; 17] = [
    "embeddings+LN",
    "QKV GEMM",
    "QKV requant->codes",
    "attention (wall)",
    "  K/V packing (thread time)",
    "  Q.K^T GEMM (thread time)",
    "  softmax (thread time)",
    "  P.V GEMM (thread time)",
    "  context scatter",
    "attn-out GEMM",
    "attn residual (shortcut)",
    "attn LN",
    "FFN1 GEMM",
    "GELU",
    "FFN2 GEMM",
    "FFN residual (shortcut)",
    "FFN LN",
];

/// The replica with its own packed weights; `fast` swaps in the bit-exact fast paths of
/// [`crate::fastpath`] for GELU and softmax.
pub struct Profiler<'a> {
    qm: Cow<'a, QuantModel>,
    layers: Vec<PLayer>,
    fast: Option<Vec<FastLayer>>,
}

/// Fast paths of one layer: GELU, softmax, attention shortcut, attention LN, FFN shortcut, FFN LN.
type FastLayer = (
    GeluLut,
    FastSoftmax,
    FastShortcut,
    FastLn,
    FastShortcut,
    FastLn,
);

/// `dense[t, j] = sat_i32(lin.fixed(dense[t, j], j) + shortcut_j(x[t, j] − z))` (in place).
fn residual(
    dense: &mut [i32],
    x: &[u8],
    h: usize,
    z: i64,
    lin: &osq_model::quant::graph::LinDerived,
    sc: &[osq_model::quant::nonlin::SignedMul],
    fast: Option<&FastShortcut>,
) {
    dense
        .par_chunks_mut(h * ROWS_PER_TASK)
        .zip(x.par_chunks(h * ROWS_PER_TASK))
        .for_each(|(d, xi)| {
            for (drow, xrow) in d.chunks_exact_mut(h).zip(xi.chunks_exact(h)) {
                match fast {
                    Some(f) => f.apply_row(sc, lin, drow, xrow, z),
                    None => {
                        for j in 0..h {
                            let s = sc[j].apply(xrow[j] as i64 - z);
                            drow[j] = sat_i32(lin.fixed(drow[j], j) + s);
                        }
                    }
                }
            }
        });
}

fn layer_norm(
    r: &[i32],
    out: &mut [u8],
    h: usize,
    ln: &osq_model::quant::nonlin::LayerNormInt,
    fast: Option<&FastLn>,
) {
    out.par_chunks_mut(h * ROWS_PER_TASK)
        .zip(r.par_chunks(h * ROWS_PER_TASK))
        .for_each(|(o, ri)| {
            for (orow, rrow) in o.chunks_exact_mut(h).zip(ri.chunks_exact(h)) {
                match fast {
                    Some(f) => f.row(ln, rrow, orow),
                    None => ln.row(rrow, orow),
                }
            }
        });
}

fn kerr(what: &'static str) -> impl Fn(osq_kernels::KernelError) -> anyhow::Error {
    move |e| anyhow!("{what}: {e}")
}

fn pack(codes: &[i8], n: usize, k: usize, four: bool) -> Result<PackedB> {
    let m = MatRef::new(codes, n, k, k).map_err(kerr("pack"))?;
    if four {
        PackedB::pack_s4(m)
    } else {
        PackedB::pack_s8(m)
    }
    .map_err(kerr("pack"))
}

/// Nanoseconds per stage.
#[derive(Clone, Debug, Default)]
pub struct StageTimes {
    pub ns: [u64; STAGES.len()],
}

fn fixed_gemm(
    x: &[u8],
    rows: usize,
    za: u8,
    b: &PackedB,
    rq: &Requant,
    out: &mut [i32],
    gopt: &GemmOptions,
) -> Result<()> {
    let (k, n) = (b.k(), b.n());
    gemm(
        MatRef::new(x, rows, k, k).map_err(kerr("A"))?,
        b,
        &Epilogue {
            a_zero: za,
            bias: None,
        },
        Output::Fixed {
            out: MatMut::new(out, rows, n, n).map_err(kerr("out"))?,
            requant: rq,
        },
        gopt,
    )
    .map_err(kerr("gemm"))
}

impl<'a> Profiler<'a> {
    pub fn new(qm: &'a QuantModel, fast: bool) -> Result<Self> {
        Self::build(Cow::Borrowed(qm), fast)
    }

    /// A replica that owns its copy of the model (the `osq-int8-proto` engine).
    pub fn owned(qm: QuantModel, fast: bool) -> Result<Profiler<'static>> {
        Profiler::build(Cow::Owned(qm), fast)
    }

    fn build(qm: Cow<'a, QuantModel>, fast: bool) -> Result<Self> {
        let four = qm.params.bits.weight_bits() == 4;
        let mut layers = Vec::new();
        for (lp, ld) in qm.params.layers.iter().zip(&qm.layers) {
            let mut codes = lp.query.w.codes.clone();
            codes.extend_from_slice(&lp.key.w.codes);
            codes.extend_from_slice(&lp.value.w.codes);
            let (n, k) = (lp.query.n(), lp.query.k());
            let (mut m0, mut sh) = (Vec::new(), Vec::new());
            for d in [&ld.query, &ld.key, &ld.value] {
                m0.extend_from_slice(&d.requant.m0()[..n]);
                sh.extend_from_slice(&d.requant.shift()[..n]);
            }
            layers.push(PLayer {
                qkv: pack(&codes, 3 * n, k, four)?,
                qkv_requant: Requant::from_parts(&m0, &sh, 0, 0, 0).map_err(kerr("requant"))?,
                attn_out: pack(&lp.attn_out.w.codes, lp.attn_out.n(), lp.attn_out.k(), four)?,
                ffn1: pack(&lp.ffn1.w.codes, lp.ffn1.n(), lp.ffn1.k(), four)?,
                ffn2: pack(&lp.ffn2.w.codes, lp.ffn2.n(), lp.ffn2.k(), four)?,
            });
        }
        let fast = fast.then(|| {
            qm.layers
                .iter()
                .map(|ld| {
                    (
                        GeluLut::new(&ld.gelu),
                        FastSoftmax::new(&ld.softmax),
                        FastShortcut::new(&ld.attn_shortcut),
                        FastLn::new(&ld.attn_ln),
                        FastShortcut::new(&ld.ffn_shortcut),
                        FastLn::new(&ld.ffn_ln),
                    )
                })
                .collect()
        });
        Ok(Profiler { qm, layers, fast })
    }

    /// One timed forward (inside the caller's rayon pool); returns the final codes of the valid
    /// tokens, sequences concatenated, and adds the stage times to `t`.
    pub fn forward(&self, batch: &Batch, t: &mut StageTimes) -> Result<Vec<u8>> {
        self.forward_with(batch, t, &mut |_, _| {})
    }

    /// [`Profiler::forward`] calling `ffn1(layer, fixed FFN1 outputs)` before GELU.
    pub fn forward_with(
        &self,
        batch: &Batch,
        t: &mut StageTimes,
        ffn1: &mut dyn FnMut(usize, &[i32]),
    ) -> Result<Vec<u8>> {
        let p = &self.qm.params;
        let c = &p.config;
        let (h, inter, heads, dh) = (
            c.hidden_size,
            c.intermediate_size,
            c.num_attention_heads,
            c.head_dim(),
        );
        let nb = batch.batch;
        let (mut ids, mut types, mut pos, mut offsets) = (vec![], vec![], vec![], vec![]);
        for b in 0..nb {
            let row = b * batch.seq_len;
            let len = batch.lengths[b];
            offsets.push(ids.len());
            ids.extend_from_slice(&batch.ids[row..row + len]);
            types.extend_from_slice(&batch.type_ids[row..row + len]);
            pos.extend(0..len);
        }
        let lengths = &batch.lengths;
        let t_all = ids.len();
        if t_all == 0 {
            return Ok(vec![]);
        }
        let gopt = GemmOptions {
            isa: None,
            parallel: true,
        };
        let inner = GemmOptions {
            isa: None,
            parallel: false,
        };
        let mut clock = Instant::now();
        let mut lap = |t: &mut StageTimes, i: usize| {
            let now = Instant::now();
            t.ns[i] += (now - clock).as_nanos() as u64;
            clock = now;
        };
        let emb = &self.qm.emb;
        let mut x = vec![0u8; t_all * h];
        x.par_chunks_mut(h * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(ci, xo)| {
                let mut r = vec![0i32; h];
                for (ti, xr) in xo.chunks_exact_mut(h).enumerate() {
                    let tk = ci * ROWS_PER_TASK + ti;
                    let (wi, yi, pi) = (ids[tk] as usize, types[tk] as usize, pos[tk]);
                    let (mw, my, mp) = (&emb.word[wi], &emb.token_type[yi], &emb.position[pi]);
                    let (cw, cy, cp) = (
                        &p.word.codes[wi * h..(wi + 1) * h],
                        &p.token_type.codes[yi * h..(yi + 1) * h],
                        &p.position.codes[pi * h..(pi + 1) * h],
                    );
                    for j in 0..h {
                        r[j] = sat_i32(
                            mw.apply(cw[j] as i64)
                                + my.apply(cy[j] as i64)
                                + mp.apply(cp[j] as i64),
                        );
                    }
                    emb.ln.row(&r, xr);
                }
            });
        lap(t, 0);
        let mut qkv = vec![0i32; t_all * 3 * h];
        let mut q = vec![0u8; t_all * h];
        let mut k = vec![0u8; t_all * h];
        let mut v = vec![0u8; t_all * h];
        let mut ctx = vec![0u8; t_all * h];
        let mut dense = vec![0i32; t_all * h];
        let mut x7 = vec![0u8; t_all * h];
        let mut hbuf = vec![0i32; t_all * inter];
        let mut x8 = vec![0u8; t_all * inter];
        let sub: [AtomicU64; 4] = Default::default();
        for (l, (lp, (ld, il))) in p
            .layers
            .iter()
            .zip(self.qm.layers.iter().zip(&self.layers))
            .enumerate()
        {
            let (xin, _) = p.layer_input(l);
            let zx = xin.zero_point as u8;
            let fl = self.fast.as_ref().map(|f| &f[l]);
            lap(t, 16); // bookkeeping between layers counts as the previous stage
            fixed_gemm(&x, t_all, zx, &il.qkv, &il.qkv_requant, &mut qkv, &gopt)?;
            lap(t, 1);
            q.par_chunks_mut(h * ROWS_PER_TASK)
                .zip(k.par_chunks_mut(h * ROWS_PER_TASK))
                .zip(v.par_chunks_mut(h * ROWS_PER_TASK))
                .zip(qkv.par_chunks(3 * h * ROWS_PER_TASK))
                .for_each(|(((qo, ko), vo), y)| {
                    for (tt, yr) in y.chunks_exact(3 * h).enumerate() {
                        let o = tt * h;
                        if self.fast.is_some() {
                            codes_row(&ld.query, &yr[..h], &mut qo[o..o + h]);
                            codes_row(&ld.key, &yr[h..2 * h], &mut ko[o..o + h]);
                            codes_row(&ld.value, &yr[2 * h..], &mut vo[o..o + h]);
                        } else {
                            for j in 0..h {
                                qo[o + j] = ld.query.code(yr[j], j);
                                ko[o + j] = ld.key.code(yr[h + j], j);
                                vo[o + j] = ld.value.code(yr[2 * h + j], j);
                            }
                        }
                    }
                });
            lap(t, 2);
            let zq = lp.node(Node::Query).zero_point as u8;
            let zk = lp.node(Node::Key).zero_point as u8;
            let zv = lp.node(Node::Value).zero_point as u8;
            let zp = lp.node(Node::Probs).zero_point as u8;
            let (qr, kr, vr) = (&q, &k, &v);
            let sub = &sub;
            let results: Vec<Vec<u8>> = (0..nb * heads)
                .into_par_iter()
                .map(|task| -> Result<Vec<u8>> {
                    let (b, hd) = (task / heads, task % heads);
                    let len = lengths[b];
                    if len == 0 {
                        return Ok(vec![]);
                    }
                    let add = |i: usize, t0: Instant| {
                        sub[i].fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    };
                    let base = offsets[b] * h + hd * dh;
                    let qv = MatRef::new(&qr[base..], len, dh, h).map_err(kerr("Q"))?;
                    let kv = MatRef::new(&kr[base..], len, dh, h).map_err(kerr("K"))?;
                    let vv = MatRef::new(&vr[base..], len, dh, h).map_err(kerr("V"))?;
                    let t0 = Instant::now();
                    let kp = PackedB::pack_u8_nk(kv, zk).map_err(kerr("K pack"))?;
                    add(0, t0);
                    let t0 = Instant::now();
                    let mut scores = vec![0i32; len * len];
                    gemm(
                        qv,
                        &kp,
                        &Epilogue {
                            a_zero: zq,
                            bias: None,
                        },
                        Output::Acc {
                            out: MatMut::new(&mut scores, len, len, len).map_err(kerr("S"))?,
                        },
                        &inner,
                    )
                    .map_err(kerr("QK"))?;
                    add(1, t0);
                    let t0 = Instant::now();
                    let mut probs = vec![0u8; len * len];
                    let mut e = vec![0i64; len];
                    for (srow, prow) in scores.chunks_exact(len).zip(probs.chunks_exact_mut(len)) {
                        match fl {
                            Some((_, fs, ..)) => fs.row(&ld.softmax, srow, &mut e, prow),
                            None => ld.softmax.row(srow, &mut e, prow),
                        }
                    }
                    add(2, t0);
                    let t0 = Instant::now();
                    let vp = PackedB::pack_u8_kn(vv, zv).map_err(kerr("V pack"))?;
                    add(0, t0);
                    let t0 = Instant::now();
                    let mut out = vec![0u8; len * dh];
                    gemm(
                        MatRef::new(&probs, len, len, len).map_err(kerr("P"))?,
                        &vp,
                        &Epilogue {
                            a_zero: zp,
                            bias: None,
                        },
                        Output::Codes {
                            out: MatMut::new(&mut out, len, dh, dh).map_err(kerr("C"))?,
                            requant: &ld.context,
                        },
                        &inner,
                    )
                    .map_err(kerr("PV"))?;
                    add(3, t0);
                    Ok(out)
                })
                .collect::<Result<Vec<_>>>()?;
            lap(t, 3);
            for (task, out) in results.iter().enumerate() {
                let (b, hd) = (task / heads, task % heads);
                for (i, row) in out.chunks_exact(dh).enumerate() {
                    let dst = (offsets[b] + i) * h + hd * dh;
                    ctx[dst..dst + dh].copy_from_slice(row);
                }
            }
            drop(results);
            lap(t, 8);
            let zc = lp.node(Node::Context).zero_point as u8;
            fixed_gemm(
                &ctx,
                t_all,
                zc,
                &il.attn_out,
                &ld.attn_out.requant,
                &mut dense,
                &gopt,
            )?;
            lap(t, 9);
            let zxi = zx as i64;
            residual(
                &mut dense,
                &x,
                h,
                zxi,
                &ld.attn_out,
                &ld.attn_shortcut,
                fl.map(|f| &f.2),
            );
            lap(t, 10);
            layer_norm(&dense, &mut x7, h, &ld.attn_ln, fl.map(|f| &f.3));
            lap(t, 11);
            let z7 = lp.node(Node::MhaLn).zero_point as u8;
            fixed_gemm(&x7, t_all, z7, &il.ffn1, &ld.ffn1.requant, &mut hbuf, &gopt)?;
            lap(t, 12);
            ffn1(l, &hbuf);
            x8.par_chunks_mut(inter * ROWS_PER_TASK)
                .zip(hbuf.par_chunks(inter * ROWS_PER_TASK))
                .for_each(|(o, hh)| {
                    for (orow, hrow) in o.chunks_exact_mut(inter).zip(hh.chunks_exact(inter)) {
                        match fl {
                            Some((g, ..)) => g.row(&ld.gelu, &ld.ffn1, hrow, orow),
                            None => {
                                for (j, (o, &v)) in orow.iter_mut().zip(hrow).enumerate() {
                                    *o = ld.gelu.code(sat_i32(ld.ffn1.fixed(v, j)));
                                }
                            }
                        }
                    }
                });
            lap(t, 13);
            let z8 = lp.node(Node::Gelu).zero_point as u8;
            fixed_gemm(
                &x8,
                t_all,
                z8,
                &il.ffn2,
                &ld.ffn2.requant,
                &mut dense,
                &gopt,
            )?;
            lap(t, 14);
            let z7i = z7 as i64;
            residual(
                &mut dense,
                &x7,
                h,
                z7i,
                &ld.ffn2,
                &ld.ffn_shortcut,
                fl.map(|f| &f.4),
            );
            lap(t, 15);
            layer_norm(&dense, &mut x, h, &ld.ffn_ln, fl.map(|f| &f.5));
            lap(t, 16);
        }
        for (i, s) in sub.iter().enumerate() {
            t.ns[4 + i] += s.load(Ordering::Relaxed);
        }
        Ok(x)
    }
}

/// GEMM multiply-accumulates of one forward, per stage name.
pub fn gemm_macs(qm: &QuantModel, lengths: &[usize]) -> Vec<(&'static str, u64)> {
    let c = qm.config();
    let (h, inter, nl, heads, dh) = (
        c.hidden_size as u64,
        c.intermediate_size as u64,
        c.num_hidden_layers as u64,
        c.num_attention_heads as u64,
        c.head_dim() as u64,
    );
    let t: u64 = lengths.iter().map(|&l| l as u64).sum();
    let l2: u64 = lengths.iter().map(|&l| (l * l) as u64).sum();
    vec![
        ("QKV GEMM", nl * t * 3 * h * h),
        ("  Q.K^T GEMM (thread time)", nl * heads * l2 * dh),
        ("  P.V GEMM (thread time)", nl * heads * l2 * dh),
        ("attn-out GEMM", nl * t * h * h),
        ("FFN1 GEMM", nl * t * h * inter),
        ("FFN2 GEMM", nl * t * inter * h),
    ]
}

/// One stage of a profile.
#[derive(Clone, Debug, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub ms: f64,
    /// Share of the forward wall time (thread-time sub-stages: share of the attention block's
    /// summed thread time).
    pub share: f64,
    pub gmacs_per_s: Option<f64>,
}

/// Profile of one (batch, seq, threads).
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub engine: String,
    /// `exact`: the executor's arithmetic as written; `fast`: with [`crate::fastpath`].
    pub variant: String,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub runs: usize,
    /// Mean wall time of the replica's forward.
    pub forward_ms: f64,
    /// Mean wall time of IntegerModel::forward on the same input, measured alternately.
    pub executor_ms: f64,
    pub total_gmac: f64,
    pub stages: Vec<StageRow>,
}

/// Profiles `engine` (integer) on `batch` with `threads`, `runs` times (after 3 warm-ups),
/// alternating replica and executor runs; errors if the replica's codes differ.
pub fn profile(
    model: &IntegerModel,
    name: &str,
    batch: &Batch,
    threads: &Threads,
    runs: usize,
    fast: bool,
) -> Result<Profile> {
    let qm = model.quant();
    let prof = Profiler::new(qm, fast)?;
    let mut acc = StageTimes::default();
    let mut scratch = StageTimes::default();
    let want = threads
        .pool()
        .install(|| model.forward(batch, &IntOptions::default()))
        .map_err(|e| anyhow!("{e}"))?;
    let got = threads
        .pool()
        .install(|| prof.forward(batch, &mut scratch))?;
    if got != want.hidden {
        bail!("profile replica differs from IntegerModel::forward: the profiler is out of date with quant/integer.rs");
    }
    for _ in 0..3 {
        threads
            .pool()
            .install(|| prof.forward(batch, &mut scratch))?;
    }
    let (mut fwd, mut exe) = (0f64, 0f64);
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        threads.pool().install(|| prof.forward(batch, &mut acc))?;
        fwd += t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let o = threads
            .pool()
            .install(|| model.forward(batch, &IntOptions::default()))
            .map_err(|e| anyhow!("{e}"))?;
        exe += t0.elapsed().as_secs_f64();
        std::hint::black_box(o);
    }
    let n = runs.max(1) as f64;
    let forward_ms = fwd * 1e3 / n;
    let macs = gemm_macs(qm, &batch.lengths);
    let attn_thread: u64 = acc.ns[4..8].iter().sum();
    let stages = STAGES
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let ms = acc.ns[i] as f64 / 1e6 / n;
            let share = if (4..8).contains(&i) {
                acc.ns[i] as f64 / attn_thread.max(1) as f64
            } else {
                ms / forward_ms
            };
            let gmacs_per_s = macs
                .iter()
                .find(|(m, _)| *m == s)
                .map(|&(_, mac)| mac as f64 / (ms * 1e-3) / 1e9);
            StageRow {
                stage: s.to_string(),
                ms,
                share,
                gmacs_per_s,
            }
        })
        .collect();
    Ok(Profile {
        engine: name.into(),
        variant: if fast { "fast" } else { "exact" }.into(),
        batch: batch.batch,
        seq: batch.seq_len,
        threads: threads.count(),
        runs: runs.max(1),
        forward_ms,
        executor_ms: exe * 1e3 / n,
        total_gmac: macs.iter().map(|m| m.1).sum::<u64>() as f64 / 1e9,
        stages,
    })
}

/// Text rendering of a profile.
pub fn render(p: &Profile) -> String {
    let mut s = format!(
        "{} b{} s{} t{} [{} replica]: replica forward {:.3} ms, IntegerModel::forward {:.3} ms ({} runs, alternated), GEMM work {:.3} GMAC\n",
        p.engine, p.batch, p.seq, p.threads, p.variant, p.forward_ms, p.executor_ms, p.runs, p.total_gmac
    );
    s.push_str(&format!(
        "  {:<30} {:>9} {:>7} {:>10}\n",
        "stage", "ms", "share", "GMAC/s"
    ));
    for r in &p.stages {
        s.push_str(&format!(
            "  {:<30} {:>9.3} {:>6.1}% {:>10}\n",
            r.stage,
            r.ms,
            r.share * 100.0,
            r.gmacs_per_s.map(|g| format!("{g:.1}")).unwrap_or_default()
        ));
    }
    s
}

/// `osq-serve-bench profile`.
#[allow(clippy::too_many_arguments)]
pub fn cli(
    params: &Path,
    model: Option<&Path>,
    data: &Path,
    batch: usize,
    seq: usize,
    threads: &[usize],
    runs: usize,
    json: Option<&Path>,
) -> Result<()> {
    let sentences = read_sentences(data)?;
    let probe = osq_model::quant::format::load(params)
        .map_err(|e| anyhow!("loading {}: {e}", params.display()))?;
    let kind = if probe.bits.weight_bits() == 4 {
        EngineKind::Int4
    } else {
        EngineKind::Int8
    };
    drop(probe);
    let e = Engine::load_int(kind, params, model)?;
    let m = e
        .integer()
        .ok_or_else(|| anyhow!("not an integer engine"))?;
    let seq = seq.min(e.max_positions());
    let b = make_batch(e.tokenizer(), &sentences, batch, seq, Fill::Full, 0)?;
    let mut all = Vec::new();
    for (l, (n, fb, rows)) in gelu_fallback_stats(m.quant(), &b)?.into_iter().enumerate() {
        println!(
            "GELU table, layer {l}: {fb} of {n} inputs in fallback buckets ({:.3}%), {rows} of {} rows need the fallback pass",
            fb as f64 * 100.0 / n.max(1) as f64,
            n / m.quant().config().intermediate_size
        );
    }
    for &t in threads {
        let th = Threads::new(t)?;
        for fast in [false, true] {
            let p = profile(m, e.name(), &b, &th, runs, fast)?;
            print!("{}", render(&p));
            all.push(p);
        }
    }
    if let Some(j) = json {
        crate::report::write_atomic(j, &serde_json::to_string_pretty(&all)?)?;
    }
    Ok(())
}

/// GELU inputs of one forward per layer: (elements, elements in fallback buckets, rows with at
/// least one). Computed with the exact replica's FFN1 outputs.
pub fn gelu_fallback_stats(qm: &QuantModel, batch: &Batch) -> Result<Vec<(usize, usize, usize)>> {
    let prof = Profiler::new(qm, false)?;
    let mut st = StageTimes::default();
    let inter = qm.config().intermediate_size;
    let mut out = Vec::new();
    prof.forward_with(batch, &mut st, &mut |l, hbuf: &[i32]| {
        let ld = &qm.layers[l];
        let lut = GeluLut::new(&ld.gelu);
        let (mut n, mut fb, mut rows) = (0, 0, 0);
        for row in hbuf.chunks_exact(inter) {
            let mut any = false;
            for (j, &v) in row.iter().enumerate() {
                n += 1;
                if lut.falls_back(sat_i32(ld.ffn1.fixed(v, j))) {
                    fb += 1;
                    any = true;
                }
            }
            rows += usize::from(any);
        }
        out.push((n, fb, rows));
    })?;
    Ok(out)
}
