//! HTTP routes and their JSON shapes (TEI's where TEI has the route). Every error is a JSON
//! body `{"error": MESSAGE, "error_type": KIND}` with a status that says whose fault it is.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::batcher::{Job, Queue, SubmitError};
use super::metrics::Metrics;
use super::ServeOptions;
use crate::{EmbedOptions, Embeddings, ErrorKind, Model};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The model (tokenization in the handlers, compute in the batch worker).
    pub model: Arc<Model>,
    /// The batch worker's queue.
    pub queue: Queue,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Server settings.
    pub opts: ServeOptions,
}

/// The router of `osq serve`.
pub fn router(state: AppState) -> Router {
    let limit = state.opts.max_body_bytes;
    Router::new()
        .route("/embed", post(embed))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/predict", post(predict))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error answer.
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    msg: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            msg: msg.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.msg, "error_type": self.kind})),
        )
            .into_response()
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        match e.kind() {
            ErrorKind::TooLong => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Validation", e.to_string())
            }
            ErrorKind::InvalidInput => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation",
                e.to_string(),
            ),
            ErrorKind::Io => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Backend", e.to_string())
            }
        }
    }
}

/// `str | [str]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    fn into_vec(self) -> Vec<String> {
        match self {
            Inputs::One(s) => vec![s],
            Inputs::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedRequest {
    inputs: Inputs,
    #[serde(default)]
    normalize: Option<bool>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiRequest {
    input: Inputs,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid request body at `{path}`: {inner}")
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation", msg)
    })
}

/// A request holds at least one text and at most `--max-client-batch`.
fn check_inputs(st: &AppState, texts: &[String]) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Validation",
            "`inputs` cannot be empty",
        ));
    }
    if texts.len() > st.opts.max_client_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Validation",
            format!(
                "{} inputs, more than the {} a request may hold",
                texts.len(),
                st.opts.max_client_batch
            ),
        ));
    }
    Ok(())
}

/// Validates, tokenizes, queues and awaits one request's texts.
async fn run_texts(
    st: &AppState,
    texts: Vec<String>,
    opts: EmbedOptions,
) -> Result<Embeddings, ApiError> {
    check_inputs(st, &texts)?;
    let truncate = opts.truncate.unwrap_or(st.opts.truncate);
    let model = st.model.clone();
    let (texts, tokens) = tokio::task::spawn_blocking(move || {
        let t = model.count_tokens_with(&texts, truncate);
        (texts, t)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Backend", e.to_string()))?;
    let tokens = tokens?;
    let max = st.model.max_length();
    let tokens: usize = tokens.iter().map(|&n| n.min(max)).sum();
    let (tx, rx) = oneshot::channel();
    let job = Job {
        texts,
        tokens,
        opts: EmbedOptions {
            truncate: Some(truncate),
            normalize: opts.normalize,
        },
        reply: tx,
    };
    match st.queue.try_submit(job) {
        Ok(()) => {}
        Err(SubmitError::Full) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Overloaded",
                "the request queue is full; retry later",
            ))
        }
        Err(SubmitError::Closed) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unhealthy",
                "the server is shutting down",
            ))
        }
    }
    match rx.await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Backend",
            "the batch worker dropped the request",
        )),
    }
}

fn finish(st: &AppState, t0: Instant, r: Result<Response, ApiError>) -> Response {
    let resp = match r {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    st.metrics
        .observe_request(resp.status().as_u16(), t0.elapsed());
    resp
}

fn rows(e: &Embeddings) -> Vec<&[f32]> {
    e.rows().collect()
}

async fn embed(State(st): State<AppState>, body: Bytes) -> Response {
    let t0 = Instant::now();
    let r = async {
        let req: EmbedRequest = parse(&body)?;
        if let Some(d) = req.truncation_direction.as_deref() {
            if !d.eq_ignore_ascii_case("right") {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation",
                    format!("truncation_direction `{d}`: only `right` is supported"),
                ));
            }
        }
        if req.prompt_name.is_some() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation",
                "prompt_name: this model has no prompts",
            ));
        }
        let opts = EmbedOptions {
            truncate: req.truncate,
            normalize: req.normalize,
        };
        let e = run_texts(&st, req.inputs.into_vec(), opts).await?;
        Ok(Json(rows(&e)).into_response())
    }
    .await;
    finish(&st, t0, r)
}

async fn openai_embeddings(State(st): State<AppState>, body: Bytes) -> Response {
    let t0 = Instant::now();
    let r = async {
        let req: OpenAiRequest = parse(&body)?;
        if let Some(f) = req.encoding_format.as_deref() {
            if f != "float" {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation",
                    format!("encoding_format `{f}`: only `float` is supported"),
                ));
            }
        }
        let dim = st.model.dim();
        if let Some(d) = req.dimensions {
            if d != dim {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation",
                    format!("dimensions {d}: this model embeds in {dim} dimensions"),
                ));
            }
        }
        let e = run_texts(&st, req.input.into_vec(), EmbedOptions::default()).await?;
        let data: Vec<Value> = e
            .rows()
            .enumerate()
            .map(|(i, r)| json!({"object": "embedding", "index": i, "embedding": r}))
            .collect();
        let prompt_tokens: usize = e.tokens().iter().sum();
        Ok(Json(json!({
            "object": "list",
            "data": data,
            "model": req.model.unwrap_or_else(|| st.opts.model_name.clone()),
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }))
        .into_response())
    }
    .await;
    finish(&st, t0, r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    inputs: Inputs,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    truncate: Option<bool>,
}

/// TEI's `/predict` on the model's sequence head: for each input, every label with its score
/// (softmax / sigmoid; `raw_scores`: the logits), highest first. One input gives one list, a
/// list of inputs a list of lists.
async fn predict(State(st): State<AppState>, body: Bytes) -> Response {
    let t0 = Instant::now();
    let r = async {
        let req: PredictRequest = parse(&body)?;
        let Some((task, labels)) = st.model.head() else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Validation",
                "this model has no task head: /predict needs parameters calibrated from a *ForSequenceClassification checkpoint (use /embed)",
            ));
        };
        if task == "token_classification" {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Validation",
                "this model has a token-classification head: /predict answers per sequence (use `osq run --json`)",
            ));
        }
        if let Some(t) = req.truncate {
            if t != st.opts.truncate {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation",
                    format!("truncate {t}: /predict follows the server's setting ({})", st.opts.truncate),
                ));
            }
        }
        let labels = labels.to_vec();
        let one = matches!(req.inputs, Inputs::One(_));
        let texts = req.inputs.into_vec();
        check_inputs(&st, &texts)?;
        let model = st.model.clone();
        let preds = tokio::task::spawn_blocking(move || model.classify(&texts))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Backend", e.to_string()))??;
        let lists: Vec<Value> = preds
            .iter()
            .map(|p| {
                let vals = if req.raw_scores { &p.logits } else { &p.scores };
                let mut v: Vec<(&String, f32)> = labels.iter().zip(vals.iter().copied()).collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                Value::Array(v.into_iter().map(|(l, s)| json!({"label": l, "score": s})).collect())
            })
            .collect();
        let body = if one { lists.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(lists) };
        Ok(Json(body).into_response())
    }
    .await;
    finish(&st, t0, r)
}

async fn health() -> impl IntoResponse {
    StatusCode::OK
}

async fn info(State(st): State<AppState>) -> Response {
    let i = st.model.info();
    Json(json!({
        "model_id": st.opts.model_name,
        "model_type": match st.model.head() {
            Some((task, labels)) => json!({"classifier": {"task": task, "id2label": labels}}),
            None => json!({"embedding": {"pooling": "mean"}}),
        },
        "params": i.params.display().to_string(),
        "bits": i.bits,
        "method": i.method,
        "isa": i.isa,
        "threads": i.threads,
        "dim": i.dim,
        "layers": i.layers,
        "max_input_length": i.max_length,
        "max_batch_tokens": st.opts.max_batch_tokens,
        "max_batch_requests": st.opts.max_batch_requests,
        "max_concurrent_requests": st.opts.max_queue,
        "max_client_batch_size": st.opts.max_client_batch,
        "auto_truncate": st.opts.truncate,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}
