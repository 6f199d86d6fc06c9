//! Tokenization into padded batches.
//!
//! Wraps a Hugging Face `tokenizer.json` (WordPiece for BERT) and turns texts into a
//! right-padded [`Batch`]. The padding/truncation settings stored in `tokenizer.json` are
//! ignored: the caller's `max_len` decides. Overlong inputs are truncated (the *end* of the
//! text is dropped, `[CLS]`/`[SEP]` are always kept; for pairs the longest sequence is cut
//! first), so encoding never fails on long text and an empty text yields `[CLS] [SEP]`.
//! `max_len` is additionally capped at `max_position_embeddings`.

use std::path::{Path, PathBuf};

use tokenizers::tokenizer::PostProcessor;
use tokenizers::utils::truncation::{
    truncate_encodings, TruncationDirection, TruncationParams, TruncationStrategy,
};
use tokenizers::Encoding;

use crate::error::{ModelError, Result};
use crate::text::{truncate_chars, MAX_LINE_CHARS};

/// A right-padded batch of token sequences, all `[batch, seq_len]` row-major.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u8>,
    pub batch: usize,
    /// Padded length: the longest sequence of the batch (≤ the `max_len` used).
    pub seq_len: usize,
    /// Number of real tokens of each sequence (`mask` row sums).
    pub lengths: Vec<usize>,
}

impl Batch {
    /// Build a batch from explicit token id sequences (type ids 0), padding with `pad_id`.
    pub fn from_ids(seqs: &[Vec<u32>], pad_id: u32) -> Batch {
        let typed: Vec<(Vec<u32>, Vec<u32>)> =
            seqs.iter().map(|s| (s.clone(), vec![0; s.len()])).collect();
        Self::from_typed_ids(&typed, pad_id)
    }

    /// Build a batch from `(ids, type_ids)` sequences, padding with `pad_id` / type 0.
    /// Each pair must have equal lengths; shorter `type_ids` are padded with 0.
    pub fn from_typed_ids(seqs: &[(Vec<u32>, Vec<u32>)], pad_id: u32) -> Batch {
        let batch = seqs.len();
        let seq_len = seqs.iter().map(|s| s.0.len()).max().unwrap_or(0);
        let mut b = Batch {
            ids: vec![pad_id; batch * seq_len],
            type_ids: vec![0; batch * seq_len],
            mask: vec![0; batch * seq_len],
            batch,
            seq_len,
            lengths: Vec::with_capacity(batch),
        };
        for (i, (ids, types)) in seqs.iter().enumerate() {
            let row = i * seq_len;
            b.ids[row..row + ids.len()].copy_from_slice(ids);
            for (j, t) in types.iter().take(ids.len()).enumerate() {
                b.type_ids[row + j] = *t;
            }
            b.mask[row..row + ids.len()].fill(1);
            b.lengths.push(ids.len());
        }
        b
    }

    /// Total number of token rows including padding (`batch · seq_len`).
    pub fn rows(&self) -> usize {
        self.batch * self.seq_len
    }

    /// Sequence `i` without its padding.
    pub fn sequence(&self, i: usize) -> &[u32] {
        let row = i * self.seq_len;
        &self.ids[row..row + self.lengths[i]]
    }

    /// Check internal consistency (lengths, mask = prefix of ones).
    pub fn validate(&self) -> Result<()> {
        let n = self.rows();
        if self.ids.len() != n || self.type_ids.len() != n || self.mask.len() != n {
            return Err(ModelError::Input(format!(
                "batch {}×{}: ids/type_ids/mask lengths {}/{}/{} do not match",
                self.batch,
                self.seq_len,
                self.ids.len(),
                self.type_ids.len(),
                self.mask.len()
            )));
        }
        if self.lengths.len() != self.batch {
            return Err(ModelError::Input(format!(
                "batch has {} rows but {} lengths",
                self.batch,
                self.lengths.len()
            )));
        }
        for (i, &len) in self.lengths.iter().enumerate() {
            let m = &self.mask[i * self.seq_len..(i + 1) * self.seq_len];
            let ok = len <= self.seq_len
                && m[..len].iter().all(|&x| x == 1)
                && m[len..].iter().all(|&x| x == 0);
            if !ok {
                return Err(ModelError::Input(format!(
                    "sequence {i}: mask is not {len} ones followed by zeros"
                )));
            }
        }
        Ok(())
    }
}

/// Runs the `tokenizers` parser: some malformed files make it panic instead of returning an
/// error, which must not reach a caller of osq as a crash.
fn parse_guarded(
    path: &Path,
    parse: impl FnOnce() -> tokenizers::Result<tokenizers::Tokenizer>,
) -> Result<tokenizers::Tokenizer> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(ModelError::Tokenizer {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }),
        Err(_) => Err(ModelError::Tokenizer {
            path: path.to_path_buf(),
            msg: "the tokenizer parser failed on this file (malformed or unsupported)".into(),
        }),
    }
}

/// A BERT tokenizer loaded from `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    max_positions: usize,
    pad_id: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("max_positions", &self.max_positions)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl Tokenizer {
    /// Load `tokenizer.json`; `max_positions` is the model's `max_position_embeddings`.
    pub fn from_file(path: &Path, max_positions: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
            ));
        }
        let inner = parse_guarded(path, || tokenizers::Tokenizer::from_file(path))?;
        Self::wrap(inner, path, max_positions)
    }

    fn wrap(mut inner: tokenizers::Tokenizer, path: &Path, max_positions: usize) -> Result<Self> {
        // We truncate and pad ourselves.
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        inner.with_padding(None);
        let pad_id = ["[PAD]", "<pad>"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .unwrap_or(0);
        Ok(Tokenizer {
            inner,
            path: path.to_path_buf(),
            max_positions,
            pad_id,
        })
    }

    /// Refuses a tokenizer that does not fit a model with `vocab_size` embedding rows (an id
    /// past the table would read another model's rows) or that adds no special tokens.
    pub fn check_against(&self, vocab_size: usize) -> Result<()> {
        let n = self.inner.get_vocab_size(true);
        if n > vocab_size {
            return Err(ModelError::Corrupt {
                path: self.path.clone(),
                msg: format!(
                    "{n} tokens but the model has {vocab_size} embedding rows: the tokenizer is from another model"
                ),
            });
        }
        if self.added(false) == 0 {
            return Err(ModelError::Corrupt {
                path: self.path.clone(),
                msg:
                    "no post-processor adding [CLS]/[SEP]: texts would encode without the special \
                      tokens the model was trained with"
                        .into(),
            });
        }
        Ok(())
    }

    /// A tokenizer from the bytes of a `tokenizer.json` (`path` names it in messages).
    pub fn from_bytes(bytes: &[u8], path: &Path, max_positions: usize) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| ModelError::Tokenizer {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        Self::wrap(inner, path, max_positions)
    }

    /// Id used for padding (`[PAD]`, else 0).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of a token string, if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The wrapped `tokenizers` tokenizer (padding and truncation disabled).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn added(&self, pair: bool) -> usize {
        self.inner
            .get_post_processor()
            .map(|p| p.added_tokens(pair))
            .unwrap_or(0)
    }

    fn tok_err(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        }
    }

    fn budget(&self, max_len: usize, pair: bool) -> Result<(usize, usize)> {
        let cap = max_len.min(self.max_positions);
        let added = self.added(pair);
        if cap <= added {
            return Err(ModelError::Input(format!(
                "max_len {max_len} (capped to {cap}) leaves no room for text next to the {added} special tokens"
            )));
        }
        Ok((cap, cap - added))
    }

    fn encode_one(&self, a: &str, b: Option<&str>, budget: usize) -> Result<Encoding> {
        Ok(self.encode_counted(a, b, budget)?.0)
    }

    /// Encodes, truncates to `budget` text tokens and post-processes; also returns the text
    /// token count before truncation. Text beyond [`MAX_LINE_CHARS`] characters is never
    /// tokenized.
    fn encode_counted(&self, a: &str, b: Option<&str>, budget: usize) -> Result<(Encoding, usize)> {
        let ea = self
            .inner
            .encode(truncate_chars(a, MAX_LINE_CHARS), false)
            .map_err(|e| self.tok_err(e))?;
        let eb = match b {
            Some(b) => Some(
                self.inner
                    .encode(truncate_chars(b, MAX_LINE_CHARS), false)
                    .map_err(|e| self.tok_err(e))?,
            ),
            None => None,
        };
        let full = ea.len() + eb.as_ref().map_or(0, |e| e.len());
        let params = TruncationParams {
            direction: TruncationDirection::Right,
            max_length: budget,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        let (ea, eb) = truncate_encodings(ea, eb, &params).map_err(|e| self.tok_err(e))?;
        let enc = self
            .inner
            .post_process(ea, eb, true)
            .map_err(|e| self.tok_err(e))?;
        if enc.is_empty() {
            return Err(ModelError::Input(format!(
                "{}: the text encodes to 0 tokens (the tokenizer adds no special tokens: is its \
                 post-processor missing?)",
                self.path.display()
            )));
        }
        Ok((enc, full))
    }

    /// Encodes single texts like [`Tokenizer::encode_batch`], but a text with more than
    /// `min(max_len, max_position_embeddings)` tokens (special tokens included) is an error
    /// naming its index unless `truncate`. Also returns each text's token count before any
    /// truncation (special tokens included).
    pub fn encode_batch_checked(
        &self,
        texts: &[&str],
        max_len: usize,
        truncate: bool,
    ) -> Result<(Batch, Vec<usize>)> {
        let (cap, budget) = self.budget(max_len, false)?;
        let added = self.added(false);
        let mut encs = Vec::with_capacity(texts.len());
        let mut full = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let (e, n) = self.encode_counted(t, None, budget)?;
            if !truncate && n + added > cap {
                return Err(ModelError::TooLong {
                    index: i,
                    tokens: n + added,
                    max: cap,
                });
            }
            encs.push(e);
            full.push(n + added);
        }
        Ok((self.collect(encs), full))
    }

    fn collect(&self, encs: Vec<Encoding>) -> Batch {
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = encs
            .into_iter()
            .map(|e| (e.get_ids().to_vec(), e.get_type_ids().to_vec()))
            .collect();
        Batch::from_typed_ids(&seqs, self.pad_id)
    }

    /// Encode single texts: `[CLS] text [SEP]`, truncated to `min(max_len,
    /// max_position_embeddings)` tokens, padded to the longest sequence of the batch.
    pub fn encode_batch(&self, texts: &[&str], max_len: usize) -> Result<Batch> {
        Ok(self.encode_batch_checked(texts, max_len, true)?.0)
    }

    /// Encode text pairs: `[CLS] a [SEP] b [SEP]` (type ids 0 then 1), longest-first truncation.
    pub fn encode_pair_batch(&self, pairs: &[(&str, &str)], max_len: usize) -> Result<Batch> {
        let (_, budget) = self.budget(max_len, true)?;
        let encs = pairs
            .iter()
            .map(|(a, b)| self.encode_one(a, Some(b), budget))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.collect(encs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{temp_dir, write_tiny_bert};

    fn tok() -> (Tokenizer, crate::testing::TestDir) {
        let d = temp_dir("tok").unwrap();
        write_tiny_bert(&d, 1).unwrap();
        (
            Tokenizer::from_file(&d.join("tokenizer.json"), 64).unwrap(),
            d,
        )
    }

    #[test]
    fn encodes_pads_and_truncates() {
        let (t, d) = tok();
        let cls = t.token_to_id("[CLS]").unwrap();
        let sep = t.token_to_id("[SEP]").unwrap();
        let long = "the cat sat on the mat ".repeat(50);
        let b = t
            .encode_batch(&["The cat sat.", "", &long, "dogs running"], 16)
            .unwrap();
        assert_eq!(b.batch, 4);
        assert_eq!(b.seq_len, 16);
        b.validate().unwrap();
        assert_eq!(b.lengths[0], 6); // [CLS] the cat sat . [SEP]
        assert_eq!(b.sequence(1), &[cls, sep]);
        assert_eq!(b.lengths[2], 16);
        let s2 = b.sequence(2);
        assert_eq!((s2[0], s2[15]), (cls, sep));
        // "dogs" → dog ##s, "running" → run ##n ##ing
        assert_eq!(b.lengths[3], 7);
        assert_eq!(&b.mask[16..18], &[1, 1]);
        assert!(b.mask[18..32].iter().all(|&m| m == 0));
        assert!(b.ids[18..32].iter().all(|&i| i == t.pad_id()));
        // padded only to the longest in the batch
        let b = t.encode_batch(&["a", "the cat"], 128).unwrap();
        assert_eq!(b.seq_len, 4);
        // capped at max_position_embeddings (64)
        let b = t.encode_batch(&[&long], 1000).unwrap();
        assert_eq!(b.seq_len, 64);
        // unknown characters do not fail
        let b = t.encode_batch(&["日本 ü ☃ zzz"], 32).unwrap();
        assert!(b.lengths[0] >= 3);
        // empty batch
        let b = t.encode_batch(&[], 32).unwrap();
        assert_eq!((b.batch, b.seq_len), (0, 0));
        // max_len too small for the special tokens is an error, not a panic
        assert!(t.encode_batch(&["a"], 2).is_err());
        assert!(t.encode_batch(&["a"], 0).is_err());
        assert_eq!(t.encode_batch(&["a b c"], 3).unwrap().lengths[0], 3);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn pairs_get_type_ids() {
        let (t, d) = tok();
        let b = t
            .encode_pair_batch(
                &[("the cat", "a dog"), ("good movie", &"very ".repeat(40))],
                12,
            )
            .unwrap();
        assert_eq!(b.seq_len, 12);
        // [CLS] the cat [SEP] a dog [SEP]
        assert_eq!(b.lengths[0], 7);
        assert_eq!(&b.type_ids[..7], &[0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(b.lengths[1], 12);
        assert!(t.encode_pair_batch(&[("a", "b")], 3).is_err());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn missing_or_bad_tokenizer_file() {
        let e = Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json"), 8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/tokenizer.json"), "{e}");
        let d = temp_dir("badtok").unwrap();
        let p = d.join("tokenizer.json");
        std::fs::write(&p, "{}").unwrap();
        let e = Tokenizer::from_file(&p, 8).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn batch_from_ids_and_validate() {
        let b = Batch::from_ids(&[vec![2, 7, 3], vec![2, 3]], 0);
        assert_eq!(b.seq_len, 3);
        assert_eq!(b.mask, vec![1, 1, 1, 1, 1, 0]);
        b.validate().unwrap();
        let mut bad = b.clone();
        bad.mask[5] = 1;
        assert!(bad.validate().is_err());
        let mut bad = b;
        bad.ids.pop();
        assert!(bad.validate().is_err());
    }
}
