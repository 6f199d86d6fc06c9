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

/// Codes of every node of every layer for one sequence, and its task head's output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub layers: Vec<LayerTrace>,
    /// Sequence heads: the classifier-input codes `[hidden]`.
    pub head: Vec<u8>,
    /// The head's logits as f32 bit patterns (`[labels]`, token heads `[L, labels]`).
    pub logit_bits: Vec<u32>,
}

impl Trace {
    pub fn new(num_layers: usize) -> Self {
        Trace {
            layers: vec![LayerTrace::default(); num_layers],
            head: vec![],
            logit_bits: vec![],
        }
    }
    /// Records the head's output.
    pub fn set_head(&mut self, codes: Vec<u8>, logits: &[f32]) {
        self.head = codes;
        self.logit_bits = logits.iter().map(|v| v.to_bits()).collect();
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
    /// Adds the comparison of codes `x` against `y` of a node quantized by `q`.
    pub fn add(&mut self, x: &[u8], y: &[u8], q: &super::QParams) {
        if x.len() != y.len() {
            self.shape_mismatch += 1;
        }
        for (&u, &v) in x.iter().zip(y) {
            self.total += 1;
            let d = (u as i32 - v as i32).unsigned_abs();
            if d == 0 {
                self.equal += 1;
            } else if d > 1 {
                self.beyond_one += 1;
            }
            self.max_abs_diff = self.max_abs_diff.max(d);
            let fu = q.dequantize(u as i32) as f64;
            let fv = q.dequantize(v as i32) as f64;
            self.dot += fu * fv;
            self.na += fu * fu;
            self.nb += fv * fv;
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
    /// The sequence head's classifier-input node.
    pub head: NodeStats,
    pub logits: LogitStats,
}

impl TraceStats {
    pub fn new(num_layers: usize) -> Self {
        TraceStats {
            layers: vec![[NodeStats::default(); 9]; num_layers],
            head: NodeStats::default(),
            logits: LogitStats::default(),
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
                st[n.index()].add(a.get(l, n), b.get(l, n), q);
            }
        }
        if let Some(d) = p.head.as_ref().and_then(|h| h.dense.as_ref()) {
            self.head.add(&a.head, &b.head, &d.node);
        }
        self.logits.add(&a.logit_bits, &b.logit_bits);
    }

    pub fn merge(&mut self, o: &TraceStats) {
        for (a, b) in self.layers.iter_mut().zip(&o.layers) {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge(y);
            }
        }
        self.head.merge(&o.head);
        self.logits.merge(&o.logits);
    }

    /// Totals over all layers and nodes (the head's node included).
    pub fn total(&self) -> NodeStats {
        let mut t = NodeStats::default();
        self.layers.iter().flatten().for_each(|s| t.merge(s));
        t.merge(&self.head);
        t
    }

    /// Totals of one node over all layers.
    pub fn node_total(&self, n: Node) -> NodeStats {
        let mut t = NodeStats::default();
        self.layers.iter().for_each(|s| t.merge(&s[n.index()]));
        t
    }

    /// Every code and every logit equal.
    pub fn exact(&self) -> bool {
        self.layers.iter().flatten().all(|s| s.exact())
            && self.head.exact()
            && self.logits.equal == self.logits.total
            && self.logits.shape_mismatch == 0
    }
}

/// Agreement of two executors' logits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LogitStats {
    pub total: u64,
    /// Bit-identical logits.
    pub equal: u64,
    pub max_abs_diff: f64,
    pub shape_mismatch: u64,
}

impl LogitStats {
    fn add(&mut self, a: &[u32], b: &[u32]) {
        if a.len() != b.len() {
            self.shape_mismatch += 1;
        }
        for (&x, &y) in a.iter().zip(b) {
            self.total += 1;
            if x == y {
                self.equal += 1;
            }
            let d = (f32::from_bits(x) as f64 - f32::from_bits(y) as f64).abs();
            if d.is_nan() || d > self.max_abs_diff {
                self.max_abs_diff = if d.is_nan() { f64::INFINITY } else { d };
            }
        }
    }
    fn merge(&mut self, o: &LogitStats) {
        self.total += o.total;
        self.equal += o.equal;
        self.max_abs_diff = self.max_abs_diff.max(o.max_abs_diff);
        self.shape_mismatch += o.shape_mismatch;
    }
}
