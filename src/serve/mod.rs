//! `osq serve`: the library [`Model`] behind an HTTP API compatible with
//! text-embeddings-inference where TEI has the route (`/embed`, `/v1/embeddings`, `/health`,
//! `/info`, `/metrics`, `/predict`).
//!
//! Requests are validated and tokenized in the handler (bad JSON → 422, empty input → 400,
//! too long → 413 unless truncation), then queued on a bounded [`batcher`] (full → 429 at once:
//! memory never grows with the offered load). One worker thread groups queued requests up to a
//! token budget into one ragged batch (padding is never computed) and answers each request
//! with its own rows: the integer engine gives the same bits for a text in any batch, so
//! batching changes throughput, never answers. Shutdown (SIGTERM, ctrl-c) stops accepting,
//! finishes the requests in flight, and returns.

pub mod batcher;
pub mod metrics;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::Model;

/// Settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Token budget of one batch (sum of the batch's token counts).
    pub max_batch_tokens: usize,
    /// Requests per batch at most.
    pub max_batch_requests: usize,
    /// Requests waiting at most; more get 429.
    pub max_queue: usize,
    /// Texts per request at most.
    pub max_client_batch: usize,
    /// Request body bytes at most (413 beyond).
    pub max_body_bytes: usize,
    /// Default of a request's `truncate` field.
    pub truncate: bool,
    /// Name reported as `model` in `/info` and `/v1/embeddings`.
    pub model_name: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_batch_tokens: 16_384,
            max_batch_requests: 64,
            max_queue: 512,
            max_client_batch: 256,
            max_body_bytes: 2 << 20,
            truncate: false,
            model_name: "osq".into(),
        }
    }
}

/// Serves `model` until SIGTERM or ctrl-c, then finishes the requests in flight and returns.
/// `on_listen` is called with the bound address (port 0 picks a free one).
pub fn serve(model: Model, opts: ServeOptions, on_listen: impl FnOnce(SocketAddr)) -> Result<()> {
    if opts.max_batch_tokens == 0 || opts.max_batch_requests == 0 || opts.max_queue == 0 {
        return Err(Error::Input(
            "--max-batch-tokens, --max-batch-requests and --max-queue must be positive".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("osq-http")
        .build()
        .map_err(|e| Error::Input(format!("cannot start the HTTP runtime: {e}")))?;
    let model = Arc::new(model);
    let metrics = Arc::new(metrics::Metrics::default());
    let (queue, worker) = batcher::start(model.clone(), &opts, metrics.clone());
    let state = routes::AppState {
        model,
        queue,
        metrics,
        opts: opts.clone(),
    };
    let res = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| Error::Input(format!("cannot listen on {}: {e}", opts.addr)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Input(format!("listening socket: {e}")))?;
        tracing::info!(%addr, "osq serve listening");
        on_listen(addr);
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Error::Input(format!("HTTP server: {e}")))
    });
    // the router (and its queue senders) are dropped: the worker drains and stops
    worker.join().ok();
    tracing::info!("osq serve stopped");
    res
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: finishing requests in flight");
}
