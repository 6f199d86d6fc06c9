//! Hugging Face BERT `config.json`.
//!
//! Parsed field by field (not with a derive) so that a missing or invalid field produces an
//! error naming the file and the field. Only the plain post-LN BERT encoder with the exact
//! erf GELU and absolute position embeddings is accepted: anything else would silently
//! compute a different function.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ModelError, Result};

/// The subset of a HF `BertConfig` that defines the encoder function.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    /// Always `"gelu"` (exact erf GELU) after validation.
    pub hidden_act: String,
    /// `pad_token_id` if present (informational; padding is driven by the attention mask).
    pub pad_token_id: Option<u32>,
}

impl BertConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Read and validate `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parse and validate a config from a JSON string; `path` is only used in error messages.
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
        // the architecture first: another family's missing fields would mislead
        if let Some(t) = obj.get("model_type") {
            if t.as_str() != Some("bert") {
                return Err(p.err(
                    "model_type",
                    format!("{t} is not supported; supported model types: \"bert\""),
                ));
            }
        }
        let cfg = BertConfig {
            vocab_size: p.usize("vocab_size")?,
            hidden_size: p.usize("hidden_size")?,
            num_hidden_layers: p.usize("num_hidden_layers")?,
            num_attention_heads: p.usize("num_attention_heads")?,
            intermediate_size: p.usize("intermediate_size")?,
            max_position_embeddings: p.usize("max_position_embeddings")?,
            type_vocab_size: p.usize("type_vocab_size")?,
            layer_norm_eps: p.eps("layer_norm_eps")?,
            hidden_act: p.string("hidden_act")?,
            pad_token_id: p.opt_u32("pad_token_id")?,
        };
        if cfg.hidden_act != "gelu" {
            return Err(p.err(
                "hidden_act",
                format!(
                    "`{}` is not supported; only \"gelu\" (exact erf GELU) is",
                    cfg.hidden_act
                ),
            ));
        }
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(p.err(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    cfg.num_attention_heads, cfg.hidden_size
                ),
            ));
        }
        if let Some(kind) = obj.get("position_embedding_type") {
            if kind.as_str() != Some("absolute") {
                return Err(p.err(
                    "position_embedding_type",
                    format!("{kind} is not supported; only \"absolute\" is"),
                ));
            }
        }
        Ok(cfg)
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

/// Refuses a sentence-transformers directory whose pooling osq does not compute: osq embeds by
/// the mean of the final hidden states over the text's tokens, L2-normalised. A CLS- or
/// max-pooled model would otherwise embed wrongly without an error.
pub fn check_sentence_transformers(dir: &Path) -> Result<()> {
    let pooling = dir.join("1_Pooling").join("config.json");
    if !pooling.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&pooling).map_err(|e| ModelError::io(&pooling, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path: pooling.clone(),
        source: e,
    })?;
    let on = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let others: Vec<&str> = [
        "pooling_mode_cls_token",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ]
    .into_iter()
    .filter(|k| on(k))
    .collect();
    if !on("pooling_mode_mean_tokens") || !others.is_empty() {
        return Err(ModelError::Config {
            path: pooling,
            field: others
                .first()
                .copied()
                .unwrap_or("pooling_mode_mean_tokens")
                .into(),
            msg: "osq pools by the mean of the token embeddings only; this model pools otherwise"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod family_tests {
    use super::*;

    #[test]
    fn other_families_and_poolings_are_refused_by_name() {
        let d = crate::testing::temp_dir("family").unwrap();
        crate::testing::write_tiny_bert(&d, 1).unwrap();
        let cfg = d.join("config.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        v["model_type"] = "mpnet".into();
        v.as_object_mut().unwrap().remove("type_vocab_size");
        std::fs::write(&cfg, v.to_string()).unwrap();
        let e = BertConfig::from_file(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("model_type") && e.contains("mpnet") && e.contains("\"bert\""),
            "{e}"
        );

        let d = crate::testing::temp_dir("pooling").unwrap();
        crate::testing::write_tiny_bert(&d, 1).unwrap();
        assert!(crate::BertWeights::load_dir(&d).is_ok());
        std::fs::create_dir_all(d.join("1_Pooling")).unwrap();
        let pool = d.join("1_Pooling/config.json");
        std::fs::write(&pool, r#"{"pooling_mode_mean_tokens": true}"#).unwrap();
        assert!(crate::BertWeights::load_dir(&d).is_ok());
        std::fs::write(
            &pool,
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        let e = crate::BertWeights::load_dir(&d).unwrap_err().to_string();
        assert!(
            e.contains("1_Pooling") && e.contains("pooling_mode_cls_token"),
            "{e}"
        );
    }
}
