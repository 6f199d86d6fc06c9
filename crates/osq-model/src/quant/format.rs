//! The parameter directory written by `osq quantize` and read by `osq verify` / `osq run`:
//!
//! - `quant.safetensors`: weight codes (I8 `[N, K]`, γ-migrated), per-channel scales, biases,
//!   embedding codes + per-row scales, LayerNorm γ/β (all F32 except the codes);
//! - `quant.json`: format name `"osq-quant"`, `version`, model config, bits, method, LN eps,
//!   migration flag, and per layer the nine node quantizers and the fixed-point scales;
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

use super::graph::{LnParams, QLayerParams, QLinear, QTable, QuantParams};
use super::minmax::ln_migrated;
use super::qparams::{BitsConfig, QParams};
use super::{Node, FIXED_FRAC_BITS};

pub const FORMAT_NAME: &str = "osq-quant";
pub const FORMAT_VERSION: u64 = 2;
pub const TENSORS_FILE: &str = "quant.safetensors";
pub const JSON_FILE: &str = "quant.json";
/// Files a parameter directory may hold (what [`save`] writes, and `calibration.json`).
pub const DIR_FILES: [&str; 5] = [
    JSON_FILE,
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

const LINEARS: [&str; 6] = ["query", "key", "value", "attn_out", "ffn1", "ffn2"];

fn linears(l: &QLayerParams) -> [&QLinear; 6] {
    [&l.query, &l.key, &l.value, &l.attn_out, &l.ffn1, &l.ffn2]
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn config_json(c: &BertConfig) -> Value {
    json!({
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "hidden_act": c.hidden_act,
        "pad_token_id": c.pad_token_id,
        "position_embedding_type": "absolute",
    })
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
        "model": config_json(&p.config),
        "bits": p.bits.name(),
        "weight_bits": p.bits.weight_bits(),
        "act_bits": p.bits.act_bits(),
        "method": p.method,
        "eps": p.eps as f32,
        "fixed_frac_bits": FIXED_FRAC_BITS,
        "migration": {"gamma": p.migrate_gamma},
        "embeddings": {
            "sum_absmax": absmax_of(p.s_r_emb),
            "s_r": p.s_r_emb,
        },
        "layers": layers,
    })
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

struct J<'a> {
    path: &'a Path,
}

impl J<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.path.to_path_buf(),
            field: field.into(),
            msg: msg.into(),
        }
    }
    fn get<'v>(&self, v: &'v Value, field: &str, key: &str) -> Result<&'v Value> {
        v.get(key)
            .ok_or_else(|| self.err(&format!("{field}{key}"), "missing (required)"))
    }
    fn f32(&self, v: &Value, field: &str, key: &str) -> Result<f32> {
        let x = self.get(v, field, key)?;
        match x.as_f64() {
            Some(f) if f.is_finite() && f > 0.0 => Ok(f as f32),
            _ => Err(self.err(
                &format!("{field}{key}"),
                format!("expected a positive number, found {x}"),
            )),
        }
    }
    fn str<'v>(&self, v: &'v Value, field: &str, key: &str) -> Result<&'v str> {
        let x = self.get(v, field, key)?;
        x.as_str().ok_or_else(|| {
            self.err(
                &format!("{field}{key}"),
                format!("expected a string, found {x}"),
            )
        })
    }
}

struct T<'a, 'd> {
    path: PathBuf,
    st: &'a SafeTensors<'d>,
}

impl T<'_, '_> {
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
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::Safetensors {
                path: self.path.clone(),
                msg: format!("tensor `{name}`: element {i} is not finite"),
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
        if let Some(i) = scales.iter().position(|&s| s <= 0.0) {
            return Err(ModelError::Safetensors {
                path: self.path.clone(),
                msg: format!("tensor `{name}.scales`: element {i} is not positive"),
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
fn read_checked(dir: &Path, j: &J, v: &Value, name: &str) -> Result<Vec<u8>> {
    let files = j.get(v, "", "files")?;
    let want = files.get(name).and_then(Value::as_str).ok_or_else(|| {
        j.err(
            &format!("files.{name}"),
            "missing (the SHA-256 of that file)",
        )
    })?;
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
    let got = sha256_hex(&bytes);
    if got != want {
        return Err(ModelError::Corrupt {
            path,
            msg: format!(
                "SHA-256 {got} differs from {want} recorded in {JSON_FILE}: the file is corrupt, \
                 or from another parameter directory; re-run osq calibrate"
            ),
        });
    }
    Ok(bytes)
}

/// Reads a parameter directory written by [`save`].
pub fn load(dir: &Path) -> Result<QuantParams> {
    let jpath = dir.join(JSON_FILE);
    let text = std::fs::read_to_string(&jpath).map_err(|e| ModelError::io(&jpath, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path: jpath.clone(),
        source: e,
    })?;
    let j = J { path: &jpath };
    let format = j.str(&v, "", "format")?;
    if format != FORMAT_NAME {
        return Err(j.err("format", format!("\"{format}\" is not \"{FORMAT_NAME}\"")));
    }
    let version = j.get(&v, "", "version")?;
    match version.as_u64() {
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
        None => return Err(j.err("version", format!("expected an integer, found {version}"))),
    }
    let model = j.get(&v, "", "model")?;
    let config = BertConfig::from_json_str(&model.to_string(), &jpath).map_err(|e| match e {
        ModelError::Config { path, field, msg } => ModelError::Config {
            path,
            field: format!("model.{field}"),
            msg,
        },
        e => e,
    })?;
    let bits_s = j.str(&v, "", "bits")?;
    let bits = BitsConfig::parse(bits_s).ok_or_else(|| {
        j.err(
            "bits",
            format!("\"{bits_s}\" is not one of w8a8, w6a6, w4a8, w4a4"),
        )
    })?;
    let method = j.str(&v, "", "method")?.to_string();
    let eps = j.f32(&v, "", "eps")? as f64;
    let ffb = j.get(&v, "", "fixed_frac_bits")?;
    if ffb.as_u64() != Some(FIXED_FRAC_BITS as u64) {
        return Err(j.err("fixed_frac_bits", format!("{ffb} is not {FIXED_FRAC_BITS}")));
    }
    let mig = j.get(&v, "", "migration")?;
    let migrate = j
        .get(mig, "migration.", "gamma")?
        .as_bool()
        .ok_or_else(|| j.err("migration.gamma", "expected true or false"))?;
    let emb = j.get(&v, "", "embeddings")?;
    let s_r_emb = scale_of(j.f32(emb, "embeddings.", "sum_absmax")?);
    let lv = j
        .get(&v, "", "layers")?
        .as_array()
        .ok_or_else(|| j.err("layers", "expected an array"))?;
    let nl = config.num_hidden_layers;
    if lv.len() != nl {
        return Err(j.err(
            "layers",
            format!("{} entries but model.num_hidden_layers is {nl}", lv.len()),
        ));
    }
    let (amin, amax) = bits.act_range();

    let tpath = dir.join(TENSORS_FILE);
    let tensors = read_checked(dir, &j, &v, TENSORS_FILE)?;
    for f in ["tokenizer.json", "config.json"] {
        if dir.join(f).exists() || j.get(&v, "", "files")?.get(f).is_some() {
            read_checked(dir, &j, &v, f)?;
        }
    }
    let st = SafeTensors::deserialize(&tensors).map_err(|e| ModelError::Safetensors {
        path: tpath.clone(),
        msg: e.to_string(),
    })?;
    let t = T {
        path: tpath.clone(),
        st: &st,
    };
    let (h, inter) = (config.hidden_size, config.intermediate_size);
    let mut layers = Vec::with_capacity(nl);
    for (l, lj) in lv.iter().enumerate() {
        let f = format!("layers[{l}].");
        let nj = j.get(lj, &f, "nodes")?;
        let mut nodes = [None; 9];
        for n in Node::ALL {
            if !n.in_layer(l) {
                continue;
            }
            let field = format!("{f}nodes.{}", n.name());
            let x = nj
                .get(n.name())
                .ok_or_else(|| j.err(&field, "missing (required)"))?;
            let q: QParams = serde_json::from_value(x.clone()).map_err(|e| {
                j.err(
                    &field,
                    format!("expected {{scale, zero_point, qmin, qmax}}: {e}"),
                )
            })?;
            if !q.is_valid() || q.qmin != amin || q.qmax != amax {
                return Err(j.err(
                    &field,
                    format!(
                        "invalid quantizer {q:?} for {}-bit activations [{amin}, {amax}]",
                        bits.act_bits()
                    ),
                ));
            }
            nodes[n.index()] = Some(q);
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
            s_r_attn: scale_of(j.f32(lj, &f, "attn_residual_absmax")?),
            s_r_ffn: scale_of(j.f32(lj, &f, "ffn_residual_absmax")?),
            s_h: scale_of(j.f32(lj, &f, "ffn1_absmax")?),
        });
    }
    Ok(QuantParams {
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
    })
}
