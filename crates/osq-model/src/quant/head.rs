//! The quantized task head: integer up to the logits, logits in float (as the paper deploys).
//!
//! Sequence heads: the first token's final codes (the last FFN-LN node) → dense GEMM to fixed
//! point at `s_d = dense_absmax/2^24` (bias added there, as FFN1) → the activation by thresholds
//! (GELU: [`GeluTable`], tanh / ReLU: [`MonotoneTable`]) to the codes of the classifier-input
//! node → output GEMM, i32 accumulators. Token heads: the output GEMM on every token's final
//! codes. Logits: `(acc·(s_in·s_w[n]) + b[n])` in f64, rounded once to f32 ([`logit`]) — the
//! same function in every executor, so that equal accumulators give equal logits.
//! The reference ([`reference()`]) is written plainly; the integer executor runs the GEMMs on
//! osq-kernels (`integer.rs`).

use crate::error::{ModelError, Result};
use crate::head::{Activation, Task, TaskHead};

use super::deploy::dot_acc;
use super::graph::{derive_linear, LinDerived, QLinear};
use super::nonlin::{sat_i32, GeluTable, MonotoneFn, MonotoneTable};
use super::qparams::{BitsConfig, QParams};
use super::MinMax;

/// Calibrated ranges of a sequence head.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeadRanges {
    /// |dense output| (the activation's fixed-point input).
    pub dense_absmax: f32,
    /// The classifier-input node (after the activation).
    pub input: MinMax,
}

/// FP32 observations of a sequence head on first-token rows `cls` `[n, hidden]`: the dense
/// outputs and the activations (the classifier input), both `[n, hidden]`. `None` for token
/// heads (they have no node of their own).
pub fn observe_f32(
    head: &TaskHead,
    cls: &[f32],
    exec: &crate::ThreadPool,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let (dense, act) = head.dense.as_ref()?;
    let h = dense.in_features;
    let n = cls.len() / h;
    let mut d = vec![0f32; n * dense.out_features];
    crate::fp32::linear(exec, cls, n, dense, &mut d);
    let a = d.iter().map(|&v| act.apply_f32(v)).collect();
    Some((d, a))
}

/// MinMax ranges of a sequence head from [`observe_f32`]'s tensors.
pub fn minmax_ranges(dense: &[f32], act: &[f32]) -> HeadRanges {
    let mut d = MinMax::EMPTY;
    dense.iter().for_each(|&v| d.update(v));
    let mut input = MinMax::EMPTY;
    act.iter().for_each(|&v| input.update(v));
    HeadRanges {
        dense_absmax: d.absmax(),
        input,
    }
}

/// The dense layer of a sequence head.
#[derive(Clone, Debug, PartialEq)]
pub struct QHeadDense {
    pub lin: QLinear,
    pub act: Activation,
    /// Fixed-point scale of the dense output.
    pub s_d: f64,
    /// The classifier-input node.
    pub node: QParams,
}

/// What the parameter file stores of a task head.
#[derive(Clone, Debug, PartialEq)]
pub struct QHead {
    pub task: Task,
    pub labels: Vec<String>,
    pub dense: Option<QHeadDense>,
    pub out: QLinear,
}

impl QHead {
    /// Quantizes `head` (weights at `bits`, the node at the activation bits); sequence heads
    /// need their ranges.
    pub fn build(head: &TaskHead, ranges: Option<&HeadRanges>, bits: BitsConfig) -> Result<QHead> {
        let dense = match (&head.dense, ranges) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ModelError::Input(
                    "the sequence head has no calibrated ranges".into(),
                ))
            }
            (Some((lin, act)), Some(r)) => {
                let mm = r.input;
                if mm.is_empty() || !mm.min.is_finite() || !mm.max.is_finite() {
                    return Err(ModelError::Input(
                        "ranges: the head's classifier input was never observed or is not finite"
                            .into(),
                    ));
                }
                Some(QHeadDense {
                    lin: QLinear::new(lin, None, bits),
                    act: *act,
                    s_d: super::graph::fixed_scale(r.dense_absmax, "the head's dense output")?,
                    node: QParams::activation(mm.min, mm.max, bits.act_bits()),
                })
            }
        };
        Ok(QHead {
            task: head.task,
            labels: head.labels.clone(),
            dense,
            out: QLinear::new(&head.out, None, bits),
        })
    }

    pub fn num_labels(&self) -> usize {
        self.out.n()
    }
}

/// The activation node of a sequence head.
#[derive(Clone, Debug)]
pub enum ActTable {
    Gelu(GeluTable),
    Monotone(MonotoneTable),
}

impl ActTable {
    #[inline]
    pub fn code(&self, h: i32) -> u8 {
        match self {
            ActTable::Gelu(t) => t.code(h),
            ActTable::Monotone(t) => t.code(h),
        }
    }
}

/// Derived constants of the head.
#[derive(Clone, Debug)]
pub struct HeadDerived {
    /// Dense ReQuant (fixed output at `s_d`) and the activation table.
    pub dense: Option<(LinDerived, ActTable)>,
    /// Zero point of the output Linear's input codes.
    pub out_zero: i32,
    /// `s_in·s_w[n]` per label.
    pub out_scale: Vec<f64>,
    pub out_bias: Vec<f64>,
}

impl HeadDerived {
    /// `final_node`: the quantizer of the encoder's final codes.
    pub fn new(h: &QHead, final_node: &QParams) -> Result<HeadDerived> {
        let (dense, s_in, z_in) = match &h.dense {
            Some(d) => {
                let ld = derive_linear(&d.lin, final_node.scale, d.s_d, None, "head dense")?;
                let n = &d.node;
                let (s, z, q) = (n.scale as f64, n.zero_point, n.qmax);
                let err = |e: String| ModelError::Input(format!("head activation: {e}"));
                let t = match d.act {
                    Activation::Gelu => {
                        ActTable::Gelu(GeluTable::new(d.s_d, s, z, q).map_err(err)?)
                    }
                    Activation::Tanh => ActTable::Monotone(
                        MonotoneTable::new(MonotoneFn::Tanh, d.s_d, s, z, q).map_err(err)?,
                    ),
                    Activation::Relu => ActTable::Monotone(
                        MonotoneTable::new(MonotoneFn::Relu, d.s_d, s, z, q).map_err(err)?,
                    ),
                };
                (Some((ld, t)), n.scale, n.zero_point)
            }
            None => (None, final_node.scale, final_node.zero_point),
        };
        Ok(HeadDerived {
            dense,
            out_zero: z_in,
            out_scale: h
                .out
                .w
                .scales
                .iter()
                .map(|&sw| s_in as f64 * sw as f64)
                .collect(),
            out_bias: h.out.bias.iter().map(|&b| b as f64).collect(),
        })
    }

    /// The classifier-input code of dense channel `j` from its ReQuant output `y`.
    #[inline]
    pub fn input_code(&self, y: i32, j: usize) -> u8 {
        let (ld, t) = self.dense.as_ref().expect("a sequence head");
        t.code(sat_i32(ld.fixed(y, j)))
    }

    /// Logit `n` of the output accumulator `acc`.
    #[inline]
    pub fn logit(&self, acc: i32, n: usize) -> f32 {
        logit(acc, self.out_scale[n], self.out_bias[n])
    }
}

/// `acc·scale + bias` in f64, rounded once to f32.
#[inline]
pub fn logit(acc: i32, scale: f64, bias: f64) -> f32 {
    (acc as f64 * scale + bias) as f32
}

/// What the head computed for a batch or a sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadOutput {
    /// Sequence heads: the classifier-input codes `[sequences, hidden]` (empty for token heads).
    pub input_codes: Vec<u8>,
    /// `[rows, labels]`: one row per sequence, or per token for token heads.
    pub logits: Vec<f32>,
}

/// The head on the final codes `[len, hidden]` of one sequence, written plainly (the
/// reference of the integer executor's head).
pub fn reference(
    h: &QHead,
    d: &HeadDerived,
    final_zero: i32,
    hidden: &[u8],
    len: usize,
) -> HeadOutput {
    let k = h.out.k();
    let nl = h.num_labels();
    let mut out = HeadOutput::default();
    let rows: Vec<&[u8]> = match &h.dense {
        Some(dense) => {
            let x = &hidden[..k];
            out.input_codes = (0..dense.lin.n())
                .map(|j| {
                    let (ld, _) = d.dense.as_ref().expect("derived with the head");
                    let y = ld
                        .requant
                        .apply_i32(dot_acc(x, final_zero, dense.lin.w.row(j)), j);
                    d.input_code(y, j)
                })
                .collect();
            vec![&out.input_codes[..]]
        }
        None => hidden[..len * k].chunks_exact(k).collect(),
    };
    let mut logits = Vec::with_capacity(rows.len() * nl);
    for x in rows {
        for n in 0..nl {
            logits.push(d.logit(dot_acc(x, d.out_zero, h.out.w.row(n)), n));
        }
    }
    out.logits = logits;
    out
}
