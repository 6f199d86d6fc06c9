//! `osq run`: the task head's labels and scores (models with a head), sentence embeddings, or
//! probe classes of texts on the integer engine.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use super::values::IsaArg;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Parameter directory written by `osq calibrate`.
    #[arg(long)]
    pub params: PathBuf,
    /// Texts to embed (`-`: one per line from standard input).
    pub texts: Vec<String>,
    /// Read the texts from this file, one per line (`-`: standard input).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Kernel ISA (default: the best available).
    #[arg(long, value_enum)]
    pub isa: Option<IsaArg>,
    /// Print the full embeddings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Dimensions shown in text output.
    #[arg(long, default_value_t = 8)]
    pub dims: usize,
    /// Maximum tokens per text.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Refuse texts longer than --max-len instead of truncating them.
    #[arg(long)]
    pub no_truncate: bool,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Classify with this probe (`osq train-probe`) instead of printing embeddings.
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// Print sentence embeddings even when the model has a task head.
    #[arg(long)]
    pub embeddings: bool,
}

pub fn run(a: &RunArgs) -> Result<()> {
    let mut texts = Vec::new();
    if let Some(d) = &a.data {
        texts.extend(osq::read_texts(d)?);
    }
    for t in &a.texts {
        if t == "-" {
            texts.extend(osq::read_texts("-")?);
        } else {
            texts.push(t.clone());
        }
    }
    if texts.is_empty() {
        bail!("no texts given: osq run --params DIR \"text\" ... (or --data FILE, or - for stdin)");
    }
    let isa = a.isa.map(IsaArg::one).transpose()?;
    let model = osq::Model::load_with(
        &a.params,
        osq::ModelOptions {
            threads: a.threads,
            isa,
            max_length: Some(a.max_len),
            truncate: !a.no_truncate,
            batch_size: a.batch_size,
        },
    )
    .with_context(|| format!("loading parameters {}", a.params.display()))?;
    if model.head().is_some() && a.probe.is_none() && !a.embeddings {
        return print_predictions(&model, &texts, a.json);
    }
    let e = embed_with_progress(&model, &texts, a.batch_size)?;
    let h = e.dim();
    if let Some(p) = &a.probe {
        return super::eval::print_classes(p, &texts, e.as_slice(), h, a.json);
    }
    if a.json {
        let v: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"text": t, "tokens": e.tokens()[i], "embedding": e.row(i)}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, t) in texts.iter().enumerate() {
        let row = e.row(i);
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        let shown: Vec<String> = row
            .iter()
            .take(a.dims)
            .map(|v| format!("{v:+.5}"))
            .collect();
        println!(
            "[{i}] {} tokens, dim {h}, norm {norm:.6}: [{}{}]  {t:?}",
            e.tokens()[i],
            shown.join(", "),
            if h > a.dims { ", …" } else { "" }
        );
    }
    Ok(())
}

/// The task head's answers: label and score per text (token heads: per token).
fn print_predictions(model: &osq::Model, texts: &[String], as_json: bool) -> Result<()> {
    let (task, labels) = model.head().context("the model has no task head")?;
    let preds = model.classify(texts)?;
    if as_json {
        let v: Vec<_> = texts
            .iter()
            .zip(&preds)
            .map(|(t, p)| {
                let mut o = json!({"text": t, "task": task, "logits": p.logits});
                if task == "regression" {
                    o["value"] = json!(p.score);
                } else {
                    o["label"] = json!(p.label);
                    o["score"] = json!(p.score);
                    o["scores"] = labels
                        .iter()
                        .cloned()
                        .zip(p.scores.iter().copied())
                        .collect();
                }
                if task == "multi_label_classification" {
                    o["labels"] = json!(p.labels);
                }
                if task == "token_classification" {
                    o["tokens"] = p
                        .tokens
                        .iter()
                        .map(|x| json!({"label": x.label, "score": x.score}))
                        .collect();
                }
                o
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, (t, p)) in texts.iter().zip(&preds).enumerate() {
        match task {
            "regression" => println!("[{i}] {:+.4}  {t:?}", p.score),
            "multi_label_classification" => println!(
                "[{i}] {} (top {} {:.4})  {t:?}",
                if p.labels.is_empty() {
                    "-".to_string()
                } else {
                    p.labels.join(",")
                },
                p.label,
                p.score
            ),
            "token_classification" => {
                let tags: Vec<&str> = p.tokens.iter().map(|x| x.label.as_str()).collect();
                println!("[{i}] {}  {t:?}", tags.join(" "));
            }
            _ => println!("[{i}] {} {:.4}  {t:?}", p.label, p.score),
        }
    }
    Ok(())
}

/// `model.embed(texts)`, with a progress bar on a terminal when there are many texts (the
/// same bits: every text's embedding is independent of its batch).
fn embed_with_progress(
    model: &osq::Model,
    texts: &[String],
    batch_size: usize,
) -> Result<osq::Embeddings> {
    let show = texts.len() > 4 * batch_size && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !show {
        return Ok(model.embed(texts)?);
    }
    let bar = osq_calib::Progress::new(true).bar(texts.len() as u64, "embed");
    let mut parts = Vec::new();
    for chunk in texts.chunks(batch_size * 4) {
        parts.push(model.embed(chunk)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(osq::Embeddings::concat(parts))
}
