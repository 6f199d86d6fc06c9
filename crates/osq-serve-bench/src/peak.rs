//! "% of peak": the useful multiply-accumulates of a forward over the time it took and the
//! machine's measured `vpdpbusd zmm` rate ([`osq_kernels::peak`]), per core used.
//!
//! Useful MACs count only what the model defines on real tokens: per layer and sequence of `s`
//! tokens, `s·(4H² + 2HI)` for the projections and FFN and `2·s²·H` for Q·Kᵀ and P·V. Work an
//! engine adds (padding, zero points, packing) is not counted, so the figure is comparable across
//! engines and never flatters one.

use osq_model::BertConfig;

/// Multiply-accumulates of one encoder forward over sequences of `lengths` tokens.
pub fn forward_macs(cfg: &BertConfig, lengths: &[usize]) -> f64 {
    let h = cfg.hidden_size as f64;
    let i = cfg.intermediate_size as f64;
    let per_layer: f64 = lengths
        .iter()
        .map(|&s| {
            let s = s as f64;
            s * (4.0 * h * h + 2.0 * h * i) + 2.0 * s * s * h
        })
        .sum();
    per_layer * cfg.num_hidden_layers as f64
}

/// Fraction of `peak_per_core · threads` reached by `macs` in `ms` milliseconds.
pub fn fraction_of_peak(macs: f64, ms: f64, peak_per_core: f64, threads: usize) -> f64 {
    macs / (ms / 1e3) / (peak_per_core * threads as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minilm_at_seq_128_is_1_43_gmac() {
        let cfg = BertConfig {
            family: osq_model::Family::Bert,
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            token_types: true,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            pad_token_id: Some(0),
            position_offset: 0,
            relative_attention_num_buckets: None,
        };
        let g = forward_macs(&cfg, &[128]) / 1e9;
        assert!((g - 1.4347).abs() < 1e-3, "{g}");
        assert!((fraction_of_peak(2.3e9, 10.0, 230e9, 1) - 1.0).abs() < 1e-12);
    }
}
