//! Sentence embeddings of many labelled texts: tokenized once, grouped into batches of similar
//! length (little padding), run through any engine, scattered back to input order; and the
//! checks that a parameter set belongs to the FP32 model it is compared with.

use std::path::Path;

use anyhow::{bail, Context, Result};

use osq_calib::Progress;
use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::QuantParams;
use osq_model::{Batch, BertModel, BertWeights};

use crate::probe::{self, Example};

/// Tokenized sentences, grouped into batches of similar length (order restored by `order`).
pub struct Tokenized {
    /// The batches.
    pub batches: Vec<Batch>,
    /// `order[k]` = index of the k-th sentence of the concatenated batches in the input.
    pub order: Vec<usize>,
}

pub fn tokenize(
    model: &BertModel,
    texts: &[&str],
    max_len: usize,
    batch: usize,
) -> Result<Tokenized> {
    let mut seqs: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let b = model
            .tokenizer
            .encode_batch(chunk, max_len)
            .context("tokenizing")?;
        seqs.extend((0..b.batch).map(|i| b.sequence(i).to_vec()));
    }
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| (seqs[i].len(), i));
    let pad = model.tokenizer.pad_id();
    let batches = order
        .chunks(batch.max(1))
        .map(|c| {
            let s: Vec<Vec<u32>> = c.iter().map(|&i| seqs[i].clone()).collect();
            Batch::from_ids(&s, pad)
        })
        .collect();
    Ok(Tokenized { batches, order })
}

/// Runs `f` on every batch and scatters the `[rows, h]` results back to input order.
pub fn embed_all(
    tok: &Tokenized,
    h: usize,
    progress: &Progress,
    what: &str,
    mut f: impl FnMut(&Batch) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    let n = tok.order.len();
    let mut out = vec![0f32; n * h];
    let mut k = 0;
    let bar = progress.bar(n as u64, what);
    for b in &tok.batches {
        let e = f(b)?;
        if e.len() != b.batch * h {
            bail!(
                "internal: {} embedding values for {} sentences of width {h}",
                e.len(),
                b.batch
            );
        }
        for r in e.chunks_exact(h) {
            let i = tok.order[k];
            out[i * h..(i + 1) * h].copy_from_slice(r);
            k += 1;
        }
        bar.set_position(k as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

pub fn fp32_embeddings(
    model: &BertModel,
    tok: &Tokenized,
    exec: &ThreadPool,
    progress: &Progress,
) -> Result<Vec<f32>> {
    let w = &model.weights;
    embed_all(tok, w.config.hidden_size, progress, "fp32", |b| {
        Ok(fp32::sentence_embeddings(w, b, exec)?)
    })
}

pub fn read_examples(path: &Path, limit: Option<usize>) -> Result<Vec<Example>> {
    let mut ex = probe::read_labelled_tsv(path)?;
    if let Some(n) = limit {
        if n == 0 {
            bail!("--limit 0 leaves nothing to evaluate");
        }
        ex.truncate(n);
    }
    Ok(ex)
}

/// Checks that `p` was made from the FP32 model `w`: same architecture, and the stored word
/// and position embedding codes dequantize to the FP32 tables within half a step.
pub fn check_params_match(p: &QuantParams, w: &BertWeights, dir: &Path) -> Result<()> {
    let (a, b) = (&p.config, &w.config);
    let fields = [
        ("vocab_size", a.vocab_size, b.vocab_size),
        ("hidden_size", a.hidden_size, b.hidden_size),
        (
            "num_hidden_layers",
            a.num_hidden_layers,
            b.num_hidden_layers,
        ),
        (
            "num_attention_heads",
            a.num_attention_heads,
            b.num_attention_heads,
        ),
        (
            "intermediate_size",
            a.intermediate_size,
            b.intermediate_size,
        ),
        (
            "max_position_embeddings",
            a.max_position_embeddings,
            b.max_position_embeddings,
        ),
        ("type_vocab_size", a.type_vocab_size, b.type_vocab_size),
    ];
    for (name, x, y) in fields {
        if x != y {
            bail!(
                "{}: the parameters were not made from this model: {name} is {x} in the \
                 parameters but {y} in the model",
                dir.display()
            );
        }
    }
    let h = a.hidden_size;
    let mut checked = 0usize;
    let mut bad = 0usize;
    let mut first_bad: Option<(String, usize)> = None;
    let mut check = |name: &str, t: &osq_model::quant::graph::QTable, fw: &[f32], step: usize| {
        for r in (0..t.rows).step_by(step.max(1)) {
            let s = t.scales[r];
            for (&c, &v) in t.row(r).iter().zip(&fw[r * h..(r + 1) * h]) {
                checked += 1;
                let err = (c as f32 * s - v).abs();
                if err > 0.5 * s * 1.001 + 1e-6 * v.abs() + 1e-12 {
                    bad += 1;
                    first_bad.get_or_insert((name.to_string(), r));
                }
            }
        }
    };
    check("word", &p.word, &w.embeddings.word, a.vocab_size / 512 + 1);
    check("position", &p.position, &w.embeddings.position, 1);
    check("token_type", &p.token_type, &w.embeddings.token_type, 1);
    if bad * 100 > checked {
        let (t, r) = first_bad.unwrap_or_default();
        bail!(
            "{}: the parameters were not made from this model: {bad} of {checked} checked \
             embedding values do not dequantize to the model's (first: {t} embeddings row {r})",
            dir.display()
        );
    }
    Ok(())
}
