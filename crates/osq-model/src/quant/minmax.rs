//! MinMax calibration through the FP32 observer hook: the range of every node over the valid
//! (non-padding) tokens, plus the absmax of the fixed-point intermediates. Ranges are those of the
//! migrated graph: with γ migration an LN node observes `LNns = LN(x)/γ`.
//! The dependency-free MinMax used by this crate's tests and fixtures; `osq calibrate` runs
//! osq-calib's observers (MinMax among them).

use crate::error::Result;
use crate::fp32::{forward_observed, Site, ThreadPool};
use crate::tokenize::Batch;
use crate::weights::BertWeights;

use super::{MinMax, Node, NodeRanges};

/// Which LayerNorms are γ-migrated: every one except the last FFN-LN (nothing follows it).
pub fn ln_migrated(
    site_layer: Option<usize>,
    is_ffn_ln: bool,
    num_layers: usize,
    migrate: bool,
) -> bool {
    migrate && !(is_ffn_ln && site_layer == Some(num_layers - 1))
}

/// Accumulates node ranges over batches.
#[derive(Clone, Debug)]
pub struct MinMaxObserver {
    pub ranges: NodeRanges,
    migrate: bool,
    /// First-token rows of the final hidden states (the sequence head's input).
    pub cls: Vec<f32>,
}

impl MinMaxObserver {
    pub fn new(num_layers: usize, migrate: bool) -> Self {
        MinMaxObserver {
            ranges: NodeRanges::empty(num_layers),
            migrate,
            cls: Vec::new(),
        }
    }

    /// Observe one site's tensor of `batch` (as passed by the FP32 hook).
    pub fn observe(&mut self, w: &BertWeights, batch: &Batch, site: Site, x: &[f32]) {
        let c = &w.config;
        let nl = c.num_hidden_layers;
        let seq = batch.seq_len;
        let valid = |row: usize| batch.mask[row] != 0;
        let gamma_of = |site: Site| -> Option<&[f32]> {
            match site {
                Site::EmbeddingLn if self.migrate => Some(&w.embeddings.ln.gamma),
                Site::AttnLn(l) if self.migrate => Some(&w.layers[l].attn_ln.gamma),
                Site::FfnLn(l) if ln_migrated(Some(l), true, nl, self.migrate) => {
                    Some(&w.layers[l].ffn_ln.gamma)
                }
                _ => None,
            }
        };
        let range_of = |cols: usize, div: Option<&[f32]>| -> MinMax {
            let mut mm = MinMax::EMPTY;
            for (r, row) in x.chunks_exact(cols).enumerate() {
                if !valid(r) {
                    continue;
                }
                match div {
                    Some(g) => row.iter().zip(g).for_each(|(&v, &g)| mm.update(v / g)),
                    None => row.iter().for_each(|&v| mm.update(v)),
                }
            }
            mm
        };
        let absmax_of = |cols: usize| -> f32 { range_of(cols, None).absmax() };
        let h = c.hidden_size;
        let g = gamma_of(site);
        let ranges = &mut self.ranges;
        let mut set = |l: usize, n: Node, mm: MinMax| {
            if let Some(r) = ranges.layers[l].nodes[n.index()].as_mut() {
                r.merge(&mm);
            }
        };
        match site {
            Site::EmbeddingSum => {
                let a = absmax_of(h);
                let e = ranges.layers[0].emb_sum_absmax.get_or_insert(0.0);
                *e = e.max(a);
            }
            Site::EmbeddingLn => set(0, Node::Emb, range_of(h, g)),
            Site::Query(l) => set(l, Node::Query, range_of(h, None)),
            Site::Key(l) => set(l, Node::Key, range_of(h, None)),
            Site::Value(l) => set(l, Node::Value, range_of(h, None)),
            Site::Probs(l) => {
                let heads = c.num_attention_heads;
                let mut mm = MinMax::EMPTY;
                for (r, row) in x.chunks_exact(seq.max(1)).enumerate() {
                    let b = r / (heads * seq);
                    let t = r % seq;
                    if batch.mask[b * seq + t] == 0 {
                        continue;
                    }
                    let m = &batch.mask[b * seq..(b + 1) * seq];
                    row.iter()
                        .zip(m)
                        .filter(|(_, &mk)| mk != 0)
                        .for_each(|(&v, _)| mm.update(v));
                }
                set(l, Node::Probs, mm);
            }
            Site::Context(l) => set(l, Node::Context, range_of(h, None)),
            Site::AttnResidual(l) => {
                let a = absmax_of(h);
                let e = &mut ranges.layers[l].attn_residual_absmax;
                *e = e.max(a);
            }
            Site::AttnLn(l) => set(l, Node::MhaLn, range_of(h, g)),
            Site::Ffn1(l) => {
                let a = absmax_of(c.intermediate_size);
                let e = &mut ranges.layers[l].ffn1_absmax;
                *e = e.max(a);
            }
            Site::Gelu(l) => set(l, Node::Gelu, range_of(c.intermediate_size, None)),
            Site::FfnResidual(l) => {
                let a = absmax_of(h);
                let e = &mut ranges.layers[l].ffn_residual_absmax;
                *e = e.max(a);
            }
            Site::FfnLn(l) => {
                set(l, Node::FfnLn, range_of(h, g));
                if l + 1 == nl {
                    for b in 0..batch.batch {
                        let r = b * seq * h;
                        self.cls.extend_from_slice(&x[r..r + h]);
                    }
                }
            }
            _ => {}
        }
    }

    pub fn finish(self) -> NodeRanges {
        self.ranges
    }
}

/// MinMax ranges of `w` over `batches` (γ-migrated graph when `migrate`).
pub fn collect(
    w: &BertWeights,
    batches: &[Batch],
    exec: &ThreadPool,
    migrate: bool,
) -> Result<NodeRanges> {
    let mut obs = MinMaxObserver::new(w.config.num_hidden_layers, migrate);
    for b in batches {
        forward_observed(w, b, exec, &mut |site, x| obs.observe(w, b, site, x))?;
    }
    let head = w
        .head
        .as_ref()
        .and_then(|hd| super::head::observe_f32(hd, &obs.cls, exec))
        .map(|(d, a)| super::head::minmax_ranges(&d, &a));
    let mut r = obs.finish();
    r.head = head;
    Ok(r)
}
