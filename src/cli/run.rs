//! `osq run`: sentence embeddings of the given texts on the integer executor.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use osq_model::quant::integer::IntOptions;

use super::verify::{load_params, parse_isas};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Parameter directory written by `osq quantize`.
    #[arg(long)]
    pub params: PathBuf,
    /// Texts to embed.
    pub texts: Vec<String>,
    /// Kernel ISA (default: the best available).
    #[arg(long)]
    pub isa: Option<String>,
    /// Print the full embeddings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Dimensions shown in text output.
    #[arg(long, default_value_t = 8)]
    pub dims: usize,
    /// Maximum tokens per text.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Classify with this probe (`osq train-probe`) instead of printing embeddings.
    #[arg(long)]
    pub probe: Option<PathBuf>,
}

pub fn run(a: &RunArgs) -> Result<()> {
    if a.texts.is_empty() {
        bail!("no texts given: osq run --params DIR \"text\" ...");
    }
    let isa = match &a.isa {
        Some(s) => {
            let v = parse_isas(s)?;
            if v.len() != 1 {
                bail!("--isa: name exactly one ISA");
            }
            Some(v[0])
        }
        None => None,
    };
    let (im, tok) = load_params(&a.params)?;
    let h = im.quant().config().hidden_size;
    let refs: Vec<&str> = a.texts.iter().map(String::as_str).collect();
    let batch = tok.encode_batch(&refs, a.max_len)?;
    let e = im.embed(&batch, &IntOptions { isa, trace: false })?;
    if let Some(p) = &a.probe {
        return super::eval::print_classes(p, &a.texts, &e, h, a.json);
    }
    if a.json {
        let v: Vec<_> = a
            .texts
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"text": t, "tokens": batch.lengths[i], "embedding": &e[i * h..(i + 1) * h]}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, t) in a.texts.iter().enumerate() {
        let row = &e[i * h..(i + 1) * h];
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        let shown: Vec<String> = row
            .iter()
            .take(a.dims)
            .map(|v| format!("{v:+.5}"))
            .collect();
        println!(
            "[{i}] {} tokens, dim {h}, norm {norm:.6}: [{}{}]  {t:?}",
            batch.lengths[i],
            shown.join(", "),
            if h > a.dims { ", …" } else { "" }
        );
    }
    Ok(())
}
