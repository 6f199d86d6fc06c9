//! Prometheus metrics of `osq serve`, in the text exposition format. Written by hand: a few
//! counters and three fixed-bucket histograms do not need a metrics framework.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const LATENCY_BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, &b) in self.counts.iter_mut().zip(bounds) {
            if v <= b {
                *c += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str, bounds: &[f64]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.n);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.n);
    }
}

/// Counters and histograms of one server.
#[derive(Default)]
pub struct Metrics {
    /// Requests waiting in the queue.
    pub queue_depth: AtomicUsize,
    /// Tokens embedded.
    pub tokens: AtomicU64,
    /// Nanoseconds the worker spent computing.
    pub compute_ns: AtomicU64,
    by_status: Mutex<Vec<(u16, u64)>>,
    latency: Mutex<Histogram>,
    batch: Mutex<Histogram>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn observe_request(&self, status: u16, latency: Duration) {
        if let Ok(mut v) = self.by_status.lock() {
            match v.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => v.push((status, 1)),
            }
        }
        if let Ok(mut h) = self.latency.lock() {
            h.observe(&LATENCY_BUCKETS_S, latency.as_secs_f64());
        }
    }

    /// Counts one computed batch of `requests` requests and `tokens` tokens.
    pub fn observe_batch(&self, requests: usize, tokens: usize, took: Duration) {
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.compute_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        if let Ok(mut h) = self.batch.lock() {
            h.observe(&BATCH_BUCKETS, requests as f64);
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str("# HELP osq_requests_total Requests answered, by HTTP status.\n# TYPE osq_requests_total counter\n");
        if let Ok(v) = self.by_status.lock() {
            let mut v = v.clone();
            v.sort();
            for (s, n) in v {
                let _ = writeln!(o, "osq_requests_total{{status=\"{s}\"}} {n}");
            }
        }
        let _ = writeln!(
            o,
            "# HELP osq_queue_depth Requests waiting for the batch worker.\n# TYPE osq_queue_depth gauge\nosq_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let tokens = self.tokens.load(Ordering::Relaxed);
        let secs = self.compute_ns.load(Ordering::Relaxed) as f64 * 1e-9;
        let _ = writeln!(
            o,
            "# HELP osq_tokens_total Tokens embedded.\n# TYPE osq_tokens_total counter\nosq_tokens_total {tokens}"
        );
        let _ = writeln!(
            o,
            "# HELP osq_compute_seconds_total Time the batch worker spent computing.\n# TYPE osq_compute_seconds_total counter\nosq_compute_seconds_total {secs}"
        );
        let tps = if secs > 0.0 {
            tokens as f64 / secs
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "# HELP osq_tokens_per_second Tokens per second of compute time since start.\n# TYPE osq_tokens_per_second gauge\nosq_tokens_per_second {tps}"
        );
        if let Ok(h) = self.batch.lock() {
            h.write(
                &mut o,
                "osq_batch_size",
                "Requests per computed batch.",
                &BATCH_BUCKETS,
            );
        }
        if let Ok(h) = self.latency.lock() {
            h.write(
                &mut o,
                "osq_request_duration_seconds",
                "Request latency from arrival to answer.",
                &LATENCY_BUCKETS_S,
            );
        }
        o
    }
}
