//! The `osq` command line: `quantize`, `verify`, `run` (and the evaluation commands).

pub mod calibrate;
pub mod data;
pub mod eval;
pub mod quantize;
pub mod run;
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
    /// Calibrate (MinMax) and quantize an FP32 checkpoint into a parameter directory.
    Quantize(quantize::QuantizeArgs),
    /// Compare the integer executor with the fake-quant executors node by node.
    Verify(verify::VerifyArgs),
    /// Sentence embeddings on the integer executor.
    Run(run::RunArgs),
    /// Train a linear probe (logistic regression) on FP32 sentence embeddings of labelled data.
    TrainProbe(eval::TrainProbeArgs),
    /// Probe accuracy on labelled data: FP32 and the integer executor of each parameter set.
    Eval(eval::EvalArgs),
    /// Calibrate with osq-calib (MinMax, Percentile, OMSE, OS, OS+) into a parameter directory.
    Calibrate(calibrate::CalibrateArgs),
    /// The OS paper's Table 1 and Fig. 1 on a model (γ vs. non-scaling LayerNorm outliers).
    Report(calibrate::ReportArgs),
}
