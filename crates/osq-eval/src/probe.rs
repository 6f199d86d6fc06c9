//! A linear probe on sentence embeddings: L2-regularized binary logistic regression, and the
//! labelled TSV files it is trained and evaluated on.
//!
//! The base checkpoints (all-MiniLM-L6-v2, ...) have no task head, so accuracy on real labelled
//! data is measured through a probe trained once on FP32 sentence embeddings
//! ([`osq_model::fp32::sentence_embeddings`]: mean pooling over the valid tokens, L2 normalization)
//! and then applied unchanged to the embeddings of every quantized model.
//!
//! Training (see docs/eval.md):
//! - by default the raw embedding is the feature vector (the geometry the embeddings are made
//!   for). Optionally features are standardized with the training mean and (population) standard
//!   deviation; a channel with std below 1e-3 × the median channel std is near-constant and
//!   keeps std 1 (all-MiniLM-L6-v2 has one at ~1e-7 of the others). Default off: on all-MiniLM-L6-v2 it
//!   has lower cross-validated accuracy and it amplifies low-variance channels, which makes the
//!   probe sensitive to perturbations far below the embedding's own scale (docs/eval.md);
//! - loss `(1/n) Σ [softplus(t_i) − y_i t_i] + (λ/2)‖w‖²`, `t = w·z + b`, bias not penalized;
//! - damped Newton: exact gradient and Hessian in f64, Cholesky solve, Armijo backtracking;
//!   stops when the Newton decrement `gᵀH⁻¹g / 2 < tol`. The objective is strictly convex for
//!   λ > 0, so the minimizer is unique; all sums run in a fixed order on one thread, so the
//!   result is bit-identical run to run and machine to machine (same float ops);
//! - the standardization is then folded into raw-space weights
//!   (`w_j ← w_j / σ_j`, `b ← b − Σ w_j μ_j / σ_j`) and stored as f32: applying the probe is
//!   one dot product with the embedding. Reported train accuracy uses the stored f32 probe.
//! - decision: `logit > 0` → label 1, otherwise 0.
//!
//! λ can be chosen by deterministic k-fold cross-validation (fold of sample `i` = `i mod k`,
//! warm-started over the grid from strong to weak regularization; best mean validation
//! accuracy, ties to the larger λ).

use std::path::Path;

use serde_json::{json, Value};

use osq_model::error::{ModelError, Result};
use osq_model::weights::BertWeights;

pub const PROBE_FORMAT: &str = "osq-probe";
pub const PROBE_VERSION: u64 = 1;
/// What the probe's input is (stored in the file, checked at load).
pub const PROBE_INPUT: &str = "sentence-embedding:mean-pool+l2-normalize";
/// Standardization leaves a channel unscaled when its std is below this fraction of the median
/// channel std.
pub const CONSTANT_CHANNEL_REL: f64 = 1e-3;

// ---------------------------------------------------------------------------------------------
// Labelled TSV
// ---------------------------------------------------------------------------------------------

/// One labelled example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub label: u8,
    pub text: String,
    /// 1-based line number in the file.
    pub line: usize,
}

fn tsv_err(path: &Path, line: usize, msg: impl std::fmt::Display) -> ModelError {
    ModelError::Input(format!("{}:{line}: {msg}", path.display()))
}

/// Parses `label<TAB>text` lines (label `0` or `1`). Blank lines (only whitespace) are skipped;
/// a line without a TAB, with another label, or with an empty text is an error naming the file
/// and the line. A UTF-8 BOM and `\r\n` line ends are accepted. An empty result is an error.
pub fn parse_labelled_tsv(content: &str, path: &Path) -> Result<Vec<Example>> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut out = Vec::new();
    for (i, raw) in content.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() {
            continue;
        }
        let Some((label, text)) = l.split_once('\t') else {
            return Err(tsv_err(
                path,
                line,
                "expected `label<TAB>text`, found no TAB",
            ));
        };
        let label = match label.trim() {
            "0" => 0u8,
            "1" => 1u8,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(tsv_err(
                    path,
                    line,
                    format!("label must be 0 or 1, found \"{shown}\""),
                ));
            }
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(tsv_err(path, line, "empty text after the label"));
        }
        out.push(Example {
            label,
            text: text.to_string(),
            line,
        });
    }
    if out.is_empty() {
        return Err(ModelError::Input(format!(
            "{}: no labelled lines (expected `label<TAB>text`)",
            path.display()
        )));
    }
    Ok(out)
}

/// Reads a labelled TSV file (see [`parse_labelled_tsv`]); invalid UTF-8 is an error with the
/// line number.
pub fn read_labelled_tsv(path: &Path) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let content = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(tsv_err(path, line, "invalid UTF-8"));
        }
    };
    parse_labelled_tsv(&content, path)
}

// ---------------------------------------------------------------------------------------------
// Probe
// ---------------------------------------------------------------------------------------------

/// Training options.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// L2 penalty λ on the (standardized) weights.
    pub l2: f64,
    pub standardize: bool,
    pub max_iter: usize,
    /// Stop when the Newton decrement `gᵀH⁻¹g / 2` falls below this.
    pub tol: f64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            l2: 1e-4,
            standardize: false,
            max_iter: 100,
            tol: 1e-12,
        }
    }
}

/// How training went.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    pub n: usize,
    pub positives: usize,
    pub l2: f64,
    pub standardize: bool,
    pub iterations: usize,
    pub converged: bool,
    /// Final objective (mean log loss + penalty).
    pub objective: f64,
    /// Accuracy of the stored (f32, folded) probe on the training set.
    pub accuracy: f64,
    /// Cross-validation results `(λ, mean validation accuracy)`, when λ was selected by CV.
    pub cv: Vec<(f64, f64)>,
    pub cv_folds: usize,
    /// Channels left unscaled by the standardization (near-constant).
    pub constant_channels: usize,
}

/// A trained binary linear probe `logit = w·x + b` on raw embeddings.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub weight: Vec<f32>,
    pub bias: f32,
    /// Fingerprint of the FP32 model whose embeddings it was trained on ([`weights_fingerprint`]).
    pub model_fingerprint: Option<String>,
    /// Free-form training record written to the file (`training` object).
    pub training: Option<TrainReport>,
}

impl Probe {
    pub fn dim(&self) -> usize {
        self.weight.len()
    }

    /// The logit of one embedding (f64 accumulation).
    pub fn logit(&self, x: &[f32]) -> f64 {
        self.weight
            .iter()
            .zip(x)
            .map(|(&w, &v)| w as f64 * v as f64)
            .sum::<f64>()
            + self.bias as f64
    }

    /// Predicted label of one embedding: 1 iff the logit is > 0.
    pub fn predict(&self, x: &[f32]) -> u8 {
        u8::from(self.logit(x) > 0.0)
    }

    /// `P(label = 1)` of one embedding.
    pub fn probability(&self, x: &[f32]) -> f64 {
        sigmoid(self.logit(x))
    }

    /// Predictions for `[n, dim]` embeddings.
    pub fn predict_all(&self, x: &[f32]) -> Vec<u8> {
        x.chunks_exact(self.dim().max(1))
            .map(|r| self.predict(r))
            .collect()
    }

    /// The JSON document of the probe.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "format": PROBE_FORMAT,
            "version": PROBE_VERSION,
            "kind": "logistic-regression",
            "input": PROBE_INPUT,
            "labels": {"0": "negative", "1": "positive"},
            "decision": "label 1 iff weight·x + bias > 0",
            "dim": self.dim(),
            "bias": self.bias,
            "weight": self.weight,
        });
        if let Some(f) = &self.model_fingerprint {
            v["model_fingerprint"] = json!(f);
        }
        if let Some(t) = &self.training {
            v["training"] = json!({
                "n": t.n,
                "positives": t.positives,
                "l2": t.l2,
                "standardize": t.standardize,
                "constant_channels": t.constant_channels,
                "solver": "newton-cholesky (f64, armijo backtracking)",
                "iterations": t.iterations,
                "converged": t.converged,
                "objective": t.objective,
                "train_accuracy": t.accuracy,
                "cv_folds": t.cv_folds,
                "cv": t.cv.iter().map(|(l, a)| json!({"l2": l, "accuracy": a})).collect::<Vec<_>>(),
            });
        }
        v
    }

    /// Writes the probe as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json())
            .map_err(|e| ModelError::Input(format!("cannot serialize the probe: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ModelError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        std::fs::write(path, text + "\n").map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Reads a probe written by [`Probe::save`]; every error names the file and the field.
    pub fn load(path: &Path) -> Result<Probe> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_json(&v, path)
    }

    /// Parses the JSON document of [`Probe::to_json`].
    pub fn from_json(v: &Value, path: &Path) -> Result<Probe> {
        let err = |field: &str, msg: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            msg,
        };
        match v.get("format").and_then(Value::as_str) {
            Some(PROBE_FORMAT) => {}
            Some(f) => return Err(err("format", format!("\"{f}\" is not \"{PROBE_FORMAT}\""))),
            None => return Err(err("format", "missing (not an osq probe file)".into())),
        }
        match v.get("version").and_then(Value::as_u64) {
            Some(PROBE_VERSION) => {}
            Some(n) => {
                return Err(err(
                    "version",
                    format!("{n} is not supported (this osq reads version {PROBE_VERSION})"),
                ))
            }
            None => return Err(err("version", "missing or not an integer".into())),
        }
        match v.get("input").and_then(Value::as_str) {
            Some(PROBE_INPUT) => {}
            other => return Err(err("input", format!("{other:?} is not \"{PROBE_INPUT}\""))),
        }
        let weight: Vec<f32> = match v.get("weight").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| {
                            err(
                                &format!("weight[{i}]"),
                                format!("{x} is not a finite number"),
                            )
                        })
                })
                .collect::<Result<_>>()?,
            None => return Err(err("weight", "missing or not an array".into())),
        };
        if weight.is_empty() {
            return Err(err("weight", "empty".into()));
        }
        if let Some(d) = v.get("dim") {
            if d.as_u64() != Some(weight.len() as u64) {
                return Err(err(
                    "dim",
                    format!("{d} but `weight` has {} values", weight.len()),
                ));
            }
        }
        let bias = v
            .get("bias")
            .and_then(Value::as_f64)
            .map(|b| b as f32)
            .filter(|b| b.is_finite())
            .ok_or_else(|| err("bias", "missing or not a finite number".into()))?;
        let model_fingerprint = v
            .get("model_fingerprint")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Probe {
            weight,
            bias,
            model_fingerprint,
            training: None,
        })
    }
}

/// Fraction of `x` rows whose prediction equals the label.
pub fn accuracy(probe: &Probe, x: &[f32], y: &[u8]) -> f64 {
    if y.is_empty() {
        return 0.0;
    }
    let ok = probe
        .predict_all(x)
        .iter()
        .zip(y)
        .filter(|(p, l)| p == l)
        .count();
    ok as f64 / y.len() as f64
}

/// FNV-1a 64 over the little-endian bytes of the word, position and token-type embeddings and
/// the layer-0 query weight: identifies the FP32 checkpoint a probe was trained on.
pub fn weights_fingerprint(w: &BertWeights) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |xs: &[f32]| {
        for x in xs {
            for b in x.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    };
    eat(&w.embeddings.word);
    eat(&w.embeddings.position);
    eat(&w.embeddings.token_type);
    if let Some(l) = w.layers.first() {
        eat(&l.query.weight);
    }
    format!("fnv1a64:{h:016x}")
}

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^t)` without overflow.
fn softplus(t: f64) -> f64 {
    if t > 0.0 {
        t + (-t).exp().ln_1p()
    } else {
        t.exp().ln_1p()
    }
}

/// Standardized design matrix `[n, d]` (row-major, f64) plus the mean and std used.
struct Design {
    z: Vec<f64>,
    d: usize,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Channels treated as constant by the standardization (std < 1e-3 × median std).
    constant: usize,
}

fn design(x: &[f32], n: usize, d: usize, standardize: bool) -> Design {
    let mut mean = vec![0.0f64; d];
    let mut std = vec![1.0f64; d];
    let mut constant = 0usize;
    if standardize && n > 0 {
        for r in x.chunks_exact(d) {
            mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0f64; d];
        for r in x.chunks_exact(d) {
            for ((s, &v), m) in var.iter_mut().zip(r).zip(&mean) {
                let c = v as f64 - m;
                *s += c * c;
            }
        }
        let sds: Vec<f64> = var.iter().map(|v| (v / n as f64).sqrt()).collect();
        let mut sorted = sds.clone();
        sorted.sort_by(f64::total_cmp);
        // A channel whose spread is < 1e-3 of the median channel's is constant up to rounding
        // noise (all-MiniLM-L6-v2 has one at ~1e-7 of the others): dividing by its std would
        // amplify that noise by ~10^7 and make the probe depend on it.
        let floor = (CONSTANT_CHANNEL_REL * sorted[d / 2]).max(1e-12);
        for (s, &sd) in std.iter_mut().zip(&sds) {
            if sd <= floor {
                *s = 1.0;
                constant += 1;
            } else {
                *s = sd;
            }
        }
    } else {
        mean.iter_mut().for_each(|m| *m = 0.0);
    }
    let z = x
        .chunks_exact(d)
        .flat_map(|r| {
            r.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((&v, m), s)| (v as f64 - m) / s)
                .collect::<Vec<_>>()
        })
        .collect();
    Design {
        z,
        d,
        mean,
        std,
        constant,
    }
}

/// Objective at `theta = [w (d), b]` over the rows in `rows`.
fn objective(dz: &Design, y: &[u8], rows: &[usize], theta: &[f64], l2: f64) -> f64 {
    let d = dz.d;
    let mut loss = 0.0;
    for &i in rows {
        let t = dot(&dz.z[i * d..(i + 1) * d], &theta[..d]) + theta[d];
        loss += softplus(t) - y[i] as f64 * t;
    }
    loss / rows.len() as f64 + 0.5 * l2 * dot(&theta[..d], &theta[..d])
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four fixed partial sums: vectorizes, and the order never depends on the machine.
    let mut s = [0.0f64; 4];
    let (ca, ra) = a.split_at(a.len() / 4 * 4);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// In-place Cholesky of the symmetric positive definite `a` `[m, m]` (lower triangle used and
/// overwritten). Returns false if `a` is not positive definite.
fn cholesky(a: &mut [f64], m: usize) -> bool {
    for j in 0..m {
        let mut s = a[j * m + j];
        for k in 0..j {
            s -= a[j * m + k] * a[j * m + k];
        }
        if s.is_nan() || s <= 0.0 {
            return false;
        }
        let l = s.sqrt();
        a[j * m + j] = l;
        for i in j + 1..m {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= a[i * m + k] * a[j * m + k];
            }
            a[i * m + j] = s / l;
        }
    }
    true
}

/// Solves `L Lᵀ x = b` with the factor of [`cholesky`].
fn chol_solve(l: &[f64], m: usize, b: &[f64]) -> Vec<f64> {
    let mut y = b.to_vec();
    for i in 0..m {
        let mut s = y[i];
        for k in 0..i {
            s -= l[i * m + k] * y[k];
        }
        y[i] = s / l[i * m + i];
    }
    for i in (0..m).rev() {
        let mut s = y[i];
        for k in i + 1..m {
            s -= l[k * m + i] * y[k];
        }
        y[i] = s / l[i * m + i];
    }
    y
}

struct Fit {
    theta: Vec<f64>,
    iterations: usize,
    converged: bool,
    objective: f64,
}

/// Damped Newton on the rows `rows` from `theta0`.
fn newton(
    dz: &Design,
    y: &[u8],
    rows: &[usize],
    theta0: Vec<f64>,
    opts: &ProbeOptions,
) -> Result<Fit> {
    let d = dz.d;
    let m = d + 1;
    let nr = rows.len() as f64;
    let mut theta = theta0;
    let mut f = objective(dz, y, rows, &theta, opts.l2);
    let mut converged = false;
    let mut it = 0;
    let mut zt = vec![0.0f64; m];
    while it < opts.max_iter {
        it += 1;
        // Gradient and Hessian (upper triangle), f64, fixed order.
        let mut g = vec![0.0f64; m];
        let mut hm = vec![0.0f64; m * m];
        for &i in rows {
            let zi = &dz.z[i * d..(i + 1) * d];
            zt[..d].copy_from_slice(zi);
            zt[d] = 1.0;
            let t = dot(zi, &theta[..d]) + theta[d];
            let p = sigmoid(t);
            let r = p - y[i] as f64;
            let c = p * (1.0 - p);
            for (gj, &v) in g.iter_mut().zip(&zt) {
                *gj += r * v;
            }
            if c > 0.0 {
                for a in 0..m {
                    let ca = c * zt[a];
                    let row = &mut hm[a * m + a..(a + 1) * m];
                    for (h, &v) in row.iter_mut().zip(&zt[a..]) {
                        *h += ca * v;
                    }
                }
            }
        }
        for (j, gj) in g.iter_mut().enumerate() {
            *gj /= nr;
            if j < d {
                *gj += opts.l2 * theta[j];
            }
        }
        // Mirror to the lower triangle, scale, add the penalty (and a tiny ridge on the bias so
        // a saturated problem stays solvable; it only changes the step, not the optimum).
        for a in 0..m {
            for b in a..m {
                let mut v = hm[a * m + b] / nr;
                if a == b {
                    v += if a < d { opts.l2 } else { 1e-12 };
                }
                hm[a * m + b] = v;
                hm[b * m + a] = v;
            }
        }
        let mut ridge = 0.0;
        let mut fac = hm.clone();
        while !cholesky(&mut fac, m) {
            ridge = if ridge == 0.0 { 1e-10 } else { ridge * 10.0 };
            if ridge > 1e6 {
                return Err(ModelError::Input(
                    "probe training: the Hessian is not positive definite (non-finite features?)"
                        .into(),
                ));
            }
            fac.copy_from_slice(&hm);
            for a in 0..m {
                fac[a * m + a] += ridge;
            }
        }
        let step = chol_solve(&fac, m, &g);
        let decrement = dot(&g, &step);
        if !decrement.is_finite() {
            return Err(ModelError::Input(
                "probe training diverged (non-finite gradient)".into(),
            ));
        }
        if decrement / 2.0 < opts.tol {
            converged = true;
            break;
        }
        // Armijo backtracking along −step.
        let mut s = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(t, d)| t - s * d).collect();
            let fc = objective(dz, y, rows, &cand, opts.l2);
            if fc <= f - 1e-4 * s * decrement {
                theta = cand;
                f = fc;
                accepted = true;
                break;
            }
            s *= 0.5;
        }
        if !accepted {
            // No decrease possible at f64 resolution: at the optimum.
            converged = true;
            break;
        }
    }
    Ok(Fit {
        theta,
        iterations: it,
        converged,
        objective: f,
    })
}

fn validate_training(x: &[f32], y: &[u8], dim: usize, opts: &ProbeOptions) -> Result<usize> {
    if dim == 0 {
        return Err(ModelError::Input("probe training: dimension 0".into()));
    }
    if x.len() != y.len() * dim {
        return Err(ModelError::Input(format!(
            "probe training: {} features for {} labels of dimension {dim}",
            x.len(),
            y.len()
        )));
    }
    if y.is_empty() {
        return Err(ModelError::Input("probe training: no examples".into()));
    }
    if let Some(l) = y.iter().find(|&&l| l > 1) {
        return Err(ModelError::Input(format!(
            "probe training: label {l} (binary labels 0/1 expected)"
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::Input(format!(
            "probe training: feature {} of example {} is not finite",
            i % dim,
            i / dim
        )));
    }
    if !(opts.l2.is_finite() && opts.l2 > 0.0) {
        return Err(ModelError::Input(format!(
            "probe training: the L2 penalty must be > 0 (got {})",
            opts.l2
        )));
    }
    let pos = y.iter().filter(|&&l| l == 1).count();
    if pos == 0 || pos == y.len() {
        return Err(ModelError::Input(format!(
            "probe training: all {} examples have label {} (both classes are needed)",
            y.len(),
            y[0]
        )));
    }
    Ok(pos)
}

fn fold_probe(dz: &Design, theta: &[f64]) -> Probe {
    let d = dz.d;
    let mut b = theta[d];
    let mut w = Vec::with_capacity(d);
    for ((t, sd), m) in theta[..d].iter().zip(&dz.std).zip(&dz.mean) {
        let wj = t / sd;
        b -= wj * m;
        w.push(wj as f32);
    }
    Probe {
        weight: w,
        bias: b as f32,
        model_fingerprint: None,
        training: None,
    }
}

/// Trains a probe on `x` `[n, dim]` with labels `y` (0/1).
pub fn train(x: &[f32], y: &[u8], dim: usize, opts: &ProbeOptions) -> Result<Probe> {
    let positives = validate_training(x, y, dim, opts)?;
    let n = y.len();
    let dz = design(x, n, dim, opts.standardize);
    let rows: Vec<usize> = (0..n).collect();
    let fit = newton(&dz, y, &rows, vec![0.0; dim + 1], opts)?;
    let mut probe = fold_probe(&dz, &fit.theta);
    let acc = accuracy(&probe, x, y);
    probe.training = Some(TrainReport {
        n,
        positives,
        l2: opts.l2,
        standardize: opts.standardize,
        iterations: fit.iterations,
        converged: fit.converged,
        objective: fit.objective,
        accuracy: acc,
        cv: vec![],
        cv_folds: 0,
        constant_channels: dz.constant,
    });
    Ok(probe)
}

/// Chooses λ from `grid` by `folds`-fold cross-validation (fold of example `i` = `i mod folds`,
/// standardization from the whole set), then trains on everything with it.
pub fn train_cv(
    x: &[f32],
    y: &[u8],
    dim: usize,
    opts: &ProbeOptions,
    grid: &[f64],
    folds: usize,
    mut progress: impl FnMut(f64, f64),
) -> Result<Probe> {
    validate_training(x, y, dim, opts)?;
    if folds < 2 || folds > y.len() {
        return Err(ModelError::Input(format!(
            "cross-validation needs 2 ≤ folds ≤ {} examples (got {folds})",
            y.len()
        )));
    }
    if grid.is_empty() || grid.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        return Err(ModelError::Input(
            "cross-validation: the λ grid must be non-empty and positive".into(),
        ));
    }
    let n = y.len();
    let dz = design(x, n, dim, opts.standardize);
    let mut grid: Vec<f64> = grid.to_vec();
    grid.sort_by(|a, b| b.total_cmp(a)); // strong → weak (warm starts)
    let mut scores = Vec::with_capacity(grid.len());
    let mut warm: Vec<Vec<f64>> = vec![vec![0.0; dim + 1]; folds];
    for &l2 in &grid {
        let o = ProbeOptions { l2, ..opts.clone() };
        let mut correct = 0usize;
        for (k, w) in warm.iter_mut().enumerate() {
            let tr: Vec<usize> = (0..n).filter(|i| i % folds != k).collect();
            let fit = newton(&dz, y, &tr, w.clone(), &o)?;
            for i in (k..n).step_by(folds) {
                let zi = &dz.z[i * dim..(i + 1) * dim];
                let t = dot(zi, &fit.theta[..dim]) + fit.theta[dim];
                if u8::from(t > 0.0) == y[i] {
                    correct += 1;
                }
            }
            *w = fit.theta;
        }
        let acc = correct as f64 / n as f64;
        progress(l2, acc);
        scores.push((l2, acc));
    }
    // Best accuracy; ties go to the larger λ (earlier in the strong → weak order).
    let mut best = scores[0];
    for &s in &scores[1..] {
        if s.1 > best.1 {
            best = s;
        }
    }
    let mut probe = train(
        x,
        y,
        dim,
        &ProbeOptions {
            l2: best.0,
            ..opts.clone()
        },
    )?;
    if let Some(t) = probe.training.as_mut() {
        t.cv = scores;
        t.cv_folds = folds;
    }
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use osq_model::rng::SplitMix64;

    /// Two Gaussian blobs in `d` dims separated along a random direction.
    fn blobs(n: usize, d: usize, gap: f64, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut r = SplitMix64::new(seed);
        let dir: Vec<f64> = (0..d).map(|_| r.normal()).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut x = Vec::with_capacity(n * d);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let l = (i % 2) as u8;
            let sgn = if l == 1 { 1.0 } else { -1.0 };
            for dv in &dir {
                x.push((r.normal() * 0.5 + sgn * gap * dv / norm) as f32);
            }
            y.push(l);
        }
        (x, y)
    }

    #[test]
    fn separable_reaches_100() {
        let (x, y) = blobs(400, 16, 3.0, 1);
        let p = train(&x, &y, 16, &ProbeOptions::default()).unwrap();
        let t = p.training.as_ref().unwrap();
        assert!(t.converged, "{t:?}");
        assert_eq!(t.accuracy, 1.0, "{t:?}");
        let (xt, yt) = blobs(200, 16, 3.0, 1); // same direction (seed), fresh noise below
        assert_eq!(accuracy(&p, &xt, &yt), 1.0);
    }

    #[test]
    fn deterministic_and_standardized() {
        let (x, y) = blobs(300, 8, 0.6, 7);
        let a = train(&x, &y, 8, &ProbeOptions::default()).unwrap();
        let b = train(&x, &y, 8, &ProbeOptions::default()).unwrap();
        assert_eq!(a, b);
        let o = ProbeOptions {
            standardize: true,
            ..Default::default()
        };
        assert_eq!(train(&x, &y, 8, &o).unwrap(), train(&x, &y, 8, &o).unwrap());
        let c = train(&x, &y, 8, &o).unwrap();
        let acc = c.training.as_ref().unwrap().accuracy;
        assert!(acc > 0.7, "{acc}");
    }

    #[test]
    fn near_constant_channel_is_not_amplified() {
        // Channel 0 carries only noise at 1e-5 of the others' spread.
        let (mut x, y) = blobs(200, 4, 1.0, 2);
        let mut r = SplitMix64::new(9);
        for row in x.chunks_exact_mut(4) {
            row[0] = 0.5 + (r.normal() * 1e-5) as f32;
        }
        let o = ProbeOptions {
            standardize: true,
            ..Default::default()
        };
        let p = train(&x, &y, 4, &o).unwrap();
        assert_eq!(p.training.as_ref().unwrap().constant_channels, 1);
        assert!(p.weight[0].abs() < 1.0, "{:?}", p.weight);
    }

    #[test]
    fn matches_gradient_zero() {
        // At the optimum the gradient of the standardized problem vanishes: check it via the
        // raw-space probe (unstandardized, so the folding is the identity).
        let (x, y) = blobs(200, 5, 0.3, 3);
        let o = ProbeOptions {
            standardize: false,
            l2: 1e-2,
            ..Default::default()
        };
        let p = train(&x, &y, 5, &o).unwrap();
        let n = y.len() as f64;
        let mut g = [0.0f64; 6];
        for (r, &l) in x.chunks_exact(5).zip(&y) {
            let e = p.probability(r) - l as f64;
            for (gj, &v) in g.iter_mut().zip(r) {
                *gj += e * v as f64 / n;
            }
            g[5] += e / n;
        }
        for (gj, &w) in g.iter_mut().zip(&p.weight) {
            *gj += 1e-2 * w as f64;
        }
        for v in g {
            assert!(v.abs() < 1e-6, "{g:?}");
        }
    }

    #[test]
    fn cv_selects_from_grid() {
        let (x, y) = blobs(200, 6, 0.8, 11);
        let grid = [1e-4, 1e-2, 1.0];
        let p = train_cv(&x, &y, 6, &ProbeOptions::default(), &grid, 4, |_, _| {}).unwrap();
        let t = p.training.unwrap();
        assert_eq!(t.cv.len(), 3);
        assert_eq!(t.cv_folds, 4);
        assert!(grid.contains(&t.l2));
        let best = t.cv.iter().map(|c| c.1).fold(0.0, f64::max);
        assert_eq!(t.cv.iter().find(|c| c.0 == t.l2).unwrap().1, best);
    }

    #[test]
    fn training_errors() {
        let o = ProbeOptions::default();
        assert!(train(&[], &[], 3, &o).is_err());
        let e = train(&[1.0, 2.0], &[1, 1], 1, &o).unwrap_err().to_string();
        assert!(e.contains("both classes"), "{e}");
        let e = train(&[1.0, f32::NAN], &[0, 1], 1, &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not finite"), "{e}");
        assert!(train(&[1.0, 2.0], &[0, 2], 1, &o).is_err());
        assert!(train(&[1.0, 2.0, 3.0], &[0, 1], 1, &o).is_err());
    }

    #[test]
    fn json_round_trip() {
        let (x, y) = blobs(100, 4, 2.0, 5);
        let mut p = train(&x, &y, 4, &ProbeOptions::default()).unwrap();
        p.model_fingerprint = Some("fnv1a64:0123".into());
        let path = Path::new("probe.json");
        let mut q = Probe::from_json(&p.to_json(), path).unwrap();
        assert!(q.training.is_none());
        q.training = p.training.clone();
        assert_eq!(p, q);
        let mut v = p.to_json();
        v["format"] = json!("other");
        let e = Probe::from_json(&v, path).unwrap_err().to_string();
        assert!(e.contains("format"), "{e}");
        let mut v = p.to_json();
        v["weight"][2] = json!("x");
        let e = Probe::from_json(&v, path).unwrap_err().to_string();
        assert!(e.contains("weight[2]"), "{e}");
        let mut v = p.to_json();
        v["dim"] = json!(7);
        assert!(Probe::from_json(&v, path).is_err());
    }

    #[test]
    fn tsv_parsing() {
        let p = Path::new("t.tsv");
        let ok = parse_labelled_tsv("\u{feff}1\tgood film\r\n\n0\tbad film\n  \n", p).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            (ok[0].label, ok[0].text.as_str(), ok[0].line),
            (1, "good film", 1)
        );
        assert_eq!((ok[1].label, ok[1].line), (0, 3));
        let e = parse_labelled_tsv("1\tok\nno tab here\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.tsv:2") && e.contains("TAB"), "{e}");
        let e = parse_labelled_tsv("1\tok\n0\tok\n2\tx\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.tsv:3") && e.contains("0 or 1"), "{e}");
        let e = parse_labelled_tsv("1\t  \n", p).unwrap_err().to_string();
        assert!(e.contains("t.tsv:1") && e.contains("empty text"), "{e}");
        let e = parse_labelled_tsv("\n\n", p).unwrap_err().to_string();
        assert!(e.contains("no labelled lines"), "{e}");
        // The text may itself contain TABs.
        let ok = parse_labelled_tsv("0\ta\tb\n", p).unwrap();
        assert_eq!(ok[0].text, "a\tb");
    }
}
