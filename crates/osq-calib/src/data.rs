//! Calibration data: one sentence per line of a UTF-8 text file, sampled deterministically,
//! sorted by token count (batches then carry little padding: padding is computed by the FP32
//! graph and wasted) and tokenized into right-padded batches of 32 (the OS reference batch size).

use std::path::Path;

use osq_model::rng::SplitMix64;
use osq_model::{Batch, Tokenizer};

use crate::error::{CalibError, Result};

/// Batch size of calibration (OS appendix F: 256 samples, batch 32).
pub const CALIB_BATCH: usize = 32;
/// Maximum sequence length of calibration batches (the OS reference uses 128).
pub const CALIB_MAX_LEN: usize = 128;

/// The non-blank lines of a UTF-8 text file (see [`osq_model::text`]: LF, CRLF and CR end
/// lines, long lines are cut). Errors name the file and, for invalid UTF-8, the line.
pub fn read_sentences(path: &Path) -> Result<Vec<String>> {
    Ok(osq_model::text::read_lines(path)?.0)
}

/// Deterministic sample of `n` sentences: a Fisher–Yates shuffle driven by SplitMix64(`seed`),
/// then the first `n` (all of them, shuffled, when there are fewer).
pub fn sample(mut sentences: Vec<String>, n: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    for i in (1..sentences.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        sentences.swap(i, j);
    }
    sentences.truncate(n);
    sentences
}

/// Tokenize into batches of [`CALIB_BATCH`] sentences (the last one may be smaller).
pub fn batches(tok: &Tokenizer, sentences: &[String], max_len: usize) -> Result<Vec<Batch>> {
    sentences
        .chunks(CALIB_BATCH)
        .map(|c| {
            let refs: Vec<&str> = c.iter().map(String::as_str).collect();
            Ok(tok.encode_batch(&refs, max_len)?)
        })
        .collect()
}

/// Stable sort of sentences by token count (short first), so that batches carry little padding.
pub fn sort_by_length(
    tok: &Tokenizer,
    sentences: Vec<String>,
    max_len: usize,
) -> Result<Vec<String>> {
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let all = tok.encode_batch(&refs, max_len)?;
    let mut idx: Vec<usize> = (0..sentences.len()).collect();
    idx.sort_by_key(|&i| all.lengths[i]);
    let mut slots: Vec<Option<String>> = sentences.into_iter().map(Some).collect();
    Ok(idx.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// Read, sample, sort by length and tokenize a calibration file; each text is truncated to
/// `max_len` tokens ([`CALIB_MAX_LEN`] for sentences; a long-document task calibrates at its
/// own length, up to the model's `max_position_embeddings`, where the tokenizer caps it).
pub fn load(
    path: &Path,
    tok: &Tokenizer,
    samples: usize,
    seed: u64,
    max_len: usize,
) -> Result<Vec<Batch>> {
    if samples == 0 {
        return Err(CalibError::Option {
            option: "--samples".into(),
            msg: "must be at least 1".into(),
        });
    }
    if max_len < 3 {
        return Err(CalibError::Option {
            option: "--max-len".into(),
            msg: format!("{max_len}: must be at least 3 ([CLS], one token, [SEP])"),
        });
    }
    let s = sample(read_sentences(path)?, samples, seed);
    let s = sort_by_length(tok, s, max_len)?;
    batches(tok, &s, max_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_and_a_subset() {
        let s: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        let a = sample(s.clone(), 10, 7);
        let b = sample(s.clone(), 10, 7);
        let c = sample(s.clone(), 10, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|x| s.contains(x)));
        assert_eq!(sample(s.clone(), 1000, 1).len(), 100);
    }
}
