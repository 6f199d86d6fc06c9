//! Deterministic tiny BERT checkpoints for unit tests of every crate.
//!
//! [`write_tiny_bert`] writes `config.json`, `model.safetensors` and a WordPiece
//! `tokenizer.json` (same structure as all-MiniLM-L6-v2's) into a directory: hidden 32,
//! 2 layers, 4 heads, intermediate 64, ~100 tokens, 64 positions, pooler + 2-label classifier,
//! `bert.`-prefixed names. Weights come from a SplitMix64 stream of the seed (no `rand`
//! dependency, identical on every platform). Every LayerNorm γ has one large channel
//! (index [`OUTLIER_CHANNEL`]) so the structured outliers that Outlier Suppression targets exist
//! in the tiny model too.

use std::path::Path;

use safetensors::Dtype;
use serde_json::json;

use crate::error::{ModelError, Result};

/// Hidden channel whose LayerNorm γ is multiplied by [`TinyBertOptions::outlier_gamma`].
pub const OUTLIER_CHANNEL: usize = 5;

/// Options of [`write_tiny_bert_with`].
#[derive(Debug, Clone)]
pub struct TinyBertOptions {
    pub seed: u64,
    /// Storage dtype: `F32`, `F16` or `BF16`.
    pub dtype: Dtype,
    /// Prefix encoder tensors with `bert.` (as `BertForSequenceClassification`).
    pub bert_prefix: bool,
    /// Write `pooler.dense` (required when `num_labels` is set).
    pub pooler: bool,
    /// Write a `classifier` with this many labels.
    pub num_labels: Option<usize>,
    /// Scale of the γ outlier channel.
    pub outlier_gamma: f32,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
}

impl Default for TinyBertOptions {
    fn default() -> Self {
        TinyBertOptions {
            seed: 0,
            dtype: Dtype::F32,
            bert_prefix: true,
            pooler: true,
            num_labels: Some(2),
            outlier_gamma: 8.0,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            max_position_embeddings: 64,
        }
    }
}

pub use crate::rng::SplitMix64;

/// The WordPiece vocabulary of the tiny tokenizer (index = id).
pub fn tiny_vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend([".", ",", "!", "?", "'", "-"].iter().map(|s| s.to_string()));
    v.extend(('a'..='z').map(|c| c.to_string()));
    v.extend(('a'..='z').map(|c| format!("##{c}")));
    let words = [
        "the", "a", "is", "cat", "dog", "sat", "on", "mat", "and", "of", "to", "in", "it", "was",
        "good", "bad", "movie", "great", "not", "very", "film", "this", "that", "i", "you", "he",
        "she", "we", "they", "love", "hate", "run", "##s", "##ing", "##ed", "##ly", "##er",
    ];
    v.extend(words.iter().map(|s| s.to_string()));
    v
}

/// `tokenizer.json` content for a vocabulary (BERT normalizer, pre-tokenizer, template).
pub fn tokenizer_json(vocab: &[String]) -> serde_json::Value {
    let vocab_map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let id = |t: &str| vocab.iter().position(|v| v == t).unwrap_or(0);
    let added: Vec<serde_json::Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|t| {
            json!({"id": id(t), "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [id("[CLS]")], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [id("[SEP]")], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab_map}
    })
}

/// A named tensor to write: `(name, shape, values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Write tensors to a safetensors file, converting to `dtype` (`F32`, `F16`, `BF16`).
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor], dtype: Dtype) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| match dtype {
            Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            Dtype::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let dtype = match dtype {
        Dtype::F16 | Dtype::BF16 => dtype,
        _ => Dtype::F32,
    };
    let st_err = |e: safetensors::SafeTensorError| ModelError::Safetensors {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), b).map_err(st_err)?;
        views.push((name.clone(), view));
    }
    let data = safetensors::serialize(views, None).map_err(st_err)?;
    std::fs::write(path, data).map_err(|e| ModelError::io(path, e))
}

/// The HF `config.json` of a tiny model.
pub fn tiny_config_json(o: &TinyBertOptions, vocab_size: usize) -> serde_json::Value {
    let mut cfg = json!({
        "architectures": [if o.num_labels.is_some() { "BertForSequenceClassification" } else { "BertModel" }],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_size": o.hidden_size,
        "intermediate_size": o.intermediate_size,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": o.max_position_embeddings,
        "num_attention_heads": o.num_attention_heads,
        "num_hidden_layers": o.num_hidden_layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
    });
    if let (Some(n), Some(obj)) = (o.num_labels, cfg.as_object_mut()) {
        let id2label: serde_json::Map<String, serde_json::Value> = (0..n)
            .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
            .collect();
        obj.insert("id2label".into(), json!(id2label));
    }
    cfg
}

/// The tensors of a tiny model (names without the `bert.` prefix decision applied).
pub fn tiny_tensors(o: &TinyBertOptions, vocab_size: usize) -> Vec<NamedTensor> {
    let mut rng = SplitMix64::new(o.seed ^ 0x05_9BE7);
    let (h, inter) = (o.hidden_size, o.intermediate_size);
    let pre = if o.bert_prefix { "bert." } else { "" };
    let mut t: Vec<NamedTensor> = Vec::new();
    let ln = |t: &mut Vec<NamedTensor>, rng: &mut SplitMix64, name: &str| {
        let mut g: Vec<f32> = (0..h).map(|_| (1.0 + 0.1 * rng.normal()) as f32).collect();
        if OUTLIER_CHANNEL < h {
            g[OUTLIER_CHANNEL] *= o.outlier_gamma;
        }
        t.push((format!("{pre}{name}.weight"), vec![h], g));
        t.push((format!("{pre}{name}.bias"), vec![h], rng.normals(h, 0.1)));
    };
    let lin = |t: &mut Vec<NamedTensor>,
               rng: &mut SplitMix64,
               name: &str,
               out: usize,
               inp: usize,
               pre: &str| {
        let std = 1.0 / (inp as f64).sqrt();
        t.push((
            format!("{pre}{name}.weight"),
            vec![out, inp],
            rng.normals(out * inp, std),
        ));
        t.push((
            format!("{pre}{name}.bias"),
            vec![out],
            rng.normals(out, 0.1),
        ));
    };
    t.push((
        format!("{pre}embeddings.word_embeddings.weight"),
        vec![vocab_size, h],
        rng.normals(vocab_size * h, 0.5),
    ));
    t.push((
        format!("{pre}embeddings.position_embeddings.weight"),
        vec![o.max_position_embeddings, h],
        rng.normals(o.max_position_embeddings * h, 0.2),
    ));
    t.push((
        format!("{pre}embeddings.token_type_embeddings.weight"),
        vec![2, h],
        rng.normals(2 * h, 0.2),
    ));
    ln(&mut t, &mut rng, "embeddings.LayerNorm");
    for l in 0..o.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for n in ["query", "key", "value"] {
            lin(
                &mut t,
                &mut rng,
                &format!("{p}.attention.self.{n}"),
                h,
                h,
                pre,
            );
        }
        lin(
            &mut t,
            &mut rng,
            &format!("{p}.attention.output.dense"),
            h,
            h,
            pre,
        );
        ln(&mut t, &mut rng, &format!("{p}.attention.output.LayerNorm"));
        lin(
            &mut t,
            &mut rng,
            &format!("{p}.intermediate.dense"),
            inter,
            h,
            pre,
        );
        lin(
            &mut t,
            &mut rng,
            &format!("{p}.output.dense"),
            h,
            inter,
            pre,
        );
        ln(&mut t, &mut rng, &format!("{p}.output.LayerNorm"));
    }
    if o.pooler || o.num_labels.is_some() {
        lin(&mut t, &mut rng, "pooler.dense", h, h, pre);
    }
    if let Some(n) = o.num_labels {
        lin(&mut t, &mut rng, "classifier", n, h, "");
    }
    t
}

/// Write the default tiny BERT (see the module docs) with the given seed into `dir`.
pub fn write_tiny_bert(dir: &Path, seed: u64) -> Result<()> {
    write_tiny_bert_with(
        dir,
        &TinyBertOptions {
            seed,
            ..TinyBertOptions::default()
        },
    )
}

/// Write a tiny BERT with explicit options into `dir` (created if needed).
pub fn write_tiny_bert_with(dir: &Path, o: &TinyBertOptions) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let vocab = tiny_vocab();
    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = dir.join(name);
        let s = serde_json::to_string_pretty(v).map_err(|e| ModelError::Json {
            path: p.clone(),
            source: e,
        })?;
        std::fs::write(&p, s).map_err(|e| ModelError::io(&p, e))
    };
    write_json("config.json", &tiny_config_json(o, vocab.len()))?;
    write_json("tokenizer.json", &tokenizer_json(&vocab))?;
    let vocab_txt = vocab.join("\n") + "\n";
    let vp = dir.join("vocab.txt");
    std::fs::write(&vp, vocab_txt).map_err(|e| ModelError::io(&vp, e))?;
    write_safetensors(
        &dir.join("model.safetensors"),
        &tiny_tensors(o, vocab.len()),
        o.dtype,
    )
}

/// Ten short sentences in the tiny model's vocabulary, of varied lengths, for tests.
pub const SENTENCES: &[&str] = &[
    "the cat sat on the mat.",
    "this movie is very good!",
    "i hate that bad film, and the dog was not great.",
    "we love it",
    "she runs",
    "they loved the movie, it was a great film and i love this",
    "is it good? not very.",
    "he hated running on the mat",
    "a dog",
    "you and i were in the film",
];

/// A fresh temporary directory (`osq-<tag>-…` under the system temp dir), removed when the
/// value is dropped; it derefs to its [`Path`]. Keep it alive while child processes use it.
pub fn temp_dir(tag: &str) -> Result<TestDir> {
    tempfile::Builder::new()
        .prefix(&format!("osq-{tag}-"))
        .tempdir()
        .map(TestDir)
        .map_err(|e| ModelError::io(std::env::temp_dir(), e))
}

/// A temporary directory of [`temp_dir`] (RAII).
#[derive(Debug)]
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A MinMax W8A8 parameter directory of the tiny model (seed 1), calibrated on [`SENTENCES`],
/// written atomically into `root/params`; returns its path. The model itself goes to a
/// private temporary directory, so that processes may call this concurrently. For doctests
/// and tests of the crates above this one.
pub fn write_tiny_params(root: &Path) -> Result<std::path::PathBuf> {
    use crate::quant::{format, minmax, BitsConfig, QuantModel, QuantParams};
    let tmp = temp_dir("tiny-model")?;
    let model = tmp.join("model");
    write_tiny_bert(&model, 1)?;
    let w = crate::BertWeights::load_dir(&model)?;
    let tok = crate::Tokenizer::from_file(
        &model.join("tokenizer.json"),
        w.config.max_position_embeddings,
    )?;
    let batch = tok.encode_batch(SENTENCES, 64)?;
    let ranges = minmax::collect(&w, &[batch], &crate::ThreadPool::single(), true)?;
    let params = QuantParams::build(&w, &ranges, BitsConfig::W8A8, "minmax", true)?;
    let qm = QuantModel::new(params)?;
    let out = root.join("params");
    format::save(&qm.params, &out, Some(&model))?;
    Ok(out)
}

/// A parameter directory of the tiny generated model for documentation examples: one directory
/// under the system temp dir shared by every doctest process (its contents are deterministic;
/// it is written atomically, so concurrent first uses are safe).
pub fn doc_params_dir() -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!(
        "osq-doc-fixture-{}-head",
        crate::quant::format::FORMAT_VERSION
    ));
    let params = root.join("params");
    if crate::quant::format::load(&params).is_err() {
        write_tiny_params(&root).expect("writing the tiny doc model");
    }
    params
}
