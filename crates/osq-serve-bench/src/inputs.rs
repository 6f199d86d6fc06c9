//! Benchmark inputs from real sentences.
//!
//! Every row of a timed batch has exactly `seq` tokens:
//! - [`Fill::Full`] (default): consecutive sentences of the data file are joined and tokenized as
//!   one text, truncated to `seq` (`[CLS] … [SEP]`), so all `seq` tokens are real text and every
//!   engine computes `seq` tokens per row. This is the fair setting: the integer executor never
//!   computes padding, while ONNX Runtime computes every position whatever the mask says.
//! - [`Fill::Pad`]: one sentence per row, truncated to `seq` and padded with `[PAD]` (mask 0) to
//!   exactly `seq` — the input `tools/onnx_bench.py` times. FP32 and ORT compute the padding, the
//!   integer executor skips it, so `pad` measures that advantage and is not a like-for-like GEMM
//!   comparison.

use std::path::Path;

use anyhow::{bail, Result};
use osq_model::{Batch, Tokenizer};

/// How rows are filled to `seq` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fill {
    /// Rows of exactly `seq` real tokens (sentences joined).
    Full,
    /// One sentence per row, padded.
    Pad,
}

impl Fill {
    pub fn name(self) -> &'static str {
        match self {
            Fill::Full => "full",
            Fill::Pad => "pad",
        }
    }
}

/// The texts of a file, one per line: [`osq_model::text::read_lines`], the reader of every osq
/// command (LF, CRLF and CR end lines; blank lines skipped; long lines cut).
pub fn read_sentences(path: &Path) -> Result<Vec<String>> {
    Ok(osq_model::text::read_lines(path)?.0)
}

/// Builds a `[batch, seq]` batch from `sentences` (see the module docs); row `r` starts at
/// sentence `(offset + r·stride) mod n` so rows differ.
pub fn make_batch(
    tok: &Tokenizer,
    sentences: &[String],
    batch: usize,
    seq: usize,
    fill: Fill,
    offset: usize,
) -> Result<Batch> {
    if sentences.is_empty() {
        bail!("no sentences");
    }
    if seq < 3 {
        bail!("seq {seq} is too short (need [CLS], one token and [SEP])");
    }
    let n = sentences.len();
    let stride = 7usize;
    let mut rows: Vec<Vec<u32>> = Vec::with_capacity(batch);
    for r in 0..batch {
        let start = (offset + r * stride) % n;
        let ids = match fill {
            Fill::Pad => {
                let b = tok.encode_batch(&[sentences[start].as_str()], seq)?;
                b.sequence(0).to_vec()
            }
            Fill::Full => full_row(tok, sentences, start, seq)?,
        };
        rows.push(ids);
    }
    let pad = tok.pad_id();
    let mut b = Batch {
        ids: vec![pad; batch * seq],
        type_ids: vec![0; batch * seq],
        mask: vec![0; batch * seq],
        batch,
        seq_len: seq,
        lengths: Vec::with_capacity(batch),
    };
    for (r, ids) in rows.iter().enumerate() {
        let len = ids.len().min(seq);
        b.ids[r * seq..r * seq + len].copy_from_slice(&ids[..len]);
        b.mask[r * seq..r * seq + len].fill(1);
        b.lengths.push(len);
    }
    b.validate()?;
    Ok(b)
}

/// `[CLS] s_start s_start+1 … [SEP]` truncated to exactly `seq` tokens.
fn full_row(tok: &Tokenizer, sentences: &[String], start: usize, seq: usize) -> Result<Vec<u32>> {
    let n = sentences.len();
    let mut text = String::new();
    let mut used = 0usize;
    let push = |text: &mut String, used: &mut usize| {
        let s = &sentences[(start + *used) % n];
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(s);
        *used += 1;
        s.split_whitespace().count()
    };
    // Wordpiece gives at least one token per whitespace word: `seq` words are nearly always
    // enough; otherwise add one sentence at a time, wrapping around a small data file.
    let limit = n.max(1) * (seq + 1);
    let mut words = 0usize;
    while words < seq && used < limit {
        words += push(&mut text, &mut used);
    }
    loop {
        let b = tok.encode_batch(&[text.as_str()], seq)?;
        let ids = b.sequence(0).to_vec();
        if ids.len() >= seq {
            return Ok(ids);
        }
        if used >= limit {
            bail!(
                "the data file gives too few tokens for {seq} per row ({} tokens from {used} sentences)",
                ids.len()
            );
        }
        push(&mut text, &mut used);
    }
}

/// Token ids of single sentences (truncated to `max_len`), for the concurrent mode.
pub fn encode_each(tok: &Tokenizer, sentences: &[String], max_len: usize) -> Result<Vec<Vec<u32>>> {
    sentences
        .iter()
        .map(|s| {
            Ok(tok
                .encode_batch(&[s.as_str()], max_len)?
                .sequence(0)
                .to_vec())
        })
        .collect()
}
