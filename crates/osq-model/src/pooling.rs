//! Sentence-transformers pooling: how a model turns its final hidden states into one vector.
//!
//! Read from `modules.json` and `1_Pooling/config.json` at quantize time and carried in the
//! parameter directory, because a CLS-pooled model embedded by the mean (or an un-normalised
//! one normalised) gives plausible-looking but wrong vectors. Each mode is defined once over
//! float rows ([`pool_f32`]) and once over the integer engine's output codes ([`pool_codes`]):
//! the codes are summed (or compared) as integers and dequantized once.

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// A pooling mode of sentence-transformers' `Pooling` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Mean over the text's tokens (`pooling_mode_mean_tokens`).
    #[default]
    Mean,
    /// The first token (`[CLS]` / `<s>`, `pooling_mode_cls_token`).
    Cls,
    /// Element-wise maximum over the tokens (`pooling_mode_max_tokens`).
    Max,
    /// Sum over the tokens divided by √length (`pooling_mode_mean_sqrt_len_tokens`).
    MeanSqrtLen,
}

impl Pooling {
    /// Every mode, with its `1_Pooling/config.json` key.
    pub const KEYS: [(Pooling, &'static str); 4] = [
        (Pooling::Mean, "pooling_mode_mean_tokens"),
        (Pooling::Cls, "pooling_mode_cls_token"),
        (Pooling::Max, "pooling_mode_max_tokens"),
        (Pooling::MeanSqrtLen, "pooling_mode_mean_sqrt_len_tokens"),
    ];

    /// Name in `quant.json` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
        }
    }

    /// The mode of a [`Pooling::name`].
    pub fn parse(s: &str) -> Option<Pooling> {
        Self::KEYS.iter().map(|(p, _)| *p).find(|p| p.name() == s)
    }
}

/// The sentence embedding a model defines: a pooling and whether it is L2-normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceHead {
    pub pooling: Pooling,
    pub normalize: bool,
}

impl Default for SentenceHead {
    /// Mean pooling, L2-normalised: what osq computes for a directory without metadata.
    fn default() -> Self {
        SentenceHead {
            pooling: Pooling::Mean,
            normalize: true,
        }
    }
}

const MODULE_PREFIX: &str = "sentence_transformers.models.";

impl SentenceHead {
    /// Reads the sentence-transformers metadata of a model directory. Without `modules.json`
    /// the pooling is `1_Pooling/config.json`'s (mean when absent) and the output normalised;
    /// with it, normalisation follows its `Normalize` module. Modules that would change the
    /// vector further (`Dense`, …) and poolings osq does not compute are refused by name.
    pub fn from_dir(dir: &Path) -> Result<SentenceHead> {
        let modules = dir.join("modules.json");
        let mut pooling_dir = dir.join("1_Pooling");
        let mut normalize = true;
        if modules.is_file() {
            let v = read_json(&modules)?;
            let list = v
                .as_array()
                .ok_or_else(|| cfg_err(&modules, "<root>", "expected a list of modules"))?;
            normalize = false;
            for (i, m) in list.iter().enumerate() {
                let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
                let path = m.get("path").and_then(Value::as_str).unwrap_or("");
                match kind.strip_prefix(MODULE_PREFIX) {
                    Some("Transformer") => {}
                    Some("Pooling") => {
                        if Path::new(path).components().count() != 1 {
                            return Err(cfg_err(
                                &modules,
                                &format!("[{i}].path"),
                                format!("\"{path}\" is not a directory name inside the model"),
                            ));
                        }
                        pooling_dir = dir.join(path);
                    }
                    Some("Normalize") => normalize = true,
                    _ => {
                        return Err(cfg_err(
                            &modules,
                            &format!("[{i}].type"),
                            format!(
                                "module \"{kind}\" is not supported (osq computes Transformer, \
                                 Pooling and Normalize)"
                            ),
                        ))
                    }
                }
            }
        }
        let pooling_cfg = pooling_dir.join("config.json");
        let pooling = if pooling_cfg.is_file() {
            pooling_of(&pooling_cfg, &read_json(&pooling_cfg)?)?
        } else {
            Pooling::Mean
        };
        Ok(SentenceHead { pooling, normalize })
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

fn cfg_err(path: &Path, field: &str, msg: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        field: field.into(),
        msg: msg.into(),
    }
}

/// The one mode switched on in a `1_Pooling/config.json`.
fn pooling_of(path: &Path, v: &Value) -> Result<Pooling> {
    let on = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    for k in ["pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"] {
        if on(k) {
            return Err(cfg_err(
                path,
                k,
                "this pooling is not supported; osq computes mean, cls, max and mean_sqrt_len",
            ));
        }
    }
    let modes: Vec<(Pooling, &str)> = Pooling::KEYS.into_iter().filter(|(_, k)| on(k)).collect();
    match modes.as_slice() {
        [(p, _)] => Ok(*p),
        [] => Err(cfg_err(
            path,
            "pooling_mode_mean_tokens",
            "no pooling mode is switched on",
        )),
        [_, (_, k), ..] => Err(cfg_err(
            path,
            k,
            "more than one pooling mode is on (sentence-transformers would concatenate them); \
             osq computes one",
        )),
    }
}

/// Pools `len` float rows of width `h` (`rows` is `[len, h]`), in `f64`.
pub fn pool_f32(pooling: Pooling, rows: &[f32], len: usize, h: usize) -> Vec<f64> {
    let rows = &rows[..len * h];
    let mut acc = vec![0.0f64; h];
    match pooling {
        Pooling::Cls => {
            if len > 0 {
                acc.iter_mut()
                    .zip(&rows[..h])
                    .for_each(|(a, &v)| *a = v as f64);
            }
        }
        Pooling::Max => {
            if len > 0 {
                acc.fill(f64::NEG_INFINITY);
                for r in rows.chunks_exact(h) {
                    acc.iter_mut()
                        .zip(r)
                        .for_each(|(a, &v)| *a = a.max(v as f64));
                }
            }
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            for r in rows.chunks_exact(h) {
                acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v as f64);
            }
            let d = divisor(pooling, len);
            acc.iter_mut().for_each(|a| *a /= d);
        }
    }
    acc
}

/// Pools `len` rows of output codes of width `h` (`codes` is `[len, h]`) with the output
/// node's `zero` and `scale`: integer sums or maxima, dequantized once, in `f64`.
pub fn pool_codes(
    pooling: Pooling,
    codes: &[u8],
    len: usize,
    h: usize,
    zero: i32,
    scale: f32,
) -> Vec<f64> {
    let codes = &codes[..len * h];
    let s = scale as f64;
    let mut acc = vec![0i64; h];
    match pooling {
        Pooling::Cls => {
            if len > 0 {
                acc.iter_mut()
                    .zip(&codes[..h])
                    .for_each(|(a, &c)| *a = c as i64 - zero as i64);
            }
        }
        Pooling::Max => {
            if len > 0 {
                acc.fill(i64::MIN);
                for r in codes.chunks_exact(h) {
                    acc.iter_mut()
                        .zip(r)
                        .for_each(|(a, &c)| *a = (*a).max(c as i64 - zero as i64));
                }
            }
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            for r in codes.chunks_exact(h) {
                acc.iter_mut()
                    .zip(r)
                    .for_each(|(a, &c)| *a += c as i64 - zero as i64);
            }
        }
    }
    let d = match pooling {
        Pooling::Mean | Pooling::MeanSqrtLen => divisor(pooling, len),
        Pooling::Cls | Pooling::Max => 1.0,
    };
    acc.iter().map(|&a| a as f64 * s / d).collect()
}

/// The denominator of the averaging modes (sentence-transformers clamps the count at 1e-9).
fn divisor(pooling: Pooling, len: usize) -> f64 {
    let n = (len as f64).max(1e-9);
    match pooling {
        Pooling::MeanSqrtLen => n.sqrt(),
        _ => n,
    }
}

/// `v / max(‖v‖, 1e-12)` rounded to `f32` when `normalize`, else `v` rounded.
pub fn finish(v: &[f64], normalize: bool, out: &mut [f32]) {
    let norm = if normalize {
        v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12)
    } else {
        1.0
    };
    out.iter_mut()
        .zip(v)
        .for_each(|(o, x)| *o = (x / norm) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_and_code_pooling_agree() {
        // codes with zero 3 and scale 0.5: the float rows are exactly (c − 3)·0.5
        let (len, h, z, s) = (3usize, 4usize, 3i32, 0.5f32);
        let codes: Vec<u8> = vec![0, 5, 9, 3, 7, 1, 2, 250, 4, 4, 4, 4];
        let rows: Vec<f32> = codes.iter().map(|&c| (c as i32 - z) as f32 * s).collect();
        for (p, _) in Pooling::KEYS {
            assert_eq!(
                pool_f32(p, &rows, len, h),
                pool_codes(p, &codes, len, h, z, s),
                "{p:?}"
            );
        }
        assert_eq!(
            pool_f32(Pooling::Cls, &rows, len, h),
            vec![-1.5, 1.0, 3.0, 0.0]
        );
        assert_eq!(
            pool_f32(Pooling::Max, &rows, len, h),
            vec![2.0, 1.0, 3.0, 123.5]
        );
        let m = pool_f32(Pooling::Mean, &rows, len, h);
        let r = pool_f32(Pooling::MeanSqrtLen, &rows, len, h);
        for (a, b) in m.iter().zip(&r) {
            assert!((a * 3.0 / 3f64.sqrt() - b).abs() < 1e-12);
        }
        let mut out = vec![0.0; h];
        finish(&[3.0, 4.0, 0.0, 0.0], true, &mut out);
        assert_eq!(out, vec![0.6, 0.8, 0.0, 0.0]);
        finish(&[3.0, 4.0, 0.0, 0.0], false, &mut out);
        assert_eq!(out, vec![3.0, 4.0, 0.0, 0.0]);
    }

    #[test]
    fn metadata_is_read_and_unsupported_modules_named() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            SentenceHead::from_dir(d.path()).unwrap(),
            SentenceHead::default()
        );
        std::fs::create_dir(d.path().join("1_Pooling")).unwrap();
        let pool = d.path().join("1_Pooling/config.json");
        for (want, key) in Pooling::KEYS {
            std::fs::write(
                &pool,
                format!(r#"{{"word_embedding_dimension": 4, "{key}": true}}"#),
            )
            .unwrap();
            assert_eq!(SentenceHead::from_dir(d.path()).unwrap().pooling, want);
        }
        let modules = d.path().join("modules.json");
        let tr = r#"{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}"#;
        let po = r#"{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}"#;
        let no = r#"{"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}"#;
        let de = r#"{"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}"#;
        std::fs::write(&modules, format!("[{tr}, {po}]")).unwrap();
        let s = SentenceHead::from_dir(d.path()).unwrap();
        assert_eq!(
            s,
            SentenceHead {
                pooling: Pooling::MeanSqrtLen,
                normalize: false
            }
        );
        std::fs::write(&modules, format!("[{tr}, {po}, {no}]")).unwrap();
        assert!(SentenceHead::from_dir(d.path()).unwrap().normalize);
        std::fs::write(&modules, format!("[{tr}, {po}, {de}]")).unwrap();
        let e = SentenceHead::from_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("modules.json") && e.contains("Dense"), "{e}");
        std::fs::write(&modules, format!("[{tr}, {po}]")).unwrap();
        for (body, field) in [
            (
                r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#,
                "pooling_mode_cls_token",
            ),
            (
                r#"{"pooling_mode_lasttoken": true}"#,
                "pooling_mode_lasttoken",
            ),
            (
                r#"{"pooling_mode_weightedmean_tokens": true}"#,
                "pooling_mode_weightedmean_tokens",
            ),
            (r#"{}"#, "pooling_mode_mean_tokens"),
        ] {
            std::fs::write(&pool, body).unwrap();
            let e = SentenceHead::from_dir(d.path()).unwrap_err().to_string();
            assert!(e.contains("1_Pooling") && e.contains(field), "{body}: {e}");
        }
        std::fs::write(&pool, "{not json").unwrap();
        assert!(SentenceHead::from_dir(d.path())
            .unwrap_err()
            .to_string()
            .contains("1_Pooling"));
    }
}
