//! The bounded request queue and the batching worker. Handlers `try_submit` (a full queue is
//! an immediate error, answered 429); one worker thread takes the first waiting job, adds
//! whatever else is queued while the token budget and request cap allow, embeds the texts of
//! all of them in one call, and hands each job its own rows. A batch that fails is retried job
//! by job, so one bad request never fails the others.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::ServeOptions;
use crate::{EmbedOptions, Embeddings, Model};

/// One queued request.
pub struct Job {
    /// Its texts.
    pub texts: Vec<String>,
    /// Tokens of its texts (after truncation), for the batch budget.
    pub tokens: usize,
    /// Embedding options.
    pub opts: EmbedOptions,
    /// Where the answer goes.
    pub reply: oneshot::Sender<crate::Result<Embeddings>>,
}

/// The sending side, cloned into every handler.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

/// Why a job was not queued.
pub enum SubmitError {
    /// The queue is full.
    Full,
    /// The worker has stopped.
    Closed,
}

impl Queue {
    /// Queues `job` without waiting.
    pub fn try_submit(&self, job: Job) -> Result<(), SubmitError> {
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Closed,
                })
            }
        }
    }
}

/// Starts the worker; it stops when every [`Queue`] clone is dropped and the queue is empty.
pub fn start(
    model: Arc<Model>,
    opts: &ServeOptions,
    metrics: Arc<Metrics>,
) -> (Queue, JoinHandle<()>) {
    let (tx, rx) = sync_channel::<Job>(opts.max_queue);
    let (budget, max_req) = (opts.max_batch_tokens, opts.max_batch_requests);
    let m = metrics.clone();
    let worker = std::thread::Builder::new()
        .name("osq-batcher".into())
        .spawn(move || run(model, rx, budget, max_req, m))
        .expect("spawning the batch worker thread");
    (Queue { tx, metrics }, worker)
}

fn run(model: Arc<Model>, rx: Receiver<Job>, budget: usize, max_req: usize, m: Arc<Metrics>) {
    let taken = |j: Job| {
        m.queue_depth.fetch_sub(1, Ordering::Relaxed);
        j
    };
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => taken(j),
                Err(_) => return,
            },
        };
        let mut tokens = first.tokens;
        let mut jobs = vec![first];
        while jobs.len() < max_req {
            match rx.try_recv() {
                Ok(j) => {
                    let j = taken(j);
                    if tokens + j.tokens > budget {
                        carry = Some(j);
                        break;
                    }
                    tokens += j.tokens;
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let t0 = Instant::now();
        let n = jobs.len();
        run_batch(&model, jobs);
        m.observe_batch(n, tokens, t0.elapsed());
    }
}

fn run_batch(model: &Model, jobs: Vec<Job>) {
    // jobs with the same options run together
    let same = jobs.iter().all(|j| {
        j.opts.normalize == jobs[0].opts.normalize && j.opts.truncate == jobs[0].opts.truncate
    });
    if same && jobs.len() > 1 {
        let texts: Vec<&str> = jobs
            .iter()
            .flat_map(|j| j.texts.iter().map(String::as_str))
            .collect();
        if let Ok(e) = model.embed_with(&texts, &jobs[0].opts) {
            let mut row = 0;
            for j in jobs {
                let n = j.texts.len();
                let mut data = Vec::with_capacity(n * e.dim());
                for i in row..row + n {
                    data.extend_from_slice(e.row(i));
                }
                let toks = e.tokens()[row..row + n].to_vec();
                row += n;
                j.reply.send(Ok(Embeddings::new(data, e.dim(), toks))).ok();
            }
            return;
        }
    }
    for j in jobs {
        let r = model.embed_with(&j.texts, &j.opts);
        j.reply.send(r).ok();
    }
}
