//! From FP32 weights and calibrated node ranges to the quantized graph.
//!
//! [`QuantParams`] is what the parameter file stores: γ-migrated weight codes with per-channel
//! scales, per-row embedding codes, LN parameters and every node's quantizer. [`QuantModel`] adds
//! the derived integer constants of docs/quant-graph.md (integer biases, ReQuant multipliers,
//! shortcut multipliers, softmax/LN/GELU constants), computed once and shared by the deploy
//! reference and the integer executor, so both run the very same arithmetic.

use osq_kernels::Requant;

use crate::config::BertConfig;
use crate::error::{ModelError, Result};
use crate::pooling::SentenceHead;
use crate::relative::RelativeBiasTable;
use crate::weights::{BertWeights, LayerNormW, Linear};

use super::head::{HeadDerived, QHead};
use super::minmax::ln_migrated;
use super::nonlin::{FixedMul, GeluTable, LayerNormInt, SignedMul, SoftmaxInt};
use super::qparams::{quantize_rows_symmetric, BitsConfig, QParams};
use super::{Node, NodeRanges, FIXED_FRAC_BITS};

/// Smallest |γ| that γ migration accepts (β/γ is meaningless below).
pub const MIN_MIGRATED_GAMMA: f32 = 1e-6;

/// A symmetric per-row quantized matrix `[rows, cols]` (Linear weights: rows = out channels).
#[derive(Clone, Debug, PartialEq)]
pub struct QTable {
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl QTable {
    pub fn quantize(w: &[f32], rows: usize, cols: usize, bits: BitsConfig) -> QTable {
        let (qmin, qmax) = bits.weight_range();
        let (codes, scales) = quantize_rows_symmetric(w, rows, cols, qmin, qmax);
        QTable {
            codes,
            scales,
            rows,
            cols,
        }
    }
    pub fn row(&self, r: usize) -> &[i8] {
        &self.codes[r * self.cols..(r + 1) * self.cols]
    }
}

/// A quantized Linear: `y = x·(codes·s)ᵀ + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct QLinear {
    pub w: QTable,
    pub bias: Vec<f32>,
}

impl QLinear {
    /// Quantizes `lin` after multiplying its input columns by `gamma` (γ migration).
    pub fn new(lin: &Linear, gamma: Option<&[f32]>, bits: BitsConfig) -> QLinear {
        let (n, k) = (lin.out_features, lin.in_features);
        let w: Vec<f32> = match gamma {
            Some(g) => lin
                .weight
                .chunks_exact(k)
                .flat_map(|row| row.iter().zip(g).map(|(&w, &g)| w * g))
                .collect(),
            None => lin.weight.clone(),
        };
        QLinear {
            w: QTable::quantize(&w, n, k, bits),
            bias: lin.bias.clone(),
        }
    }
    /// The f32 Linear of the dequantized weights `codes·s` and the float bias (paper mode).
    pub fn dequantize(&self) -> Linear {
        let (n, k) = (self.n(), self.k());
        let mut weight = vec![0f32; n * k];
        for r in 0..n {
            let s = self.w.scales[r];
            for (o, &c) in weight[r * k..(r + 1) * k].iter_mut().zip(self.w.row(r)) {
                *o = c as f32 * s;
            }
        }
        Linear {
            weight,
            bias: self.bias.clone(),
            out_features: n,
            in_features: k,
        }
    }
    pub fn n(&self) -> usize {
        self.w.rows
    }
    pub fn k(&self) -> usize {
        self.w.cols
    }
}

/// LayerNorm parameters; `migrated` = non-scaling form (γ moved to the next Linear and shortcut).
#[derive(Clone, Debug, PartialEq)]
pub struct LnParams {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub migrated: bool,
    /// Per-channel shortcut multiplier of a scaling (non-migrated) LN: OS+ channel-wise scaling
    /// (osq-calib) folds `s` into the next Linear's weight columns and leaves `s ⊙ x̂` on the
    /// shortcut. `None` = 1. Ignored when `migrated` (the shortcut then carries γ).
    pub shortcut: Option<Vec<f32>>,
}

impl LnParams {
    /// The shortcut multiplier: γ when migrated, the OS+ scale when set, else `None` (= 1).
    pub fn shortcut_mul(&self) -> Option<&[f32]> {
        if self.migrated {
            Some(&self.gamma)
        } else {
            self.shortcut.as_deref()
        }
    }
}

/// Quantized parameters of one encoder layer.
#[derive(Clone, Debug, PartialEq)]
pub struct QLayerParams {
    pub query: QLinear,
    pub key: QLinear,
    pub value: QLinear,
    pub attn_out: QLinear,
    pub ffn1: QLinear,
    pub ffn2: QLinear,
    pub attn_ln: LnParams,
    pub ffn_ln: LnParams,
    /// Indexed by [`Node::index`]; `Emb` only in layer 0.
    pub nodes: [Option<QParams>; 9],
    /// Fixed-point scale of the MHA-LN input (residual sum).
    pub s_r_attn: f64,
    /// Fixed-point scale of the FFN-LN input.
    pub s_r_ffn: f64,
    /// Fixed-point scale of the FFN1 output (GELU input).
    pub s_h: f64,
}

impl QLayerParams {
    /// The quantizer of node `n` (panics only for `Emb` outside layer 0, an internal error).
    pub fn node(&self, n: Node) -> &QParams {
        self.nodes[n.index()]
            .as_ref()
            .expect("node present (checked when the parameters were built or loaded)")
    }
}

/// Everything the parameter file stores.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    pub config: BertConfig,
    pub bits: BitsConfig,
    /// Calibration method (e.g. `"minmax"`).
    pub method: String,
    /// γ migration applied (every LN non-scaling except the last FFN-LN).
    pub migrate_gamma: bool,
    /// LayerNorm epsilon of the deploy graph (the checkpoint's `layer_norm_eps`).
    pub eps: f64,
    pub word: QTable,
    pub position: QTable,
    pub token_type: QTable,
    pub emb_ln: LnParams,
    /// Fixed-point scale of the embedding sum.
    pub s_r_emb: f64,
    pub layers: Vec<QLayerParams>,
    /// MPNet's relative position bias (float, head-major), shared by every layer.
    pub relative_bias: Option<RelativeBiasTable>,
    /// How the final hidden states become a sentence embedding.
    pub sentence: SentenceHead,
    /// The quantized task head, if the checkpoint has one.
    pub head: Option<QHead>,
}

pub(crate) fn fixed_scale(absmax: f32, what: &str) -> Result<f64> {
    if !(absmax.is_finite() && absmax > 0.0) {
        return Err(ModelError::Input(format!(
            "calibration range of {what} is empty or not finite (absmax {absmax})"
        )));
    }
    Ok(absmax as f64 / (1u64 << FIXED_FRAC_BITS) as f64)
}

fn check_gamma(ln: &LayerNormW, name: &str) -> Result<()> {
    if let Some((j, g)) = ln
        .gamma
        .iter()
        .enumerate()
        .find(|(_, g)| g.is_nan() || g.abs() < MIN_MIGRATED_GAMMA)
    {
        return Err(ModelError::Input(format!(
            "γ migration refused: {name} γ[{j}] = {g} (|γ| < {MIN_MIGRATED_GAMMA})"
        )));
    }
    Ok(())
}

impl QuantParams {
    /// Quantize FP32 weights with calibrated ranges.
    pub fn build(
        w: &BertWeights,
        ranges: &NodeRanges,
        bits: BitsConfig,
        method: &str,
        migrate: bool,
    ) -> Result<QuantParams> {
        let c = &w.config;
        let nl = c.num_hidden_layers;
        if ranges.layers.len() != nl {
            return Err(ModelError::Input(format!(
                "ranges have {} layers, the model {nl}",
                ranges.layers.len()
            )));
        }
        let h = c.hidden_size;
        if migrate {
            check_gamma(&w.embeddings.ln, "embeddings.LayerNorm")?;
            for (l, lw) in w.layers.iter().enumerate() {
                check_gamma(
                    &lw.attn_ln,
                    &format!("layer {l} attention.output.LayerNorm"),
                )?;
                if l + 1 < nl {
                    check_gamma(&lw.ffn_ln, &format!("layer {l} output.LayerNorm"))?;
                }
            }
        }
        let ln = |x: &LayerNormW, migrated: bool| LnParams {
            gamma: x.gamma.clone(),
            beta: x.beta.clone(),
            migrated,
            shortcut: None,
        };
        let e = &w.embeddings;
        let emb_ln = ln(&e.ln, migrate);
        let mut layers = Vec::with_capacity(nl);
        for (l, lw) in w.layers.iter().enumerate() {
            let lr = &ranges.layers[l];
            // γ of the LN that feeds Q/K/V when it is migrated.
            let in_gamma: Option<&[f32]> = if !migrate {
                None
            } else if l == 0 {
                Some(&e.ln.gamma)
            } else {
                Some(&w.layers[l - 1].ffn_ln.gamma)
            };
            let attn_gamma: Option<&[f32]> = if migrate {
                Some(&lw.attn_ln.gamma)
            } else {
                None
            };
            let mut nodes = [None; 9];
            for n in Node::ALL {
                if !n.in_layer(l) {
                    continue;
                }
                let mm = lr.node(n).ok_or_else(|| {
                    ModelError::Input(format!("ranges: layer {l} has no node {}", n.name()))
                })?;
                if mm.is_empty() || !mm.min.is_finite() || !mm.max.is_finite() {
                    return Err(ModelError::Input(format!(
                        "ranges: layer {l} node {} was never observed or is not finite",
                        n.name()
                    )));
                }
                nodes[n.index()] = Some(QParams::activation(mm.min, mm.max, bits.node_bits(n)));
            }
            layers.push(QLayerParams {
                query: QLinear::new(&lw.query, in_gamma, bits),
                key: QLinear::new(&lw.key, in_gamma, bits),
                value: QLinear::new(&lw.value, in_gamma, bits),
                attn_out: QLinear::new(&lw.attn_out, None, bits),
                ffn1: QLinear::new(&lw.ffn1, attn_gamma, bits),
                ffn2: QLinear::new(&lw.ffn2, None, bits),
                attn_ln: ln(&lw.attn_ln, migrate),
                ffn_ln: ln(&lw.ffn_ln, ln_migrated(Some(l), true, nl, migrate)),
                nodes,
                s_r_attn: fixed_scale(
                    lr.attn_residual_absmax,
                    &format!("layer {l} attention residual"),
                )?,
                s_r_ffn: fixed_scale(lr.ffn_residual_absmax, &format!("layer {l} FFN residual"))?,
                s_h: fixed_scale(lr.ffn1_absmax, &format!("layer {l} FFN1 output"))?,
            });
        }
        let s_r_emb = fixed_scale(
            ranges
                .layers
                .first()
                .and_then(|l| l.emb_sum_absmax)
                .unwrap_or(0.0),
            "embedding sum",
        )?;
        Ok(QuantParams {
            config: c.clone(),
            bits,
            method: method.to_string(),
            migrate_gamma: migrate,
            eps: c.layer_norm_eps as f64,
            word: QTable::quantize(&e.word, c.vocab_size, h, bits),
            position: QTable::quantize(&e.position, c.max_position_embeddings, h, bits),
            token_type: QTable::quantize(&e.token_type, c.type_vocab_size, h, bits),
            emb_ln,
            s_r_emb,
            layers,
            relative_bias: w.relative_attention_bias.clone(),
            sentence: w.sentence,
            head: match &w.head {
                Some(hd) => Some(QHead::build(hd, ranges.head.as_ref(), bits)?),
                None => None,
            },
        })
    }

    /// The quantizer and the shortcut multiplier (γ if migrated, the OS+ scale if set) of layer
    /// `l`'s input.
    pub fn layer_input(&self, l: usize) -> (&QParams, Option<&[f32]>) {
        if l == 0 {
            (self.layers[0].node(Node::Emb), self.emb_ln.shortcut_mul())
        } else {
            let p = &self.layers[l - 1];
            (p.node(Node::FfnLn), p.ffn_ln.shortcut_mul())
        }
    }

    /// Quantizer of the final hidden codes (the last FFN-LN).
    pub fn output_node(&self) -> &QParams {
        self.layers
            .last()
            .expect("a model has at least one layer")
            .node(Node::FfnLn)
    }
}

/// Fractional bits of the Q/K/V fixed-point outputs: the GEMM writes `acc·s_x·s_w/s_out·2^16`,
/// the float bias is added at that resolution, then one rounding shift gives the code.
pub const CODE_FRAC_BITS: u32 = 16;

/// ReQuant and fixed-point bias of one Linear. The GEMM runs without bias (`Output::Fixed`,
/// zero point folded); the bias is added after the multiplier at the output's fixed-point
/// resolution (`s_out/2^16` for code outputs, `s_r`/`s_h` for residual and GELU inputs), which
/// keeps the bias rounding error ~2^−16 of a code instead of `s_x·s_w/2`.
#[derive(Clone, Debug)]
pub struct LinDerived {
    /// Fixed-point multiplier per output channel (codes: `s_x·s_w[n]/s_out·2^16`; fixed:
    /// `s_x·s_w[n]/s`).
    pub requant: Requant,
    /// `round_half_even(b_n·2^16/s_out)` or `round_half_even(b_n/s)`.
    pub bias: Vec<i64>,
    /// Output quantizer for code outputs.
    pub codes: Option<QParams>,
}

impl LinDerived {
    /// Code of channel `n` from the GEMM's fixed output `y`:
    /// `clamp(((y + bias) + 2^15) >> 16 + z, qmin, qmax)`.
    #[inline]
    pub fn code(&self, y: i32, n: usize) -> u8 {
        let q = self.codes.as_ref().expect("code output");
        let v = (y as i64 + self.bias[n] + (1i64 << (CODE_FRAC_BITS - 1))) >> CODE_FRAC_BITS;
        (v.clamp(
            (q.qmin - q.zero_point) as i64,
            (q.qmax - q.zero_point) as i64,
        ) + q.zero_point as i64) as u8
    }
    /// Fixed-point value of channel `n` (bias added, not yet saturated).
    #[inline]
    pub fn fixed(&self, y: i32, n: usize) -> i64 {
        y as i64 + self.bias[n]
    }
}

/// Derived constants of the embeddings.
#[derive(Clone, Debug)]
pub struct EmbDerived {
    /// `s_row / s_r` per row of each table.
    pub word: Vec<FixedMul>,
    pub position: Vec<FixedMul>,
    pub token_type: Vec<FixedMul>,
    pub ln: LayerNormInt,
}

/// Derived constants of one layer.
#[derive(Clone, Debug)]
pub struct LayerDerived {
    pub query: LinDerived,
    pub key: LinDerived,
    pub value: LinDerived,
    /// Fixed output at `s_r_attn`.
    pub attn_out: LinDerived,
    /// Fixed output at `s_h`.
    pub ffn1: LinDerived,
    /// Fixed output at `s_r_ffn`.
    pub ffn2: LinDerived,
    pub softmax: SoftmaxInt,
    /// `s_p·s_v/s_ctx`, one channel per head dimension.
    pub context: Requant,
    /// `γ_j·s_x/s_r_attn` per channel (layer input → MHA residual).
    pub attn_shortcut: Vec<SignedMul>,
    /// `γ_j·s_7/s_r_ffn` per channel (MHA-LN output → FFN residual).
    pub ffn_shortcut: Vec<SignedMul>,
    pub attn_ln: LayerNormInt,
    pub gelu: GeluTable,
    pub ffn_ln: LayerNormInt,
    /// MPNet: the relative position bias at the scale of the shifted scores.
    pub rel_bias: Option<RelBiasInt>,
}

/// MPNet's relative position bias inside the integer attention: scores are
/// `(Q·Kᵀ << shift) + units[head][bucket]` at scale `c/2^shift` (`c = s_q·s_k/√d`), with
/// `units = round_half_even(b·2^shift/c)`, before the integer softmax (whose constants use
/// `c/2^shift`). `shift` adds resolution to the rounded bias, so that the integer scores stay
/// within `c/2^(shift+1)` of the float ones: the largest of 0..=8 that keeps |scores| < 2^30.
/// (At `shift = 0` the rounding alone flipped 0.3 % of the probability codes of a tiny MPNet.)
#[derive(Clone, Debug, PartialEq)]
pub struct RelBiasInt {
    /// `[heads, buckets]`.
    pub units: Vec<i32>,
    pub buckets: usize,
    pub shift: u32,
}

impl RelBiasInt {
    /// The units of one head, indexed by bucket.
    pub fn head(&self, h: usize) -> &[i32] {
        &self.units[h * self.buckets..(h + 1) * self.buckets]
    }
}

/// Largest bias shift tried.
const MAX_REL_BIAS_SHIFT: u32 = 8;

/// The softmax constants and the bias of one MPNet layer (see [`RelBiasInt`]).
fn softmax_with_bias(
    t: &RelativeBiasTable,
    s_q: f64,
    s_k: f64,
    dh: usize,
    np: &QParams,
    what: &str,
) -> Result<(SoftmaxInt, RelBiasInt)> {
    let err = |m: String| ModelError::Input(format!("{what}: {m}"));
    let sm = |shift: u32| {
        SoftmaxInt::new(
            s_q / (1u64 << shift) as f64,
            s_k,
            dh,
            np.scale as f64,
            np.zero_point,
            np.qmax,
        )
        .map_err(err)
    };
    // |Q·Kᵀ| ≤ d·255² (codes minus zero points)
    let max_acc = dh as f64 * 255.0 * 255.0;
    let c = s_q * s_k / (dh as f64).sqrt();
    for shift in (0..=MAX_REL_BIAS_SHIFT).rev() {
        let scale = (1u64 << shift) as f64;
        let units = relative_bias_units(t, c / scale, what)?;
        let max_units = units.iter().map(|u| (*u as f64).abs()).fold(0.0, f64::max);
        if max_acc * scale + max_units >= (1u64 << 30) as f64 {
            continue;
        }
        let s = sm(shift)?;
        let buckets = t.buckets;
        return Ok((
            s,
            RelBiasInt {
                units,
                buckets,
                shift,
            },
        ));
    }
    Err(err(
        "the relative position bias does not fit the integer scores".into(),
    ))
}

/// Largest |bias| in score units.
pub const MAX_REL_BIAS_UNITS: f64 = (1u32 << 29) as f64;

/// The relative position bias at score scale `c` (rounding: half to even).
fn relative_bias_units(t: &RelativeBiasTable, c: f64, what: &str) -> Result<Vec<i32>> {
    t.per_head
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let u = (b as f64 / c).round_ties_even();
            if u.is_finite() && u.abs() <= MAX_REL_BIAS_UNITS {
                Ok(u as i32)
            } else {
                Err(ModelError::Input(format!(
                    "{what}: relative bias {b} (head {}, bucket {}) is {u} score units (limit 2^29)",
                    i / t.buckets,
                    i % t.buckets
                )))
            }
        })
        .collect()
}

/// [`QuantParams`] plus every derived integer constant.
#[derive(Clone, Debug)]
pub struct QuantModel {
    pub params: QuantParams,
    pub emb: EmbDerived,
    pub layers: Vec<LayerDerived>,
    pub head: Option<HeadDerived>,
}

pub(crate) fn derive_linear(
    lin: &QLinear,
    s_x: f32,
    out_scale: f64,
    out: Option<&QParams>,
    what: &str,
) -> Result<LinDerived> {
    let err = |m: String| ModelError::Input(format!("{what}: {m}"));
    let unit = match out {
        Some(_) => out_scale / (1u64 << CODE_FRAC_BITS) as f64,
        None => out_scale,
    };
    let mut bias = Vec::with_capacity(lin.n());
    let mut mult = Vec::with_capacity(lin.n());
    for n in 0..lin.n() {
        let sxw = s_x as f64 * lin.w.scales[n] as f64;
        let b = (lin.bias[n] as f64 / unit).round_ties_even();
        if b.is_nan() || b.abs() >= 2f64.powi(62) {
            return Err(err(format!(
                "channel {n}: bias {} does not fit the fixed point",
                lin.bias[n]
            )));
        }
        bias.push(b as i64);
        mult.push(sxw / unit);
    }
    let requant = Requant::new(&mult, 0, 0, 0).map_err(|e| err(e.to_string()))?;
    Ok(LinDerived {
        requant,
        bias,
        codes: out.copied(),
    })
}

fn table_muls(t: &QTable, s_r: f64, what: &str) -> Result<Vec<FixedMul>> {
    t.scales
        .iter()
        .enumerate()
        .map(|(r, &s)| {
            FixedMul::new(s as f64 / s_r)
                .map_err(|e| ModelError::Input(format!("{what} row {r}: {e}")))
        })
        .collect()
}

fn shortcut(
    gamma: Option<&[f32]>,
    h: usize,
    s_x: f32,
    s_r: f64,
    what: &str,
) -> Result<Vec<SignedMul>> {
    (0..h)
        .map(|j| {
            let g = gamma.map_or(1.0, |g| g[j] as f64);
            SignedMul::new(g * s_x as f64 / s_r)
                .map_err(|e| ModelError::Input(format!("{what} channel {j}: {e}")))
        })
        .collect()
}

fn ln_int(ln: &LnParams, eps: f64, s_r: f64, q: &QParams, what: &str) -> Result<LayerNormInt> {
    LayerNormInt::new(
        &ln.gamma,
        &ln.beta,
        eps,
        s_r,
        q.scale as f64,
        q.zero_point,
        q.qmin,
        q.qmax,
        ln.migrated,
    )
    .map_err(|e| ModelError::Input(format!("{what}: {e}")))
}

impl QuantModel {
    /// Derive every integer constant.
    pub fn new(params: QuantParams) -> Result<QuantModel> {
        let p = &params;
        let c = &p.config;
        let h = c.hidden_size;
        let dh = c.head_dim();
        let emb = EmbDerived {
            word: table_muls(&p.word, p.s_r_emb, "word embeddings")?,
            position: table_muls(&p.position, p.s_r_emb, "position embeddings")?,
            token_type: table_muls(&p.token_type, p.s_r_emb, "token type embeddings")?,
            ln: ln_int(
                &p.emb_ln,
                p.eps,
                p.s_r_emb,
                p.layers[0].node(Node::Emb),
                "embeddings LayerNorm",
            )?,
        };
        let mut layers = Vec::with_capacity(p.layers.len());
        for (l, lp) in p.layers.iter().enumerate() {
            let (xin, in_gamma) = p.layer_input(l);
            let s_x = xin.scale;
            let nq = lp.node(Node::Query);
            let nk = lp.node(Node::Key);
            let nv = lp.node(Node::Value);
            let np = lp.node(Node::Probs);
            let nc = lp.node(Node::Context);
            let n7 = lp.node(Node::MhaLn);
            let n8 = lp.node(Node::Gelu);
            let n9 = lp.node(Node::FfnLn);
            let w = |s: &str| format!("layer {l} {s}");
            let softmax = SoftmaxInt::new(
                nq.scale as f64,
                nk.scale as f64,
                dh,
                np.scale as f64,
                np.zero_point,
                np.qmax,
            )
            .map_err(|e| ModelError::Input(w(&e)))?;
            let (softmax, rel_bias) = match &p.relative_bias {
                Some(t) => {
                    let (s, b) = softmax_with_bias(
                        t,
                        nq.scale as f64,
                        nk.scale as f64,
                        dh,
                        np,
                        &w("relative position bias"),
                    )?;
                    (s, Some(b))
                }
                None => (softmax, None),
            };
            let context = Requant::per_tensor(
                dh,
                np.scale as f64 * nv.scale as f64 / nc.scale as f64,
                nc.zero_point,
                nc.qmin,
                nc.qmax,
            )
            .map_err(|e| ModelError::Input(w(&format!("context requant: {e}"))))?;
            layers.push(LayerDerived {
                query: derive_linear(&lp.query, s_x, nq.scale as f64, Some(nq), &w("query"))?,
                key: derive_linear(&lp.key, s_x, nk.scale as f64, Some(nk), &w("key"))?,
                value: derive_linear(&lp.value, s_x, nv.scale as f64, Some(nv), &w("value"))?,
                attn_out: derive_linear(
                    &lp.attn_out,
                    nc.scale,
                    lp.s_r_attn,
                    None,
                    &w("attention output"),
                )?,
                ffn1: derive_linear(&lp.ffn1, n7.scale, lp.s_h, None, &w("FFN1"))?,
                ffn2: derive_linear(&lp.ffn2, n8.scale, lp.s_r_ffn, None, &w("FFN2"))?,
                softmax,
                context,
                attn_shortcut: shortcut(in_gamma, h, s_x, lp.s_r_attn, &w("attention shortcut"))?,
                ffn_shortcut: shortcut(
                    lp.attn_ln.shortcut_mul(),
                    h,
                    n7.scale,
                    lp.s_r_ffn,
                    &w("FFN shortcut"),
                )?,
                attn_ln: ln_int(
                    &lp.attn_ln,
                    p.eps,
                    lp.s_r_attn,
                    n7,
                    &w("attention LayerNorm"),
                )?,
                gelu: GeluTable::new(lp.s_h, n8.scale as f64, n8.zero_point, n8.qmax)
                    .map_err(|e| ModelError::Input(w(&e)))?,
                ffn_ln: ln_int(&lp.ffn_ln, p.eps, lp.s_r_ffn, n9, &w("FFN LayerNorm"))?,
                rel_bias,
            });
        }
        let head = match &params.head {
            Some(hd) => Some(HeadDerived::new(hd, params.output_node())?),
            None => None,
        };
        Ok(QuantModel {
            params,
            emb,
            layers,
            head,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.params.config
    }
}
