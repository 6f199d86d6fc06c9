//! Token-Wise Clipping, coarse stage (OS §4.2, Algorithm 1, reference
//! `solver/token_wise_clipping.py` + `AvgPruneMinMaxObserver`).
//!
//! For a clipping ratio α and one node in one batch: `o_u` = per-token maxima, `o_l` = per-token
//! minima (valid tokens); `q_u = quantile(|o_u|, α)` and the upper clip is the largest token
//! maximum `≤ q_u`; `q_l = quantile(|o_l|, α)` and the lower clip is the smallest token minimum
//! `≥ −q_l`; the batch range is the clipped tensor's min/max, and the node range is the mean over
//! batches. The attention probabilities are not pruned (as in the reference): their range is the
//! mean of the batch min/max.
//!
//! Search (see docs/calibration.md): stage 1 is the reference's — ONE ratio for all nodes,
//! `α = 1 − 0.01·i`, `i < K` (K = 10/30/90 for 8/6/4-bit activations), the one with the smallest
//! MSE between the fake-quantized model's final output and the FP32 output over the calibration
//! set (weights unquantized). Stage 2 (osq's extension) revisits the nodes one at a time in
//! execution order (layer by layer; inside a layer: Q, K, V, context, MHA-LN, GELU, FFN-LN; the
//! embedding LN first) and picks each node's own α from the same grid with the same final-output
//! loss, every other node keeping its current α; layer inputs are cached so a candidate only
//! re-runs the layers from the node's layer on.

use osq_model::fp32::ThreadPool;
use osq_model::quant::{BitsConfig, MinMax, Node, NodeRanges};
use osq_model::Batch;

use crate::engine::{Engine, FakeQ, QGraph, QuantSet};
use crate::objective::Objective;
use crate::observe::{Stats, TokenExtremes};
use crate::progress::Progress;

/// `torch.quantile` (linear interpolation) of an ascending slice.
pub fn quantile_sorted(v: &[f32], q: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let f = (pos - lo as f64) as f32;
    v[lo] + f * (v[hi] - v[lo])
}

/// The pruned range of one batch (reference `prune_token` followed by min/max).
pub fn pruned_range(t: &TokenExtremes, alpha: f64) -> MinMax {
    if t.max_sorted.is_empty() {
        return MinMax::EMPTY;
    }
    let qu = quantile_sorted(&t.max_abs_sorted, alpha);
    let ql = quantile_sorted(&t.min_abs_sorted, alpha);
    // largest token max ≤ qu (exists: the smallest token max m satisfies m ≤ |m| ≤ qu... unless
    // every token max is above qu, which cannot happen since qu ≥ min |o_u| ≥ min o_u when
    // o_u has a value ≥ 0; guard anyway).
    let iu = t.max_sorted.partition_point(|&v| v <= qu);
    let upper = if iu == 0 {
        t.max_sorted[0]
    } else {
        t.max_sorted[iu - 1]
    };
    let il = t.min_sorted.partition_point(|&v| v < -ql);
    let lower = if il >= t.min_sorted.len() {
        t.min_sorted[t.min_sorted.len() - 1]
    } else {
        t.min_sorted[il]
    };
    MinMax {
        min: lower,
        max: upper,
    }
}

/// The TWC range of one node for ratio α (mean over batches; probs: mean batch min/max).
pub fn node_range(stats: &Stats, l: usize, n: Node, alpha: f64) -> MinMax {
    if n == Node::Probs {
        return stats.mean_of(l, n, |b| b.range);
    }
    stats.mean_of(l, n, |b| match &b.tokens {
        Some(t) => pruned_range(t, alpha),
        None => b.range,
    })
}

/// The ratio grid `α = 1 − 0.01·i`, `i < K`, K = 10 / 30 / 90 for 8 / 6 / 4-bit activations.
pub fn ratio_grid(act_bits: u32) -> Vec<f64> {
    let k = match act_bits {
        b if b >= 8 => 10,
        b if b >= 6 => 30,
        _ => 90,
    };
    (0..k).map(|i| 1.0 - 0.01 * i as f64).collect()
}

/// Per-node ratios `[layer][node]`.
pub type Ratios = Vec<[f64; 9]>;

pub fn ranges_for(stats: &Stats, ratios: &Ratios) -> NodeRanges {
    stats.ranges_with(|l, n| node_range(stats, l, n, ratios[l][n.index()]))
}

fn quant_of(stats: &Stats, ratios: &Ratios, bits: BitsConfig) -> QuantSet {
    crate::observe::quant_set(&ranges_for(stats, ratios), bits)
}

/// Output MSE of a quantizer set over batches (`Σ sq. error / Σ values` of the objective's
/// output: valid tokens' hidden states or the head's logits).
pub fn output_mse(
    g: &QGraph,
    obj: &Objective,
    batches: &[Batch],
    targets: &[Vec<f32>],
    exec: &ThreadPool,
    quant: &QuantSet,
) -> f64 {
    let eng = Engine::new(g, exec, Some(quant));
    let (mut s, mut n) = (0f64, 0usize);
    for (b, t) in batches.iter().zip(targets) {
        let y = eng.forward(b, None, None);
        let (bs, bn) = obj.sq_err(exec, b, &y, t);
        s += bs;
        n += bn;
    }
    s / n.max(1) as f64
}

/// Result of the coarse stage.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CoarseResult {
    /// The best global ratio (stage 1) and its loss.
    pub global_alpha: f64,
    pub global_loss: f64,
    /// Loss of α = 1 (no clipping beyond the batch-mean MinMax).
    pub loss_alpha_one: f64,
    /// `(α, loss)` of every stage-1 candidate.
    pub curve: Vec<(f64, f64)>,
    /// Final loss after the per-node stage (equal to `global_loss` when it is skipped).
    pub final_loss: f64,
    /// Per-node ratios `[layer][node index]` after stage 2.
    pub ratios: Vec<[f64; 9]>,
}

/// Stage 1: one ratio for all nodes.
pub fn global_search(
    g: &QGraph,
    obj: &Objective,
    batches: &[Batch],
    exec: &ThreadPool,
    stats: &Stats,
    bits: BitsConfig,
    progress: &Progress,
) -> (f64, f64, Vec<(f64, f64)>) {
    let nl = stats.num_layers();
    let grid = ratio_grid(bits.act_bits());
    let bar = progress.bar(grid.len() as u64, "TWC coarse: global ratio");
    let mut curve = Vec::with_capacity(grid.len());
    let mut best = (1.0, f64::INFINITY);
    for &a in &grid {
        let ratios = vec![[a; 9]; nl];
        let q = quant_of(stats, &ratios, bits);
        let loss = output_mse(g, obj, batches, &stats.targets, exec, &q);
        curve.push((a, loss));
        if loss < best.1 {
            best = (a, loss);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    (best.0, best.1, curve)
}

/// Node order of stage 2 inside a layer (probabilities are not clipped).
pub const REFINE_ORDER: [Node; 8] = [
    Node::Emb,
    Node::Query,
    Node::Key,
    Node::Value,
    Node::Context,
    Node::MhaLn,
    Node::Gelu,
    Node::FfnLn,
];

/// Stage 2: per-node ratios by coordinate search in execution order, on the batches given
/// (their FP targets are `targets`). Returns the refined ratios and the loss on those batches.
#[allow(clippy::too_many_arguments)]
pub fn per_node_search(
    g: &QGraph,
    obj: &Objective,
    batches: &[Batch],
    targets: &[Vec<f32>],
    exec: &ThreadPool,
    stats: &Stats,
    bits: BitsConfig,
    start: Ratios,
    progress: &Progress,
) -> (Ratios, f64) {
    let nl = stats.num_layers();
    let grid = ratio_grid(bits.act_bits());
    let mut ratios = start;
    let mut quant = quant_of(stats, &ratios, bits);
    let loss_from = |quant: &QuantSet, l: usize, cache: &[Vec<f32>], emb: bool| -> f64 {
        let eng = Engine::new(g, exec, Some(quant));
        let (mut s, mut n) = (0f64, 0usize);
        for (bi, b) in batches.iter().enumerate() {
            let mut u = if emb {
                eng.embed_stage(b, &mut None, None)
            } else {
                cache[bi].clone()
            };
            for ll in l..nl {
                u = eng.layer_stage(ll, b, &u, &mut None, None);
            }
            let (bs, bn) = obj.sq_err(exec, b, &u, &targets[bi]);
            s += bs;
            n += bn;
        }
        s / n.max(1) as f64
    };
    // cache[b] = consumer input of layer l under the current quantizers.
    let mut cache: Vec<Vec<f32>> = {
        let eng = Engine::new(g, exec, Some(&quant));
        batches
            .iter()
            .map(|b| eng.embed_stage(b, &mut None, None))
            .collect()
    };
    let steps: u64 = (0..nl)
        .map(|l| REFINE_ORDER.iter().filter(|n| n.in_layer(l)).count() as u64)
        .sum::<u64>();
    let bar = progress.bar(steps, "TWC coarse: per-node ratios");
    let mut best_loss = f64::NAN;
    for l in 0..nl {
        for &n in REFINE_ORDER.iter().filter(|n| n.in_layer(l)) {
            let emb = n == Node::Emb;
            let cur = ratios[l][n.index()];
            let mut best = (cur, f64::INFINITY);
            let mut seen: Vec<MinMax> = Vec::new();
            let mut tried = vec![false; grid.len()];
            let mut eval = |i: usize, best: &mut (f64, f64), quant: &mut QuantSet| {
                if tried[i] {
                    return;
                }
                tried[i] = true;
                let a = grid[i];
                let r = node_range(stats, l, n, a);
                if seen.contains(&r) {
                    return;
                }
                seen.push(r);
                quant[l][n.index()] = Some(FakeQ::from_range(&r, bits.node_bits(n)));
                let loss = loss_from(quant, l, &cache, emb);
                if loss < best.1 {
                    *best = (a, loss);
                }
            };
            // coarse-to-fine over the grid: every `stride`-th ratio, then the neighbours of the
            // best one
            let stride = (grid.len() / 10).max(1);
            if let Some(ci) = grid.iter().position(|&a| a == cur) {
                eval(ci, &mut best, &mut quant);
            }
            for i in (0..grid.len()).step_by(stride) {
                eval(i, &mut best, &mut quant);
            }
            let bi = grid.iter().position(|&a| a == best.0).unwrap_or(0);
            for i in bi.saturating_sub(stride - 1)..(bi + stride).min(grid.len()) {
                eval(i, &mut best, &mut quant);
            }
            bar.inc(1);
            ratios[l][n.index()] = best.0;
            quant[l][n.index()] = Some(FakeQ::from_range(
                &node_range(stats, l, n, best.0),
                bits.node_bits(n),
            ));
            best_loss = best.1;
            if emb {
                let eng = Engine::new(g, exec, Some(&quant));
                cache = batches
                    .iter()
                    .map(|b| eng.embed_stage(b, &mut None, None))
                    .collect();
            }
        }
        // advance the cache through layer l with its final quantizers
        let eng = Engine::new(g, exec, Some(&quant));
        cache = batches
            .iter()
            .zip(&cache)
            .map(|(b, u)| eng.layer_stage(l, b, u, &mut None, None))
            .collect();
    }
    bar.finish_and_clear();
    (ratios, best_loss)
}

/// The coarse stage: global ratio, then (when `per_node_batches > 0`) per-node refinement on
/// the first `per_node_batches` batches. Returns the result and the node ranges.
#[allow(clippy::too_many_arguments)]
pub fn coarse(
    g: &QGraph,
    obj: &Objective,
    batches: &[Batch],
    exec: &ThreadPool,
    stats: &Stats,
    bits: BitsConfig,
    per_node_batches: usize,
    progress: &Progress,
) -> (CoarseResult, NodeRanges) {
    let nl = stats.num_layers();
    let (ga, gl, curve) = global_search(g, obj, batches, exec, stats, bits, progress);
    let loss_alpha_one = curve.first().map(|c| c.1).unwrap_or(f64::NAN);
    let mut ratios = vec![[ga; 9]; nl];
    let mut final_loss = gl;
    if per_node_batches > 0 {
        // evenly spaced batches (the calibration batches are sorted by length)
        let k = per_node_batches.min(batches.len());
        let pick: Vec<usize> = (0..k)
            .map(|i| (2 * i + 1) * batches.len() / (2 * k))
            .collect();
        let sub_b: Vec<Batch> = pick.iter().map(|&i| batches[i].clone()).collect();
        let sub_t: Vec<Vec<f32>> = pick.iter().map(|&i| stats.targets[i].clone()).collect();
        let (r, _) = per_node_search(
            g,
            obj,
            &sub_b,
            &sub_t,
            exec,
            stats,
            bits,
            ratios.clone(),
            progress,
        );
        // keep the refinement only if it also helps on the whole calibration set
        let q = quant_of(stats, &r, bits);
        let full = output_mse(g, obj, batches, &stats.targets, exec, &q);
        if full <= gl {
            ratios = r;
            final_loss = full;
        }
    }
    let ranges = ranges_for(stats, &ratios);
    (
        CoarseResult {
            global_alpha: ga,
            global_loss: gl,
            loss_alpha_one,
            curve,
            final_loss,
            ratios,
        },
        ranges,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_torch() {
        let v = [1.0f32, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
        assert!((quantile_sorted(&v, 0.5) - 2.5).abs() < 1e-6);
    }

    #[test]
    fn pruning_snaps_to_token_extremes_and_never_widens() {
        // 100 tokens with max 1.0 except one with max 50; minima −1 except one with −30.
        let mut mx: Vec<f32> = vec![1.0; 99];
        mx.push(50.0);
        let mut mn: Vec<f32> = vec![-1.0; 99];
        mn.push(-30.0);
        let mut t = TokenExtremes {
            max_abs_sorted: mx.iter().map(|v| v.abs()).collect(),
            min_abs_sorted: mn.iter().map(|v| v.abs()).collect(),
            max_sorted: mx,
            min_sorted: mn,
        };
        for v in [
            &mut t.max_sorted,
            &mut t.min_sorted,
            &mut t.max_abs_sorted,
            &mut t.min_abs_sorted,
        ] {
            v.sort_by(f32::total_cmp);
        }
        let r1 = pruned_range(&t, 1.0);
        assert_eq!((r1.min, r1.max), (-30.0, 50.0));
        let r = pruned_range(&t, 0.98);
        assert_eq!((r.min, r.max), (-1.0, 1.0));
        assert_eq!(ratio_grid(8).len(), 10);
        assert_eq!(ratio_grid(6).len(), 30);
        assert_eq!(ratio_grid(4).len(), 90);
        assert!((ratio_grid(4)[89] - 0.11).abs() < 1e-12);
    }
}
