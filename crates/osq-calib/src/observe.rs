//! Observation of the FP32 graph and the range observers: MinMax, mean-of-batches MinMax,
//! Percentile (histogram of |x|, 2048 bins, 0.99999, averaged over batches), OMSE (per node
//! grid search of the clipping range minimizing the quantization MSE, on a global histogram).
//!
//! Everything is observed on valid (non-padding) tokens only, in the quant-graph form of
//! [`QGraph`]: with Gamma Migration an LN node sees `X'` (non-scaling), after an OS+ fold it
//! sees the shifted/scaled output. Attention probabilities: valid query rows × valid keys.

use osq_model::fp32::ThreadPool;
use osq_model::quant::{BitsConfig, LayerRanges, MinMax, Node, NodeRanges};
use osq_model::Batch;
use rayon::prelude::*;

use crate::engine::{valid_prob_rows, valid_rows, Engine, QGraph, QuantSet, Tap};
use crate::error::{CalibError, Result};
use crate::progress::Progress;

/// Histogram bins of the Percentile observer (OS reference `AvgQuantileObserver`).
pub const PERCENTILE_BINS: usize = 2048;
/// Quantile of the Percentile observer.
pub const PERCENTILE: f64 = 0.99999;
/// Histogram bins of the OMSE search.
pub const OMSE_BINS: usize = 2048;
/// Clipping-range candidates of the OMSE search.
pub const OMSE_CANDIDATES: usize = 100;

/// Per-token extremes of one node in one batch, sorted, for Token-Wise Clipping.
#[derive(Clone, Debug, Default)]
pub struct TokenExtremes {
    /// `max_j x_tj` per valid token, ascending.
    pub max_sorted: Vec<f32>,
    /// `|max_j x_tj|`, ascending.
    pub max_abs_sorted: Vec<f32>,
    /// `min_j x_tj` per valid token, ascending.
    pub min_sorted: Vec<f32>,
    /// `|min_j x_tj|`, ascending.
    pub min_abs_sorted: Vec<f32>,
}

/// What one batch tells about one node.
#[derive(Clone, Debug)]
pub struct BatchNode {
    pub range: MinMax,
    /// Percentile-clipped range of this batch.
    pub pct: MinMax,
    /// Per-token extremes (not for the attention probabilities).
    pub tokens: Option<TokenExtremes>,
    pub count: u64,
}

/// Absmax of the fixed-point intermediates (max over batches).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FixedRanges {
    pub emb_sum: f32,
    pub attn_residual: Vec<f32>,
    pub ffn_residual: Vec<f32>,
    pub ffn1: Vec<f32>,
}

/// Observations of the calibration set.
#[derive(Clone, Debug)]
pub struct Stats {
    /// `[batch][layer][node]`.
    pub batches: Vec<Vec<[Option<BatchNode>; 9]>>,
    pub fixed: FixedRanges,
    /// FP32 final outputs per batch (`[batch·seq, hidden]`), the targets of the output MSE.
    pub targets: Vec<Vec<f32>>,
}

fn range_of_rows<'a>(rows: impl IntoIterator<Item = &'a [f32]>) -> (MinMax, u64) {
    let mut mm = MinMax::EMPTY;
    let mut n = 0u64;
    for r in rows {
        for &v in r {
            mm.update(v);
        }
        n += r.len() as u64;
    }
    (mm, n)
}

/// The Percentile observer on one batch: clip at the `PERCENTILE` quantile of |x| (histogram
/// with `PERCENTILE_BINS` bins over `[0, max|x|]`, bin centre), intersected with the range.
fn percentile_range(rows: &[&[f32]], mm: MinMax, count: u64) -> MinMax {
    let absmax = mm.absmax();
    if absmax.is_nan() || absmax <= 0.0 || count == 0 {
        return mm;
    }
    let mut hist = vec![0u64; PERCENTILE_BINS];
    let k = PERCENTILE_BINS as f32 / absmax;
    for r in rows {
        for &v in r.iter() {
            let i = ((v.abs() * k) as usize).min(PERCENTILE_BINS - 1);
            hist[i] += 1;
        }
    }
    let thr = PERCENTILE * count as f64;
    let mut cum = 0u64;
    let mut clip = absmax;
    for (i, &c) in hist.iter().enumerate() {
        if (cum + c) as f64 >= thr {
            clip = (i as f32 + 0.5) * (absmax / PERCENTILE_BINS as f32);
            break;
        }
        cum += c;
    }
    MinMax {
        min: mm.min.max(-clip),
        max: mm.max.min(clip),
    }
}

fn token_extremes(rows: &[&[f32]]) -> TokenExtremes {
    let mut mx: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .collect();
    let mut mn: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().copied().fold(f32::INFINITY, f32::min))
        .collect();
    let mut mxa: Vec<f32> = mx.iter().map(|v| v.abs()).collect();
    let mut mna: Vec<f32> = mn.iter().map(|v| v.abs()).collect();
    for v in [&mut mx, &mut mn, &mut mxa, &mut mna] {
        v.sort_by(f32::total_cmp);
    }
    TokenExtremes {
        max_sorted: mx,
        max_abs_sorted: mxa,
        min_sorted: mn,
        min_abs_sorted: mna,
    }
}

/// Rows of a tapped tensor that count for node statistics.
fn node_rows<'a>(
    batch: &Batch,
    heads: usize,
    node: Node,
    x: &'a [f32],
    cols: usize,
) -> Vec<&'a [f32]> {
    let mut v = Vec::new();
    if node == Node::Probs {
        valid_prob_rows(batch, heads, x, |r| v.push(r));
    } else {
        valid_rows(batch, x, cols, |r| v.push(r));
    }
    v
}

/// Run the FP graph over every batch and gather node statistics (plus per-token extremes when
/// `tokens`), fixed-point absmax and the FP output targets.
pub fn collect(
    g: &QGraph,
    batches: &[Batch],
    exec: &ThreadPool,
    tokens: bool,
    progress: &Progress,
) -> Result<Stats> {
    let c = &g.w.config;
    let nl = c.num_hidden_layers;
    let heads = c.num_attention_heads;
    let mut fixed = FixedRanges {
        emb_sum: 0.0,
        attn_residual: vec![0.0; nl],
        ffn_residual: vec![0.0; nl],
        ffn1: vec![0.0; nl],
    };
    let mut out = Vec::with_capacity(batches.len());
    let mut targets = Vec::with_capacity(batches.len());
    let bar = progress.bar(batches.len() as u64, "observing FP32 activations");
    let eng = Engine::new(g, exec, None);
    for batch in batches {
        let mut per: Vec<[Option<BatchNode>; 9]> = vec![Default::default(); nl];
        let mut obs = |tap: Tap, x: &[f32], cols: usize| match tap {
            Tap::Node(l, node) => {
                let rows = node_rows(batch, heads, node, x, cols);
                let (range, count) = range_of_rows(rows.iter().copied());
                let pct = percentile_range(&rows, range, count);
                let toks = (tokens && node != Node::Probs).then(|| token_extremes(&rows));
                per[l][node.index()] = Some(BatchNode {
                    range,
                    pct,
                    tokens: toks,
                    count,
                });
            }
            other => {
                let mut a = 0f32;
                valid_rows(batch, x, cols, |r| {
                    for &v in r {
                        a = a.max(v.abs());
                    }
                });
                match other {
                    Tap::EmbSum => fixed.emb_sum = fixed.emb_sum.max(a),
                    Tap::AttnResidual(l) => fixed.attn_residual[l] = fixed.attn_residual[l].max(a),
                    Tap::FfnResidual(l) => fixed.ffn_residual[l] = fixed.ffn_residual[l].max(a),
                    Tap::Ffn1(l) => fixed.ffn1[l] = fixed.ffn1[l].max(a),
                    Tap::Node(..) => {}
                }
            }
        };
        let y = eng.forward(batch, Some(&mut obs), None);
        targets.push(y);
        out.push(per);
        bar.inc(1);
    }
    bar.finish_and_clear();
    for (bi, per) in out.iter().enumerate() {
        for (l, nodes) in per.iter().enumerate() {
            for n in Node::ALL {
                if n.in_layer(l) && nodes[n.index()].is_none() {
                    return Err(CalibError::Failed(format!(
                        "batch {bi}: layer {l} node {} was not observed",
                        n.name()
                    )));
                }
            }
        }
    }
    Ok(Stats {
        batches: out,
        fixed,
        targets,
    })
}

/// Observers whose result depends only on the per-batch statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simple {
    /// Global min/max.
    MinMax,
    /// Mean over batches of the batch min/max (OS `AvgMinMaxObserver`).
    MeanMinMax,
    /// Mean over batches of the percentile-clipped batch range.
    Percentile,
}

impl Stats {
    pub fn num_layers(&self) -> usize {
        self.fixed.attn_residual.len()
    }

    /// Per-batch observations of one node.
    pub fn node(&self, l: usize, n: Node) -> impl Iterator<Item = &BatchNode> + '_ {
        self.batches
            .iter()
            .filter_map(move |b| b[l][n.index()].as_ref())
    }

    /// Global MinMax of one node.
    pub fn minmax(&self, l: usize, n: Node) -> MinMax {
        let mut mm = MinMax::EMPTY;
        for b in self.node(l, n) {
            mm.merge(&b.range);
        }
        mm
    }

    /// Mean over batches of a per-batch range.
    pub fn mean_of(&self, l: usize, n: Node, f: impl Fn(&BatchNode) -> MinMax) -> MinMax {
        let (mut lo, mut hi, mut k) = (0f64, 0f64, 0usize);
        for b in self.node(l, n) {
            let r = f(b);
            lo += r.min as f64;
            hi += r.max as f64;
            k += 1;
        }
        if k == 0 {
            return MinMax::EMPTY;
        }
        MinMax {
            min: (lo / k as f64) as f32,
            max: (hi / k as f64) as f32,
        }
    }

    /// Node ranges with `f(layer, node)` for every node, the fixed-point absmax from the stats.
    pub fn ranges_with(&self, mut f: impl FnMut(usize, Node) -> MinMax) -> NodeRanges {
        let nl = self.num_layers();
        let mut r = NodeRanges::empty(nl);
        for (l, lr) in r.layers.iter_mut().enumerate() {
            for n in Node::ALL {
                if n.in_layer(l) {
                    lr.nodes[n.index()] = Some(f(l, n));
                }
            }
            self.fill_fixed(l, lr);
        }
        r
    }

    fn fill_fixed(&self, l: usize, lr: &mut LayerRanges) {
        if l == 0 {
            lr.emb_sum_absmax = Some(self.fixed.emb_sum);
        }
        lr.attn_residual_absmax = self.fixed.attn_residual[l];
        lr.ffn_residual_absmax = self.fixed.ffn_residual[l];
        lr.ffn1_absmax = self.fixed.ffn1[l];
    }

    /// Ranges of one of the simple observers.
    pub fn simple(&self, which: Simple) -> NodeRanges {
        self.ranges_with(|l, n| match which {
            Simple::MinMax => self.minmax(l, n),
            Simple::MeanMinMax => self.mean_of(l, n, |b| b.range),
            Simple::Percentile => self.mean_of(l, n, |b| b.pct),
        })
    }
}

/// Quantizers of a set of node ranges.
pub fn quant_set(r: &NodeRanges, bits: BitsConfig) -> QuantSet {
    r.layers
        .iter()
        .map(|lr| {
            let mut q = [None; 9];
            for (i, mm) in lr.nodes.iter().enumerate() {
                if let Some(mm) = mm {
                    q[i] = Some(crate::engine::FakeQ::from_range(
                        mm,
                        bits.node_bits(Node::ALL[i]),
                    ));
                }
            }
            q
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// OMSE
// ---------------------------------------------------------------------------------------------

/// Histogram with per-bin count, Σx and Σx² (exact MSE for bins inside one quantization cell).
#[derive(Clone, Debug)]
pub struct MomentHist {
    pub lo: f32,
    pub hi: f32,
    pub n: Vec<f64>,
    pub s1: Vec<f64>,
    pub s2: Vec<f64>,
}

impl MomentHist {
    pub fn new(range: MinMax, bins: usize) -> Self {
        MomentHist {
            lo: range.min,
            hi: range.max,
            n: vec![0.0; bins],
            s1: vec![0.0; bins],
            s2: vec![0.0; bins],
        }
    }

    pub fn add(&mut self, x: &[f32]) {
        let bins = self.n.len();
        let w = (self.hi - self.lo).max(f32::MIN_POSITIVE);
        let k = bins as f32 / w;
        for &v in x {
            let i = (((v - self.lo) * k).max(0.0) as usize).min(bins - 1);
            let v = v as f64;
            self.n[i] += 1.0;
            self.s1[i] += v;
            self.s2[i] += v * v;
        }
    }

    /// Σ (x − fq(x))² with the OS quantizer of `[min, max]` (each bin quantized at its mean).
    pub fn sq_error(&self, min: f32, max: f32, bits: u32) -> f64 {
        let q = crate::engine::FakeQ::from_range(&MinMax { min, max }, bits);
        let inv = 1.0 / q.s;
        let zr = q.zr();
        let mut e = 0f64;
        for i in 0..self.n.len() {
            let n = self.n[i];
            if n == 0.0 {
                continue;
            }
            let mean = (self.s1[i] / n) as f32;
            let y = q.apply(mean, inv, zr) as f64;
            e += (self.s2[i] - 2.0 * y * self.s1[i] + n * y * y).max(0.0);
        }
        e
    }
}

/// OMSE search on a histogram (OS reference `MSEObserver`): one-sided data: 100 thresholds
/// `t = range·i/100`; two-sided data: 100 widths × every zero point, `[−zp·Δ, width − zp·Δ]`
/// intersected with the observed range.
pub fn omse_search(h: &MomentHist, bits: u32) -> MinMax {
    let (xmin, xmax) = (h.lo, h.hi);
    let qmax = ((1u32 << bits) - 1) as f32;
    let mut best = (
        f64::INFINITY,
        MinMax {
            min: xmin,
            max: xmax,
        },
    );
    let mut consider = |min: f32, max: f32| {
        let e = h.sq_error(min, max, bits);
        if e < best.0 {
            best = (e, MinMax { min, max });
        }
    };
    if xmin >= 0.0 || xmax <= 0.0 {
        let xr = xmin.abs().max(xmax.abs());
        for i in 1..=OMSE_CANDIDATES {
            let t = xr / OMSE_CANDIDATES as f32 * i as f32;
            if xmin >= 0.0 {
                consider(0.0, t);
            } else {
                consider(-t, 0.0);
            }
        }
    } else {
        let xr = xmax - xmin;
        for i in 1..=OMSE_CANDIDATES {
            let width = xr / OMSE_CANDIDATES as f32 * i as f32;
            let delta = width / qmax;
            for zp in 0..=(qmax as i32) {
                let lo = (-(zp as f32) * delta).max(xmin);
                let hi = (width - zp as f32 * delta).min(xmax);
                if hi > lo {
                    consider(lo, hi);
                }
            }
        }
    }
    best.1
}

/// OMSE ranges: a second FP pass fills one histogram per node over its global MinMax range.
pub fn omse(
    g: &QGraph,
    batches: &[Batch],
    exec: &ThreadPool,
    stats: &Stats,
    bits: BitsConfig,
    progress: &Progress,
) -> NodeRanges {
    let c = &g.w.config;
    let nl = c.num_hidden_layers;
    let heads = c.num_attention_heads;
    let mut hists: Vec<Vec<Option<MomentHist>>> = (0..nl)
        .map(|l| {
            Node::ALL
                .iter()
                .map(|&n| {
                    n.in_layer(l)
                        .then(|| MomentHist::new(stats.minmax(l, n), OMSE_BINS))
                })
                .collect()
        })
        .collect();
    let eng = Engine::new(g, exec, None);
    let bar = progress.bar(batches.len() as u64, "OMSE histograms");
    for batch in batches {
        let mut obs = |tap: Tap, x: &[f32], cols: usize| {
            if let Tap::Node(l, node) = tap {
                if let Some(h) = hists[l][node.index()].as_mut() {
                    for r in node_rows(batch, heads, node, x, cols) {
                        h.add(r);
                    }
                }
            }
        };
        eng.forward(batch, Some(&mut obs), None);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let flat: Vec<(usize, Node, &MomentHist)> = hists
        .iter()
        .enumerate()
        .flat_map(|(l, v)| {
            v.iter()
                .enumerate()
                .filter_map(move |(i, h)| h.as_ref().map(|h| (l, Node::ALL[i], h)))
        })
        .collect();
    let found: Vec<(usize, Node, MinMax)> = exec.run(|| {
        flat.par_iter()
            .map(|&(l, n, h)| (l, n, omse_search(h, bits.node_bits(n))))
            .collect()
    });
    stats.ranges_with(|l, n| {
        found
            .iter()
            .find(|(fl, fnode, _)| *fl == l && *fnode == n)
            .map(|f| f.2)
            .unwrap_or(MinMax::EMPTY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_clips_a_single_outlier() {
        let mut v: Vec<f32> = (0..200_000).map(|i| (i % 100) as f32 / 100.0).collect();
        v.push(50.0);
        let rows = [&v[..]];
        let (mm, n) = range_of_rows(rows.iter().copied());
        let p = percentile_range(&rows, mm, n);
        assert!(p.max < 1.1, "{p:?}");
        assert_eq!(p.min, 0.0);
    }

    #[test]
    fn omse_prefers_clipping_outliers() {
        let mut h = MomentHist::new(
            MinMax {
                min: -1.0,
                max: 100.0,
            },
            OMSE_BINS,
        );
        let v: Vec<f32> = (0..100_000)
            .map(|i| (i as f32 / 100_000.0) * 2.0 - 1.0)
            .collect();
        h.add(&v);
        h.add(&[100.0]);
        let r = omse_search(&h, 4);
        assert!(r.max < 50.0, "{r:?}");
        assert!(r.min >= -1.0);
    }

    #[test]
    fn moment_hist_error_is_exact_for_codes() {
        // Values exactly on the quantization grid have zero error.
        let mut h = MomentHist::new(
            MinMax {
                min: 0.0,
                max: 15.0,
            },
            64,
        );
        let v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        h.add(&v);
        assert!(h.sq_error(0.0, 15.0, 4) < 1e-9);
    }
}
