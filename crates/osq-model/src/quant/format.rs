//! The parameter directory written by `osq quantize` and read by `osq verify` / `osq run`:
//!
//! - `quant.safetensors`: weight codes (I8 `[N, K]`, γ-migrated), per-channel scales, biases,
//!   embedding codes + per-row scales, LayerNorm γ/β, MPNet's relative position bias (all F32
//!   except the codes);
//! - `quant.json`: format name `"osq-quant"`, `version`, model config (normalised, with its
//!   family), the sentence pooling, bits, method, LN eps, migration flag, and per layer the nine
//!   node quantizers and the fixed-point scales;
//! - copies of `tokenizer.json` and `config.json`;
//! - `quant.json` records the SHA-256 of every other file (`files`), checked at load: a flipped
//!   bit or a file from another run is an error naming the file, not a silently different answer.
//!
//! The directory is written atomically ([`crate::atomic`]) and read into memory, never mapped,
//! so a concurrent rewrite can neither mix two versions nor truncate a file under a reader.
//!
//! Everything the executors derive (multipliers, integer biases, tables) is recomputed at load, so
//! the file holds only what calibration decided. Floats in JSON are stored as f32 where they are
//! f32 (scales, absmax) so that they round-trip exactly. Every error names the file and the
//! tensor or field.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Map, Value};

use crate::config::BertConfig;
use crate::error::{ModelError, Result};
use crate::head::{Activation, Task};
use crate::pooling::{Pooling, SentenceHead};
use crate::relative::RelativeBiasTable;

use super::graph::{LnParams, QLayerParams, QLinear, QTable, QuantParams};
use super::head::{QHead, QHeadDense};
use super::minmax::ln_migrated;
use super::qparams::{act_code_range, BitsConfig, QParams};
use super::{Node, FIXED_FRAC_BITS};

pub const FORMAT_NAME: &str = "osq-quant";
pub const FORMAT_VERSION: u64 = 2;
pub const TENSORS_FILE: &str = "quant.safetensors";
pub const JSON_FILE: &str = "quant.json";
/// The SHA-256 of `quant.json` itself (which records the digests of the other files).
pub const JSON_DIGEST_FILE: &str = "quant.json.sha256";
/// Files a parameter directory may hold (what [`save`] writes, and `calibration.json`).
pub const DIR_FILES: [&str; 6] = [
    JSON_FILE,
    JSON_DIGEST_FILE,
    TENSORS_FILE,
    "tokenizer.json",
    "config.json",
    "calibration.json",
];

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// MPNet's relative position bias, head-major `[heads, buckets]`, float.
const REL_BIAS_TENSOR: &str = "encoder.relative_bias";

const LINEARS: [&str; 6] = ["query", "key", "value", "attn_out", "ffn1", "ffn2"];

fn linears(l: &QLayerParams) -> [&QLinear; 6] {
    [&l.query, &l.key, &l.value, &l.attn_out, &l.ffn1, &l.ffn2]
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `s` = absmax / 2^22 → absmax (exact: a power-of-two scaling of an f32).
fn absmax_of(s: f64) -> f32 {
    (s * (1u64 << FIXED_FRAC_BITS) as f64) as f32
}

fn scale_of(absmax: f32) -> f64 {
    absmax as f64 / (1u64 << FIXED_FRAC_BITS) as f64
}

/// The `quant.json` document of `p`.
pub fn to_json(p: &QuantParams) -> Value {
    let layers: Vec<Value> = p
        .layers
        .iter()
        .enumerate()
        .map(|(l, lp)| {
            let mut nodes = Map::new();
            for n in Node::ALL {
                if let Some(q) = &lp.nodes[n.index()] {
                    if n.in_layer(l) {
                        nodes.insert(n.name().into(), json!(q));
                    }
                }
            }
            json!({
                "nodes": nodes,
                "attn_residual_absmax": absmax_of(lp.s_r_attn),
                "ffn_residual_absmax": absmax_of(lp.s_r_ffn),
                "ffn1_absmax": absmax_of(lp.s_h),
                "s_r_attn": lp.s_r_attn,
                "s_r_ffn": lp.s_r_ffn,
                "s_h": lp.s_h,
            })
        })
        .collect();
    json!({
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model": p.config.to_json(),
        "sentence": {"pooling": p.sentence.pooling.name(), "normalize": p.sentence.normalize},
        "bits": p.bits.name(),
        "weight_bits": p.bits.weight_bits(),
        "act_bits": p.bits.act_bits(),
        "probs_bits": p.bits.probs_bits(),
        "method": p.method,
        "eps": p.eps as f32,
        "fixed_frac_bits": FIXED_FRAC_BITS,
        "migration": {"gamma": p.migrate_gamma},
        "embeddings": {
            "sum_absmax": absmax_of(p.s_r_emb),
            "s_r": p.s_r_emb,
        },
        "layers": layers,
        "head": p.head.as_ref().map(head_json),
    })
}

fn head_json(h: &QHead) -> Value {
    let mut v = json!({
        "task": h.task.name(),
        "labels": h.labels,
    });
    if let Some(d) = &h.dense {
        v["dense"] = json!({
            "activation": d.act.name(),
            "absmax": absmax_of(d.s_d),
            "s_d": d.s_d,
            "node": d.node,
        });
    }
    v
}

/// Writes `quant.safetensors` and `quant.json` into `dir`, with copies of `tokenizer.json`
/// and `config.json` from `model_dir` when given, atomically (see [`crate::atomic`]); `dir` must
/// not be or overlap `model_dir`.
pub fn save(p: &QuantParams, dir: &Path, model_dir: Option<&Path>) -> Result<()> {
    save_with(p, dir, model_dir, &[])
}

/// [`save`] plus `extra` files (name, contents) written into the same directory at once.
pub fn save_with(
    p: &QuantParams,
    dir: &Path,
    model_dir: Option<&Path>,
    extra: &[(&str, Vec<u8>)],
) -> Result<()> {
    let mut files: Vec<(String, Vec<u8>)> = vec![(TENSORS_FILE.into(), tensor_bytes(p, dir)?)];
    if let Some(md) = model_dir {
        for f in ["tokenizer.json", "config.json"] {
            let src = md.join(f);
            files.push((
                f.into(),
                std::fs::read(&src).map_err(|e| ModelError::io(&src, e))?,
            ));
        }
    }
    for (name, bytes) in extra {
        if !DIR_FILES.contains(name) || files.iter().any(|(n, _)| n == name) {
            return Err(ModelError::Input(format!(
                "{name}: not an extra file of a parameter directory"
            )));
        }
        files.push((name.to_string(), bytes.clone()));
    }
    let mut doc = to_json(p);
    let digests: Map<String, Value> = files
        .iter()
        .map(|(n, b)| (n.clone(), Value::String(sha256_hex(b))))
        .collect();
    doc["files"] = Value::Object(digests);
    let jpath = dir.join(JSON_FILE);
    let text = serde_json::to_string_pretty(&doc).map_err(|e| ModelError::Json {
        path: jpath.clone(),
        source: e,
    })?;
    files.push((
        JSON_DIGEST_FILE.into(),
        format!("{}  {JSON_FILE}\n", sha256_hex(text.as_bytes())).into_bytes(),
    ));
    files.push((JSON_FILE.into(), text.into_bytes()));
    let protect: Vec<&Path> = model_dir.into_iter().collect();
    crate::atomic::write_dir(dir, &protect, &DIR_FILES, |tmp| {
        for (name, bytes) in &files {
            let path = tmp.join(name);
            std::fs::write(&path, bytes).map_err(|e| ModelError::io(dir.join(name), e))?;
        }
        Ok(())
    })
}

/// The serialized `quant.safetensors` of `p` (`dir` only names it in errors).
fn tensor_bytes(p: &QuantParams, dir: &Path) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let table = |name: &str, t: &QTable, tensors: &mut Vec<_>| {
        tensors.push((
            format!("{name}.codes"),
            Dtype::I8,
            vec![t.rows, t.cols],
            t.codes.iter().map(|&c| c as u8).collect(),
        ));
        tensors.push((
            format!("{name}.scales"),
            Dtype::F32,
            vec![t.rows],
            f32_bytes(&t.scales),
        ));
    };
    table("embeddings.word", &p.word, &mut tensors);
    table("embeddings.position", &p.position, &mut tensors);
    table("embeddings.token_type", &p.token_type, &mut tensors);
    let ln =
        |name: &str, ln: &LnParams, tensors: &mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>| {
            let h = ln.gamma.len();
            tensors.push((
                format!("{name}.gamma"),
                Dtype::F32,
                vec![h],
                f32_bytes(&ln.gamma),
            ));
            tensors.push((
                format!("{name}.beta"),
                Dtype::F32,
                vec![h],
                f32_bytes(&ln.beta),
            ));
            if let Some(s) = &ln.shortcut {
                tensors.push((
                    format!("{name}.shortcut"),
                    Dtype::F32,
                    vec![h],
                    f32_bytes(s),
                ));
            }
        };
    ln("embeddings.ln", &p.emb_ln, &mut tensors);
    for (l, lp) in p.layers.iter().enumerate() {
        for (name, lin) in LINEARS.iter().zip(linears(lp)) {
            let pre = format!("layers.{l}.{name}");
            table(&pre, &lin.w, &mut tensors);
            tensors.push((
                format!("{pre}.bias"),
                Dtype::F32,
                vec![lin.n()],
                f32_bytes(&lin.bias),
            ));
        }
        ln(&format!("layers.{l}.attn_ln"), &lp.attn_ln, &mut tensors);
        ln(&format!("layers.{l}.ffn_ln"), &lp.ffn_ln, &mut tensors);
    }
    if let Some(hd) = &p.head {
        let lins = hd.dense.iter().map(|d| ("head.dense", &d.lin));
        for (pre, lin) in lins.chain([("head.out", &hd.out)]) {
            table(pre, &lin.w, &mut tensors);
            tensors.push((
                format!("{pre}.bias"),
                Dtype::F32,
                vec![lin.n()],
                f32_bytes(&lin.bias),
            ));
        }
    }
    if let Some(t) = &p.relative_bias {
        tensors.push((
            REL_BIAS_TENSOR.into(),
            Dtype::F32,
            vec![p.config.num_attention_heads, t.buckets],
            f32_bytes(&t.per_head),
        ));
    }
    let path = dir.join(TENSORS_FILE);
    let st_err = |e: safetensors::SafeTensorError| ModelError::Safetensors {
        path: path.clone(),
        msg: e.to_string(),
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (name, dtype, shape, bytes) in &tensors {
        views.push((
            name.clone(),
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).map_err(st_err)?,
        ));
    }
    safetensors::serialize(views, None).map_err(st_err)
}

/// Plausibility bounds of what calibration can produce for a real encoder: far outside them a
/// value is corruption, and would otherwise only surface as a derived fixed-point constant.
mod bounds {
    /// LayerNorm eps.
    pub const EPS: (f64, f64) = (1e-13, 1e-2);
    /// Absolute maxima of the fixed-point intermediates (residual sums, FFN1 output).
    pub const ABSMAX: (f64, f64) = (1e-6, 1e6);
    /// Activation quantizer scales.
    pub const ACT_SCALE: (f64, f64) = (1e-9, 1e4);
    /// |γ|, |β|, |bias|, weight and embedding scales.
    pub const PARAM: f32 = 1e5;
    /// Smallest weight / embedding row scale: the observer never goes below its eps.
    pub const MIN_WEIGHT_SCALE: f32 = super::super::qparams::SCALE_EPS;
}

/// `quant.json`, as written by [`to_json`]: every field is read or the file is refused.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    // checked before the typed parse (a newer file must say so, not fail on a new field)
    #[allow(dead_code)]
    format: String,
    #[allow(dead_code)]
    version: u64,
    model: Value,
    bits: String,
    weight_bits: u32,
    act_bits: u32,
    /// Absent in directories written before the P8 configurations: the activation bits.
    #[serde(default)]
    probs_bits: Option<u32>,
    method: String,
    eps: f64,
    fixed_frac_bits: u32,
    migration: MigrationDoc,
    embeddings: EmbDoc,
    layers: Vec<LayerDoc>,
    files: std::collections::BTreeMap<String, String>,
    /// Absent in directories written before poolings were carried: mean, normalised.
    #[serde(default)]
    sentence: Option<SentenceDoc>,
    /// The task head, if the model has one.
    #[serde(default)]
    head: Option<HeadDoc>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadDoc {
    task: String,
    labels: Vec<String>,
    #[serde(default)]
    dense: Option<HeadDenseDoc>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadDenseDoc {
    activation: String,
    absmax: f64,
    s_d: f64,
    node: NodeDoc,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SentenceDoc {
    pooling: String,
    normalize: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationDoc {
    gamma: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbDoc {
    sum_absmax: f64,
    s_r: f64,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerDoc {
    nodes: std::collections::BTreeMap<String, NodeDoc>,
    attn_residual_absmax: f64,
    ffn_residual_absmax: f64,
    ffn1_absmax: f64,
    s_r_attn: f64,
    s_r_ffn: f64,
    s_h: f64,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeDoc {
    scale: f64,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
}

/// `quant.json` being read: errors name its path and the field.
struct JsonFile<'a> {
    path: &'a Path,
}

impl JsonFile<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.path.to_path_buf(),
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// `x` as f32 within `[lo, hi]`: finite, no overflow or flush to zero in the conversion.
    fn f32_in(&self, field: &str, x: f64, (lo, hi): (f64, f64)) -> Result<f32> {
        let f = x as f32;
        if !(x.is_finite() && f.is_finite() && x >= lo && x <= hi && f > 0.0) {
            return Err(self.err(
                field,
                format!(
                    "{x} is outside the plausible range [{lo:e}, {hi:e}]: the file is probably \
                     corrupt or from another model"
                ),
            ));
        }
        Ok(f)
    }

    /// The fixed-point scale of an absmax field, checked against its stored copy `s`.
    fn fixed_scale(&self, field: &str, absmax: f64, s_field: &str, s: f64) -> Result<f64> {
        let a = self.f32_in(field, absmax, bounds::ABSMAX)?;
        let want = scale_of(a);
        // the copy is informational; serde_json's default float parser may be 1 ulp off
        let close = (s - want).abs() <= want * 1e-12;
        if !close {
            return Err(self.err(
                s_field,
                format!("{s} does not match {field} = {absmax} (expected {want}): the file was edited or is corrupt"),
            ));
        }
        Ok(want)
    }
}

/// `quant.safetensors` being read: typed, shape- and bound-checked tensors.
struct TensorFile<'a, 'd> {
    path: PathBuf,
    st: &'a SafeTensors<'d>,
}

impl TensorFile<'_, '_> {
    fn raw(&self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&[u8]> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: name.into(),
                tried: name.into(),
            })?;
        if t.shape() != shape {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                tensor: name.into(),
                expected: shape.to_vec(),
                actual: t.shape().to_vec(),
            });
        }
        if t.dtype() != dtype {
            return Err(ModelError::Safetensors {
                path: self.path.clone(),
                msg: format!("tensor `{name}`: dtype {:?}, expected {dtype:?}", t.dtype()),
            });
        }
        Ok(t.data())
    }
    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let b = self.raw(name, Dtype::F32, shape)?;
        let v: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = v
            .iter()
            .position(|x| !(x.is_finite() && x.abs() <= bounds::PARAM))
        {
            return Err(ModelError::Corrupt {
                path: self.path.clone(),
                msg: format!(
                    "tensor `{name}[{i}]` = {} is not a plausible value (finite, |x| ≤ {:e}): the \
                     file is probably corrupt or from another model",
                    v[i],
                    bounds::PARAM
                ),
            });
        }
        Ok(v)
    }
    fn table(&self, name: &str, rows: usize, cols: usize, bits: BitsConfig) -> Result<QTable> {
        let codes: Vec<i8> = self
            .raw(&format!("{name}.codes"), Dtype::I8, &[rows, cols])?
            .iter()
            .map(|&b| b as i8)
            .collect();
        let (lo, hi) = bits.weight_range();
        if let Some(i) = codes.iter().position(|&c| !(lo..=hi).contains(&(c as i32))) {
            return Err(ModelError::Safetensors {
                path: self.path.clone(),
                msg: format!(
                    "tensor `{name}.codes`: element {i} = {} is outside the {}-bit range {lo}..{hi}",
                    codes[i],
                    bits.weight_bits()
                ),
            });
        }
        let scales = self.f32s(&format!("{name}.scales"), &[rows])?;
        if let Some(i) = scales.iter().position(|&s| s < bounds::MIN_WEIGHT_SCALE) {
            return Err(ModelError::Corrupt {
                path: self.path.clone(),
                msg: format!(
                    "tensor `{name}.scales[{i}]` = {} is below {:e}: the file is probably corrupt",
                    scales[i],
                    bounds::MIN_WEIGHT_SCALE
                ),
            });
        }
        Ok(QTable {
            codes,
            scales,
            rows,
            cols,
        })
    }
    fn linear(&self, name: &str, n: usize, k: usize, bits: BitsConfig) -> Result<QLinear> {
        Ok(QLinear {
            w: self.table(name, n, k, bits)?,
            bias: self.f32s(&format!("{name}.bias"), &[n])?,
        })
    }
    fn ln(&self, name: &str, h: usize, migrated: bool) -> Result<LnParams> {
        Ok(LnParams {
            gamma: self.f32s(&format!("{name}.gamma"), &[h])?,
            beta: self.f32s(&format!("{name}.beta"), &[h])?,
            migrated,
            shortcut: match self.st.tensor(&format!("{name}.shortcut")) {
                Ok(_) => Some(self.f32s(&format!("{name}.shortcut"), &[h])?),
                Err(_) => None,
            },
        })
    }
}

/// Reads `dir/name` and checks it against the SHA-256 that `quant.json` records for it.
fn read_checked(
    dir: &Path,
    j: &JsonFile,
    files: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> Result<Vec<u8>> {
    let want = files.get(name).ok_or_else(|| {
        j.err(
            &format!("files.{name}"),
            "missing (the SHA-256 of that file)",
        )
    })?;
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
    let got = sha256_hex(&bytes);
    if &got != want {
        return Err(ModelError::Digest {
            path,
            msg: format!(
                "SHA-256 {got} differs from {want} recorded in {JSON_FILE}: the file is corrupt, \
                 or from another parameter directory; re-run osq calibrate"
            ),
        });
    }
    Ok(bytes)
}

/// `quant.json` must match the SHA-256 in `quant.json.sha256` (written `HEX  quant.json`).
fn check_json_digest(dir: &Path, json: &[u8]) -> Result<()> {
    let dpath = dir.join(JSON_DIGEST_FILE);
    let text = std::fs::read_to_string(&dpath).map_err(|e| ModelError::io(&dpath, e))?;
    let want = text.split_whitespace().next().unwrap_or("");
    let got = sha256_hex(json);
    if got != want {
        return Err(ModelError::Digest {
            path: dir.join(JSON_FILE),
            msg: format!(
                "SHA-256 {got} differs from {want:.64} recorded in {JSON_DIGEST_FILE}: the file was \
                 edited or is corrupt; re-run osq calibrate"
            ),
        });
    }
    Ok(())
}

/// The directory's `config.json` (the model's own) must describe the model of `quant.json`.
fn cross_check_config(dir: &Path, bytes: &[u8], want: &BertConfig) -> Result<()> {
    let path = dir.join("config.json");
    let text = std::str::from_utf8(bytes).map_err(|_| ModelError::Corrupt {
        path: path.clone(),
        msg: "not UTF-8".into(),
    })?;
    let got = BertConfig::from_json_str(text, &path)?.to_json();
    let want = want.to_json();
    let fields = want.as_object().into_iter().flatten();
    for (f, w) in fields {
        let g = &got[f];
        if g != w {
            return Err(ModelError::Corrupt {
                path: path.clone(),
                msg: format!(
                    "field `{f}` is {g} but {JSON_FILE} says model.{f} = {w}: the files are from \
                     different models"
                ),
            });
        }
    }
    Ok(())
}

/// A parameter directory as read by [`load_files`].
#[derive(Debug)]
pub struct Loaded {
    /// The parameters.
    pub params: QuantParams,
    /// The bytes of `tokenizer.json`, checked against their digest (`None` when absent).
    pub tokenizer_json: Option<Vec<u8>>,
}

/// Reads a parameter directory written by [`save`]: `quant.json` against its schema (every
/// field read or refused, values within plausible bounds), every file against its recorded
/// SHA-256, the directory's `config.json` against `quant.json`'s model.
pub fn load(dir: &Path) -> Result<QuantParams> {
    Ok(load_files(dir)?.params)
}

/// [`load`], also returning the checked `tokenizer.json` bytes (so that the tokenizer comes
/// from the same version of the directory as the parameters). A digest mismatch is retried
/// twice: the directory may have been replaced, atomically, between two reads.
pub fn load_files(dir: &Path) -> Result<Loaded> {
    let mut tries = 0;
    loop {
        match load_once(dir) {
            Err(ModelError::Digest { .. }) if tries < 2 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// The activation quantizer of `field`, checked against its `nbits`-bit code range.
fn node_of(j: &JsonFile, field: &str, x: &NodeDoc, nbits: u32) -> Result<QParams> {
    let (amin, amax) = act_code_range(nbits);
    let q = QParams {
        scale: j.f32_in(&format!("{field}.scale"), x.scale, bounds::ACT_SCALE)?,
        zero_point: x.zero_point,
        qmin: x.qmin,
        qmax: x.qmax,
    };
    if !q.is_valid() || q.qmin != amin || q.qmax != amax {
        return Err(j.err(
            field,
            format!("invalid quantizer {q:?} for {nbits}-bit activations [{amin}, {amax}]"),
        ));
    }
    Ok(q)
}

fn load_head(
    j: &JsonFile,
    t: &TensorFile,
    hd: &HeadDoc,
    h: usize,
    bits: BitsConfig,
) -> Result<QHead> {
    let task = Task::parse(&hd.task).ok_or_else(|| {
        j.err(
            "head.task",
            format!(
                "\"{}\" is not one of single_label_classification, multi_label_classification, regression, token_classification",
                hd.task
            ),
        )
    })?;
    let n = hd.labels.len();
    if n == 0 || (task == Task::Regression && n != 1) {
        return Err(j.err("head.labels", format!("{n} labels for task {}", hd.task)));
    }
    let dense = match (&hd.dense, task.per_sequence()) {
        (Some(d), true) => {
            let act = Activation::parse(&d.activation).ok_or_else(|| {
                j.err(
                    "head.dense.activation",
                    format!("\"{}\" is not one of tanh, gelu, relu", d.activation),
                )
            })?;
            Some(QHeadDense {
                lin: t.linear("head.dense", h, h, bits)?,
                act,
                s_d: j.fixed_scale("head.dense.absmax", d.absmax, "head.dense.s_d", d.s_d)?,
                node: node_of(j, "head.dense.node", &d.node, bits.act_bits())?,
            })
        }
        (None, false) => None,
        (Some(_), false) => return Err(j.err("head.dense", "a token head has no dense layer")),
        (None, true) => return Err(j.err("head.dense", "missing (a sequence head needs it)")),
    };
    Ok(QHead {
        task,
        labels: hd.labels.clone(),
        dense,
        out: t.linear("head.out", n, h, bits)?,
    })
}

fn load_once(dir: &Path) -> Result<Loaded> {
    let jpath = dir.join(JSON_FILE);
    let raw = std::fs::read(&jpath).map_err(|e| ModelError::io(&jpath, e))?;
    check_json_digest(dir, &raw)?;
    let text = String::from_utf8(raw).map_err(|_| ModelError::Corrupt {
        path: jpath.clone(),
        msg: "not UTF-8".into(),
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path: jpath.clone(),
        source: e,
    })?;
    let j = JsonFile { path: &jpath };
    // format and version first: a newer file should say so, not fail on a new field
    match v.get("format").and_then(Value::as_str) {
        Some(FORMAT_NAME) => {}
        Some(f) => return Err(j.err("format", format!("\"{f}\" is not \"{FORMAT_NAME}\""))),
        None => return Err(j.err("format", "missing (required) or not a string")),
    }
    match v.get("version").and_then(Value::as_u64) {
        Some(FORMAT_VERSION) => {}
        Some(n) if n > FORMAT_VERSION => {
            return Err(j.err(
                "version",
                format!("{n} is newer than this osq supports ({FORMAT_VERSION}); upgrade osq"),
            ))
        }
        Some(n) => {
            return Err(j.err(
                "version",
                format!(
                    "{n} is older than this osq supports ({FORMAT_VERSION}); re-run osq calibrate"
                ),
            ))
        }
        None => return Err(j.err("version", "missing (required) or not an integer")),
    }
    let doc: Doc = serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        j.err(&field, e.into_inner().to_string())
    })?;
    for name in doc.files.keys() {
        if !DIR_FILES.contains(&name.as_str()) || name == JSON_FILE {
            return Err(j.err(
                &format!("files.{name}"),
                "not a file of a parameter directory",
            ));
        }
    }
    let config =
        BertConfig::from_json_str(&doc.model.to_string(), &jpath).map_err(|e| match e {
            ModelError::Config { path, field, msg } => ModelError::Config {
                path,
                field: format!("model.{field}"),
                msg,
            },
            e => e,
        })?;
    let bits = BitsConfig::parse(&doc.bits).ok_or_else(|| {
        j.err(
            "bits",
            format!("\"{}\" is not one of {}", doc.bits, BitsConfig::names()),
        )
    })?;
    let probs_bits = doc.probs_bits.unwrap_or(doc.act_bits);
    if doc.weight_bits != bits.weight_bits()
        || doc.act_bits != bits.act_bits()
        || probs_bits != bits.probs_bits()
    {
        return Err(j.err(
            "weight_bits",
            format!(
                "weight_bits {} / act_bits {} / probs_bits {probs_bits} do not match bits \"{}\"",
                doc.weight_bits, doc.act_bits, doc.bits
            ),
        ));
    }
    if doc.fixed_frac_bits != FIXED_FRAC_BITS {
        return Err(j.err(
            "fixed_frac_bits",
            format!("{} is not {FIXED_FRAC_BITS}", doc.fixed_frac_bits),
        ));
    }
    let eps = j.f32_in("eps", doc.eps, bounds::EPS)?;
    if eps != config.layer_norm_eps as f32 {
        return Err(j.err(
            "eps",
            format!(
                "{eps} differs from model.layer_norm_eps {}: the file was edited or is corrupt",
                config.layer_norm_eps
            ),
        ));
    }
    let eps = eps as f64;
    let method = doc.method;
    let migrate = doc.migration.gamma;
    let s_r_emb = j.fixed_scale(
        "embeddings.sum_absmax",
        doc.embeddings.sum_absmax,
        "embeddings.s_r",
        doc.embeddings.s_r,
    )?;
    let nl = config.num_hidden_layers;
    if doc.layers.len() != nl {
        return Err(j.err(
            "layers",
            format!(
                "{} entries but model.num_hidden_layers is {nl}",
                doc.layers.len()
            ),
        ));
    }

    let tensors = read_checked(dir, &j, &doc.files, TENSORS_FILE)?;
    let mut tokenizer_json = None;
    for f in ["tokenizer.json", "config.json"] {
        if dir.join(f).exists() || doc.files.contains_key(f) {
            let bytes = read_checked(dir, &j, &doc.files, f)?;
            if f == "config.json" {
                cross_check_config(dir, &bytes, &config)?;
            } else {
                tokenizer_json = Some(bytes);
            }
        }
    }
    let tpath = dir.join(TENSORS_FILE);
    let st = SafeTensors::deserialize(&tensors).map_err(|e| ModelError::Safetensors {
        path: tpath.clone(),
        msg: e.to_string(),
    })?;
    let t = TensorFile {
        path: tpath.clone(),
        st: &st,
    };
    let (h, inter) = (config.hidden_size, config.intermediate_size);
    let mut layers = Vec::with_capacity(nl);
    for (l, lj) in doc.layers.iter().enumerate() {
        let f = format!("layers[{l}].");
        let mut nodes = [None; 9];
        for name in lj.nodes.keys() {
            match Node::parse(name) {
                Some(n) if n.in_layer(l) => {}
                _ => return Err(j.err(&format!("{f}nodes.{name}"), "not a node of this layer")),
            }
        }
        for n in Node::ALL {
            if !n.in_layer(l) {
                continue;
            }
            let field = format!("{f}nodes.{}", n.name());
            let x = lj
                .nodes
                .get(n.name())
                .ok_or_else(|| j.err(&field, "missing (required)"))?;
            nodes[n.index()] = Some(node_of(&j, &field, x, bits.node_bits(n))?);
        }
        let pre = format!("layers.{l}");
        let lin = |name: &str, n: usize, k: usize| t.linear(&format!("{pre}.{name}"), n, k, bits);
        layers.push(QLayerParams {
            query: lin("query", h, h)?,
            key: lin("key", h, h)?,
            value: lin("value", h, h)?,
            attn_out: lin("attn_out", h, h)?,
            ffn1: lin("ffn1", inter, h)?,
            ffn2: lin("ffn2", h, inter)?,
            attn_ln: t.ln(&format!("{pre}.attn_ln"), h, migrate)?,
            ffn_ln: t.ln(
                &format!("{pre}.ffn_ln"),
                h,
                ln_migrated(Some(l), true, nl, migrate),
            )?,
            nodes,
            s_r_attn: j.fixed_scale(
                &format!("{f}attn_residual_absmax"),
                lj.attn_residual_absmax,
                &format!("{f}s_r_attn"),
                lj.s_r_attn,
            )?,
            s_r_ffn: j.fixed_scale(
                &format!("{f}ffn_residual_absmax"),
                lj.ffn_residual_absmax,
                &format!("{f}s_r_ffn"),
                lj.s_r_ffn,
            )?,
            s_h: j.fixed_scale(
                &format!("{f}ffn1_absmax"),
                lj.ffn1_absmax,
                &format!("{f}s_h"),
                lj.s_h,
            )?,
        });
    }
    let relative_bias = match config.relative_attention_num_buckets {
        Some(nb) => Some(RelativeBiasTable {
            per_head: t.f32s(REL_BIAS_TENSOR, &[config.num_attention_heads, nb])?,
            buckets: nb,
        }),
        None => None,
    };
    let sentence = match &doc.sentence {
        None => SentenceHead::default(),
        Some(sd) => SentenceHead {
            pooling: Pooling::parse(&sd.pooling).ok_or_else(|| {
                j.err(
                    "sentence.pooling",
                    format!(
                        "\"{}\" is not one of mean, cls, max, mean_sqrt_len",
                        sd.pooling
                    ),
                )
            })?,
            normalize: sd.normalize,
        },
    };
    let head = match &doc.head {
        None => None,
        Some(hd) => Some(load_head(&j, &t, hd, h, bits)?),
    };
    let params = QuantParams {
        head,
        relative_bias,
        sentence,
        word: t.table("embeddings.word", config.vocab_size, h, bits)?,
        position: t.table(
            "embeddings.position",
            config.max_position_embeddings,
            h,
            bits,
        )?,
        token_type: t.table("embeddings.token_type", config.type_vocab_size, h, bits)?,
        emb_ln: t.ln("embeddings.ln", h, migrate)?,
        config,
        bits,
        method,
        migrate_gamma: migrate,
        eps,
        s_r_emb,
        layers,
    };
    Ok(Loaded {
        params,
        tokenizer_json,
    })
}
