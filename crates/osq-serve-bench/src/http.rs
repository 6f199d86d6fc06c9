//! `osq-serve-bench http`: a closed-loop HTTP load test of a running `osq serve` on loopback.
//! N client threads each send one text per `POST /embed`, wait, check the answer bit for bit
//! against the library's embedding of the same text alone, and send the next, until the time is
//! up. Then, in the same process and the same run, the library's own batched throughput at the
//! batch size the server actually used (its `/metrics` histogram) — the server's overhead is
//! the ratio of the two. Optional fault clients: a slow body, a disconnect mid-body, a 10 MB
//! body, while the load runs.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::stats::Summary;

/// Settings of one load test.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The server's parameter directory (the library computes the expected answers).
    #[arg(long)]
    pub params: PathBuf,
    /// Sentences, one per line.
    #[arg(long, default_value = "data/movie/eval.txt")]
    pub data: PathBuf,
    /// Distinct sentences used (checked answers are precomputed for each).
    #[arg(long, default_value_t = 256)]
    pub pool: usize,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Threads of the library run (the server's --threads).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Also run the fault clients (slow body, disconnect, 10 MB body).
    #[arg(long)]
    pub faults: bool,
    /// PID of the server: report its peak RSS (VmHWM).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Default, Clone)]
struct ClientTally {
    sent: u64,
    ok: u64,
    correct: u64,
    wrong: u64,
    busy: u64,
    other_status: u64,
    transport_errors: u64,
    latencies_ms: Vec<f64>,
}

fn loopback(url: &str) -> Result<()> {
    let host = url
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
        bail!("--url {url}: the load test only targets loopback addresses");
    }
    Ok(())
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn batch_histogram(metrics: &str) -> (f64, f64) {
    let mut sum = 0.0;
    let mut count = 0.0;
    for l in metrics.lines() {
        if let Some(v) = l.strip_prefix("osq_batch_size_sum ") {
            sum = v.trim().parse().unwrap_or(0.0);
        }
        if let Some(v) = l.strip_prefix("osq_batch_size_count ") {
            count = v.trim().parse().unwrap_or(0.0);
        }
    }
    (sum, count)
}

/// Runs the load test and prints (and optionally writes) its report.
pub fn cli(a: &HttpArgs) -> Result<()> {
    loopback(&a.url)?;
    if a.clients == 0 || a.pool == 0 || !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        bail!("--clients and --pool must be positive and --seconds in (0, 3600]");
    }
    let model = osq::Model::load_with(
        &a.params,
        osq::ModelOptions {
            threads: a.threads,
            ..Default::default()
        },
    )?;
    let mut texts = osq::read_texts(&a.data)?;
    texts.truncate(a.pool);
    eprintln!(
        "http: expected answers for {} sentences (each alone)",
        texts.len()
    );
    let want: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| Ok(model.embed(&[t.as_str()])?.row(0).to_vec()))
        .collect::<osq::Result<_>>()?;
    let texts = Arc::new(texts);
    let want = Arc::new(want);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(a.clients)
        .build()?;
    let metrics0 = http
        .get(format!("{}/metrics", a.url))
        .send()
        .context("GET /metrics: is `osq serve` running?")?
        .text()?;
    let (bsum0, bcount0) = batch_histogram(&metrics0);

    let stop = Arc::new(AtomicBool::new(false));
    let faults = if a.faults {
        Some(std::thread::spawn({
            let url = a.url.clone();
            let stop = stop.clone();
            move || fault_clients(&url, &stop)
        }))
    } else {
        None
    };
    eprintln!(
        "http: {} clients for {:.0} s against {}",
        a.clients, a.seconds, a.url
    );
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(a.seconds);
    let handles: Vec<_> = (0..a.clients)
        .map(|k| {
            let (http, texts, want, url) =
                (http.clone(), texts.clone(), want.clone(), a.url.clone());
            std::thread::spawn(move || {
                let mut t = ClientTally::default();
                let mut i = k * 7919;
                while Instant::now() < deadline {
                    let j = i % texts.len();
                    i += 31;
                    t.sent += 1;
                    let s = Instant::now();
                    let r = http
                        .post(format!("{url}/embed"))
                        .json(&json!({"inputs": texts[j]}))
                        .send();
                    match r {
                        Err(_) => t.transport_errors += 1,
                        Ok(r) => match r.status().as_u16() {
                            200 => {
                                t.ok += 1;
                                let v: Result<Vec<Vec<f32>>, _> = r.json();
                                t.latencies_ms.push(s.elapsed().as_secs_f64() * 1e3);
                                match v {
                                    Ok(v) if v.len() == 1 && v[0] == want[j] => t.correct += 1,
                                    _ => t.wrong += 1,
                                }
                            }
                            429 => t.busy += 1,
                            _ => t.other_status += 1,
                        },
                    }
                }
                t
            })
        })
        .collect();
    let mut all = ClientTally::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        all.sent += t.sent;
        all.ok += t.ok;
        all.correct += t.correct;
        all.wrong += t.wrong;
        all.busy += t.busy;
        all.other_status += t.other_status;
        all.transport_errors += t.transport_errors;
        all.latencies_ms.extend(t.latencies_ms);
    }
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let fault_report = faults.map(|h| h.join().unwrap_or_else(|_| json!("panicked")));
    let alive = http
        .get(format!("{}/health", a.url))
        .send()
        .map(|r| r.status().as_u16() == 200)
        .unwrap_or(false);
    let metrics1 = http.get(format!("{}/metrics", a.url)).send()?.text()?;
    let (bsum1, bcount1) = batch_histogram(&metrics1);
    let mean_batch = if bcount1 > bcount0 {
        (bsum1 - bsum0) / (bcount1 - bcount0)
    } else {
        1.0
    };
    let served_per_s = all.correct as f64 / wall;

    // the library's own batched throughput at the server's mean batch size, same run
    let b = (mean_batch.round() as usize).max(1);
    let lib_t0 = Instant::now();
    let mut lib_texts = 0usize;
    let mut k = 0usize;
    while lib_t0.elapsed() < Duration::from_secs_f64((a.seconds / 4.0).clamp(3.0, 15.0)) {
        let chunk: Vec<&str> = (0..b)
            .map(|i| texts[(k + i * 31) % texts.len()].as_str())
            .collect();
        k += b * 31;
        lib_texts += model.embed(&chunk)?.len();
    }
    let lib_per_s = lib_texts as f64 / lib_t0.elapsed().as_secs_f64();
    let lat = Summary::of(&all.latencies_ms).unwrap_or(Summary {
        p50_ms: f64::NAN,
        p90_ms: f64::NAN,
        p99_ms: f64::NAN,
        mean_ms: f64::NAN,
        min_ms: f64::NAN,
        max_ms: f64::NAN,
        runs: 0,
    });
    let rss = a.server_pid.and_then(vm_hwm_kib);
    let report = json!({
        "url": a.url, "clients": a.clients, "seconds": wall,
        "sent": all.sent, "answered_200": all.ok, "correct": all.correct, "wrong": all.wrong,
        "rejected_429": all.busy, "other_status": all.other_status,
        "transport_errors": all.transport_errors,
        "lost": all.sent - all.ok - all.busy - all.other_status - all.transport_errors,
        "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "mean_ms": lat.mean_ms,
        "served_sentences_per_s": served_per_s,
        "server_mean_batch": mean_batch,
        "library_batch": b,
        "library_sentences_per_s": lib_per_s,
        "served_over_library": served_per_s / lib_per_s,
        "server_alive_after": alive,
        "server_peak_rss_mib": rss.map(|k| k as f64 / 1024.0),
        "faults": fault_report,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if all.wrong > 0 || !alive {
        bail!(
            "{} wrong answers; server alive after the load: {alive}",
            all.wrong
        );
    }
    Ok(())
}

/// A slow body (one byte every 100 ms), a client that disconnects mid-body, and a 10 MB body,
/// repeated until `stop`. Returns what each saw.
fn fault_clients(url: &str, stop: &AtomicBool) -> Value {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (mut slow, mut cut, mut big) = (0u64, 0u64, Vec::new());
    let http = reqwest::blocking::Client::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let body = b"{\"inputs\": \"a slow body\"}";
            let head = format!(
                "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if s.write_all(head.as_bytes()).is_ok() {
                for &b in body.iter().take(10) {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                slow += 1;
            }
        }
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"inputs\": \"cut");
            cut += 1;
        }
        let body = format!("{{\"inputs\": \"{}\"}}", "y".repeat(10 << 20));
        let st = http
            .post(format!("{url}/embed"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        big.push(st);
    }
    let mut by_status = std::collections::BTreeMap::new();
    for st in big {
        let key = if st == 0 {
            "closed by the server before the body was sent".to_string()
        } else {
            st.to_string()
        };
        *by_status.entry(key).or_insert(0u64) += 1;
    }
    json!({"slow_bodies": slow, "disconnects": cut, "ten_mb_bodies": by_status})
}
