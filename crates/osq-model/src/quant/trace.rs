//! Per-layer per-node codes of one sequence (valid tokens only) and their comparison: the
//! evidence for "bit-exact" (integer vs deploy reference) and for the paper-mode agreement.
//!
//! Layouts: `emb`, `query`, `key`, `value`, `context`, `mha_ln`, `ffn_ln`: `[L, hidden]`;
//! `probs`: `[heads, L, L]`; `gelu`: `[L, intermediate]`. `emb` is empty outside layer 0.

use serde::Serialize;

use super::graph::QuantParams;
use super::Node;

/// Codes of the nine nodes of one layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerTrace {
    pub nodes: [Vec<u8>; 9],
}

/// Codes of every node of every layer for one sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub layers: Vec<LayerTrace>,
}

impl Trace {
    pub fn new(num_layers: usize) -> Self {
        Trace {
            layers: vec![LayerTrace::default(); num_layers],
        }
    }
    pub fn get(&self, layer: usize, node: Node) -> &[u8] {
        &self.layers[layer].nodes[node.index()]
    }
    pub fn set(&mut self, layer: usize, node: Node, codes: Vec<u8>) {
        self.layers[layer].nodes[node.index()] = codes;
    }
}

/// Agreement of two executors at one node (summed over sequences).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct NodeStats {
    pub total: u64,
    pub equal: u64,
    /// Codes that differ by more than 1.
    pub beyond_one: u64,
    pub max_abs_diff: u32,
    /// Σ a·b, Σ a², Σ b² of the dequantized values (for the cosine).
    #[serde(skip)]
    pub dot: f64,
    #[serde(skip)]
    pub na: f64,
    #[serde(skip)]
    pub nb: f64,
    /// Length mismatches (should be 0).
    pub shape_mismatch: u64,
}

impl NodeStats {
    pub fn percent_equal(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            100.0 * self.equal as f64 / self.total as f64
        }
    }
    pub fn cosine(&self) -> f64 {
        if self.na == 0.0 && self.nb == 0.0 {
            1.0
        } else {
            self.dot / (self.na.sqrt() * self.nb.sqrt()).max(f64::MIN_POSITIVE)
        }
    }
    pub fn merge(&mut self, o: &NodeStats) {
        self.total += o.total;
        self.equal += o.equal;
        self.beyond_one += o.beyond_one;
        self.max_abs_diff = self.max_abs_diff.max(o.max_abs_diff);
        self.dot += o.dot;
        self.na += o.na;
        self.nb += o.nb;
        self.shape_mismatch += o.shape_mismatch;
    }
    pub fn exact(&self) -> bool {
        self.equal == self.total && self.shape_mismatch == 0
    }
}

/// Per layer × node agreement.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceStats {
    pub layers: Vec<[NodeStats; 9]>,
}

impl TraceStats {
    pub fn new(num_layers: usize) -> Self {
        TraceStats {
            layers: vec![[NodeStats::default(); 9]; num_layers],
        }
    }

    /// Adds the comparison of `a` against `b` (same sequence).
    pub fn add(&mut self, a: &Trace, b: &Trace, p: &QuantParams) {
        for (l, st) in self.layers.iter_mut().enumerate() {
            for n in Node::ALL {
                if !n.in_layer(l) {
                    continue;
                }
                let q = p.layers[l].node(n);
                let (x, y) = (a.get(l, n), b.get(l, n));
                let s = &mut st[n.index()];
                if x.len() != y.len() {
                    s.shape_mismatch += 1;
                }
                for (&u, &v) in x.iter().zip(y) {
                    s.total += 1;
                    let d = (u as i32 - v as i32).unsigned_abs();
                    if d == 0 {
                        s.equal += 1;
                    } else if d > 1 {
                        s.beyond_one += 1;
                    }
                    s.max_abs_diff = s.max_abs_diff.max(d);
                    let fu = q.dequantize(u as i32) as f64;
                    let fv = q.dequantize(v as i32) as f64;
                    s.dot += fu * fv;
                    s.na += fu * fu;
                    s.nb += fv * fv;
                }
            }
        }
    }

    pub fn merge(&mut self, o: &TraceStats) {
        for (a, b) in self.layers.iter_mut().zip(&o.layers) {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge(y);
            }
        }
    }

    /// Totals over all layers and nodes.
    pub fn total(&self) -> NodeStats {
        let mut t = NodeStats::default();
        self.layers.iter().flatten().for_each(|s| t.merge(s));
        t
    }

    /// Totals of one node over all layers.
    pub fn node_total(&self, n: Node) -> NodeStats {
        let mut t = NodeStats::default();
        self.layers.iter().for_each(|s| t.merge(&s[n.index()]));
        t
    }

    pub fn exact(&self) -> bool {
        self.layers.iter().flatten().all(|s| s.exact())
    }
}
