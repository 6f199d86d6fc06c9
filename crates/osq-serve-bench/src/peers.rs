//! The peers (ONNX Runtime, OpenVINO) in the same timing loop: a Python worker process
//! (`src/peer_worker.py`, embedded) that loads the models `tools/onnx_bench.py` and
//! `tools/peers.py` built and cached in `out/onnx`, receives the exact token ids of each cell and
//! times blocks of runs on request. The grid then interleaves peer blocks with the osq engines'
//! blocks, so every osq/peer ratio comes from measurements taken in the same seconds on the same
//! inputs. Peers run with their thread pools' spinning disabled where the runtime allows it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use osq_model::Batch;
use serde_json::{json, Value};

const SCRIPT: &str = include_str!("peer_worker.py");

/// Peer engines and the model file cached for each (`.onnx`: ONNX Runtime, `.xml`: OpenVINO IR).
/// The first three come from `tools/onnx_bench.py` (plain graph), the others from `tools/peers.py`.
pub const PEER_MODELS: [(&str, &str); 7] = [
    ("ort-fp32", "model-fp32.onnx"),
    ("ort-int8-dynamic", "model-int8-dynamic.onnx"),
    ("ort-int8-qdq", "model-int8-qdq.onnx"),
    ("ort-opt-fp32", "model-opt-fp32.onnx"),
    ("ort-opt-int8-pt", "model-opt-int8-pt.onnx"),
    ("ort-opt-int8-pc", "model-opt-int8-pc.onnx"),
    ("ov-int8-nncf", "ov-int8-nncf.xml"),
];

/// True for the int8 peers (the ones osq's int8 engine is ranked against).
pub fn is_int8_peer(engine: &str) -> bool {
    PEER_MODELS.iter().any(|(e, _)| *e == engine) && engine.contains("int8")
}

/// The worker process.
pub struct PeerWorker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Runtime versions of the loaded peers (e.g. `onnxruntime 1.32.0`), deduplicated.
    pub versions: Vec<String>,
    /// Whether peers may spin (false: ORT's spinning is disabled).
    pub spin: bool,
    loaded: Vec<(String, usize)>,
}

impl PeerWorker {
    /// Starts `python -c <worker>`.
    pub fn start(python: &str) -> Result<PeerWorker> {
        let mut child = Command::new(python)
            .arg("-u")
            .arg("-c")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the ONNX Runtime worker with {python}"))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("worker stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("worker stdout"))?,
        );
        Ok(PeerWorker {
            child,
            stdin,
            stdout,
            versions: Vec::new(),
            spin: false,
            loaded: Vec::new(),
        })
    }

    fn call(&mut self, req: Value) -> Result<Value> {
        writeln!(self.stdin, "{req}").context("writing to the peer worker")?;
        self.stdin.flush().context("writing to the peer worker")?;
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .context("reading from the peer worker")?;
        if n == 0 {
            bail!("the peer worker exited (are onnxruntime / openvino installed for this python? pip install -r tools/requirements-bench.txt)");
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("peer worker answered: {}", line.trim()))?;
        if v["ok"] != json!(true) {
            bail!(
                "peer worker: {}",
                v["error"].as_str().unwrap_or("unknown error")
            );
        }
        Ok(v)
    }

    /// Creates the session of `engine` with `threads` (once).
    pub fn load(&mut self, engine: &str, path: &Path, threads: usize) -> Result<()> {
        if self
            .loaded
            .iter()
            .any(|(e, t)| e == engine && *t == threads)
        {
            return Ok(());
        }
        let v = self.call(json!({"cmd": "load", "engine": engine, "path": path,
            "threads": threads, "spin": self.spin}))?;
        let version = v["version"].as_str().unwrap_or("").to_string();
        if !self.versions.contains(&version) {
            self.versions.push(version);
        }
        self.loaded.push((engine.to_string(), threads));
        Ok(())
    }

    /// Sets the input of the following runs (ids and mask of `batch`, type ids 0).
    pub fn input(&mut self, batch: &Batch) -> Result<()> {
        let s = batch.seq_len;
        let ids: Vec<&[u32]> = (0..batch.batch)
            .map(|b| &batch.ids[b * s..(b + 1) * s])
            .collect();
        let mask: Vec<&[u8]> = (0..batch.batch)
            .map(|b| &batch.mask[b * s..(b + 1) * s])
            .collect();
        if batch.type_ids.iter().any(|&t| t != 0) {
            bail!("the peer worker feeds token type 0 only");
        }
        self.call(json!({"cmd": "input", "ids": ids, "mask": mask}))?;
        Ok(())
    }

    /// `runs` timed runs (ms each).
    pub fn time(&mut self, engine: &str, threads: usize, runs: usize) -> Result<Vec<f64>> {
        let v =
            self.call(json!({"cmd": "time", "engine": engine, "threads": threads, "runs": runs}))?;
        let ms = v["ms"]
            .as_array()
            .ok_or_else(|| anyhow!("peer worker: no timings"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| anyhow!("peer worker: bad timing {x}"))
            })
            .collect::<Result<Vec<f64>>>()?;
        if ms.len() != runs {
            bail!("peer worker returned {} timings for {runs} runs", ms.len());
        }
        Ok(ms)
    }
}

impl Drop for PeerWorker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// The peer side of a grid: the worker and the engines to time.
pub struct PeerTargets {
    pub worker: PeerWorker,
    pub engines: Vec<(String, PathBuf)>,
}

impl PeerTargets {
    /// Engines from `names` whose model exists in `dir` (missing ones are reported and skipped).
    pub fn new(
        python: &str,
        spin: bool,
        dir: &Path,
        names: &[String],
        log: &mut dyn FnMut(&str),
    ) -> Result<PeerTargets> {
        let mut engines = Vec::new();
        for n in names {
            let Some((_, file)) = PEER_MODELS.iter().find(|(e, _)| e == n) else {
                bail!(
                    "unknown peer engine {n}: expected one of {}",
                    PEER_MODELS.map(|m| m.0).join(", ")
                );
            };
            let p = dir.join(file);
            if p.is_file() {
                engines.push((n.clone(), p));
            } else {
                log(&format!(
                    "{n} skipped: {} missing (run tools/onnx_bench.py and tools/peers.py --out {} first)",
                    p.display(),
                    dir.display()
                ));
            }
        }
        if engines.is_empty() {
            bail!("no peer model found in {}", dir.display());
        }
        let mut worker = PeerWorker::start(python)?;
        worker.spin = spin;
        Ok(PeerTargets { worker, engines })
    }
}
