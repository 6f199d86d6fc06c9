//! The quantized BERT of Outlier Suppression: the nine activation nodes, the parameter file,
//! and the three executors that must agree.
//!
//! - [`qparams`]: the OS quantizer (scale, zero point) exactly as the reference code computes it.
//! - [`minmax`]: node ranges from the FP32 observer hook (MinMax calibration).
//! - [`graph`]: FP32 weights + ranges → [`graph::QuantParams`] (γ migration, weight codes) and
//!   [`graph::QuantModel`] (derived integer constants of docs/quant-graph.md).
//! - [`mod@format`]: the `quant.safetensors` + `quant.json` parameter directory.
//! - [`nonlin`]: integer softmax / LayerNorm / GELU thresholds.
//! - [`deploy`]: the deploy-mode fake-quant executor (straightforward, exact): the reference
//!   the integer executor must equal bit for bit.
//! - [`paper`]: paper-mode fake-quant executor (plain f32, as PyTorch would run it).
//! - [`integer`]: the optimized integer executor on osq-kernels.
//! - [`rows`]: its per-row steps on `osq_kernels::rowops`, the definitions as fallback.
//! - [`trace`]: per-layer per-node codes and their comparison.

pub mod format;
pub mod graph;
pub mod head;
pub mod integer;
pub mod minmax;
/// The integer nonlinearities' definitions (in osq-kernels, beside their fast forms).
pub use osq_kernels::rowops::definitions as nonlin;
pub mod deploy;
pub mod paper;
pub mod qparams;
pub mod rows;
#[cfg(test)]
mod rows_tests;
pub mod trace;

use serde::{Deserialize, Serialize};

pub use graph::{QuantModel, QuantParams};
pub use qparams::{BitsConfig, QParams};
pub use trace::{Trace, TraceStats};

/// Fractional bits of the fixed-point residual sums and GELU inputs: `s = absmax / 2^22`.
pub const FIXED_FRAC_BITS: u32 = 24;

/// The nine quantization nodes of a layer (OS appendix B.1). `Emb` exists in layer 0 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    Emb,
    Query,
    Key,
    Value,
    Probs,
    Context,
    MhaLn,
    Gelu,
    FfnLn,
}

impl Node {
    pub const ALL: [Node; 9] = [
        Node::Emb,
        Node::Query,
        Node::Key,
        Node::Value,
        Node::Probs,
        Node::Context,
        Node::MhaLn,
        Node::Gelu,
        Node::FfnLn,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Node::Emb => "emb",
            Node::Query => "query",
            Node::Key => "key",
            Node::Value => "value",
            Node::Probs => "probs",
            Node::Context => "context",
            Node::MhaLn => "mha_ln",
            Node::Gelu => "gelu",
            Node::FfnLn => "ffn_ln",
        }
    }
    pub fn parse(s: &str) -> Option<Node> {
        Self::ALL.into_iter().find(|n| n.name() == s)
    }
    pub fn index(self) -> usize {
        self as usize
    }
    /// Whether layer `layer` has this node.
    pub fn in_layer(self, layer: usize) -> bool {
        self != Node::Emb || layer == 0
    }
}

/// Observed `[min, max]` of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinMax {
    pub min: f32,
    pub max: f32,
}

impl MinMax {
    pub const EMPTY: MinMax = MinMax {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
    };
    pub fn update(&mut self, x: f32) {
        if x < self.min {
            self.min = x;
        }
        if x > self.max {
            self.max = x;
        }
    }
    pub fn merge(&mut self, o: &MinMax) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
    pub fn is_empty(&self) -> bool {
        self.min > self.max
    }
    pub fn absmax(&self) -> f32 {
        if self.is_empty() {
            0.0
        } else {
            self.min.abs().max(self.max.abs())
        }
    }
}

/// Calibration result for one layer: node ranges plus the absmax of the fixed-point
/// intermediates (residual sums, FFN1 output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRanges {
    /// Indexed by [`Node::index`]; `Emb` is `None` except in layer 0.
    pub nodes: [Option<MinMax>; 9],
    /// |embedding sum| (layer 0 only).
    pub emb_sum_absmax: Option<f32>,
    /// |attention output + shortcut| (MHA-LN input).
    pub attn_residual_absmax: f32,
    /// |FFN2 output + shortcut| (FFN-LN input).
    pub ffn_residual_absmax: f32,
    /// |FFN1 output| (GELU input).
    pub ffn1_absmax: f32,
}

impl LayerRanges {
    pub fn empty(layer: usize) -> Self {
        let mut nodes = [Some(MinMax::EMPTY); 9];
        if layer != 0 {
            nodes[0] = None;
        }
        LayerRanges {
            nodes,
            emb_sum_absmax: if layer == 0 { Some(0.0) } else { None },
            attn_residual_absmax: 0.0,
            ffn_residual_absmax: 0.0,
            ffn1_absmax: 0.0,
        }
    }
    pub fn node(&self, n: Node) -> Option<&MinMax> {
        self.nodes[n.index()].as_ref()
    }
}

/// Ranges of every node of every layer, in the migrated graph (LN nodes observe `LNns` when
/// γ migration is on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRanges {
    pub layers: Vec<LayerRanges>,
    /// The sequence head's ranges (models with a `*ForSequenceClassification` head).
    #[serde(default)]
    pub head: Option<head::HeadRanges>,
}

impl NodeRanges {
    pub fn empty(num_layers: usize) -> Self {
        NodeRanges {
            layers: (0..num_layers).map(LayerRanges::empty).collect(),
            head: None,
        }
    }
}
