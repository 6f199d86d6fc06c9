//! `osq serve`: [`osq::serve::serve`] with its settings from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::values::IsaArg;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Parameter directory written by `osq calibrate`.
    #[arg(long)]
    pub params: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Threads of the model (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Kernel ISA (default: the best available).
    #[arg(long, value_enum)]
    pub isa: Option<IsaArg>,
    /// Token budget of one batch.
    #[arg(long, default_value_t = 16_384)]
    pub max_batch_tokens: usize,
    /// Requests per batch at most.
    #[arg(long, default_value_t = 64)]
    pub max_batch_requests: usize,
    /// Requests waiting at most (more are answered 429 at once).
    #[arg(long, default_value_t = 512)]
    pub max_queue: usize,
    /// Texts per request at most.
    #[arg(long, default_value_t = 256)]
    pub max_client_batch: usize,
    /// Maximum tokens per text (default: the model's maximum).
    #[arg(long)]
    pub max_input_length: Option<usize>,
    /// Truncate long texts by default (a request's `truncate` field overrides it).
    #[arg(long)]
    pub truncate: bool,
    /// Request body size limit in bytes.
    #[arg(long, default_value_t = 2 << 20)]
    pub max_body_bytes: usize,
    /// Model name reported by `/info` and `/v1/embeddings`.
    #[arg(long)]
    pub model_name: Option<String>,
}

pub fn run(a: &ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let isa = a.isa.map(IsaArg::one).transpose()?;
    let model = osq::Model::load_with(
        &a.params,
        osq::ModelOptions {
            threads: a.threads,
            isa,
            max_length: a.max_input_length,
            truncate: a.truncate,
            batch_size: a.max_batch_requests.max(1),
        },
    )
    .with_context(|| format!("loading parameters {}", a.params.display()))?;
    let name = a.model_name.clone().unwrap_or_else(|| {
        a.params
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "osq".into())
    });
    let opts = osq::serve::ServeOptions {
        addr: a.addr,
        max_batch_tokens: a.max_batch_tokens,
        max_batch_requests: a.max_batch_requests,
        max_queue: a.max_queue,
        max_client_batch: a.max_client_batch,
        max_body_bytes: a.max_body_bytes,
        truncate: a.truncate,
        model_name: name,
    };
    osq::serve::serve(model, opts, |addr| {
        use std::io::Write;
        println!("osq serve: listening on http://{addr}");
        std::io::stdout().flush().ok();
    })?;
    Ok(())
}
