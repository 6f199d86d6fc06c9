//! `osq calibrate` (osq-calib methods → parameter directory) and `osq report` (the paper's
//! Table 1 and Fig. 1 on a model).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::values::{BitsArg, LossArg, MethodArg};

use osq_calib::engine::LnId;
use osq_calib::{data, report, Progress};
use osq_model::BertModel;

#[derive(Args, Debug, Clone)]
pub struct CalibrateArgs {
    /// Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Calibration text: one sentence per line (UTF-8).
    #[arg(long)]
    pub data: PathBuf,
    /// Bit configuration.
    #[arg(long, value_enum, default_value_t = BitsArg::W8a8)]
    pub bits: BitsArg,
    /// Calibration method (MinMax is the fast default; OS / OS+ are the papers' methods).
    #[arg(long, value_enum, default_value_t = MethodArg::Minmax)]
    pub method: MethodArg,
    /// Disable Gamma Migration (LayerNorms keep their scale). OS+ never migrates.
    #[arg(long, alias = "no-migration")]
    pub no_gamma: bool,
    /// Token-Wise Clipping: skip the fine (LSQ+) stage.
    #[arg(long)]
    pub coarse_only: bool,
    /// Calibration sentences, sampled from the file with --seed.
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    /// Seed of the sentence sampling (the whole calibration is deterministic for a seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tokens per calibration text, special tokens included (longer texts are truncated; capped
    /// at the model's max_position_embeddings). Calibrate a long-document task at the length it
    /// is deployed at, e.g. 512.
    #[arg(long, default_value_t = osq_calib::data::CALIB_MAX_LEN)]
    pub max_len: usize,
    /// Batches (of 32) used by the per-node stage of the Token-Wise Clipping coarse search
    /// (0: the reference's single global ratio only).
    #[arg(long, default_value_t = 2)]
    pub twc_batches: usize,
    /// Batches used by the OS+ shift/scale search (0: all).
    #[arg(long, default_value_t = 0)]
    pub osplus_batches: usize,
    /// What Token-Wise Clipping (OS, OS+) compares with the FP32 model: every token's final
    /// hidden state, or a fine-tuned model's logits (the OS reference's loss for GLUE).
    #[arg(long, value_enum, default_value_t = LossArg::Hidden)]
    pub loss: LossArg,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Output parameter directory (written atomically; never the model directory).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(a: &CalibrateArgs) -> Result<()> {
    let t0 = Instant::now();
    super::alloc::keep_freed_memory();
    let method: osq::Method = a.method.into();
    let progress = !a.quiet && std::io::stderr().is_terminal();
    if method == osq::Method::OsPlus && !a.no_gamma && progress {
        eprintln!("note: os+ replaces Gamma Migration (channel-wise scaling); γ is not migrated");
    }
    let opts = osq::CalibOptions {
        method,
        bits: a.bits.into(),
        gamma: !a.no_gamma,
        coarse_only: a.coarse_only,
        samples: a.samples,
        seed: a.seed,
        max_len: a.max_len,
        twc_batches: a.twc_batches,
        osplus_batches: a.osplus_batches,
        loss: a.loss.into(),
        threads: a.threads,
        progress,
    };
    // refuse an output over the model before spending minutes on the calibration
    osq_model::atomic::check_outside(&a.output, &[&a.model])?;
    let c = osq::calibrate(&a.model, &a.data, &opts)?;
    c.save(&a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let r = c.report();
    println!(
        "calibrated {} ({}, {}, γ migration {}) on {} sentences / {} tokens in {:.1} s; \
         output MSE {:.4e} (MinMax {:.4e}) → {}",
        a.model.display(),
        r.bits,
        r.method,
        if r.gamma_migration { "on" } else { "off" },
        r.samples,
        r.tokens,
        t0.elapsed().as_secs_f64(),
        r.output_mse,
        r.output_mse_minmax,
        a.output.display()
    );
    Ok(())
}

fn load(
    model: &Path,
    data_path: &Path,
    samples: usize,
    seed: u64,
) -> Result<(BertModel, Vec<osq_model::Batch>)> {
    let m = BertModel::load(model).with_context(|| format!("loading model {}", model.display()))?;
    let b = data::load(data_path, &m.tokenizer, samples, seed, data::CALIB_MAX_LEN)
        .with_context(|| format!("reading calibration data {}", data_path.display()))?;
    Ok((m, b))
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Hugging Face model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Calibration text: one sentence per line (UTF-8).
    #[arg(long)]
    pub data: PathBuf,
    /// Activation bits of the quantizer of Table 1 (the paper uses 6).
    #[arg(long, default_value_t = 6)]
    pub act_bits: u32,
    /// LayerNorm of Fig. 1: `emb`, `attn:L`, `ffn:L` (default: where γ amplifies most).
    #[arg(long)]
    pub ln: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Output directory (table1.md, fig1.svg, report.json).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

fn parse_ln(s: &str, nl: usize) -> Result<LnId> {
    let err = || anyhow::anyhow!("--ln {s}: expected emb, attn:L or ffn:L with L < {nl}");
    if s == "emb" {
        return Ok(LnId::Emb);
    }
    let (kind, l) = s.split_once(':').ok_or_else(err)?;
    let l: usize = l.parse().map_err(|_| err())?;
    if l >= nl {
        return Err(err());
    }
    match kind {
        "attn" => Ok(LnId::Attn(l)),
        "ffn" => Ok(LnId::Ffn(l)),
        _ => Err(err()),
    }
}

pub fn report(a: &ReportArgs) -> Result<()> {
    if !(2..=16).contains(&a.act_bits) {
        bail!("--act-bits {}: expected 2..=16", a.act_bits);
    }
    let (m, batches) = load(&a.model, &a.data, a.samples, a.seed)?;
    let ln =
        a.ln.as_deref()
            .map(|s| parse_ln(s, m.config().num_hidden_layers))
            .transpose()?;
    let progress = Progress::new(std::io::stderr().is_terminal());
    let r = report::compute(&m.weights, &batches, a.act_bits, ln, a.threads, &progress)?;
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let write = |name: &str, text: String| -> Result<()> {
        let p = a.output.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    let md = report::table_markdown(&r);
    write("table1.md", md.clone())?;
    write("fig1.svg", report::fig1_svg(&r.fig1))?;
    write("report.json", serde_json::to_string_pretty(&r)?)?;
    print!("{md}");
    println!(
        "\nFig. 1 ({}) → {}",
        r.fig1.ln,
        a.output.join("fig1.svg").display()
    );
    Ok(())
}
