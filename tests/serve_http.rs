//! `osq serve` as a user runs it: the binary on 127.0.0.1 (a free port), a real HTTP client,
//! every answer compared bit for bit with the library's embedding of the same text alone; bad
//! requests, overload (429 at once), a body over the limit, a client that disconnects, and
//! SIGTERM finishing the requests in flight. Every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::s;
use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn start(params: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_osq"))
        .args([
            "serve",
            "--params",
            s(params),
            "--addr",
            "127.0.0.1:0",
            "--threads",
            "2",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start osq serve");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("osq serve: listening on ") {
                tx.send(a.to_string()).ok();
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("osq serve did not print its address within 30 s");
    Server { child, base }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The parameter directory and the guard of its temporary directory.
fn params(tag: &str) -> (osq_model::testing::TestDir, std::path::PathBuf) {
    let (tmp, _, _, p) = common::calibrated(tag);
    (tmp, p)
}

fn metrics(c: &reqwest::blocking::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

fn health(c: &reqwest::blocking::Client, base: &str) -> u16 {
    c.get(format!("{base}/health"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn serves_exact_embeddings_and_clear_errors() {
    let (_tmp, p) = params("serve-routes");
    let srv = start(&p, &[]);
    let c = client();
    let lib = osq::Model::load(&p).unwrap();
    let texts = osq_model::testing::SENTENCES;

    assert_eq!(health(&c, &srv.base), 200);
    let info: Value = c
        .get(format!("{}/info", srv.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["bits"], "w8a8");
    assert_eq!(info["dim"], lib.info().dim);

    // a list, then each text alone: the same bits as the library's text alone
    let r = c
        .post(format!("{}/embed", srv.base))
        .json(&json!({"inputs": texts}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: Vec<Value> = r.json().unwrap();
    assert_eq!(got.len(), texts.len());
    for (i, t) in texts.iter().enumerate() {
        let want = lib.embed(&[*t]).unwrap();
        assert_eq!(f32s(&got[i]), want.row(0), "text {i}");
    }
    let one: Vec<Value> = c
        .post(format!("{}/embed", srv.base))
        .json(&json!({"inputs": texts[3], "normalize": false}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let raw = lib
        .embed_with(
            &[texts[3]],
            &osq::EmbedOptions {
                normalize: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(f32s(&one[0]), raw.row(0));

    // OpenAI shape
    let v: Value = c
        .post(format!("{}/v1/embeddings", srv.base))
        .json(&json!({"input": [texts[0], texts[1]], "model": "m"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(
        f32s(&v["data"][1]["embedding"]),
        lib.embed(&[texts[1]]).unwrap().row(0)
    );
    let toks: usize = lib
        .count_tokens(&[texts[0], texts[1]])
        .unwrap()
        .iter()
        .sum();
    assert_eq!(v["usage"]["prompt_tokens"], toks);

    // bad requests: status and a message naming the problem
    let bad = |body: &str, status: u16, needle: &str| {
        let r = c
            .post(format!("{}/embed", srv.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().unwrap();
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    };
    bad("{\"inputs\": []}", 400, "empty");
    bad("{\"inputs\": 5}", 422, "inputs");
    bad("{\"inputs\": \"a\", \"normalise\": true}", 422, "normalise");
    bad("{not json", 422, "invalid request body");
    bad("", 422, "invalid request body");
    let long = "the cat ".repeat(400);
    bad(&json!({"inputs": long}).to_string(), 413, "tokens");
    // the same text with truncation is answered
    let r = c
        .post(format!("{}/embed", srv.base))
        .json(&json!({"inputs": long, "truncate": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // a body over the limit: 413, and the server keeps answering (the server closes that
    // connection without reading the rest of the body, so the request gets its own client)
    let big = "x".repeat(3 << 20);
    let r = client()
        .post(format!("{}/embed", srv.base))
        .header("content-type", "application/json")
        .body(format!("{{\"inputs\": \"{big}\"}}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // /predict: the tiny model's 2-way head, as the library answers, highest score first
    let lib = osq::Model::load(&p).unwrap();
    let want = lib.classify(&["a good film", "we love it"]).unwrap();
    let r = c
        .post(format!("{}/predict", srv.base))
        .json(&json!({"inputs": ["a good film", "we love it"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    for (got, w) in v.as_array().unwrap().iter().zip(&want) {
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["label"], w.label.as_str());
        assert_eq!(got[0]["score"].as_f64().unwrap() as f32, w.score);
        assert!(got[0]["score"].as_f64() >= got[1]["score"].as_f64());
    }
    let r = c
        .post(format!("{}/predict", srv.base))
        .json(&json!({"inputs": "a good film", "raw_scores": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let top = v.as_array().unwrap()[0]["score"].as_f64().unwrap() as f32;
    assert!(want[0].logits.contains(&top), "{v}");
    let r = c
        .post(format!("{}/predict", srv.base))
        .json(&json!({"inputs": "a", "raw_scores": "yes"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let t = r.text().unwrap();
    assert!(t.contains("raw_scores"), "{t}");
    // a client that sends half a request and disconnects does not stall anyone
    {
        let addr = srv.base.trim_start_matches("http://");
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.write_all(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\": \"a")
            .unwrap();
    }
    let r = c
        .post(format!("{}/embed", srv.base))
        .json(&json!({"inputs": "we love it"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = metrics(&c, &srv.base);
    assert!(m.contains("osq_requests_total{status=\"200\"}"), "{m}");
    assert!(m.contains("osq_batch_size_bucket"), "{m}");
    assert!(m.contains("osq_request_duration_seconds_count"), "{m}");
}

#[test]
fn batches_under_load_overload_is_429_and_sigterm_drains() {
    let (_tmp, p) = params("serve-load");
    let srv = start(&p, &["--max-queue", "4", "--max-batch-requests", "8"]);
    let lib = osq::Model::load(&p).unwrap();
    let texts = osq_model::testing::SENTENCES;
    let want: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| lib.embed(&[*t]).unwrap().row(0).to_vec())
        .collect();
    let t_end = Instant::now() + Duration::from_secs(4);
    let mut handles = Vec::new();
    for k in 0..32 {
        let base = srv.base.clone();
        let want = want.clone();
        handles.push(std::thread::spawn(move || {
            let c = client();
            let (mut ok, mut busy, mut other) = (0, 0, 0);
            let mut i = k;
            while Instant::now() < t_end {
                let j = i % texts.len();
                i += 7;
                let r = c
                    .post(format!("{base}/embed"))
                    .json(&json!({"inputs": texts[j]}))
                    .send()
                    .unwrap();
                match r.status().as_u16() {
                    200 => {
                        let v: Vec<Value> = r.json().unwrap();
                        assert_eq!(f32s(&v[0]), want[j], "wrong answer for text {j}");
                        ok += 1;
                    }
                    429 => busy += 1,
                    _ => other += 1,
                }
            }
            (ok, busy, other)
        }));
    }
    let (mut ok, mut busy, mut other) = (0, 0, 0);
    for h in handles {
        let (a, b, c) = h.join().unwrap();
        ok += a;
        busy += b;
        other += c;
    }
    assert!(ok > 0, "no request answered");
    assert_eq!(other, 0, "only 200 and 429 expected ({ok} ok, {busy} busy)");
    let c = client();
    assert_eq!(health(&c, &srv.base), 200);
    let m = metrics(&c, &srv.base);
    if busy > 0 {
        assert!(m.contains("osq_requests_total{status=\"429\"}"), "{m}");
    }
    // SIGTERM with requests in flight: they are answered, then the server exits 0
    let mut srv = srv;
    let base = srv.base.clone();
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                client()
                    .post(format!("{base}/embed"))
                    .json(&json!({"inputs": osq_model::testing::SENTENCES}))
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    for h in inflight {
        // a request that arrived before the signal is answered; one that lost the race to
        // the closing listener fails to connect — never a 5xx
        if let Ok(code) = h.join().unwrap() {
            assert!(code == 200 || code == 429, "status {code}");
        }
    }
    let t0 = Instant::now();
    loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "osq serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
