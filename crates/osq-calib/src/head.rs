//! Ranges of a sequence head's nodes (the dense output's fixed-point absmax and the
//! classifier-input node), after the encoder's ranges are final.
//!
//! The head sees the encoder's quantized output: the FP32 first-token rows are fake-quantized at
//! the final node's range, then the FP32 dense + activation give the observed tensors; the
//! targets are the FP32 logits. Per method:
//! - MinMax, mean-MinMax, Percentile: the min/max of the classifier input (one row per
//!   sequence is too few for per-batch statistics);
//! - OMSE: the clipped range (α·min, α·max) minimizing the tensor's own quantization MSE;
//! - OS, OS+: Token-Wise Clipping's coarse idea on the task loss — candidates from token-wise
//!   quantiles of the per-row minima/maxima (and the α-scaled ranges), the one whose fake-quant
//!   logits (quantized output weights) are closest to the FP32 logits.

use osq_model::fp32::ThreadPool;
use osq_model::head::TaskHead;
use osq_model::quant::graph::QLinear;
use osq_model::quant::head::{minmax_ranges, observe_f32, HeadRanges};
use osq_model::quant::{BitsConfig, MinMax, Node, NodeRanges, QParams};
use osq_model::{Batch, BertWeights};

use crate::error::Result;
use crate::Method;

/// Scales tried on the MinMax range (OMSE, and OS candidates).
const ALPHAS: [f32; 11] = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3];
/// Token-wise quantiles tried by OS (fraction of rows clipped at each end).
const TOKEN_QUANTILES: [f64; 6] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2];

fn fake_quant(x: &[f32], q: &QParams) -> Vec<f32> {
    x.iter()
        .map(|&v| q.dequantize(q.quantize_torch(v)))
        .collect()
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    s / a.len().max(1) as f64
}

/// `q`-quantile of `v` (sorted copy, nearest rank).
fn quantile(v: &[f32], q: f64) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s[i.min(s.len() - 1)]
}

/// The head's ranges for `method`, or `None` when the model has no sequence head.
pub fn ranges(
    w: &BertWeights,
    batches: &[Batch],
    exec: &ThreadPool,
    encoder: &NodeRanges,
    method: Method,
    bits: BitsConfig,
) -> Result<Option<HeadRanges>> {
    let Some(head) = w.head.as_ref().filter(|hd| hd.dense.is_some()) else {
        return Ok(None);
    };
    let h = w.config.hidden_size;
    let mut cls = Vec::new();
    for b in batches {
        let hs = osq_model::fp32::forward(w, b, exec)?;
        cls.extend(osq_model::fp32::cls_rows_of(&hs, b.batch, b.seq_len, h));
    }
    let last = encoder
        .layers
        .last()
        .and_then(|l| l.node(Node::FfnLn))
        .copied()
        .unwrap_or(MinMax::EMPTY);
    let final_q = QParams::activation(last.min, last.max, bits.act_bits());
    let cls_q = fake_quant(&cls, &final_q);
    let Some((dense, act)) = observe_f32(head, &cls_q, exec) else {
        return Ok(None);
    };
    let mut r = minmax_ranges(&dense, &act);
    let ab = bits.act_bits();
    r.input = match method {
        Method::MinMax | Method::MinMaxMean | Method::Percentile => r.input,
        Method::Omse => best(&scaled(r.input), |mm| {
            mse(
                &fake_quant(&act, &QParams::activation(mm.min, mm.max, ab)),
                &act,
            )
        }),
        Method::Os | Method::OsPlus => {
            let target = fp32_logits(head, &cls, exec);
            // the output Linear with its weights quantized as the deployed head's
            let out = QLinear::new(&head.out, None, bits).dequantize();
            let mut cands = scaled(r.input);
            cands.extend(token_wise(&act, h));
            best(&cands, |mm| {
                let x = fake_quant(&act, &QParams::activation(mm.min, mm.max, ab));
                let mut y = vec![0f32; target.len()];
                osq_model::fp32::linear(exec, &x, x.len() / h, &out, &mut y);
                mse(&y, &target)
            })
        }
    };
    Ok(Some(r))
}

fn fp32_logits(head: &TaskHead, cls: &[f32], exec: &ThreadPool) -> Vec<f32> {
    let (_, act) = observe_f32(head, cls, exec).unwrap_or_default();
    let n = act.len() / head.out.in_features.max(1);
    let mut y = vec![0f32; n * head.num_labels()];
    osq_model::fp32::linear(exec, &act, n, &head.out, &mut y);
    y
}

fn scaled(mm: MinMax) -> Vec<MinMax> {
    ALPHAS
        .iter()
        .map(|&a| MinMax {
            min: mm.min * a,
            max: mm.max * a,
        })
        .collect()
}

/// Ranges from quantiles of the per-row minima and maxima.
fn token_wise(act: &[f32], h: usize) -> Vec<MinMax> {
    let rows: Vec<&[f32]> = act.chunks_exact(h).collect();
    if rows.is_empty() {
        return vec![];
    }
    let mins: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().copied().fold(f32::INFINITY, f32::min))
        .collect();
    let maxs: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .collect();
    TOKEN_QUANTILES
        .iter()
        .map(|&q| MinMax {
            min: quantile(&mins, q),
            max: quantile(&maxs, 1.0 - q),
        })
        .collect()
}

/// The candidate of least loss (the first on ties).
fn best(cands: &[MinMax], mut loss: impl FnMut(&MinMax) -> f64) -> MinMax {
    let mut best = (f64::INFINITY, cands[0]);
    for c in cands {
        let l = loss(c);
        if l < best.0 {
            best = (l, *c);
        }
    }
    best.1
}
