//! The calibration engine: the quantized BERT graph in plain f32 with fake-quant nodes, FP32
//! weights (or any weights the caller puts in), observation taps, and a tape for the backward
//! pass of the fine stage.
//!
//! Every LayerNorm is written in the general form that Gamma Migration and OS+ both produce:
//! the node quantizes `X_q = a ⊙ n + c` (`n` = the normalized row) and the consumers — the next
//! Linear(s) AND the shortcut — receive `u = m ⊙ X̂_q`:
//!
//! | LN form          | `a`   | `c`           | `m`  |
//! |------------------|-------|---------------|------|
//! | plain            | `γ`   | `β`           | 1    |
//! | γ-migrated       | 1     | `β/γ`         | `γ`  |
//! | OS+ (shift z, scale s) | `γ/s` | `(β − z)/s` | `s` (+ `z` folded into biases) |
//!
//! With `m` applied to the *consumer input* the Linear weights stay the FP32 ones, which is
//! exactly "weights unquantized during the search". The deploy graph moves `m` into the weight
//! columns (`W[:, j] ·= m_j`) and onto the shortcut multiplier instead (see [`crate::export`]).

use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::graph::MIN_MIGRATED_GAMMA;
use osq_model::quant::{MinMax, Node, QParams};
use osq_model::{Batch, BertWeights, LayerNormW, Linear};
use rayon::prelude::*;

use crate::error::{CalibError, Result};

/// One LayerNorm of the quantized graph (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct LnSpec {
    pub a: Vec<f32>,
    pub c: Vec<f32>,
    /// Consumer multiplier (`None` = 1).
    pub m: Option<Vec<f32>>,
}

impl LnSpec {
    /// The ordinary LayerNorm (`X̃ = γ ⊙ n + β`).
    pub fn plain(ln: &LayerNormW) -> Self {
        LnSpec {
            a: ln.gamma.clone(),
            c: ln.beta.clone(),
            m: None,
        }
    }

    /// The non-scaling LayerNorm of Gamma Migration (`X' = n + β/γ`, consumers get `γ ⊙ X̂'`).
    pub fn migrated(ln: &LayerNormW) -> Self {
        LnSpec {
            a: vec![1.0; ln.gamma.len()],
            c: ln.beta.iter().zip(&ln.gamma).map(|(b, g)| b / g).collect(),
            m: Some(ln.gamma.clone()),
        }
    }
}

/// Identifies one LayerNorm of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LnId {
    /// The embedding LayerNorm (node 1 of layer 0).
    Emb,
    /// The MHA LayerNorm of a layer (node 7).
    Attn(usize),
    /// The FFN LayerNorm of a layer (node 9).
    Ffn(usize),
}

impl LnId {
    /// The quantization node at the output of this LayerNorm.
    pub fn node(self) -> (usize, Node) {
        match self {
            LnId::Emb => (0, Node::Emb),
            LnId::Attn(l) => (l, Node::MhaLn),
            LnId::Ffn(l) => (l, Node::FfnLn),
        }
    }

    pub fn name(self) -> String {
        match self {
            LnId::Emb => "embeddings.LayerNorm".into(),
            LnId::Attn(l) => format!("layer {l} attention.output.LayerNorm"),
            LnId::Ffn(l) => format!("layer {l} output.LayerNorm"),
        }
    }
}

/// The FP32 model in quant-graph form.
#[derive(Clone, Debug, PartialEq)]
pub struct QGraph {
    /// Embedding tables and Linear weights as the engine uses them (consumers receive `u`).
    /// The LayerNorm fields of `w` are the *original* ones and are not used by the engine.
    pub w: BertWeights,
    pub emb_ln: LnSpec,
    pub attn_ln: Vec<LnSpec>,
    pub ffn_ln: Vec<LnSpec>,
    /// Gamma Migration applied (every LN but the last FFN-LN is non-scaling).
    pub migrate: bool,
    /// OS+ shifting/scaling folded (see [`crate::osplus`]).
    pub osplus: bool,
}

fn check_gamma(ln: &LayerNormW, id: LnId) -> Result<()> {
    if let Some((j, g)) = ln
        .gamma
        .iter()
        .enumerate()
        .find(|(_, g)| g.is_nan() || g.abs() < MIN_MIGRATED_GAMMA)
    {
        return Err(CalibError::Failed(format!(
            "Gamma Migration refused: {} γ[{j}] = {g} (|γ| < {MIN_MIGRATED_GAMMA}); use --no-gamma",
            id.name()
        )));
    }
    Ok(())
}

impl QGraph {
    /// The quant graph of FP32 weights, γ-migrated or not (the last FFN-LN is never migrated).
    pub fn new(w: BertWeights, migrate: bool) -> Result<Self> {
        let nl = w.config.num_hidden_layers;
        if nl == 0 {
            return Err(CalibError::Failed("the model has no encoder layer".into()));
        }
        let mk = |ln: &LayerNormW, id: LnId, mig: bool| -> Result<LnSpec> {
            if mig {
                check_gamma(ln, id)?;
                Ok(LnSpec::migrated(ln))
            } else {
                Ok(LnSpec::plain(ln))
            }
        };
        let emb_ln = mk(&w.embeddings.ln, LnId::Emb, migrate)?;
        let mut attn_ln = Vec::with_capacity(nl);
        let mut ffn_ln = Vec::with_capacity(nl);
        for (l, lw) in w.layers.iter().enumerate() {
            attn_ln.push(mk(&lw.attn_ln, LnId::Attn(l), migrate)?);
            ffn_ln.push(mk(&lw.ffn_ln, LnId::Ffn(l), migrate && l + 1 < nl)?);
        }
        Ok(QGraph {
            w,
            emb_ln,
            attn_ln,
            ffn_ln,
            migrate,
            osplus: false,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.w.layers.len()
    }

    pub fn ln(&self, id: LnId) -> &LnSpec {
        match id {
            LnId::Emb => &self.emb_ln,
            LnId::Attn(l) => &self.attn_ln[l],
            LnId::Ffn(l) => &self.ffn_ln[l],
        }
    }

    pub fn ln_mut(&mut self, id: LnId) -> &mut LnSpec {
        match id {
            LnId::Emb => &mut self.emb_ln,
            LnId::Attn(l) => &mut self.attn_ln[l],
            LnId::Ffn(l) => &mut self.ffn_ln[l],
        }
    }

    pub fn eps(&self) -> f32 {
        self.w.config.layer_norm_eps
    }
}

// ---------------------------------------------------------------------------------------------
// Fake quantizers
// ---------------------------------------------------------------------------------------------

/// A per-tensor activation quantizer with a (possibly fractional, LSQ+) zero point.
/// Forward: `q = clamp(round(x·(1/s)) + round(z), qmin, qmax)`, `x̂ = (q − round(z))·s`
/// (round half to even, PyTorch's `fake_quantize_per_tensor_affine`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FakeQ {
    pub s: f32,
    pub z: f32,
    pub qmin: f32,
    pub qmax: f32,
}

impl FakeQ {
    pub fn from_qparams(q: &QParams) -> Self {
        FakeQ {
            s: q.scale,
            z: q.zero_point as f32,
            qmin: q.qmin as f32,
            qmax: q.qmax as f32,
        }
    }

    /// The deploy quantizer of an observed range (OS observer formulas).
    pub fn from_range(mm: &MinMax, bits: u32) -> Self {
        Self::from_qparams(&QParams::activation(mm.min, mm.max, bits))
    }

    /// The integer zero point used in the forward pass.
    #[inline]
    pub fn zr(&self) -> f32 {
        self.z.round_ties_even().clamp(self.qmin, self.qmax)
    }

    /// The range whose OS quantizer is this one: `[(qmin − z)·s, (qmax − z)·s]`.
    pub fn to_range(&self) -> MinMax {
        let z = self.zr();
        MinMax {
            min: (self.qmin - z) * self.s,
            max: (self.qmax - z) * self.s,
        }
    }

    /// `round_half_even(x·inv) + zr`, the code before the final clamp; inputs far outside the
    /// code range are clamped first (which does not change the clamped result).
    #[inline]
    pub fn code(&self, x: f32, inv: f32, zr: f32) -> f32 {
        let y = (x * inv).clamp(self.qmin - zr - 1.0, self.qmax - zr + 1.0);
        rne(y) + zr
    }

    #[inline]
    pub fn apply(&self, x: f32, inv: f32, zr: f32) -> f32 {
        let q = self.code(x, inv, zr).clamp(self.qmin, self.qmax);
        (q - zr) * self.s
    }
}

/// Round half to even for `|x| ≤ 2^22` without a libm call (`x + 1.5·2^23 − 1.5·2^23` in the
/// default round-to-nearest-even mode); equal to `f32::round_ties_even` on that domain.
#[inline(always)]
pub fn rne(x: f32) -> f32 {
    const M: f32 = 12_582_912.0;
    (x + M) - M
}

/// `erf` with absolute error < 1.5e-7 (Abramowitz & Stegun 7.1.26), f64 arithmetic without FMA
/// calls: the calibration graph needs f32 accuracy only, and `fp32::erf`'s `mul_add` becomes a
/// libm call on baseline x86-64.
#[inline]
pub fn erf_fast(x: f64) -> f64 {
    let ax = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * ax);
    let poly = ((((1.061_405_429 * t - 1.453_152_027) * t + 1.421_413_741) * t - 0.284_496_736)
        * t
        + 0.254_829_592)
        * t;
    let y = 1.0 - poly * (-ax * ax).exp();
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// GELU `½·x·(1 + erf(x/√2))` with [`erf_fast`].
#[inline]
pub fn gelu_fast(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf_fast(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// Quantizers of every node of every layer (`None` = not quantized).
pub type QuantSet = Vec<[Option<FakeQ>; 9]>;

/// Fake-quantize `x` in place.
pub fn fq_inplace(x: &mut [f32], q: &FakeQ) {
    let inv = 1.0 / q.s;
    let zr = q.zr();
    x.par_chunks_mut(8192)
        .for_each(|c| c.iter_mut().for_each(|v| *v = q.apply(*v, inv, zr)));
}

// ---------------------------------------------------------------------------------------------
// Taps
// ---------------------------------------------------------------------------------------------

/// Where the engine lets an observer look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// A quantization node, before quantization (`X_q` for the LN nodes).
    Node(usize, Node),
    /// Embedding sum (input of the embedding LN).
    EmbSum,
    /// Residual sum before the MHA LN.
    AttnResidual(usize),
    /// Residual sum before the FFN LN.
    FfnResidual(usize),
    /// FFN1 output (GELU input).
    Ffn1(usize),
}

/// Observer callback: `(tap, tensor [rows, cols] row-major, cols)`.
pub type Observer<'a> = dyn FnMut(Tap, &[f32], usize) + 'a;

/// Calls `f` on every valid (non-padding) row of a `[batch·seq, cols]` tensor.
pub fn valid_rows<'a>(batch: &Batch, x: &'a [f32], cols: usize, mut f: impl FnMut(&'a [f32])) {
    for (r, row) in x.chunks_exact(cols).enumerate() {
        if batch.mask[r] != 0 {
            f(row);
        }
    }
}

/// Calls `f` on the valid part (valid keys) of every valid query row of a probs tensor
/// `[batch·heads·seq, seq]`.
pub fn valid_prob_rows<'a>(
    batch: &Batch,
    heads: usize,
    x: &'a [f32],
    mut f: impl FnMut(&'a [f32]),
) {
    let seq = batch.seq_len;
    if seq == 0 {
        return;
    }
    for (r, row) in x.chunks_exact(seq).enumerate() {
        let b = r / (heads * seq);
        let i = r % seq;
        let len = batch.lengths[b];
        if i < len {
            f(&row[..len]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

/// What the backward pass needs from one layer.
#[derive(Clone, Debug, Default)]
pub struct LayerTape {
    pub q_pre: Vec<f32>,
    pub k_pre: Vec<f32>,
    pub v_pre: Vec<f32>,
    pub q_hat: Vec<f32>,
    pub k_hat: Vec<f32>,
    pub v_hat: Vec<f32>,
    pub p_pre: Vec<f32>,
    pub p_hat: Vec<f32>,
    pub ctx_pre: Vec<f32>,
    pub n1: Vec<f32>,
    pub inv1: Vec<f32>,
    pub x7_pre: Vec<f32>,
    pub f1: Vec<f32>,
    pub g_pre: Vec<f32>,
    pub n2: Vec<f32>,
    pub inv2: Vec<f32>,
    pub x9_pre: Vec<f32>,
}

/// The tape of a whole forward pass.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    pub emb_pre: Vec<f32>,
    pub layers: Vec<LayerTape>,
}

/// LayerNorm in graph form over rows of `x`; returns `X_q`, and `(n, inv)` when `save`.
fn ln_graph(x: &[f32], spec: &LnSpec, eps: f32, save: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let h = spec.a.len();
    let rows = x.len() / h.max(1);
    let mut out = vec![0f32; x.len()];
    let mut n = if save {
        vec![0f32; x.len()]
    } else {
        Vec::new()
    };
    let mut inv = if save { vec![0f32; rows] } else { Vec::new() };
    let body = |xr: &[f32], or: &mut [f32], nr: Option<&mut [f32]>, ir: Option<&mut f32>| {
        let hf = h as f64;
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / hf;
        let var = xr
            .iter()
            .map(|&v| {
                let d = v as f64 - mean;
                d * d
            })
            .sum::<f64>()
            / hf;
        let iv = 1.0 / (var + eps as f64).sqrt();
        match nr {
            Some(nr) => {
                for j in 0..h {
                    let nv = (xr[j] as f64 - mean) * iv;
                    nr[j] = nv as f32;
                    or[j] = (nv * spec.a[j] as f64 + spec.c[j] as f64) as f32;
                }
            }
            None => {
                for j in 0..h {
                    let nv = (xr[j] as f64 - mean) * iv;
                    or[j] = (nv * spec.a[j] as f64 + spec.c[j] as f64) as f32;
                }
            }
        }
        if let Some(ir) = ir {
            *ir = iv as f32;
        }
    };
    if save {
        out.par_chunks_mut(h)
            .zip(n.par_chunks_mut(h))
            .zip(inv.par_iter_mut())
            .zip(x.par_chunks(h))
            .for_each(|(((o, nr), ir), xr)| body(xr, o, Some(nr), Some(ir)));
    } else {
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .for_each(|(o, xr)| body(xr, o, None, None));
    }
    (out, n, inv)
}

/// `m ⊙ (a ⊙ n + c)` over rows of `x`, in f64 with one rounding.
fn ln_consumer(x: &[f32], spec: &LnSpec, m: &[f32], eps: f32) -> Vec<f32> {
    let h = spec.a.len();
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(h)
        .zip(x.par_chunks(h))
        .for_each(|(or, xr)| {
            let hf = h as f64;
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / hf;
            let var = xr
                .iter()
                .map(|&v| {
                    let d = v as f64 - mean;
                    d * d
                })
                .sum::<f64>()
                / hf;
            let iv = 1.0 / (var + eps as f64).sqrt();
            for j in 0..h {
                let nv = (xr[j] as f64 - mean) * iv;
                or[j] = ((nv * spec.a[j] as f64 + spec.c[j] as f64) * m[j] as f64) as f32;
            }
        });
    out
}

fn mul_cols(x: &mut [f32], m: &[f32]) {
    let h = m.len();
    x.par_chunks_mut(h)
        .for_each(|r| r.iter_mut().zip(m).for_each(|(v, g)| *v *= g));
}

fn add_into(acc: &mut [f32], x: &[f32]) {
    acc.par_chunks_mut(8192)
        .zip(x.par_chunks(8192))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}

/// A forward pass configuration: graph, threads and (optional) quantizers.
pub struct Engine<'a> {
    pub g: &'a QGraph,
    pub exec: &'a ThreadPool,
    pub quant: Option<&'a QuantSet>,
}

impl<'a> Engine<'a> {
    pub fn new(g: &'a QGraph, exec: &'a ThreadPool, quant: Option<&'a QuantSet>) -> Self {
        Engine { g, exec, quant }
    }

    fn q(&self, l: usize, n: Node) -> Option<FakeQ> {
        self.quant.and_then(|q| q[l][n.index()])
    }

    fn quantize(&self, x: &mut [f32], l: usize, n: Node) {
        if let Some(q) = self.q(l, n) {
            self.exec.run(|| fq_inplace(x, &q));
        }
    }

    /// LN node: `X_q`, observe, (save), fake-quantize, multiply by `m`.
    #[allow(clippy::type_complexity)]
    fn ln_node(
        &self,
        x: &[f32],
        id: LnId,
        obs: &mut Option<&mut Observer<'_>>,
        save: bool,
    ) -> (Vec<f32>, Option<(Vec<f32>, Vec<f32>, Vec<f32>)>) {
        let spec = self.g.ln(id);
        let h = spec.a.len();
        let (mut xq, n, inv) = self.exec.run(|| ln_graph(x, spec, self.g.eps(), save));
        let (l, node) = id.node();
        if let Some(o) = obs.as_mut() {
            o(Tap::Node(l, node), &xq, h);
        }
        let saved = save.then(|| (n, inv, xq.clone()));
        match (&spec.m, self.q(l, node)) {
            (Some(m), None) => {
                // unquantized: `m ⊙ (a ⊙ n + c)` with one rounding (keeps folds exact to f32)
                xq = self.exec.run(|| ln_consumer(x, spec, m, self.g.eps()));
            }
            (Some(m), Some(_)) => {
                self.quantize(&mut xq, l, node);
                self.exec.run(|| mul_cols(&mut xq, m));
            }
            (None, _) => self.quantize(&mut xq, l, node),
        }
        (xq, saved)
    }

    /// Embeddings → embedding LN node: the consumer input `u` of layer 0.
    pub fn embed_stage(
        &self,
        batch: &Batch,
        obs: &mut Option<&mut Observer<'_>>,
        tape: Option<&mut Tape>,
    ) -> Vec<f32> {
        let h = self.g.w.config.hidden_size;
        let e = fp32::embed(&self.g.w, batch);
        if let Some(o) = obs.as_mut() {
            o(Tap::EmbSum, &e, h);
        }
        let (u, saved) = self.ln_node(&e, LnId::Emb, obs, tape.is_some());
        if let (Some(t), Some((_, _, pre))) = (tape, saved) {
            t.emb_pre = pre;
        }
        u
    }

    /// One encoder layer: consumer input `u_in` → consumer input of the next layer (or the
    /// final output for the last layer).
    pub fn layer_stage(
        &self,
        l: usize,
        batch: &Batch,
        u_in: &[f32],
        obs: &mut Option<&mut Observer<'_>>,
        tape: Option<&mut LayerTape>,
    ) -> Vec<f32> {
        let c = &self.g.w.config;
        let (h, inter, heads) = (c.hidden_size, c.intermediate_size, c.num_attention_heads);
        let (bsz, seq) = (batch.batch, batch.seq_len);
        let rows = batch.rows();
        let lw = &self.g.w.layers[l];
        let exec = self.exec;
        let save = tape.is_some();
        let mut t = LayerTape::default();
        let tap = |o: &mut Option<&mut Observer<'_>>, tp: Tap, x: &[f32], cols: usize| {
            if let Some(o) = o.as_mut() {
                o(tp, x, cols);
            }
        };

        let mut q = vec![0f32; rows * h];
        let mut k = vec![0f32; rows * h];
        let mut v = vec![0f32; rows * h];
        fp32::linear(exec, u_in, rows, &lw.query, &mut q);
        fp32::linear(exec, u_in, rows, &lw.key, &mut k);
        fp32::linear(exec, u_in, rows, &lw.value, &mut v);
        tap(obs, Tap::Node(l, Node::Query), &q, h);
        tap(obs, Tap::Node(l, Node::Key), &k, h);
        tap(obs, Tap::Node(l, Node::Value), &v, h);
        if save {
            t.q_pre = q.clone();
            t.k_pre = k.clone();
            t.v_pre = v.clone();
        }
        self.quantize(&mut q, l, Node::Query);
        self.quantize(&mut k, l, Node::Key);
        self.quantize(&mut v, l, Node::Value);

        let mut p = vec![0f32; bsz * heads * seq * seq];
        let bias = self.g.w.relative_attention_bias.as_ref();
        fp32::attention_scores(exec, &q, &k, bsz, seq, heads, bias, &mut p);
        fp32::softmax_masked(exec, &mut p, &batch.mask, seq, heads);
        tap(obs, Tap::Node(l, Node::Probs), &p, seq);
        if save {
            t.p_pre = p.clone();
        }
        self.quantize(&mut p, l, Node::Probs);
        let mut ctx = vec![0f32; rows * h];
        fp32::attention_context(exec, &p, &v, &batch.lengths, bsz, seq, heads, &mut ctx);
        tap(obs, Tap::Node(l, Node::Context), &ctx, h);
        if save {
            t.q_hat = q;
            t.k_hat = k;
            t.v_hat = v;
            t.p_hat = p;
            t.ctx_pre = ctx.clone();
        }
        self.quantize(&mut ctx, l, Node::Context);

        let mut a = vec![0f32; rows * h];
        fp32::linear(exec, &ctx, rows, &lw.attn_out, &mut a);
        exec.run(|| add_into(&mut a, u_in));
        tap(obs, Tap::AttnResidual(l), &a, h);
        let (u7, saved) = self.ln_node(&a, LnId::Attn(l), obs, save);
        if let Some((n, inv, pre)) = saved {
            t.n1 = n;
            t.inv1 = inv;
            t.x7_pre = pre;
        }

        let mut f1 = vec![0f32; rows * inter];
        fp32::linear(exec, &u7, rows, &lw.ffn1, &mut f1);
        tap(obs, Tap::Ffn1(l), &f1, inter);
        let mut g = f1.clone();
        exec.run(|| {
            g.par_chunks_mut(4096)
                .for_each(|c| c.iter_mut().for_each(|v| *v = gelu_fast(*v)))
        });
        if save {
            t.f1 = f1;
        }
        tap(obs, Tap::Node(l, Node::Gelu), &g, inter);
        if save {
            t.g_pre = g.clone();
        }
        self.quantize(&mut g, l, Node::Gelu);
        let mut b = vec![0f32; rows * h];
        fp32::linear(exec, &g, rows, &lw.ffn2, &mut b);
        exec.run(|| add_into(&mut b, &u7));
        tap(obs, Tap::FfnResidual(l), &b, h);
        let (u9, saved) = self.ln_node(&b, LnId::Ffn(l), obs, save);
        if let Some((n, inv, pre)) = saved {
            t.n2 = n;
            t.inv2 = inv;
            t.x9_pre = pre;
        }
        if let Some(tp) = tape {
            *tp = t;
        }
        u9
    }

    /// The whole model: final output `[batch·seq, hidden]` (the dequantized last FFN-LN node).
    pub fn forward(
        &self,
        batch: &Batch,
        mut obs: Option<&mut Observer<'_>>,
        mut tape: Option<&mut Tape>,
    ) -> Vec<f32> {
        let nl = self.g.num_layers();
        if let Some(t) = tape.as_deref_mut() {
            t.layers = vec![LayerTape::default(); nl];
        }
        let mut u = self.embed_stage(batch, &mut obs, tape.as_deref_mut());
        for l in 0..nl {
            let lt = tape.as_deref_mut().map(|t| &mut t.layers[l]);
            u = self.layer_stage(l, batch, &u, &mut obs, lt);
        }
        u
    }
}

/// Σ over valid rows of Σ_j (a − b)², and the number of valid values.
pub fn sq_err_valid(batch: &Batch, a: &[f32], b: &[f32], cols: usize) -> (f64, usize) {
    let mut s = 0f64;
    let mut n = 0usize;
    for (r, (ra, rb)) in a.chunks_exact(cols).zip(b.chunks_exact(cols)).enumerate() {
        if batch.mask[r] == 0 {
            continue;
        }
        for (x, y) in ra.iter().zip(rb) {
            let d = (*x - *y) as f64;
            s += d * d;
        }
        n += cols;
    }
    (s, n)
}

/// Validate batches against the model before any work (clear errors instead of panics).
pub fn check_batches(w: &BertWeights, batches: &[Batch]) -> Result<()> {
    if batches.is_empty() {
        return Err(CalibError::Failed("no calibration batch".into()));
    }
    let c = &w.config;
    for b in batches {
        b.validate()?;
        if b.seq_len > c.max_tokens() {
            return Err(CalibError::Failed(format!(
                "sequence length {} exceeds the model's {} positions",
                b.seq_len,
                c.max_tokens()
            )));
        }
        if let Some(&id) = b.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(CalibError::Failed(format!(
                "token id {id} out of range (vocab_size {})",
                c.vocab_size
            )));
        }
        if let Some(&t) = b
            .type_ids
            .iter()
            .find(|&&t| t as usize >= c.type_vocab_size)
        {
            return Err(CalibError::Failed(format!(
                "token type id {t} out of range (type_vocab_size {})",
                c.type_vocab_size
            )));
        }
    }
    Ok(())
}

/// Transposed copy of a Linear (for `dX = dY · W` with [`fp32::linear`]), bias zero.
pub fn transposed(lin: &Linear) -> Linear {
    let (n, k) = (lin.out_features, lin.in_features);
    let mut wt = vec![0f32; n * k];
    for i in 0..n {
        for j in 0..k {
            wt[j * n + i] = lin.weight[i * k + j];
        }
    }
    Linear {
        weight: wt,
        bias: vec![0.0; k],
        out_features: k,
        in_features: n,
    }
}
