//! `osq run`: sentence embeddings (or probe classes) of texts on the integer engine.

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
