//! `osq train-probe` and `osq eval`: accuracy on real labelled data through a linear probe on
//! sentence embeddings (docs/eval.md).
//!
//! - `train-probe`: FP32 sentence embeddings of a `label<TAB>text` file → logistic-regression
//!   probe (osq_eval::probe) → JSON file.
//! - `eval`: the same probe on the FP32 embeddings and on the INTEGER executor's embeddings of
//!   each parameter directory; accuracy table (method × bits), agreement with FP32 predictions,
//!   cosine of integer vs FP32 embeddings.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use osq_calib::Progress;
use osq_eval::embed::{check_params_match, embed_all, fp32_embeddings, read_examples, tokenize};
use osq_eval::probe::{self, Probe, ProbeOptions};
use osq_eval::table::{cosines, markdown, row_json, EvalRow};
use osq_model::fp32::ThreadPool;
use osq_model::quant::format;
use osq_model::quant::integer::{IntOptions, IntegerModel};
use osq_model::quant::QuantModel;
use osq_model::BertModel;

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
    /// Probe file written by `osq train-probe`. Without it, a model with a task head is scored
    /// through its own head (accuracy / macro-F1, or Pearson for regression).
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// Test data: `label<TAB>text` per line (probe: 0 or 1; head: the class index, or the
    /// value for regression).
    #[arg(long)]
    pub test: PathBuf,
    /// Evaluate only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the results as JSON on stdout instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Write the JSON results to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
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

/// Progress bars on stderr when it is a terminal and not `quiet`.
pub(super) fn progress(quiet: bool) -> Progress {
    Progress::new(!quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

pub(super) fn load_model(dir: &Path) -> Result<BertModel> {
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
    let pr = progress(false);
    let t_e = Instant::now();
    let x = fp32_embeddings(&model, &tok, &exec, &pr)?;
    let t_embed = t_e.elapsed().as_secs_f64();
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
        let xt = fp32_embeddings(&model, &tok, &exec, &pr)?;
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

/// `osq eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let Some(probe_path) = &a.probe else {
        return super::eval_head::eval_head(a);
    };
    let t0 = Instant::now();
    let model = load_model(&a.model)?;
    let h = model.config().hidden_size;
    let probe = Probe::load(probe_path)?;
    if probe.dim() != h {
        bail!(
            "{}: the probe has dimension {} but the model's embeddings have {h}",
            probe_path.display(),
            probe.dim()
        );
    }
    if let Some(f) = &probe.model_fingerprint {
        let mine = probe::weights_fingerprint(&model.weights);
        if *f != mine {
            bail!(
                "{}: the probe was trained on another model (fingerprint {f}, {} has {mine}); \
                 re-run osq train-probe",
                probe_path.display(),
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
    let pr = progress(a.quiet);
    let t_fp = Instant::now();
    let x32 = fp32_embeddings(&model, &tok, &exec, &pr)?;
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
        seconds: t_fp.elapsed().as_secs_f64(),
    }];
    for (d, p) in qms {
        let label = format!("{} {}", p.method, p.bits.name());
        let (method, bits) = (p.method.clone(), p.bits.name().to_string());
        let qm = QuantModel::new(p)
            .with_context(|| format!("building the quantized model of {}", d.display()))?;
        let im = IntegerModel::new(qm)
            .with_context(|| format!("packing the integer model of {}", d.display()))?;
        let t_q = Instant::now();
        let opts = IntOptions::default();
        let xq = embed_all(&tok, h, &pr, &label, |b| {
            Ok(exec.run(|| im.embed(b, &opts))?)
        })
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
            seconds: t_q.elapsed().as_secs_f64(),
        });
    }
    let md = markdown(&rows, n, &a.test);
    if !a.json {
        println!("{md}");
    }
    if let Some(path) = &a.markdown {
        write_file(path, &md)?;
    }
    {
        let v = json!({
            "test": a.test.display().to_string(),
            "n": n,
            "positives": y.iter().filter(|&&l| l == 1).count(),
            "model": a.model.display().to_string(),
            "probe": probe_path.display().to_string(),
            "max_len": a.max_len,
            "executor": "integer",
            "fp32": row_json(&rows[0], acc32),
            "results": rows[1..].iter().map(|r| row_json(r, acc32)).collect::<Vec<_>>(),
            "seconds": t0.elapsed().as_secs_f64(),
        });
        let text = serde_json::to_string_pretty(&v).context("serializing the results")?;
        if a.json {
            println!("{text}");
        }
        if let Some(path) = &a.report {
            write_file(path, &(text + "\n"))?;
        }
    }
    if !a.quiet {
        eprintln!("[osq] eval done in {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(())
}

pub(super) fn write_file(path: &Path, text: &str) -> Result<()> {
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
