//! The `osq` command line on the `osq` library: `calibrate` (alias `quantize`), `verify`,
//! `run`, and the evaluation commands.

pub mod calibrate;
pub mod eval;
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
    /// (tests) Write the tiny generated BERT checkpoint the test suites use, and
    /// `sentences.txt` (texts in its vocabulary) beside it.
    #[command(hide = true)]
    TestingFixture(TestingFixtureArgs),
    /// The OS paper's Table 1 and Fig. 1 on a model (γ vs. non-scaling LayerNorm outliers).
    Report(calibrate::ReportArgs),
}

#[derive(clap::Args, Debug)]
pub struct TestingFixtureArgs {
    /// Directory to write the tiny model into.
    #[arg(short = 'o', long = "output")]
    pub output: std::path::PathBuf,
    /// Seed of its random weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `osq testing-fixture`: the tiny model and its sentences.
pub fn write_fixture(a: &TestingFixtureArgs) -> anyhow::Result<()> {
    osq_model::testing::write_tiny_bert(&a.output, a.seed)?;
    let p = a.output.join("sentences.txt");
    std::fs::write(&p, osq_model::testing::SENTENCES.join("\n") + "\n")
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}
