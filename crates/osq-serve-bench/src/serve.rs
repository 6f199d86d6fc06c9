//! Concurrent mode: N client threads, one shared engine behind a batching queue.
//!
//! Design (docs/bench.md):
//! - One [`Server`] owns an `Arc<Engine>` and a [`Threads`] context. Clients send
//!   [`Request`]s (request id, token ids, a reply channel, send time) on one `mpsc` channel.
//! - The server thread blocks for the first request, then drains whatever is already queued, and
//!   waits at most `max_wait` for more, up to `max_batch` requests. The batch is ragged
//!   (right-padded to its longest sequence; the integer executor drops padding, FP32 masks it),
//!   runs once on the shared engine, and each request gets its own sequence's output back on its
//!   own reply channel, tagged with its id.
//! - Clients are closed-loop (send, wait, check, send the next), sentences chosen by a per-client
//!   SplitMix64 stream over a pool of real sentences of varied length.
//! - Every answer is checked against the same sentence computed alone (batch of one) before the
//!   load phase: request id must match, output bytes (codes / f32 bits) and sentence embedding bits
//!   must be identical. Exception, FP32 only ([`LoadOpts::tolerance`]): the `gemm` crate may round
//!   a row differently when the batch has a different number of rows, so a batched FP32 answer can
//!   differ from the alone one in the last bits; such answers are counted separately
//!   (`within_tolerance`, max |Δ| ≤ tol·max(1, |x|)) — still a different sentence or a mixed-up
//!   row is far outside any tolerance. The integer engines are always checked bit for bit. Sent, answered, correct, wrong-id, wrong-content and lost requests are
//!   counted; [`ServeReport::assert_ok`] fails unless every request was answered correctly.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use osq_model::rng::SplitMix64;
use osq_model::Batch;
use serde::Serialize;

use crate::engine::{Engine, Threads};
use crate::stats::Summary;

/// One request.
pub struct Request {
    pub id: u64,
    pub ids: Vec<u32>,
    pub reply: Sender<Reply>,
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub id: u64,
    /// Output bytes of the request's sequence (codes or f32 bits).
    pub output: Vec<u8>,
    /// Sentence embedding (mean pooling + L2).
    pub embedding: Vec<f32>,
    /// Size of the batch the request was served in.
    pub batch_size: usize,
    /// Error text if the batch failed.
    pub error: Option<String>,
}

/// Queue settings.
#[derive(Clone, Copy, Debug)]
pub struct QueueOpts {
    pub max_batch: usize,
    pub max_wait: Duration,
}

/// The batching server thread.
pub struct Server {
    tx: Option<Sender<Request>>,
    handle: Option<JoinHandle<ServerStats>>,
}

/// Counters of the server thread.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerStats {
    pub batches: usize,
    pub requests: usize,
    pub max_batch_seen: usize,
    pub busy_seconds: f64,
}

fn serve_loop(
    engine: Arc<Engine>,
    threads: Threads,
    rx: Receiver<Request>,
    q: QueueOpts,
) -> ServerStats {
    let mut st = ServerStats::default();
    let pad = engine.tokenizer().pad_id();
    while let Ok(first) = rx.recv() {
        let mut reqs = vec![first];
        let deadline = Instant::now() + q.max_wait;
        while reqs.len() < q.max_batch {
            match rx.try_recv() {
                Ok(r) => {
                    reqs.push(r);
                    continue;
                }
                Err(_) if q.max_wait.is_zero() => break,
                Err(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(r) => reqs.push(r),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let t0 = Instant::now();
        let seqs: Vec<Vec<u32>> = reqs.iter().map(|r| r.ids.clone()).collect();
        let batch = Batch::from_ids(&seqs, pad);
        let result = engine.run(&batch, &threads);
        st.busy_seconds += t0.elapsed().as_secs_f64();
        st.batches += 1;
        st.requests += reqs.len();
        st.max_batch_seen = st.max_batch_seen.max(reqs.len());
        let n = reqs.len();
        match result {
            Ok(out) => {
                let emb = engine.embeddings(&out);
                let h = engine.hidden_size();
                for (b, r) in reqs.into_iter().enumerate() {
                    let _ = r.reply.send(Reply {
                        id: r.id,
                        output: out.sequence_bytes(b),
                        embedding: emb[b * h..(b + 1) * h].to_vec(),
                        batch_size: n,
                        error: None,
                    });
                }
            }
            Err(e) => {
                for r in reqs {
                    let _ = r.reply.send(Reply {
                        id: r.id,
                        output: vec![],
                        embedding: vec![],
                        batch_size: n,
                        error: Some(e.to_string()),
                    });
                }
            }
        }
    }
    st
}

impl Server {
    pub fn start(engine: Arc<Engine>, threads: Threads, q: QueueOpts) -> Result<Server> {
        if q.max_batch == 0 {
            bail!("max batch must be at least 1");
        }
        let (tx, rx) = channel::<Request>();
        let handle = std::thread::Builder::new()
            .name("osq-serve".into())
            .spawn(move || serve_loop(engine, threads, rx, q))
            .map_err(|e| anyhow!("cannot start the server thread: {e}"))?;
        Ok(Server {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// A sender for one client.
    pub fn sender(&self) -> Result<Sender<Request>> {
        self.tx
            .clone()
            .ok_or_else(|| anyhow!("server already stopped"))
    }

    /// Closes the queue and joins the server thread.
    pub fn stop(mut self) -> Result<ServerStats> {
        self.tx.take();
        let h = self
            .handle
            .take()
            .ok_or_else(|| anyhow!("server already stopped"))?;
        h.join().map_err(|_| anyhow!("server thread panicked"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Load-test settings.
#[derive(Clone, Copy, Debug)]
pub struct LoadOpts {
    pub clients: usize,
    pub requests: usize,
    pub queue: QueueOpts,
    pub seed: u64,
    /// `None`: bit-identical answers required (integer engines). `Some(tol)`: answers that are
    /// not bit-identical but within `tol` relative are accepted and counted (FP32).
    pub tolerance: Option<f32>,
}

/// Result of a load test.
#[derive(Clone, Debug, Serialize)]
pub struct ServeReport {
    pub engine: String,
    pub clients: usize,
    pub threads: usize,
    pub max_batch: usize,
    pub max_wait_us: u64,
    pub requests: usize,
    pub sent: usize,
    pub answered: usize,
    /// Bit-identical plus within tolerance.
    pub correct: usize,
    pub bit_identical: usize,
    pub within_tolerance: usize,
    /// Largest |Δ| seen among the within-tolerance answers.
    pub max_abs_diff: f32,
    pub tolerance: Option<f32>,
    pub wrong_id: usize,
    pub wrong_output: usize,
    pub errors: usize,
    pub lost: usize,
    pub distinct_sentences: usize,
    pub mean_tokens: f64,
    pub wall_seconds: f64,
    pub throughput_req_per_s: f64,
    pub latency: Option<Summary>,
    pub mean_batch: f64,
    pub server: ServerStats,
}

impl ServeReport {
    /// Fails unless every request was answered, with its own id, bit-identical to the
    /// sentence computed alone (or within the tolerance, FP32 only).
    pub fn assert_ok(&self) -> Result<()> {
        if self.sent != self.requests
            || self.answered != self.sent
            || self.correct != self.sent
            || (self.tolerance.is_none() && self.within_tolerance != 0)
            || self.wrong_id + self.wrong_output + self.errors + self.lost != 0
        {
            bail!(
                "concurrent mode FAILED: {} requested, {} sent, {} answered, {} correct, {} wrong id, {} wrong output, {} errors, {} lost",
                self.requests,
                self.sent,
                self.answered,
                self.correct,
                self.wrong_id,
                self.wrong_output,
                self.errors,
                self.lost
            );
        }
        Ok(())
    }
}

/// Reference outputs of each sentence computed alone.
pub struct References {
    pub ids: Vec<Vec<u32>>,
    pub outputs: Vec<Vec<u8>>,
    pub embeddings: Vec<Vec<f32>>,
}

/// Computes every sentence alone (batch of one) on `engine` with `threads`.
pub fn references(engine: &Engine, ids: Vec<Vec<u32>>, threads: &Threads) -> Result<References> {
    let pad = engine.tokenizer().pad_id();
    let mut outputs = Vec::with_capacity(ids.len());
    let mut embeddings = Vec::with_capacity(ids.len());
    for s in &ids {
        let b = Batch::from_ids(std::slice::from_ref(s), pad);
        let out = engine.run(&b, threads)?;
        outputs.push(out.sequence_bytes(0));
        embeddings.push(engine.embeddings(&out));
    }
    Ok(References {
        ids,
        outputs,
        embeddings,
    })
}

#[derive(Default)]
struct ClientTally {
    sent: usize,
    answered: usize,
    correct: usize,
    approx: usize,
    max_diff: f32,
    wrong_id: usize,
    wrong_output: usize,
    errors: usize,
    lost: usize,
    tokens: usize,
    batch_sum: usize,
    latencies_ms: Vec<f64>,
}

fn bits_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Max |a − b| if every element is within `tol·max(1, |b|)` (f32 vectors; output bytes are
/// decoded as little-endian f32), else `None`.
fn within(a: &[f32], b: &[f32], tol: f32) -> Option<f32> {
    if a.len() != b.len() {
        return None;
    }
    let mut m = 0f32;
    for (&x, &y) in a.iter().zip(b) {
        let d = (x - y).abs();
        if d.is_nan() || d > tol * y.abs().max(1.0) {
            return None;
        }
        m = m.max(d);
    }
    Some(m)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Runs the load test: `clients` closed-loop threads sending `requests` in total to one
/// [`Server`] around `engine`.
pub fn load_test(
    engine: Arc<Engine>,
    threads: Threads,
    refs: Arc<References>,
    o: &LoadOpts,
) -> Result<ServeReport> {
    if o.clients == 0 {
        bail!("--concurrent must be at least 1");
    }
    if refs.ids.is_empty() {
        bail!("no sentence to send");
    }
    let nthreads = threads.count();
    let name = engine.name().to_string();
    let server = Server::start(engine, threads, o.queue)?;
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(o.clients);
    for c in 0..o.clients {
        let share = o.requests / o.clients + usize::from(c < o.requests % o.clients);
        let tx = server.sender()?;
        let refs = Arc::clone(&refs);
        let seed = o.seed ^ ((c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let tol = o.tolerance;
        let h = std::thread::Builder::new()
            .name(format!("osq-client-{c}"))
            .spawn(move || {
                let mut rng = SplitMix64::new(seed);
                let mut t = ClientTally::default();
                let (rtx, rrx) = channel::<Reply>();
                for i in 0..share {
                    let s = (rng.next_u64() % refs.ids.len() as u64) as usize;
                    let id = ((c as u64) << 32) | i as u64;
                    let sent_at = Instant::now();
                    if tx
                        .send(Request {
                            id,
                            ids: refs.ids[s].clone(),
                            reply: rtx.clone(),
                        })
                        .is_err()
                    {
                        t.lost += share - i;
                        break;
                    }
                    t.sent += 1;
                    t.tokens += refs.ids[s].len();
                    match rrx.recv_timeout(Duration::from_secs(600)) {
                        Ok(r) => {
                            t.latencies_ms.push(sent_at.elapsed().as_secs_f64() * 1e3);
                            t.answered += 1;
                            t.batch_sum += r.batch_size;
                            if r.error.is_some() {
                                t.errors += 1;
                            } else if r.id != id {
                                t.wrong_id += 1;
                            } else if r.output == refs.outputs[s]
                                && bits_eq(&r.embedding, &refs.embeddings[s])
                            {
                                t.correct += 1;
                            } else {
                                let near = tol.and_then(|tol| {
                                    let a = within(&f32s(&r.output), &f32s(&refs.outputs[s]), tol)?;
                                    let b = within(&r.embedding, &refs.embeddings[s], tol)?;
                                    Some(a.max(b))
                                });
                                match near {
                                    Some(d) => {
                                        t.approx += 1;
                                        t.max_diff = t.max_diff.max(d);
                                    }
                                    None => t.wrong_output += 1,
                                }
                            }
                        }
                        Err(_) => t.lost += 1,
                    }
                }
                t
            })
            .map_err(|e| anyhow!("cannot start client thread {c}: {e}"))?;
        handles.push(h);
    }
    let mut all = ClientTally::default();
    for h in handles {
        let t = h.join().map_err(|_| anyhow!("a client thread panicked"))?;
        all.sent += t.sent;
        all.answered += t.answered;
        all.correct += t.correct;
        all.approx += t.approx;
        all.max_diff = all.max_diff.max(t.max_diff);
        all.wrong_id += t.wrong_id;
        all.wrong_output += t.wrong_output;
        all.errors += t.errors;
        all.lost += t.lost;
        all.tokens += t.tokens;
        all.batch_sum += t.batch_sum;
        all.latencies_ms.extend(t.latencies_ms);
    }
    let wall = t0.elapsed().as_secs_f64();
    let server = server.stop()?;
    let distinct = refs.ids.len();
    Ok(ServeReport {
        engine: name,
        clients: o.clients,
        threads: nthreads,
        max_batch: o.queue.max_batch,
        max_wait_us: o.queue.max_wait.as_micros() as u64,
        requests: o.requests,
        sent: all.sent,
        answered: all.answered,
        correct: all.correct + all.approx,
        bit_identical: all.correct,
        within_tolerance: all.approx,
        max_abs_diff: all.max_diff,
        tolerance: o.tolerance,
        wrong_id: all.wrong_id,
        wrong_output: all.wrong_output,
        errors: all.errors,
        lost: all.lost,
        distinct_sentences: distinct,
        mean_tokens: all.tokens as f64 / all.sent.max(1) as f64,
        wall_seconds: wall,
        throughput_req_per_s: all.answered as f64 / wall,
        latency: Summary::of(&all.latencies_ms),
        mean_batch: all.batch_sum as f64 / all.answered.max(1) as f64,
        server,
    })
}
