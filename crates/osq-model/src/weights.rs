//! BERT-family weights from a `model.safetensors` checkpoint.
//!
//! The file is memory-mapped, every tensor is looked up by its family's name (see
//! [`TensorNames`]; with or without the `bert.` / `roberta.` / … prefix of `*For*` task
//! checkpoints, and the old `LayerNorm.gamma/beta` spelling) and its shape checked against
//! `config.json` before it is converted to `f32`. Families without token types get a zero token
//! type row, so one embedding sum serves all (`(word + 0) + position` is exactly `word + position`). The weights are owned
//! `Vec<f32>` with public fields because calibration rewrites copies of them (γ migration,
//! OS+ shifting and scaling). Linear weights keep PyTorch's `[out, in]` row-major layout.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::config::{BertConfig, Family};
use crate::error::{ModelError, Result};

/// A dense layer `y = x·Wᵀ + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[out_features, in_features]`, row-major (PyTorch layout).
    pub weight: Vec<f32>,
    /// `[out_features]`.
    pub bias: Vec<f32>,
    pub out_features: usize,
    pub in_features: usize,
}

/// LayerNorm parameters `γ`, `β` and its epsilon.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormW {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

/// Embedding tables and the embedding LayerNorm.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// `[vocab_size, hidden]`.
    pub word: Vec<f32>,
    /// `[max_position_embeddings, hidden]`.
    pub position: Vec<f32>,
    /// `[type_vocab_size, hidden]`.
    pub token_type: Vec<f32>,
    pub ln: LayerNormW,
}

/// One encoder layer (post-LN BERT).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    /// Attention output dense (`attention.output.dense`).
    pub attn_out: Linear,
    /// LayerNorm after the attention residual (`attention.output.LayerNorm`).
    pub attn_ln: LayerNormW,
    /// `intermediate.dense`: hidden → intermediate.
    pub ffn1: Linear,
    /// `output.dense`: intermediate → hidden.
    pub ffn2: Linear,
    /// LayerNorm after the FFN residual (`output.LayerNorm`).
    pub ffn_ln: LayerNormW,
}

/// All weights of a BERT-family encoder plus the optional task head.
#[derive(Debug, Clone, PartialEq)]
pub struct BertWeights {
    pub config: BertConfig,
    pub embeddings: Embeddings,
    pub layers: Vec<LayerWeights>,
    /// The fine-tuned task head (`*ForSequenceClassification`, `*ForTokenClassification`), if
    /// the checkpoint has one.
    pub head: Option<crate::head::TaskHead>,
    /// MPNet: `encoder.relative_attention_bias.weight`, stored head-major.
    pub relative_attention_bias: Option<crate::relative::RelativeBiasTable>,
    /// The sentence-transformers pooling of the directory (mean and normalised when absent).
    pub sentence: crate::pooling::SentenceHead,
}

/// Tensor names of one family (without the task-checkpoint prefix).
pub struct TensorNames {
    family: Family,
}

impl TensorNames {
    pub fn new(family: Family) -> TensorNames {
        TensorNames { family }
    }

    fn layer(&self, l: usize) -> String {
        match self.family {
            Family::DistilBert => format!("transformer.layer.{l}"),
            _ => format!("encoder.layer.{l}"),
        }
    }

    /// Prefixes of the 6 Linear layers of layer `l`: query, key, value, attention output,
    /// FFN in, FFN out.
    pub fn linears(&self, l: usize) -> [String; 6] {
        let p = self.layer(l);
        let names: [&str; 6] = match self.family {
            Family::DistilBert => [
                "attention.q_lin",
                "attention.k_lin",
                "attention.v_lin",
                "attention.out_lin",
                "ffn.lin1",
                "ffn.lin2",
            ],
            Family::MPNet => [
                "attention.attn.q",
                "attention.attn.k",
                "attention.attn.v",
                "attention.attn.o",
                "intermediate.dense",
                "output.dense",
            ],
            _ => [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            ],
        };
        names.map(|n| format!("{p}.{n}"))
    }

    /// Prefixes of the 2 LayerNorms of layer `l`: after attention, after the FFN.
    pub fn layer_norms(&self, l: usize) -> [String; 2] {
        let p = self.layer(l);
        let names: [&str; 2] = match self.family {
            Family::DistilBert => ["sa_layer_norm", "output_layer_norm"],
            Family::MPNet => ["attention.LayerNorm", "output.LayerNorm"],
            _ => ["attention.output.LayerNorm", "output.LayerNorm"],
        };
        names.map(|n| format!("{p}.{n}"))
    }
}

impl BertWeights {
    /// Load `config.json` and `model.safetensors` from a model directory.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let cpath = dir.join("config.json");
        let config = BertConfig::from_file(&cpath)?;
        let meta = crate::head::HeadMeta::from_config_file(&cpath)?;
        let sentence = crate::pooling::SentenceHead::from_dir(dir)?;
        let mut w =
            Self::from_safetensors_with(&dir.join("model.safetensors"), config, &meta, &cpath)?;
        w.sentence = sentence;
        Ok(w)
    }

    /// Load the tensors of `path` for the given config (a task head gets default labels and
    /// the task its output count implies).
    pub fn from_safetensors(path: &Path, config: BertConfig) -> Result<Self> {
        Self::from_safetensors_with(path, config, &Default::default(), Path::new("config.json"))
    }

    /// [`BertWeights::from_safetensors`] with the head fields of `config.json` (`config_path`
    /// names it in errors).
    pub fn from_safetensors_with(
        path: &Path,
        config: BertConfig,
        meta: &crate::head::HeadMeta,
        config_path: &Path,
    ) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the mapping is read-only and only lives during this call; the usual caveat
        // of memory maps (another process truncating the file) is accepted, as in HF loaders.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| ModelError::Safetensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let r = Reader {
            path: path.to_path_buf(),
            st: &st,
            prefix: config.family.tensor_prefix(),
        };
        let c = &config;
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        let token_type = if c.token_types {
            r.get(
                "embeddings.token_type_embeddings.weight",
                &[c.type_vocab_size, h],
            )?
        } else {
            vec![0.0; c.type_vocab_size * h]
        };
        let embeddings = Embeddings {
            word: r.get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?,
            position: r.get(
                "embeddings.position_embeddings.weight",
                &[c.max_position_embeddings, h],
            )?,
            token_type,
            ln: r.layer_norm("embeddings.LayerNorm", h, eps)?,
        };
        let names = TensorNames::new(c.family);
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let [q, k, v, o, f1, f2] = names.linears(l);
            let [ln1, ln2] = names.layer_norms(l);
            layers.push(LayerWeights {
                query: r.linear(&q, h, h)?,
                key: r.linear(&k, h, h)?,
                value: r.linear(&v, h, h)?,
                attn_out: r.linear(&o, h, h)?,
                attn_ln: r.layer_norm(&ln1, h, eps)?,
                ffn1: r.linear(&f1, c.intermediate_size, h)?,
                ffn2: r.linear(&f2, h, c.intermediate_size)?,
                ffn_ln: r.layer_norm(&ln2, h, eps)?,
            });
        }
        let relative_attention_bias = match c.relative_attention_num_buckets {
            Some(nb) => Some(crate::relative::RelativeBiasTable::from_bucket_major(
                &r.get(
                    "encoder.relative_attention_bias.weight",
                    &[nb, c.num_attention_heads],
                )?,
                nb,
                c.num_attention_heads,
            )),
            None => None,
        };
        let head = r.task_head(c.family, h, meta, config_path)?;
        Ok(BertWeights {
            config,
            embeddings,
            layers,
            head,
            relative_attention_bias,
            sentence: Default::default(),
        })
    }

    /// Number of labels of the task head, if any.
    pub fn num_labels(&self) -> Option<usize> {
        self.head.as_ref().map(|hd| hd.num_labels())
    }
}

struct Reader<'a, 'd> {
    path: PathBuf,
    st: &'a SafeTensors<'d>,
    /// The family's task-checkpoint prefix (`bert`, `roberta`, …).
    prefix: &'static str,
}

impl Reader<'_, '_> {
    /// The task head of a fine-tuned checkpoint, if its tensors are present: the family's
    /// sequence head (dense + activation + output) or, for `*ForTokenClassification` (or a
    /// bare `classifier` outside BERT), a token head.
    fn task_head(
        &self,
        family: Family,
        h: usize,
        meta: &crate::head::HeadMeta,
        config_path: &Path,
    ) -> Result<Option<crate::head::TaskHead>> {
        use crate::head::{sequence_head_names, Activation, TaskHead};
        let (dense_name, out_name) = sequence_head_names(family);
        let token = meta.is_token_classification();
        let has = |n: &str| self.find(n).is_some();
        let dense_w = format!("{dense_name}.weight");
        let out_w = format!("{out_name}.weight");
        let missing = |tensor: &str, why: &str| ModelError::MissingTensor {
            path: self.path.clone(),
            tensor: tensor.into(),
            tried: format!("{} ({why})", self.candidates(tensor).join(", ")),
        };
        let (dense, out_prefix) = if !token && has(&out_w) && has(&dense_w) {
            (
                Some((
                    self.linear(dense_name, h, h)?,
                    Activation::of_family(family),
                )),
                out_name,
            )
        } else if has("classifier.weight") && (token || family != Family::Bert) {
            (None, "classifier")
        } else if has(&out_w) {
            return Err(missing(
                &dense_w,
                &format!("the sequence head `{out_name}` needs it"),
            ));
        } else {
            return Ok(None);
        };
        let wname = format!("{out_prefix}.weight");
        let found = self.find(&wname).unwrap_or(wname.clone());
        let shape = self.shape(&found)?;
        let labels = match shape.as_slice() {
            [n, k] if *n > 0 && *k == h => *n,
            _ => {
                return Err(ModelError::Shape {
                    path: self.path.clone(),
                    tensor: found,
                    expected: vec![0, h],
                    actual: shape,
                })
            }
        };
        let out = self.linear(out_prefix, labels, h)?;
        let task = meta.task(labels, dense.is_none(), config_path)?;
        Ok(Some(TaskHead {
            task,
            dense,
            out,
            labels: meta.labels(labels, config_path)?,
        }))
    }

    fn candidates(&self, name: &str) -> Vec<String> {
        let pre = self.prefix;
        let mut v = vec![name.to_string(), format!("{pre}.{name}")];
        // Old TF-converted checkpoints spell LayerNorm parameters gamma/beta.
        for (new, old) in [
            ("LayerNorm.weight", "LayerNorm.gamma"),
            ("LayerNorm.bias", "LayerNorm.beta"),
        ] {
            if let Some(stem) = name.strip_suffix(new) {
                v.push(format!("{stem}{old}"));
                v.push(format!("{pre}.{stem}{old}"));
            }
        }
        v
    }

    fn find(&self, name: &str) -> Option<String> {
        self.candidates(name)
            .into_iter()
            .find(|n| self.st.tensor(n).is_ok())
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let t = self.st.tensor(name).map_err(|e| ModelError::Safetensors {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        Ok(t.shape().to_vec())
    }

    fn get(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let found = self.find(name).ok_or_else(|| ModelError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            tried: self.candidates(name).join(", "),
        })?;
        let t = self
            .st
            .tensor(&found)
            .map_err(|e| ModelError::Safetensors {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        if t.shape() != expected {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                tensor: found,
                expected: expected.to_vec(),
                actual: t.shape().to_vec(),
            });
        }
        let v = convert_to_f32(t.dtype(), t.data()).ok_or_else(|| ModelError::Dtype {
            path: self.path.clone(),
            tensor: found.clone(),
            dtype: format!("{:?}", t.dtype()),
        })?;
        // a NaN, inf or absurd weight makes every answer meaningless: refuse it by name
        if let Some(i) = v
            .iter()
            .position(|x| !(x.is_finite() && x.abs() <= MAX_PLAUSIBLE_WEIGHT))
        {
            return Err(ModelError::Corrupt {
                path: self.path.clone(),
                msg: format!(
                    "tensor `{found}` element {i} is {} (not finite or |x| > {MAX_PLAUSIBLE_WEIGHT:e}): \
                     the checkpoint is corrupt",
                    v[i]
                ),
            });
        }
        Ok(v)
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{prefix}.weight"), &[out, inp])?,
            bias: self.get(&format!("{prefix}.bias"), &[out])?,
            out_features: out,
            in_features: inp,
        })
    }

    fn layer_norm(&self, prefix: &str, h: usize, eps: f32) -> Result<LayerNormW> {
        Ok(LayerNormW {
            gamma: self.get(&format!("{prefix}.weight"), &[h])?,
            beta: self.get(&format!("{prefix}.bias"), &[h])?,
            eps,
        })
    }
}

/// Largest |weight| accepted in a checkpoint: trained encoders stay far below (γ outliers of a
/// few hundred at most); beyond it a value is a corrupted exponent.
pub const MAX_PLAUSIBLE_WEIGHT: f32 = 1e4;

/// Convert little-endian tensor bytes to `f32`. `None` for dtypes we do not handle.
/// The byte length is guaranteed by safetensors to match shape × dtype size.
pub fn convert_to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// A model directory loaded at once: config, weights and tokenizer.
#[derive(Debug)]
pub struct BertModel {
    pub weights: BertWeights,
    pub tokenizer: crate::tokenize::Tokenizer,
}

impl BertModel {
    /// Load `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let weights = BertWeights::load_dir(dir)?;
        let tokenizer = crate::tokenize::Tokenizer::from_file(
            &dir.join("tokenizer.json"),
            weights.config.max_tokens(),
        )?;
        Ok(BertModel { weights, tokenizer })
    }

    pub fn config(&self) -> &BertConfig {
        &self.weights.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        temp_dir, tiny_tensors, tiny_vocab, write_safetensors, write_tiny_bert_with,
        TinyBertOptions,
    };

    #[test]
    fn dtype_conversion() {
        let xs = [1.0f32, -2.5, 0.333_333_34, 65504.0, 1e-3];
        let b: Vec<u8> = xs
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect();
        let y = convert_to_f32(Dtype::F16, &b).unwrap();
        for (x, y) in xs.iter().zip(&y) {
            assert!((x - y).abs() <= x.abs() * 1e-3, "{x} {y}");
        }
        assert_eq!(y[0], 1.0);
        assert_eq!(y[1], -2.5);
        let b: Vec<u8> = xs
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect();
        let y = convert_to_f32(Dtype::BF16, &b).unwrap();
        for (x, y) in xs.iter().zip(&y) {
            assert!((x - y).abs() <= x.abs() * 8e-3, "{x} {y}");
        }
        // bf16 bit pattern 0x3FC0 = 1.5
        assert_eq!(
            convert_to_f32(Dtype::BF16, &[0xC0, 0x3F]).unwrap(),
            vec![1.5]
        );
        // f16 bit pattern 0xC000 = -2
        assert_eq!(
            convert_to_f32(Dtype::F16, &[0x00, 0xC0]).unwrap(),
            vec![-2.0]
        );
        let b: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(convert_to_f32(Dtype::F32, &b).unwrap(), xs.to_vec());
        assert!(convert_to_f32(Dtype::I64, &[0; 8]).is_none());
    }

    #[test]
    fn f16_bf16_checkpoints_load_close_to_f32() {
        let mut loaded = Vec::new();
        for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let d = temp_dir("dtype").unwrap();
            let o = TinyBertOptions {
                seed: 3,
                dtype: dt,
                ..Default::default()
            };
            write_tiny_bert_with(&d, &o).unwrap();
            loaded.push(BertWeights::load_dir(&d).unwrap());
            std::fs::remove_dir_all(&d).ok();
        }
        let (a, h, b) = (&loaded[0], &loaded[1], &loaded[2]);
        let wa = &a.layers[1].ffn1.weight;
        for (tol, other) in [(1e-3f32, h), (8e-3, b)] {
            let wo = &other.layers[1].ffn1.weight;
            for (x, y) in wa.iter().zip(wo) {
                assert!((x - y).abs() <= x.abs() * tol + 1e-6, "{x} {y}");
            }
        }
    }

    #[test]
    fn loads_prefixed_and_unprefixed() {
        for prefix in [true, false] {
            let d = temp_dir("prefix").unwrap();
            let o = TinyBertOptions {
                bert_prefix: prefix,
                num_labels: None,
                pooler: prefix,
                ..Default::default()
            };
            write_tiny_bert_with(&d, &o).unwrap();
            let w = BertWeights::load_dir(&d).unwrap();
            assert_eq!(w.layers.len(), 2);
            assert_eq!(w.layers[0].ffn1.out_features, 64);
            assert_eq!(w.layers[0].ffn2.in_features, 64);
            assert!(w.head.is_none(), "a pooler alone is no task head");
            std::fs::remove_dir_all(&d).ok();
        }
        let d = temp_dir("cls").unwrap();
        write_tiny_bert_with(&d, &TinyBertOptions::default()).unwrap();
        let w = BertWeights::load_dir(&d).unwrap();
        assert_eq!(w.num_labels(), Some(2));
        let hd = w.head.as_ref().unwrap();
        assert_eq!(hd.task, crate::head::Task::SingleLabel);
        assert_eq!(hd.dense.as_ref().unwrap().1, crate::head::Activation::Tanh);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn wrong_shape_names_file_tensor_and_shapes() {
        let d = temp_dir("shape").unwrap();
        let o = TinyBertOptions::default();
        write_tiny_bert_with(&d, &o).unwrap();
        let mut ts = tiny_tensors(&o, tiny_vocab().len());
        let victim = "bert.encoder.layer.1.attention.self.key.weight";
        let t = ts.iter_mut().find(|t| t.0 == victim).unwrap();
        t.1 = vec![32, 31];
        t.2.truncate(32 * 31);
        let st = d.join("model.safetensors");
        write_safetensors(&st, &ts, Dtype::F32).unwrap();
        let e = BertWeights::load_dir(&d).unwrap_err().to_string();
        assert!(e.contains(victim), "{e}");
        assert!(e.contains("[32, 32]") && e.contains("[32, 31]"), "{e}");
        assert!(e.contains("model.safetensors"), "{e}");

        // missing tensor
        let ts: Vec<_> = tiny_tensors(&o, tiny_vocab().len())
            .into_iter()
            .filter(|t| t.0 != "bert.encoder.layer.0.output.LayerNorm.bias")
            .collect();
        write_safetensors(&st, &ts, Dtype::F32).unwrap();
        let e = BertWeights::load_dir(&d).unwrap_err().to_string();
        assert!(e.contains("encoder.layer.0.output.LayerNorm.bias"), "{e}");
        assert!(e.contains("not found"), "{e}");

        // garbage file
        std::fs::write(&st, b"not a safetensors file").unwrap();
        let e = BertWeights::load_dir(&d).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn old_gamma_beta_names_accepted() {
        let d = temp_dir("gamma").unwrap();
        let o = TinyBertOptions::default();
        write_tiny_bert_with(&d, &o).unwrap();
        let ts: Vec<_> = tiny_tensors(&o, tiny_vocab().len())
            .into_iter()
            .map(|mut t| {
                t.0 =
                    t.0.replace("LayerNorm.weight", "LayerNorm.gamma")
                        .replace("LayerNorm.bias", "LayerNorm.beta");
                t
            })
            .collect();
        write_safetensors(&d.join("model.safetensors"), &ts, Dtype::F32).unwrap();
        let w = BertWeights::load_dir(&d).unwrap();
        assert_eq!(w.layers[1].attn_ln.gamma.len(), 32);
        std::fs::remove_dir_all(&d).ok();
    }
}
