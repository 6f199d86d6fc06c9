//! `osq verify`: [`osq::Model::verify`] on the sentences of a file; exit status 1 when the
//! integer codes differ from the deploy reference on any ISA.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::values::IsaArg;

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Parameter directory written by `osq calibrate`.
    #[arg(long)]
    pub params: PathBuf,
    /// Sentences, one per line (UTF-8; `-` reads standard input).
    #[arg(long)]
    pub data: PathBuf,
    /// Number of sentences (first N lines).
    #[arg(long, default_value_t = 256)]
    pub limit: usize,
    /// Kernel ISA to check.
    #[arg(long, value_enum, default_value_t = IsaArg::All)]
    pub isa: IsaArg,
    /// Print the full report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the full JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// FP32 model directory: also report the cosine of integer vs FP32 sentence embeddings.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Sentences per batch.
    #[arg(long, alias = "batch", default_value_t = 32)]
    pub batch_size: usize,
    /// Maximum tokens per sentence.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(a: &VerifyArgs) -> Result<bool> {
    if a.batch_size == 0 || a.limit == 0 {
        bail!("--batch-size and --limit must be positive");
    }
    let isas = a.isa.isas()?;
    let model = osq::Model::load_with(
        &a.params,
        osq::ModelOptions {
            threads: a.threads,
            max_length: Some(a.max_len),
            ..Default::default()
        },
    )
    .with_context(|| format!("loading parameters {}", a.params.display()))?;
    let mut texts = osq::read_texts(&a.data)?;
    texts.truncate(a.limit);
    let r = model.verify(
        &texts,
        &osq::VerifyOptions {
            isas,
            fp32_model: a.model.clone(),
            batch_size: a.batch_size,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
    )?;
    let json = serde_json::to_string_pretty(&r.to_json())?;
    if a.json {
        println!("{json}");
    } else {
        print!("{}", r.to_text());
    }
    if let Some(path) = &a.report {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(r.bit_exact())
}
