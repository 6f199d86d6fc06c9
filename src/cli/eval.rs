//! `osq train-probe` and `osq eval`: accuracy on real labelled data through a linear probe on
//! sentence embeddings (docs/eval.md).
//!
//! - `train-probe`: FP32 sentence embeddings of a `label<TAB>text` file → logistic-regression
//!   probe (osq_model::probe) → JSON file.
//! - `eval`: the same probe on the FP32 embeddings and on the INTEGER executor's embeddings of
//!   each parameter directory; accuracy table (method × bits), agreement with FP32 predictions,
//!   cosine of integer vs FP32 embeddings.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use osq_model::fp32::{self, ThreadPool};
use osq_model::probe::{self, Example, Probe, ProbeOptions};
use osq_model::quant::format;
use osq_model::quant::integer::{IntOptions, IntegerModel};
use osq_model::quant::{QuantModel, QuantParams};
use osq_model::{Batch, BertModel, BertWeights};

/// Arguments of `osq train-probe`.
#[derive(Args, Debug, Clone)]
pub struct TrainProbeArgs {
    /// Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Training data: `label<TAB>text` per line, label 0 or 1.
    #[arg(long)]
    pub train: PathBuf,
    /// Output probe file (JSON).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// L2 penalty λ on the weights (ignored with --cv-folds). The default is what 5-fold CV
    /// chose on data/movie/train.tsv with all-MiniLM-L6-v2 (raw features).
    #[arg(long, default_value_t = 1e-4)]
    pub l2: f64,
    /// Choose λ from --l2-grid by k-fold cross-validation (0 = off).
    #[arg(long, default_value_t = 0)]
    pub cv_folds: usize,
    /// λ candidates for --cv-folds.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1e-1,3e-2,1e-2,3e-3,1e-3,3e-4,1e-4,3e-5,1e-5,3e-6,1e-6"
    )]
    pub l2_grid: Vec<f64>,
    /// Standardize the features (train mean/std) before fitting; folded into the stored
    /// weights. Off by default (docs/eval.md).
    #[arg(long)]
    pub standardize: bool,
    /// Also report FP32 accuracy of the probe on this labelled file.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Maximum tokens per sentence (including [CLS]/[SEP]).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Sentences per forward batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Arguments of `osq eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Hugging Face model directory the parameters and the probe were made from.
    #[arg(long)]
    pub model: PathBuf,
    /// Parameter directories (`osq quantize` / `osq calibrate` output), comma-separated or
    /// repeated. None: FP32 only.
    #[arg(long, value_delimiter = ',')]
    pub params: Vec<PathBuf>,
    /// Probe file written by `osq train-probe`.
    #[arg(long)]
    pub probe: PathBuf,
    /// Test data: `label<TAB>text` per line, label 0 or 1.
    #[arg(long)]
    pub test: PathBuf,
    /// Evaluate only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the Markdown tables to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Maximum tokens per sentence (including [CLS]/[SEP]).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Sentences per forward batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Progress lines on stderr, at most one every 10 s (and at the end).
struct Progress {
    what: String,
    total: usize,
    start: Instant,
    last: Instant,
    quiet: bool,
}

impl Progress {
    fn new(what: &str, total: usize, quiet: bool) -> Self {
        let now = Instant::now();
        Progress {
            what: what.to_string(),
            total,
            start: now,
            last: now,
            quiet,
        }
    }
    fn update(&mut self, done: usize) {
        if self.quiet {
            return;
        }
        let now = Instant::now();
        if done < self.total && now.duration_since(self.last).as_secs_f64() < 10.0 {
            return;
        }
        self.last = now;
        let el = now.duration_since(self.start).as_secs_f64();
        eprintln!(
            "[osq] {}: {done}/{} sentences ({:.0} %), {el:.1} s",
            self.what,
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64
        );
    }
    fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Tokenized sentences, grouped into batches of similar length (order restored by `order`).
struct Tokenized {
    batches: Vec<Batch>,
    /// `order[k]` = index of the k-th sentence of the concatenated batches in the input.
    order: Vec<usize>,
}

fn tokenize(model: &BertModel, texts: &[&str], max_len: usize, batch: usize) -> Result<Tokenized> {
    let mut seqs: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let b = model
            .tokenizer
            .encode_batch(chunk, max_len)
            .context("tokenizing")?;
        seqs.extend((0..b.batch).map(|i| b.sequence(i).to_vec()));
    }
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| (seqs[i].len(), i));
    let pad = model.tokenizer.pad_id();
    let batches = order
        .chunks(batch.max(1))
        .map(|c| {
            let s: Vec<Vec<u32>> = c.iter().map(|&i| seqs[i].clone()).collect();
            Batch::from_ids(&s, pad)
        })
        .collect();
    Ok(Tokenized { batches, order })
}

/// Runs `f` on every batch and scatters the `[rows, h]` results back to input order.
fn embed_all(
    tok: &Tokenized,
    h: usize,
    progress: &mut Progress,
    mut f: impl FnMut(&Batch) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    let n = tok.order.len();
    let mut out = vec![0f32; n * h];
    let mut k = 0;
    for b in &tok.batches {
        let e = f(b)?;
        if e.len() != b.batch * h {
            bail!(
                "internal: {} embedding values for {} sentences of width {h}",
                e.len(),
                b.batch
            );
        }
        for r in e.chunks_exact(h) {
            let i = tok.order[k];
            out[i * h..(i + 1) * h].copy_from_slice(r);
            k += 1;
        }
        progress.update(k);
    }
    Ok(out)
}

fn fp32_embeddings(
    model: &BertModel,
    tok: &Tokenized,
    exec: &ThreadPool,
    progress: &mut Progress,
) -> Result<Vec<f32>> {
    let w = &model.weights;
    embed_all(tok, w.config.hidden_size, progress, |b| {
        Ok(fp32::sentence_embeddings(w, b, exec)?)
    })
}

fn read_examples(path: &Path, limit: Option<usize>) -> Result<Vec<Example>> {
    let mut ex = probe::read_labelled_tsv(path)?;
    if let Some(n) = limit {
        if n == 0 {
            bail!("--limit 0 leaves nothing to evaluate");
        }
        ex.truncate(n);
    }
    Ok(ex)
}

fn load_model(dir: &Path) -> Result<BertModel> {
    BertModel::load(dir).with_context(|| format!("loading the model {}", dir.display()))
}

fn make_exec(threads: usize) -> Result<ThreadPool> {
    Ok(ThreadPool::new(threads)?)
}

// ---------------------------------------------------------------------------------------------
// train-probe
// ---------------------------------------------------------------------------------------------

/// `osq train-probe`.
pub fn train_probe(a: &TrainProbeArgs) -> Result<()> {
    if a.output.extension().and_then(|e| e.to_str()) == Some("safetensors") {
        bail!(
            "{}: probe files are JSON; use a .json name",
            a.output.display()
        );
    }
    let t0 = Instant::now();
    let model = load_model(&a.model)?;
    let exec = make_exec(a.threads)?;
    let train = read_examples(&a.train, None)?;
    let h = model.config().hidden_size;
    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let labels: Vec<u8> = train.iter().map(|e| e.label).collect();
    let tok = tokenize(&model, &texts, a.max_len, a.batch_size)?;
    let mut pr = Progress::new("fp32 train embeddings", texts.len(), false);
    let x = fp32_embeddings(&model, &tok, &exec, &mut pr)?;
    let t_embed = pr.seconds();
    let opts = ProbeOptions {
        l2: a.l2,
        standardize: a.standardize,
        ..Default::default()
    };
    let t1 = Instant::now();
    let mut probe = if a.cv_folds > 0 {
        probe::train_cv(&x, &labels, h, &opts, &a.l2_grid, a.cv_folds, |l2, acc| {
            eprintln!(
                "[osq] cv {}-fold: λ = {l2:e}: accuracy {:.2} %",
                a.cv_folds,
                100.0 * acc
            )
        })?
    } else {
        probe::train(&x, &labels, h, &opts)?
    };
    let t_fit = t1.elapsed().as_secs_f64();
    probe.model_fingerprint = Some(probe::weights_fingerprint(&model.weights));
    probe
        .save(&a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let t = probe
        .training
        .as_ref()
        .context("internal: training report missing")?;
    println!(
        "probe: {} examples ({} positive), λ = {:e}{}, standardize = {}, {} Newton iterations{}",
        t.n,
        t.positives,
        t.l2,
        if t.cv_folds > 0 {
            format!(" (chosen by {}-fold CV)", t.cv_folds)
        } else {
            String::new()
        },
        t.standardize,
        t.iterations,
        if t.converged { "" } else { " (NOT converged)" }
    );
    println!("train accuracy: {:.2} %", 100.0 * t.accuracy);
    if let Some(test) = &a.test {
        let ex = read_examples(test, None)?;
        let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
        let y: Vec<u8> = ex.iter().map(|e| e.label).collect();
        let tok = tokenize(&model, &texts, a.max_len, a.batch_size)?;
        let mut pr = Progress::new("fp32 test embeddings", texts.len(), false);
        let xt = fp32_embeddings(&model, &tok, &exec, &mut pr)?;
        println!(
            "FP32 test accuracy ({}): {:.2} %",
            test.display(),
            100.0 * probe::accuracy(&probe, &xt, &y)
        );
    }
    println!(
        "wrote {} (embeddings {t_embed:.1} s, fit {t_fit:.1} s, total {:.1} s)",
        a.output.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------------

/// Checks that `p` was made from the FP32 model `w`: same architecture, and the stored word
/// and position embedding codes dequantize to the FP32 tables within half a step.
pub fn check_params_match(p: &QuantParams, w: &BertWeights, dir: &Path) -> Result<()> {
    let (a, b) = (&p.config, &w.config);
    let fields = [
        ("vocab_size", a.vocab_size, b.vocab_size),
        ("hidden_size", a.hidden_size, b.hidden_size),
        (
            "num_hidden_layers",
            a.num_hidden_layers,
            b.num_hidden_layers,
        ),
        (
            "num_attention_heads",
            a.num_attention_heads,
            b.num_attention_heads,
        ),
        (
            "intermediate_size",
            a.intermediate_size,
            b.intermediate_size,
        ),
        (
            "max_position_embeddings",
            a.max_position_embeddings,
            b.max_position_embeddings,
        ),
        ("type_vocab_size", a.type_vocab_size, b.type_vocab_size),
    ];
    for (name, x, y) in fields {
        if x != y {
            bail!(
                "{}: the parameters were not made from this model: {name} is {x} in the \
                 parameters but {y} in the model",
                dir.display()
            );
        }
    }
    let h = a.hidden_size;
    let mut checked = 0usize;
    let mut bad = 0usize;
    let mut first_bad: Option<(String, usize)> = None;
    let mut check = |name: &str, t: &osq_model::quant::graph::QTable, fw: &[f32], step: usize| {
        for r in (0..t.rows).step_by(step.max(1)) {
            let s = t.scales[r];
            for (&c, &v) in t.row(r).iter().zip(&fw[r * h..(r + 1) * h]) {
                checked += 1;
                let err = (c as f32 * s - v).abs();
                if err > 0.5 * s * 1.001 + 1e-6 * v.abs() + 1e-12 {
                    bad += 1;
                    first_bad.get_or_insert((name.to_string(), r));
                }
            }
        }
    };
    check("word", &p.word, &w.embeddings.word, a.vocab_size / 512 + 1);
    check("position", &p.position, &w.embeddings.position, 1);
    check("token_type", &p.token_type, &w.embeddings.token_type, 1);
    if bad * 100 > checked {
        let (t, r) = first_bad.unwrap_or_default();
        bail!(
            "{}: the parameters were not made from this model: {bad} of {checked} checked \
             embedding values do not dequantize to the model's (first: {t} embeddings row {r})",
            dir.display()
        );
    }
    Ok(())
}

/// One evaluated configuration.
#[derive(Clone, Debug)]
pub struct EvalRow {
    pub dir: Option<PathBuf>,
    pub method: String,
    pub bits: String,
    pub accuracy: f64,
    /// Fraction of sentences whose prediction equals the FP32 prediction.
    pub agreement: f64,
    /// Sentences right here but wrong in FP32, and wrong here but right in FP32.
    pub gained: usize,
    pub lost: usize,
    pub mean_cosine: f64,
    pub min_cosine: f64,
    pub seconds: f64,
}

fn cosines(a: &[f32], b: &[f32], h: usize) -> (f64, f64) {
    let mut sum = 0.0;
    let mut min = f64::INFINITY;
    let mut n = 0usize;
    for (x, y) in a.chunks_exact(h).zip(b.chunks_exact(h)) {
        let dot: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
        let nx: f64 = x.iter().map(|&p| p as f64 * p as f64).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|&p| p as f64 * p as f64).sum::<f64>().sqrt();
        let c = dot / (nx * ny).max(1e-30);
        sum += c;
        min = min.min(c);
        n += 1;
    }
    if n == 0 {
        (0.0, 0.0)
    } else {
        (sum / n as f64, min)
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

const BITS_ORDER: [&str; 4] = ["w8a8", "w6a6", "w4a8", "w4a4"];

/// The Markdown tables: Table-4 pattern (rows FP32 / bits, columns methods), then details.
pub fn markdown(rows: &[EvalRow], n: usize, test: &Path) -> String {
    let mut s = String::new();
    let fp = rows.iter().find(|r| r.dir.is_none());
    let q: Vec<&EvalRow> = rows.iter().filter(|r| r.dir.is_some()).collect();
    let mut methods: Vec<String> = Vec::new();
    for r in &q {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
    }
    let mut bits: Vec<String> = BITS_ORDER.iter().map(|b| b.to_string()).collect();
    for r in &q {
        if !bits.contains(&r.bits) {
            bits.push(r.bits.clone());
        }
    }
    bits.retain(|b| q.iter().any(|r| &r.bits == b));
    s.push_str(&format!(
        "Accuracy (%) of the linear probe on {} ({n} sentences); integer executor for every \
         quantized row.\n\n",
        test.display()
    ));
    if methods.is_empty() {
        if let Some(f) = fp {
            s.push_str(&format!("| FP32 |\n|---|\n| {} |\n", pct(f.accuracy)));
        }
    } else {
        s.push_str("| bits |");
        for m in &methods {
            s.push_str(&format!(" {m} |"));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(methods.len()));
        s.push('\n');
        if let Some(f) = fp {
            s.push_str("| FP32 |");
            for _ in &methods {
                s.push_str(&format!(" {} |", pct(f.accuracy)));
            }
            s.push('\n');
        }
        for b in &bits {
            s.push_str(&format!("| {} |", b.to_uppercase()));
            for m in &methods {
                let cell: Vec<String> = q
                    .iter()
                    .filter(|r| &r.method == m && &r.bits == b)
                    .map(|r| pct(r.accuracy))
                    .collect();
                s.push_str(&format!(
                    " {} |",
                    if cell.is_empty() {
                        "–".to_string()
                    } else {
                        cell.join(" / ")
                    }
                ));
            }
            s.push('\n');
        }
    }
    s.push_str(
        "\n| method | bits | accuracy % | Δ vs FP32 (points) | gained / lost | agree w/ FP32 % | \
         mean cos | min cos | time s | params |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let fa = fp.map(|f| f.accuracy);
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} | {:.5} | {:.4} | {:.1} | {} |\n",
            r.method,
            r.bits,
            pct(r.accuracy),
            fa.map(|f| format!("{:+.2}", 100.0 * (r.accuracy - f)))
                .unwrap_or_default(),
            r.gained,
            r.lost,
            pct(r.agreement),
            r.mean_cosine,
            r.min_cosine,
            r.seconds,
            r.dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "–".into()),
        ));
    }
    s
}

fn row_json(r: &EvalRow, fp: f64) -> Value {
    json!({
        "method": r.method,
        "bits": r.bits,
        "params": r.dir.as_ref().map(|d| d.display().to_string()),
        "accuracy": r.accuracy,
        "delta_points": 100.0 * (r.accuracy - fp),
        "agreement_with_fp32": r.agreement,
        "gained_vs_fp32": r.gained,
        "lost_vs_fp32": r.lost,
        "mean_cosine": r.mean_cosine,
        "min_cosine": r.min_cosine,
        "seconds": r.seconds,
    })
}

/// `osq eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let t0 = Instant::now();
    let model = load_model(&a.model)?;
    let h = model.config().hidden_size;
    let probe = Probe::load(&a.probe)?;
    if probe.dim() != h {
        bail!(
            "{}: the probe has dimension {} but the model's embeddings have {h}",
            a.probe.display(),
            probe.dim()
        );
    }
    if let Some(f) = &probe.model_fingerprint {
        let mine = probe::weights_fingerprint(&model.weights);
        if *f != mine {
            bail!(
                "{}: the probe was trained on another model (fingerprint {f}, {} has {mine}); \
                 re-run osq train-probe",
                a.probe.display(),
                a.model.display()
            );
        }
    }
    // Load and check every parameter directory before the long FP32 pass.
    let mut qms = Vec::with_capacity(a.params.len());
    for d in &a.params {
        let p = format::load(d).with_context(|| format!("loading parameters {}", d.display()))?;
        check_params_match(&p, &model.weights, d)?;
        qms.push((d.clone(), p));
    }
    let ex = read_examples(&a.test, a.limit)?;
    let n = ex.len();
    let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
    let y: Vec<u8> = ex.iter().map(|e| e.label).collect();
    let exec = make_exec(a.threads)?;
    let tok = tokenize(&model, &texts, a.max_len, a.batch_size)?;
    if !a.quiet {
        eprintln!(
            "[osq] eval: {n} sentences from {}, {} parameter set(s), {} thread(s)",
            a.test.display(),
            qms.len(),
            exec.threads()
        );
    }
    let mut pr = Progress::new("fp32", n, a.quiet);
    let x32 = fp32_embeddings(&model, &tok, &exec, &mut pr)?;
    let pred32 = probe.predict_all(&x32);
    let acc32 = probe::accuracy(&probe, &x32, &y);
    let mut rows = vec![EvalRow {
        dir: None,
        method: "fp32".into(),
        bits: "fp32".into(),
        accuracy: acc32,
        agreement: 1.0,
        gained: 0,
        lost: 0,
        mean_cosine: 1.0,
        min_cosine: 1.0,
        seconds: pr.seconds(),
    }];
    for (d, p) in qms {
        let label = format!("{} {}", p.method, p.bits.name());
        let (method, bits) = (p.method.clone(), p.bits.name().to_string());
        let qm = QuantModel::new(p)
            .with_context(|| format!("building the quantized model of {}", d.display()))?;
        let im = IntegerModel::new(qm)
            .with_context(|| format!("packing the integer model of {}", d.display()))?;
        let mut pr = Progress::new(&label, n, a.quiet);
        let opts = IntOptions::default();
        let xq = embed_all(&tok, h, &mut pr, |b| Ok(exec.run(|| im.embed(b, &opts))?))
            .with_context(|| format!("integer executor on {}", d.display()))?;
        let pred = probe.predict_all(&xq);
        let agree = pred.iter().zip(&pred32).filter(|(a, b)| a == b).count();
        let gained = (0..n)
            .filter(|&i| pred[i] == y[i] && pred32[i] != y[i])
            .count();
        let lost = (0..n)
            .filter(|&i| pred[i] != y[i] && pred32[i] == y[i])
            .count();
        let (mean_cos, min_cos) = cosines(&xq, &x32, h);
        rows.push(EvalRow {
            dir: Some(d),
            method,
            bits,
            accuracy: probe::accuracy(&probe, &xq, &y),
            agreement: agree as f64 / n as f64,
            gained,
            lost,
            mean_cosine: mean_cos,
            min_cosine: min_cos,
            seconds: pr.seconds(),
        });
    }
    let md = markdown(&rows, n, &a.test);
    println!("{md}");
    if let Some(path) = &a.markdown {
        write_file(path, &md)?;
    }
    if let Some(path) = &a.json {
        let v = json!({
            "test": a.test.display().to_string(),
            "n": n,
            "positives": y.iter().filter(|&&l| l == 1).count(),
            "model": a.model.display().to_string(),
            "probe": a.probe.display().to_string(),
            "max_len": a.max_len,
            "executor": "integer",
            "fp32": row_json(&rows[0], acc32),
            "results": rows[1..].iter().map(|r| row_json(r, acc32)).collect::<Vec<_>>(),
            "seconds": t0.elapsed().as_secs_f64(),
        });
        let text = serde_json::to_string_pretty(&v).context("serializing the results")?;
        write_file(path, &(text + "\n"))?;
    }
    if !a.quiet {
        eprintln!("[osq] eval done in {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// For `osq run --probe FILE`: the predicted label and `P(label 1)` of each `[n, h]` embedding
/// row (the integer executor's embeddings; the probe's model fingerprint cannot be checked
/// without the FP32 model, only its dimension).
pub fn classify_embeddings(probe_path: &Path, e: &[f32], h: usize) -> Result<Vec<(u8, f64)>> {
    let probe = Probe::load(probe_path)?;
    if probe.dim() != h {
        bail!(
            "{}: the probe has dimension {} but the embeddings have {h}",
            probe_path.display(),
            probe.dim()
        );
    }
    Ok(e.chunks_exact(h.max(1))
        .map(|r| (probe.predict(r), probe.probability(r)))
        .collect())
}

/// `osq run --probe FILE`: one line per text (`label`, `P(positive)`), or JSON with `--json`.
pub fn print_classes(
    probe_path: &Path,
    texts: &[String],
    e: &[f32],
    h: usize,
    json_out: bool,
) -> Result<()> {
    let cls = classify_embeddings(probe_path, e, h)?;
    if json_out {
        let v: Vec<Value> = texts
            .iter()
            .zip(&cls)
            .map(|(t, (l, p))| json!({"text": t, "label": l, "p_positive": p}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (i, (t, (l, p))) in texts.iter().zip(&cls).enumerate() {
            let name = if *l == 1 { "positive" } else { "negative" };
            println!("[{i}] {l} {name:<8} P(positive) {p:.4}  {t:?}");
        }
    }
    Ok(())
}
