//! What Token-Wise Clipping minimizes: the distance between the fake-quantized model's output and
//! the FP32 model's, on the calibration batches.
//!
//! - [`Loss::Hidden`]: the MSE of every valid token's final hidden state — all an encoder has.
//! - [`Loss::Logits`]: the MSE of the task head's logits (the FP32 head, weights and all, on the
//!   first token for sequence heads, on every valid token for token heads). This is the OS
//!   reference's loss for fine-tuned GLUE models (`solver/token_wise_clipping.py`:
//!   `loss_fct(outputs[0], fp_output)`): an error counts as much as the task reads it, instead of
//!   every channel of every token counting alike.
//!
//! The targets stay the FP32 final hidden states; the logit targets are derived from them by the
//! same head, so any subset of batches carries its own targets.

use osq_model::fp32::{self, ThreadPool};
use osq_model::head::{Activation, TaskHead};
use osq_model::{Batch, BertWeights, Linear};

use crate::backward::gelu_grad;
use crate::engine::{sq_err_valid, transposed};

/// Which output the calibration loss compares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Logits when the model has a task head, else hidden states.
    Auto,
    /// Every valid token's final hidden state.
    #[default]
    Hidden,
    /// The task head's logits (an error for a model without a head).
    Logits,
}

impl Loss {
    pub const ALL: [Loss; 3] = [Loss::Auto, Loss::Hidden, Loss::Logits];

    pub fn name(self) -> &'static str {
        match self {
            Loss::Auto => "auto",
            Loss::Hidden => "hidden",
            Loss::Logits => "logits",
        }
    }

    pub fn parse(s: &str) -> Option<Loss> {
        Self::ALL.into_iter().find(|l| l.name() == s.trim())
    }
}

/// The head as the loss runs it: forward Linears and their transposes for the gradient.
struct HeadLoss {
    dense: Option<(Linear, Linear, Activation)>,
    out: Linear,
    out_t: Linear,
    per_sequence: bool,
}

/// The loss of one calibration: sum of squared errors and its gradient on the final output.
pub struct Objective {
    head: Option<HeadLoss>,
    hidden: usize,
}

impl Objective {
    /// The objective `loss` asks for on `w`; `None` when it asks for logits and `w` has no head.
    pub fn new(w: &BertWeights, loss: Loss) -> Option<Objective> {
        let hidden = w.config.hidden_size;
        let head = match (loss, w.head.as_ref()) {
            (Loss::Hidden, _) | (Loss::Auto, None) => None,
            (Loss::Logits, None) => return None,
            (Loss::Auto | Loss::Logits, Some(h)) => Some(HeadLoss::new(h)),
        };
        Some(Objective { head, hidden })
    }

    /// The loss actually used (`hidden` or `logits`).
    pub fn kind(&self) -> Loss {
        if self.head.is_some() {
            Loss::Logits
        } else {
            Loss::Hidden
        }
    }

    /// Σ of squared errors and the number of values compared, for the output `y` of `batch`
    /// against the FP32 output `target` (both `[batch·seq, hidden]`).
    pub fn sq_err(
        &self,
        exec: &ThreadPool,
        batch: &Batch,
        y: &[f32],
        target: &[f32],
    ) -> (f64, usize) {
        match &self.head {
            None => sq_err_valid(batch, y, target, self.hidden),
            Some(hd) => {
                let rows = hd.rows(batch);
                let (a, _) = hd.forward(exec, &gather(y, &rows, self.hidden));
                let (b, _) = hd.forward(exec, &gather(target, &rows, self.hidden));
                let s = a
                    .iter()
                    .zip(&b)
                    .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                    .sum();
                (s, a.len())
            }
        }
    }

    /// The mean squared error of `y` and its gradient with respect to `y` (zero on the rows the
    /// loss does not read).
    pub fn mse_grad(
        &self,
        exec: &ThreadPool,
        batch: &Batch,
        y: &[f32],
        target: &[f32],
    ) -> (f64, Vec<f32>) {
        let h = self.hidden;
        let mut dout = vec![0f32; y.len()];
        let Some(hd) = &self.head else {
            let tokens: usize = batch.lengths.iter().sum();
            let count = (tokens * h).max(1) as f64;
            let mut loss = 0f64;
            for (r, ((dr, yr), tr)) in dout
                .chunks_exact_mut(h)
                .zip(y.chunks_exact(h))
                .zip(target.chunks_exact(h))
                .enumerate()
            {
                if batch.mask[r] == 0 {
                    continue;
                }
                for ((d, &a), &b) in dr.iter_mut().zip(yr).zip(tr) {
                    let e = (a - b) as f64;
                    loss += e * e;
                    *d = (2.0 * e / count) as f32;
                }
            }
            return (loss / count, dout);
        };
        let rows = hd.rows(batch);
        let (logits, pre) = hd.forward(exec, &gather(y, &rows, h));
        let (t, _) = hd.forward(exec, &gather(target, &rows, h));
        let count = logits.len().max(1) as f64;
        let mut loss = 0f64;
        let dl: Vec<f32> = logits
            .iter()
            .zip(&t)
            .map(|(&a, &b)| {
                let e = (a - b) as f64;
                loss += e * e;
                (2.0 * e / count) as f32
            })
            .collect();
        let dx = hd.backward(exec, &dl, pre.as_deref(), rows.len());
        for (&r, g) in rows.iter().zip(dx.chunks_exact(h)) {
            dout[r * h..(r + 1) * h].copy_from_slice(g);
        }
        (loss / count, dout)
    }
}

/// Rows `rows` of a `[·, h]` tensor, in order.
fn gather(x: &[f32], rows: &[usize], h: usize) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| x[r * h..(r + 1) * h].iter().copied())
        .collect()
}

impl HeadLoss {
    fn new(h: &TaskHead) -> HeadLoss {
        HeadLoss {
            dense: h
                .dense
                .as_ref()
                .map(|(lin, act)| (lin.clone(), transposed(lin), *act)),
            out: h.out.clone(),
            out_t: transposed(&h.out),
            per_sequence: h.task.per_sequence(),
        }
    }

    /// The rows the head reads: each sequence's first token, or every valid token.
    fn rows(&self, batch: &Batch) -> Vec<usize> {
        if self.per_sequence {
            (0..batch.batch).map(|b| b * batch.seq_len).collect()
        } else {
            (0..batch.mask.len())
                .filter(|&r| batch.mask[r] != 0)
                .collect()
        }
    }

    /// Logits of the rows `x`, and the dense layer's pre-activation (for the gradient).
    fn forward(&self, exec: &ThreadPool, x: &[f32]) -> (Vec<f32>, Option<Vec<f32>>) {
        let n = x.len() / self.out_in();
        let (a, pre) = match &self.dense {
            Some((lin, _, act)) => {
                let mut d = vec![0f32; n * lin.out_features];
                fp32::linear(exec, x, n, lin, &mut d);
                (d.iter().map(|&v| act.apply_f32(v)).collect(), Some(d))
            }
            None => (x.to_vec(), None),
        };
        let mut y = vec![0f32; n * self.out.out_features];
        fp32::linear(exec, &a, n, &self.out, &mut y);
        (y, pre)
    }

    fn out_in(&self) -> usize {
        match &self.dense {
            Some((lin, ..)) => lin.in_features,
            None => self.out.in_features,
        }
    }

    /// Gradient with respect to the head's input rows, given the logits' gradient.
    fn backward(&self, exec: &ThreadPool, dl: &[f32], pre: Option<&[f32]>, n: usize) -> Vec<f32> {
        let mut da = vec![0f32; n * self.out.in_features];
        fp32::linear(exec, dl, n, &self.out_t, &mut da);
        let (Some((lin, lin_t, act)), Some(pre)) = (&self.dense, pre) else {
            return da;
        };
        for (g, &x) in da.iter_mut().zip(pre) {
            *g *= act_grad(*act, x);
        }
        let mut dx = vec![0f32; n * lin.in_features];
        fp32::linear(exec, &da, n, lin_t, &mut dx);
        dx
    }
}

/// Derivative of the head's activation at `x`.
fn act_grad(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Tanh => 1.0 - x.tanh().powi(2),
        Activation::Gelu => gelu_grad(x),
        Activation::Relu => f32::from(x > 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_names_round_trip() {
        for l in Loss::ALL {
            assert_eq!(Loss::parse(l.name()), Some(l));
        }
        assert_eq!(Loss::parse("logit"), None);
    }

    fn lin(out: usize, inp: usize, seed: u32) -> Linear {
        let v = |i: usize| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32;
        Linear {
            weight: (0..out * inp)
                .map(|i| v(i) / (1u32 << 24) as f32 - 0.5)
                .collect(),
            bias: (0..out).map(|i| v(i + 99) / (1u32 << 25) as f32).collect(),
            out_features: out,
            in_features: inp,
        }
    }

    /// The head objective's gradient on the output equals finite differences of its loss, for a
    /// sequence head (first tokens only) and a token head (every valid token), and is zero on
    /// the rows the loss does not read.
    #[test]
    fn head_gradient_matches_finite_differences() {
        use osq_model::head::Task;
        let exec = ThreadPool::new(1).expect("pool");
        let h = 5;
        let batch = Batch::from_ids(&[vec![1, 2, 3], vec![4, 5]], 0);
        let rows = batch.batch * batch.seq_len;
        let y: Vec<f32> = (0..rows * h)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let t: Vec<f32> = (0..rows * h)
            .map(|i| ((i * 5 % 13) as f32 - 6.0) / 5.0)
            .collect();
        for (task, dense) in [
            (Task::SingleLabel, Some((lin(4, h, 1), Activation::Tanh))),
            (Task::Regression, Some((lin(4, h, 2), Activation::Gelu))),
            (Task::Token, None),
        ] {
            let labels = if task == Task::Regression { 1 } else { 3 };
            let in_out = if dense.is_some() { 4 } else { h };
            let head = TaskHead {
                task,
                dense,
                out: lin(labels, in_out, 3),
                labels: vec![],
            };
            let obj = Objective {
                head: Some(HeadLoss::new(&head)),
                hidden: h,
            };
            let mse = |y: &[f32]| {
                let (s, n) = obj.sq_err(&exec, &batch, y, &t);
                s / n as f64
            };
            let (loss, g) = obj.mse_grad(&exec, &batch, &y, &t);
            assert!(
                (loss - mse(&y)).abs() < 1e-6 * loss.max(1.0),
                "{task:?}: {loss} vs {}",
                mse(&y)
            );
            assert!(g.iter().any(|&v| v != 0.0), "{task:?}: zero gradient");
            for i in 0..y.len() {
                let (r, e) = (i / h, 1e-2f32);
                let (mut a, mut b) = (y.clone(), y.clone());
                a[i] += e;
                b[i] -= e;
                let fd = (mse(&a) - mse(&b)) / (2.0 * e as f64);
                let read = if task.per_sequence() {
                    r % batch.seq_len == 0
                } else {
                    batch.mask[r] != 0
                };
                if !read {
                    assert_eq!(g[i], 0.0, "{task:?}: row {r} is not read");
                }
                assert!(
                    (fd - g[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                    "{task:?} element {i}: finite difference {fd} vs gradient {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn activation_gradients_match_finite_differences() {
        for act in [Activation::Tanh, Activation::Gelu, Activation::Relu] {
            for &x in &[-2.5f32, -0.7, 0.3, 1.9] {
                let e = 1e-3f32;
                let fd = (act.apply_f32(x + e) - act.apply_f32(x - e)) / (2.0 * e);
                assert!(
                    (fd - act_grad(act, x)).abs() < 2e-3,
                    "{} at {x}: {fd} vs {}",
                    act.name(),
                    act_grad(act, x)
                );
            }
        }
    }
}
