//! `osq quantize`: FP32 checkpoint + calibration sentences → parameter directory.
//! MinMax calibration through the FP32 observer hook (until osq-calib's methods are wired in).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use osq_model::fp32::Exec;
use osq_model::quant::{format, minmax, BitsConfig, QuantModel, QuantParams};
use osq_model::{BertWeights, Tokenizer};

use super::data::read_sentences;

#[derive(Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Calibration text: one sentence per line (UTF-8).
    #[arg(long)]
    pub data: PathBuf,
    /// Bit configuration: w8a8, w6a6, w4a8 or w4a4.
    #[arg(long, default_value = "w8a8")]
    pub bits: String,
    /// Output parameter directory.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Calibration sentences (first N lines).
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    /// Sentences per forward batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Maximum tokens per sentence (longer ones are truncated).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Calibration method (only `minmax` for now).
    #[arg(long, default_value = "minmax")]
    pub method: String,
    /// Disable γ migration (LayerNorms keep their scale).
    #[arg(long)]
    pub no_migration: bool,
}

pub fn run(a: &QuantizeArgs) -> Result<()> {
    let bits = match BitsConfig::parse(&a.bits) {
        Some(b) => b,
        None => bail!("--bits {}: expected one of w8a8, w6a6, w4a8, w4a4", a.bits),
    };
    if a.method != "minmax" {
        bail!(
            "--method {}: only `minmax` is available in this build",
            a.method
        );
    }
    if a.samples == 0 || a.batch == 0 {
        bail!("--samples and --batch must be positive");
    }
    let t0 = Instant::now();
    let w = BertWeights::load_dir(&a.model)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let tok = Tokenizer::from_file(
        &a.model.join("tokenizer.json"),
        w.config.max_position_embeddings,
    )?;
    let sentences = read_sentences(&a.data, a.samples)?;
    let mut batches = Vec::new();
    for chunk in sentences.chunks(a.batch) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        batches.push(tok.encode_batch(&refs, a.max_len)?);
    }
    let exec = Exec::new(0)?;
    let ranges = minmax::collect(&w, &batches, &exec, !a.no_migration)?;
    let params = QuantParams::build(&w, &ranges, bits, &a.method, !a.no_migration)?;
    // Derive every integer constant now so that an unusable calibration fails here, not at load.
    let qm = QuantModel::new(params)?;
    format::save(&qm.params, &a.output, Some(&a.model))
        .with_context(|| format!("writing {}", a.output.display()))?;
    let tokens: usize = batches
        .iter()
        .map(|b| b.lengths.iter().sum::<usize>())
        .sum();
    println!(
        "quantized {} ({bits}, {}, γ migration {}) on {} sentences / {tokens} tokens in {:.1} s → {}",
        a.model.display(),
        a.method,
        if a.no_migration { "off" } else { "on" },
        sentences.len(),
        t0.elapsed().as_secs_f64(),
        a.output.display()
    );
    Ok(())
}
