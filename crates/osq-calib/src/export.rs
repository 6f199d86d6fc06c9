//! From a calibrated [`QGraph`] to [`QuantParams`].
//!
//! - plain / γ-migrated graphs: the FP32 weights are unchanged, `QuantParams::build` performs the
//!   migration itself (weights `W[:, j]·γ_j` before quantization, non-scaling LNs, γ shortcut);
//! - OS+-folded graphs: the LayerNorms get the folded `γ/s`, `(β − z)/s`, the consumer Linear
//!   weight columns are multiplied by `s` (before quantization), the biases carry the folded shift
//!   (already in the graph), and every folded LN's shortcut multiplier is `s`.

use osq_model::quant::{BitsConfig, NodeRanges, QuantParams};
use osq_model::BertWeights;

use crate::engine::{LnId, QGraph};
use crate::error::{CalibError, Result};
use crate::osplus::{edges, Consumer};

/// FP32 weights with the OS+ folds applied (what a deploy graph without migration quantizes).
pub fn folded_weights(g: &QGraph) -> BertWeights {
    let mut w = g.w.clone();
    for e in edges(g.num_layers()) {
        let spec = g.ln(e.ln).clone();
        let ln = match e.ln {
            LnId::Emb => &mut w.embeddings.ln,
            LnId::Attn(l) => &mut w.layers[l].attn_ln,
            LnId::Ffn(l) => &mut w.layers[l].ffn_ln,
        };
        ln.gamma = spec.a.clone();
        ln.beta = spec.c.clone();
        let Some(m) = &spec.m else { continue };
        let scale_cols = |lin: &mut osq_model::Linear| {
            let k = lin.in_features;
            for row in lin.weight.chunks_exact_mut(k) {
                row.iter_mut().zip(m).for_each(|(v, s)| *v *= s);
            }
        };
        match e.consumer {
            Consumer::Qkv(l) => {
                let lw = &mut w.layers[l];
                scale_cols(&mut lw.query);
                scale_cols(&mut lw.key);
                scale_cols(&mut lw.value);
            }
            Consumer::Fc1(l) => scale_cols(&mut w.layers[l].ffn1),
        }
    }
    w
}

/// The quantized parameters of a calibrated graph.
pub fn to_params(
    g: &QGraph,
    ranges: &NodeRanges,
    bits: BitsConfig,
    label: &str,
) -> Result<QuantParams> {
    if !g.osplus {
        return Ok(QuantParams::build(&g.w, ranges, bits, label, g.migrate)?);
    }
    let w = folded_weights(g);
    let p = QuantParams::build(&w, ranges, bits, label, false)?;
    set_osplus_shortcuts(g, p)
}

/// Every folded LN carries its scale `s` on the shortcut ([`osq_model::quant::graph::LnParams::shortcut`]).
fn set_osplus_shortcuts(g: &QGraph, mut p: QuantParams) -> Result<QuantParams> {
    for e in edges(g.num_layers()) {
        let Some(m) = g.ln(e.ln).m.clone() else {
            continue;
        };
        let ln = match e.ln {
            LnId::Emb => &mut p.emb_ln,
            LnId::Attn(l) => &mut p.layers[l].attn_ln,
            LnId::Ffn(l) => &mut p.layers[l].ffn_ln,
        };
        if ln.migrated {
            return Err(CalibError::Failed(format!(
                "{}: OS+ fold on a γ-migrated LayerNorm",
                e.ln.name()
            )));
        }
        ln.shortcut = Some(m);
    }
    Ok(p)
}
