//! The `osq` command line on the `osq` library: `calibrate` (alias `quantize`), `verify`,
//! `run`, and the evaluation commands.

pub mod alloc;
pub mod calibrate;
pub mod eval;
pub mod eval_head;
pub mod run;
pub mod serve;
pub mod values;
pub mod verify;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "osq",
    version,
    about = "Integer-only CPU inference for BERT encoders quantized with Outlier Suppression"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compare the integer executor with the fake-quant executors node by node.
    Verify(verify::VerifyArgs),
    /// Sentence embeddings on the integer executor.
    Run(run::RunArgs),
    /// Serve the model over HTTP (TEI / OpenAI-compatible routes, dynamic batching).
    Serve(serve::ServeArgs),
    /// Train a linear probe (logistic regression) on FP32 sentence embeddings of labelled data.
    TrainProbe(eval::TrainProbeArgs),
    /// Probe accuracy on labelled data: FP32 and the integer executor of each parameter set.
    Eval(eval::EvalArgs),
    /// Calibrate and quantize an FP32 checkpoint into a parameter directory (MinMax by
    /// default; Percentile, OMSE, OS, OS+).
    #[command(alias = "quantize")]
    Calibrate(calibrate::CalibrateArgs),
    /// The OS paper's Table 1 and Fig. 1 on a model (γ vs. non-scaling LayerNorm outliers).
    Report(calibrate::ReportArgs),
}
