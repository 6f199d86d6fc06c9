//! Token-Wise Clipping, fine stage: LSQ+ learning of every activation quantizer's scale and zero
//! point against the final-output MSE (OS reference `learn_scale`): full backpropagation through
//! the fake-quantized encoder ([`crate::backward`]; the loss and its gradient on the output come
//! from the [`Objective`]), LSQ gradient scale `g = 1/sqrt(numel·qmax)`
//! (numel = valid elements of the node in the batch), Adam (β = 0.9/0.999, ε = 1e-8), learning
//! rate 1e-5 with PyTorch's cosine annealing to 0 over all steps, 3 epochs over the calibration
//! batches in order. After every step `s ← max(|s|, eps)`, `z ← clamp(z, qmin, qmax)`.
//! The attention-probability zero point stays 0 (the deploy softmax requires it); only its scale
//! is learned.

use osq_model::fp32::ThreadPool;
use osq_model::quant::qparams::SCALE_EPS;
use osq_model::quant::{Node, NodeRanges};
use osq_model::Batch;

use crate::backward::{backward, BackCtx, QGrads};
use crate::engine::{Engine, QGraph, QuantSet, Tape};
use crate::objective::Objective;
use crate::progress::Progress;
use crate::twc::output_mse;

/// Hyper-parameters of the fine stage.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct FineConfig {
    pub lr: f64,
    pub epochs: usize,
}

impl Default for FineConfig {
    fn default() -> Self {
        FineConfig {
            lr: 1e-5,
            epochs: 3,
        }
    }
}

/// Outcome of the fine stage.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FineResult {
    pub config: FineConfig,
    pub steps: usize,
    /// Calibration-set output MSE before and after learning.
    pub loss_before: f64,
    pub loss_after: f64,
    /// Whether the learned quantizers were kept (they are dropped if the loss got worse).
    pub kept: bool,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
}

#[derive(Clone, Copy, Default)]
struct Adam {
    m: f64,
    v: f64,
}

impl Adam {
    fn step(&mut self, p: f64, g: f64, lr: f64, t: usize) -> f64 {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        self.m = B1 * self.m + (1.0 - B1) * g;
        self.v = B2 * self.v + (1.0 - B2) * g * g;
        let mh = self.m / (1.0 - B1.powi(t as i32));
        let vh = self.v / (1.0 - B2.powi(t as i32));
        p - lr * mh / (vh.sqrt() + EPS)
    }
}

/// Number of valid elements of a node tensor in a batch.
fn numel(g: &QGraph, batch: &Batch, n: Node) -> f64 {
    let c = &g.w.config;
    let tokens: usize = batch.lengths.iter().sum();
    match n {
        Node::Probs => {
            batch.lengths.iter().map(|&l| l * l).sum::<usize>() as f64
                * c.num_attention_heads as f64
        }
        Node::Gelu => (tokens * c.intermediate_size) as f64,
        _ => (tokens * c.hidden_size) as f64,
    }
}

/// Learn the quantizers `start` (from the coarse stage). Returns the final quantizers.
#[allow(clippy::too_many_arguments)]
pub fn learn(
    g: &QGraph,
    obj: &Objective,
    batches: &[Batch],
    targets: &[Vec<f32>],
    exec: &ThreadPool,
    start: &QuantSet,
    cfg: FineConfig,
    progress: &Progress,
) -> (QuantSet, FineResult) {
    let nl = g.num_layers();
    let mut quant = start.clone();
    let mut adam = vec![[(Adam::default(), Adam::default()); 9]; nl];
    let total = cfg.epochs * batches.len();
    let loss_before = output_mse(g, obj, batches, targets, exec, start);
    let bar = progress.bar(total as u64, "TWC fine: LSQ+ scale/zero point");
    let ctx = BackCtx::new(&Engine::new(g, exec, None));
    let mut step = 0usize;
    let mut epoch_losses = Vec::with_capacity(cfg.epochs);
    for _ in 0..cfg.epochs {
        let mut ep = 0f64;
        for (batch, target) in batches.iter().zip(targets) {
            let eng = Engine::new(g, exec, Some(&quant));
            let mut tape = Tape::default();
            let y = eng.forward(batch, None, Some(&mut tape));
            let (loss, dout) = obj.mse_grad(exec, batch, &y, target);
            ep += loss;
            let mut grads: QGrads = vec![[(0.0, 0.0); 9]; nl];
            backward(&eng, &ctx, batch, &tape, dout, &mut grads);
            // cosine annealing (PyTorch CosineAnnealingLR, eta_min = 0): lr of this step
            let lr =
                cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            step += 1;
            for l in 0..nl {
                for n in Node::ALL {
                    let Some(q) = quant[l][n.index()].as_mut() else {
                        continue;
                    };
                    let gf = 1.0 / (numel(g, batch, n) * q.qmax as f64).sqrt();
                    let (ds, dz) = grads[l][n.index()];
                    let (as_, az) = &mut adam[l][n.index()];
                    let s = as_.step(q.s as f64, ds * gf, lr, step);
                    q.s = (s.abs() as f32).max(SCALE_EPS);
                    if n != Node::Probs {
                        let z = az.step(q.z as f64, dz * gf, lr, step);
                        q.z = (z as f32).clamp(q.qmin, q.qmax);
                    }
                }
            }
            bar.inc(1);
        }
        epoch_losses.push(ep / batches.len().max(1) as f64);
    }
    bar.finish_and_clear();
    let loss_after = output_mse(g, obj, batches, targets, exec, &quant);
    let kept = loss_after <= loss_before;
    let res = FineResult {
        config: cfg,
        steps: total,
        loss_before,
        loss_after,
        kept,
        epoch_losses,
    };
    if kept {
        (quant, res)
    } else {
        (start.clone(), res)
    }
}

/// Ranges whose OS quantizers are the learned ones (fixed-point fields copied from `base`).
pub fn ranges_of(quant: &QuantSet, base: &NodeRanges) -> NodeRanges {
    let mut r = base.clone();
    for (lr, q) in r.layers.iter_mut().zip(quant) {
        for (slot, fq) in lr.nodes.iter_mut().zip(q) {
            if let (Some(s), Some(fq)) = (slot.as_mut(), fq) {
                *s = fq.to_range();
            }
        }
    }
    r
}
