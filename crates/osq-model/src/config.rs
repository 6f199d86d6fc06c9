//! Hugging Face `config.json` of the BERT family, normalised to one encoder description.
//!
//! BERT, RoBERTa / XLM-RoBERTa, ELECTRA (discriminator), DistilBERT and MPNet compute the same
//! post-LN encoder up to four things: tensor names, the position id of the first token
//! (`padding_idx + 1` for RoBERTa and MPNet), whether token types exist, and MPNet's relative
//! position bias. [`BertConfig`] records those next to the shared sizes, so one forward, one
//! quantized graph and one calibration serve every family. Parsed field by field (not with a
//! derive) so that a missing or invalid field produces an error naming the file and the field;
//! anything that would silently compute a different function (another activation, relative
//! position embeddings in BERT, an ELECTRA embedding projection) is refused by name.
//!
//! `quant.json` stores the normalised form ([`BertConfig::to_json`]): BERT field names plus
//! `family`, `position_offset`, `token_types` and `relative_attention_num_buckets`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{ModelError, Result};

/// An architecture of the BERT family (`model_type` of `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Bert,
    Roberta,
    XlmRoberta,
    Electra,
    DistilBert,
    MPNet,
}

impl Family {
    /// Every supported family, in the order error messages list them.
    pub const ALL: [Family; 6] = [
        Family::Bert,
        Family::Roberta,
        Family::XlmRoberta,
        Family::Electra,
        Family::DistilBert,
        Family::MPNet,
    ];

    /// The `model_type` string of Hugging Face.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::XlmRoberta => "xlm-roberta",
            Family::Electra => "electra",
            Family::DistilBert => "distilbert",
            Family::MPNet => "mpnet",
        }
    }

    /// The family of a `model_type` string.
    pub fn from_model_type(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.model_type() == s)
    }

    /// Prefix of the encoder's tensors in `*For*` task checkpoints (`bert.`, `roberta.`, …).
    pub fn tensor_prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta | Family::XlmRoberta => "roberta",
            Family::Electra => "electra",
            Family::DistilBert => "distilbert",
            Family::MPNet => "mpnet",
        }
    }

    fn supported_list() -> String {
        Family::ALL
            .iter()
            .map(|f| format!("\"{}\"", f.model_type()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Largest relative distance MPNet's buckets distinguish (fixed in Hugging Face's `MPNet`).
pub const MPNET_MAX_DISTANCE: usize = 128;

/// The encoder function of a BERT-family checkpoint, normalised to BERT's names.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// Rows of the token type table; 1 (a zero row) for families without token types.
    pub type_vocab_size: usize,
    /// False for DistilBERT and MPNet: the token type table is a zero row, not a tensor.
    pub token_types: bool,
    pub layer_norm_eps: f32,
    /// Always `"gelu"` (exact erf GELU) after validation.
    pub hidden_act: String,
    /// `pad_token_id` (RoBERTa and MPNet: `padding_idx` of the position table).
    pub pad_token_id: Option<u32>,
    /// Position id of the first token: 0, or `padding_idx + 1` (RoBERTa, XLM-R, MPNet).
    pub position_offset: usize,
    /// MPNet: buckets of the relative position bias added to the attention scores.
    pub relative_attention_num_buckets: Option<usize>,
}

impl BertConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Most tokens (special tokens included) one sequence may hold.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset)
    }

    /// Position ids of one sequence, as Hugging Face computes them: `t` for BERT, ELECTRA and
    /// DistilBERT; for RoBERTa and MPNet `padding_idx` + the number of non-padding tokens up to
    /// and including `t`, or `padding_idx` for a padding token.
    pub fn position_ids(&self, ids: &[u32], out: &mut Vec<usize>) {
        out.clear();
        if self.position_offset == 0 {
            out.extend(0..ids.len());
            return;
        }
        let pad = self.position_offset - 1;
        let mut n = 0;
        out.extend(ids.iter().map(|&id| {
            if id as usize == pad {
                pad
            } else {
                n += 1;
                pad + n
            }
        }));
    }

    /// Read and validate `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parse and validate a config from a JSON string (Hugging Face's `config.json` of any
    /// supported family, or the normalised form of [`BertConfig::to_json`]); `path` is only
    /// used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        let obj = v.as_object().ok_or_else(|| ModelError::Config {
            path: path.to_path_buf(),
            field: "<root>".into(),
            msg: "expected a JSON object".into(),
        })?;
        let p = FieldReader {
            path: path.to_path_buf(),
            obj,
        };
        let cfg = if obj.contains_key("family") {
            p.normalised()?
        } else {
            // the architecture first: another family's missing fields would mislead
            let family = match obj.get("model_type") {
                None => Family::Bert,
                Some(t) => t
                    .as_str()
                    .and_then(Family::from_model_type)
                    .ok_or_else(|| {
                        p.err(
                            "model_type",
                            format!(
                                "{t} is not supported; supported model types: {}",
                                Family::supported_list()
                            ),
                        )
                    })?,
            };
            match family {
                Family::DistilBert => p.distilbert()?,
                Family::MPNet => p.mpnet()?,
                _ => p.bert_like(family)?,
            }
        };
        p.validate(&cfg)?;
        Ok(cfg)
    }

    /// The normalised form stored in `quant.json` (read back by [`BertConfig::from_json_str`]).
    pub fn to_json(&self) -> Value {
        json!({
            "family": self.family.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "token_types": self.token_types,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": self.hidden_act,
            "pad_token_id": self.pad_token_id,
            "position_offset": self.position_offset,
            "relative_attention_num_buckets": self.relative_attention_num_buckets,
            "position_embedding_type": "absolute",
        })
    }
}

struct FieldReader<'a> {
    path: PathBuf,
    obj: &'a serde_json::Map<String, Value>,
}

impl FieldReader<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.path.clone(),
            field: field.into(),
            msg: msg.into(),
        }
    }

    fn get(&self, field: &str) -> Result<&Value> {
        self.obj
            .get(field)
            .ok_or_else(|| self.err(field, "missing (required)"))
    }

    fn usize(&self, field: &str) -> Result<usize> {
        let v = self.get(field)?;
        match v.as_u64() {
            Some(n) if n > 0 && n <= u32::MAX as u64 => Ok(n as usize),
            _ => Err(self.err(field, format!("expected a positive integer, found {v}"))),
        }
    }

    fn opt_u32(&self, field: &str) -> Result<Option<u32>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= u32::MAX as u64 => Ok(Some(n as u32)),
                _ => Err(self.err(field, format!("expected a non-negative integer, found {v}"))),
            },
        }
    }

    fn eps(&self, field: &str) -> Result<f32> {
        let v = self.get(field)?;
        match v.as_f64() {
            Some(x) if x > 0.0 && x < 1.0 && (x as f32) > 0.0 => Ok(x as f32),
            _ => Err(self.err(
                field,
                format!("expected a positive number below 1, found {v}"),
            )),
        }
    }

    fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.usize(field).map(Some),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(field, format!("expected true or false, found {v}"))),
        }
    }

    /// `padding_idx + 1` from `pad_token_id` (RoBERTa and MPNet count positions from there).
    fn padded_offset(&self, pad: Option<u32>) -> Result<usize> {
        let pad = pad.ok_or_else(|| {
            self.err(
                "pad_token_id",
                "missing (required: positions start after padding_idx)",
            )
        })?;
        Ok(pad as usize + 1)
    }

    /// The fields of every family that uses BERT's names (BERT, RoBERTa, ELECTRA, MPNet and the
    /// normalised form), with no token types, no position offset and no relative bias: each
    /// family reader sets what it adds.
    fn bert_named(&self, family: Family) -> Result<BertConfig> {
        Ok(BertConfig {
            family,
            vocab_size: self.usize("vocab_size")?,
            hidden_size: self.usize("hidden_size")?,
            num_hidden_layers: self.usize("num_hidden_layers")?,
            num_attention_heads: self.usize("num_attention_heads")?,
            intermediate_size: self.usize("intermediate_size")?,
            max_position_embeddings: self.usize("max_position_embeddings")?,
            type_vocab_size: 1,
            token_types: false,
            layer_norm_eps: self.eps("layer_norm_eps")?,
            hidden_act: self.string("hidden_act")?,
            pad_token_id: self.opt_u32("pad_token_id")?,
            position_offset: 0,
            relative_attention_num_buckets: None,
        })
    }

    /// BERT, RoBERTa / XLM-RoBERTa and ELECTRA: BERT's field names.
    fn bert_like(&self, family: Family) -> Result<BertConfig> {
        if let Some(kind) = self.obj.get("position_embedding_type") {
            if kind.as_str() != Some("absolute") {
                return Err(self.err(
                    "position_embedding_type",
                    format!("{kind} is not supported; only \"absolute\" is"),
                ));
            }
        }
        let base = self.bert_named(family)?;
        let hidden_size = base.hidden_size;
        if family == Family::Electra {
            let emb = self.opt_usize("embedding_size")?.unwrap_or(hidden_size);
            if emb != hidden_size {
                return Err(self.err(
                    "embedding_size",
                    format!(
                        "{emb} differs from hidden_size {hidden_size}: ELECTRA's embedding \
                         projection is not supported (ELECTRA-base and -large have none)"
                    ),
                ));
            }
        }
        let position_offset = match family {
            Family::Roberta | Family::XlmRoberta => self.padded_offset(base.pad_token_id)?,
            _ => 0,
        };
        Ok(BertConfig {
            type_vocab_size: self.usize("type_vocab_size")?,
            token_types: true,
            position_offset,
            ..base
        })
    }

    /// DistilBERT: its own field names, no token types, LayerNorm eps fixed at 1e-12.
    fn distilbert(&self) -> Result<BertConfig> {
        Ok(BertConfig {
            family: Family::DistilBert,
            vocab_size: self.usize("vocab_size")?,
            hidden_size: self.usize("dim")?,
            num_hidden_layers: self.usize("n_layers")?,
            num_attention_heads: self.usize("n_heads")?,
            intermediate_size: self.usize("hidden_dim")?,
            max_position_embeddings: self.usize("max_position_embeddings")?,
            type_vocab_size: 1,
            token_types: false,
            layer_norm_eps: 1e-12,
            hidden_act: self.string("activation")?,
            pad_token_id: self.opt_u32("pad_token_id")?,
            position_offset: 0,
            relative_attention_num_buckets: None,
        })
    }

    /// MPNet: BERT's names without token types, positions after `padding_idx`, relative bias.
    fn mpnet(&self) -> Result<BertConfig> {
        let buckets = self
            .opt_usize("relative_attention_num_buckets")?
            .unwrap_or(32);
        if buckets < 4 || !buckets.is_multiple_of(2) {
            return Err(self.err(
                "relative_attention_num_buckets",
                format!("{buckets} is not an even number ≥ 4"),
            ));
        }
        let base = self.bert_named(Family::MPNet)?;
        let pad_token_id = Some(base.pad_token_id.unwrap_or(1));
        Ok(BertConfig {
            pad_token_id,
            position_offset: self.padded_offset(pad_token_id)?,
            relative_attention_num_buckets: Some(buckets),
            ..base
        })
    }

    /// The normalised form written by [`BertConfig::to_json`].
    fn normalised(&self) -> Result<BertConfig> {
        let name = self.string("family")?;
        let family = Family::from_model_type(&name).ok_or_else(|| {
            self.err(
                "family",
                format!(
                    "\"{name}\" is not supported; supported: {}",
                    Family::supported_list()
                ),
            )
        })?;
        let position_offset = match self.obj.get("position_offset") {
            Some(Value::Number(n)) if n.as_u64() == Some(0) => 0,
            _ => self.usize("position_offset")?,
        };
        Ok(BertConfig {
            type_vocab_size: self.usize("type_vocab_size")?,
            token_types: self
                .opt_bool("token_types")?
                .ok_or_else(|| self.err("token_types", "missing (required)"))?,
            position_offset,
            relative_attention_num_buckets: self.opt_usize("relative_attention_num_buckets")?,
            ..self.bert_named(family)?
        })
    }

    /// Checks every family shares.
    fn validate(&self, cfg: &BertConfig) -> Result<()> {
        let act_field = if cfg.family == Family::DistilBert {
            "activation"
        } else {
            "hidden_act"
        };
        if cfg.hidden_act != "gelu" {
            return Err(self.err(
                act_field,
                format!(
                    "`{}` is not supported; only \"gelu\" (exact erf GELU) is",
                    cfg.hidden_act
                ),
            ));
        }
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(self.err(
                if cfg.family == Family::DistilBert {
                    "n_heads"
                } else {
                    "num_attention_heads"
                },
                format!(
                    "{} does not divide hidden_size {}",
                    cfg.num_attention_heads, cfg.hidden_size
                ),
            ));
        }
        if cfg.max_tokens() < 2 {
            return Err(self.err(
                "max_position_embeddings",
                format!(
                    "{} leaves no room for a sequence after position offset {}",
                    cfg.max_position_embeddings, cfg.position_offset
                ),
            ));
        }
        if let Some(pad) = cfg.pad_token_id {
            if cfg.position_offset > 0 && pad as usize >= cfg.vocab_size {
                return Err(self.err(
                    "pad_token_id",
                    format!("{pad} is not below vocab_size {}", cfg.vocab_size),
                ));
            }
        }
        Ok(())
    }

    fn string(&self, field: &str) -> Result<String> {
        let v = self.get(field)?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.err(field, format!("expected a string, found {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0}"#;

    fn with(field: &str, value: Option<&str>) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let o = v.as_object_mut().unwrap();
        match value {
            Some(x) => {
                o.insert(field.into(), serde_json::from_str(x).unwrap());
            }
            None => {
                o.remove(field);
            }
        }
        v.to_string()
    }

    #[test]
    fn parses_good_config() {
        let c = BertConfig::from_json_str(GOOD, Path::new("c.json")).unwrap();
        assert_eq!(c.hidden_size, 32);
        assert_eq!(c.head_dim(), 8);
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert_eq!(c.pad_token_id, Some(0));
    }

    #[test]
    fn missing_field_is_named() {
        for f in [
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "layer_norm_eps",
            "hidden_act",
        ] {
            let e = BertConfig::from_json_str(&with(f, None), Path::new("/m/config.json"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{f}`")), "{e}");
            assert!(e.contains("/m/config.json"), "{e}");
            assert!(e.contains("missing"), "{e}");
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        let p = Path::new("config.json");
        for (f, v) in [
            ("hidden_size", "\"32\""),
            ("hidden_size", "0"),
            ("hidden_size", "-3"),
            ("layer_norm_eps", "0"),
            ("hidden_act", "\"relu\""),
            ("hidden_act", "\"gelu_new\""),
            ("num_attention_heads", "5"),
            ("position_embedding_type", "\"relative_key\""),
            ("pad_token_id", "-1"),
        ] {
            let e = BertConfig::from_json_str(&with(f, Some(v)), p)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{f}`")), "{f}={v}: {e}");
        }
        let e = BertConfig::from_json_str("{not json", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid JSON"), "{e}");
        let e = BertConfig::from_json_str("[1]", p).unwrap_err().to_string();
        assert!(e.contains("object"), "{e}");
        let e = BertConfig::from_file(Path::new("/nonexistent/config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/config.json"), "{e}");
    }
}
