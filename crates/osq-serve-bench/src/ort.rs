//! ONNX Runtime in the same timing loop: a Python worker process (`src/ort_worker.py`, embedded)
//! that loads the models `tools/onnx_bench.py` built and cached in `out/onnx`, receives the
//! exact token ids of each cell and times blocks of runs on request. The grid then interleaves
//! ORT blocks with the osq engines' blocks, so every osq/ORT ratio comes from measurements taken
//! in the same seconds on the same inputs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use osq_model::Batch;
use serde_json::{json, Value};

const SCRIPT: &str = include_str!("ort_worker.py");

/// ORT engines and the model file `tools/onnx_bench.py` caches for each.
pub const ORT_MODELS: [(&str, &str); 3] = [
    ("ort-fp32", "model-fp32.onnx"),
    ("ort-int8-dynamic", "model-int8-dynamic.onnx"),
    ("ort-int8-qdq", "model-int8-qdq.onnx"),
];

/// The worker process.
pub struct OrtWorker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub version: String,
    loaded: Vec<(String, usize)>,
}

impl OrtWorker {
    /// Starts `python -c <worker>`.
    pub fn start(python: &str) -> Result<OrtWorker> {
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
        Ok(OrtWorker {
            child,
            stdin,
            stdout,
            version: String::new(),
            loaded: Vec::new(),
        })
    }

    fn call(&mut self, req: Value) -> Result<Value> {
        writeln!(self.stdin, "{req}").context("writing to the ORT worker")?;
        self.stdin.flush().context("writing to the ORT worker")?;
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .context("reading from the ORT worker")?;
        if n == 0 {
            bail!("the ORT worker exited (is onnxruntime installed for this python?)");
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("ORT worker answered: {}", line.trim()))?;
        if v["ok"] != json!(true) {
            bail!(
                "ORT worker: {}",
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
        let v =
            self.call(json!({"cmd": "load", "engine": engine, "path": path, "threads": threads}))?;
        self.version = v["version"].as_str().unwrap_or("").to_string();
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
            bail!("the ORT worker feeds token type 0 only");
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
            .ok_or_else(|| anyhow!("ORT worker: no timings"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| anyhow!("ORT worker: bad timing {x}"))
            })
            .collect::<Result<Vec<f64>>>()?;
        if ms.len() != runs {
            bail!("ORT worker returned {} timings for {runs} runs", ms.len());
        }
        Ok(ms)
    }
}

impl Drop for OrtWorker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// The ORT side of a grid: the worker and the engines to time.
pub struct OrtTargets {
    pub worker: OrtWorker,
    pub engines: Vec<(String, PathBuf)>,
}

impl OrtTargets {
    /// Engines from `names` whose model exists in `dir` (missing ones are reported and skipped).
    pub fn new(
        python: &str,
        dir: &Path,
        names: &[String],
        log: &mut dyn FnMut(&str),
    ) -> Result<OrtTargets> {
        let mut engines = Vec::new();
        for n in names {
            let Some((_, file)) = ORT_MODELS.iter().find(|(e, _)| e == n) else {
                bail!(
                    "unknown ORT engine {n}: expected one of {}",
                    ORT_MODELS.map(|m| m.0).join(", ")
                );
            };
            let p = dir.join(file);
            if p.is_file() {
                engines.push((n.clone(), p));
            } else {
                log(&format!(
                    "{n} skipped: {} missing (run tools/onnx_bench.py --out {} first)",
                    p.display(),
                    dir.display()
                ));
            }
        }
        if engines.is_empty() {
            bail!("no ONNX model found in {}", dir.display());
        }
        Ok(OrtTargets {
            worker: OrtWorker::start(python)?,
            engines,
        })
    }
}
