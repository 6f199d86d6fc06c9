//! `osq`: quantize a BERT checkpoint with Outlier Suppression, verify that the integer engine is
//! bit-exact with the fake-quant simulation, and run it.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let res = match &args.command {
        cli::Command::Verify(a) => cli::verify::run(a),
        cli::Command::Run(a) => cli::run::run(a).map(|_| true),
        cli::Command::Serve(a) => cli::serve::run(a).map(|_| true),
        cli::Command::TrainProbe(a) => cli::eval::train_probe(a).map(|_| true),
        cli::Command::Eval(a) => cli::eval::eval(a).map(|_| true),
        cli::Command::Calibrate(a) => cli::calibrate::run(a).map(|_| true),
        cli::Command::Report(a) => cli::calibrate::report(a).map(|_| true),
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("osq: integer codes are NOT bit-exact with the deploy reference");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("osq: error: {}", osq::error_message(e.as_ref()));
            ExitCode::from(2)
        }
    }
}
