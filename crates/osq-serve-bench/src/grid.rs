//! The latency grid: every (batch, seq, threads) cell, every engine, timed side by side.
//!
//! Within a cell the engines are timed in interleaved blocks (round robin, ~`block_seconds` of
//! runs each) until each has at least `min_runs` runs and has spent `max_seconds` (or reached
//! `max_runs`), so machine noise hits all engines of a cell alike and their ratios are
//! comparable. The first run of every cell is also a correctness probe: its outputs must be
//! bit-identical across thread counts (asserted for every engine).

use std::time::Instant;

use anyhow::{bail, Result};
use osq_model::Batch;

use crate::engine::{Engine, Output, Threads};
use crate::inputs::{make_batch, Fill};
use crate::peers::PeerTargets;
use crate::stats::{Record, Summary};

/// Timing policy of a cell.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Untimed runs per engine and cell (after the correctness probe).
    pub warmup: usize,
    pub min_runs: usize,
    pub max_runs: usize,
    /// Per engine and cell.
    pub max_seconds: f64,
    /// Length of one interleaved block.
    pub block_seconds: f64,
    /// Pause before each block of another engine than the last one (thread pools asleep).
    pub settle_seconds: f64,
    /// Each engine's runs in one block, engines back to back (the check of interleaving).
    pub alone: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            warmup: 3,
            min_runs: 20,
            max_runs: 2000,
            max_seconds: 3.0,
            block_seconds: 0.25,
            settle_seconds: 0.02,
            alone: false,
        }
    }
}

/// Outcome of one thread-identity comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IdentityCheck {
    pub engine: String,
    pub batch: usize,
    pub seq: usize,
    pub threads_ref: usize,
    pub threads: usize,
    pub identical: bool,
    pub digest_ref: String,
    pub digest: String,
}

/// Result of a grid.
#[derive(Debug, Default)]
pub struct GridResult {
    pub records: Vec<Record>,
    pub identity: Vec<IdentityCheck>,
}

impl GridResult {
    /// Errors naming every cell whose outputs differ between thread counts.
    pub fn assert_identical(&self) -> Result<()> {
        let bad: Vec<String> = self
            .identity
            .iter()
            .filter(|c| !c.identical)
            .map(|c| {
                format!(
                    "{} b{} s{}: {} threads {} vs {} threads {}",
                    c.engine, c.batch, c.seq, c.threads_ref, c.digest_ref, c.threads, c.digest
                )
            })
            .collect();
        if !bad.is_empty() {
            bail!(
                "outputs differ between thread counts in {} cell(s): {}",
                bad.len(),
                bad.join("; ")
            );
        }
        Ok(())
    }
}

/// Grid definition.
#[derive(Clone, Debug)]
pub struct Grid {
    pub batches: Vec<usize>,
    pub seqs: Vec<usize>,
    pub threads: Vec<usize>,
    pub fill: Fill,
    pub timing: Timing,
}

/// Batch for (batch, seq) built with the tokenizer of every engine (they must agree).
pub fn cell_batch(
    engines: &[Engine],
    sentences: &[String],
    batch: usize,
    seq: usize,
    fill: Fill,
) -> Result<Batch> {
    let Some(first) = engines.first() else {
        bail!("no engine");
    };
    let b = make_batch(first.tokenizer(), sentences, batch, seq, fill, 0)?;
    for e in &engines[1..] {
        let o = make_batch(e.tokenizer(), sentences, batch, seq, fill, 0)?;
        if o != b {
            bail!(
                "{} and {} tokenize the inputs differently (different tokenizer.json?)",
                first.name(),
                e.name()
            );
        }
    }
    Ok(b)
}

fn hex(d: u64) -> String {
    format!("{d:016x}")
}

/// Latency samples (ms), one vector per engine.
pub type Samples = Vec<Vec<f64>>;

enum Target<'a> {
    Osq(&'a Engine),
    Ort(&'a str),
}

struct Slot<'a> {
    target: Target<'a>,
    samples: Vec<f64>,
    spent: f64,
    done: bool,
}

/// Times every engine on `batch` with `threads` (interleaved blocks). Returns one sample vector
/// (ms) per engine, in `engines` order.
pub fn time_interleaved(
    engines: &[Engine],
    batch: &Batch,
    threads: &Threads,
    t: &Timing,
) -> Result<Vec<Vec<f64>>> {
    let (osq, _) = time_with_peers(engines, None, batch, threads, t)?;
    Ok(osq)
}

/// Like [`time_interleaved`], with the peer engines of `ort` (already given this batch as input)
/// in the same round robin. Returns (osq samples, peer samples), each in engine order.
pub fn time_with_peers(
    engines: &[Engine],
    mut ort: Option<&mut PeerTargets>,
    batch: &Batch,
    threads: &Threads,
    t: &Timing,
) -> Result<(Samples, Samples)> {
    let ort_names: Vec<String> = ort
        .as_ref()
        .map(|o| o.engines.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    let mut slots: Vec<Slot> = engines
        .iter()
        .map(Target::Osq)
        .chain(ort_names.iter().map(|n| Target::Ort(n)))
        .map(|target| Slot {
            target,
            samples: Vec::new(),
            spent: 0.0,
            done: false,
        })
        .collect();
    for s in &slots {
        match s.target {
            Target::Osq(e) => {
                for _ in 0..t.warmup {
                    e.run(batch, threads)?;
                }
            }
            Target::Ort(n) => {
                if let Some(o) = ort.as_deref_mut() {
                    o.worker.time(n, threads.count(), t.warmup.max(1))?;
                }
            }
        }
    }
    let mut last: Option<usize> = None;
    while slots.iter().any(|s| !s.done) {
        // Interleaved: one block of every unfinished engine per pass; alone: the first
        // unfinished engine until it is done.
        let take = if t.alone { 1 } else { slots.len() };
        for (i, s) in slots
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| !s.done)
            .take(take)
        {
            if last != Some(i) && t.settle_seconds > 0.0 {
                std::thread::sleep(std::time::Duration::from_secs_f64(t.settle_seconds));
            }
            last = Some(i);
            let est = if s.samples.is_empty() {
                f64::INFINITY
            } else {
                s.spent / s.samples.len() as f64
            };
            let block_seconds = if t.alone {
                t.max_seconds
            } else {
                t.block_seconds
            };
            let block = ((block_seconds / est).floor() as usize).clamp(1, 1000);
            let n0 = s.samples.len();
            let ms: Vec<f64> = match s.target {
                Target::Osq(e) => {
                    let mut v = Vec::with_capacity(block);
                    for _ in 0..block {
                        let t0 = Instant::now();
                        let out = e.run(batch, threads)?;
                        let dt = t0.elapsed().as_secs_f64();
                        std::hint::black_box(&out);
                        drop(out);
                        v.push(dt * 1e3);
                        let n = n0 + v.len();
                        let spent = s.spent + v.iter().sum::<f64>() / 1e3;
                        if n >= t.min_runs && (spent >= t.max_seconds || n >= t.max_runs) {
                            break;
                        }
                    }
                    v
                }
                Target::Ort(n) => {
                    let o = ort
                        .as_deref_mut()
                        .ok_or_else(|| anyhow::anyhow!("ORT slot without a worker"))?;
                    let left = t.max_runs.saturating_sub(n0).max(1);
                    o.worker.time(n, threads.count(), block.min(left))?
                }
            };
            for m in ms {
                s.samples.push(m);
                s.spent += m / 1e3;
            }
            let n = s.samples.len();
            if n >= t.min_runs && (s.spent >= t.max_seconds || n >= t.max_runs) {
                s.done = true;
            }
        }
    }
    let mut osq = Vec::new();
    let mut orts = Vec::new();
    for s in slots {
        match s.target {
            Target::Osq(_) => osq.push(s.samples),
            Target::Ort(_) => orts.push(s.samples),
        }
    }
    Ok((osq, orts))
}

/// Runs the grid. `progress` receives one line per measured cell.
pub fn run_grid(
    engines: &[Engine],
    sentences: &[String],
    grid: &Grid,
    ctxs: &[Threads],
    progress: &mut dyn FnMut(&str),
) -> Result<GridResult> {
    run_grid_with_peers(engines, None, sentences, grid, ctxs, progress)
}

/// [`run_grid`] with the peers (ONNX Runtime, OpenVINO) timed in the same interleaved blocks
/// (same inputs).
pub fn run_grid_with_peers(
    engines: &[Engine],
    mut ort: Option<&mut PeerTargets>,
    sentences: &[String],
    grid: &Grid,
    ctxs: &[Threads],
    progress: &mut dyn FnMut(&str),
) -> Result<GridResult> {
    let mut res = GridResult::default();
    let cells = grid.batches.len() * grid.seqs.len() * ctxs.len();
    let mut k = 0usize;
    for &b in &grid.batches {
        for &s in &grid.seqs {
            let batch = cell_batch(engines, sentences, b, s, grid.fill)?;
            let tokens: usize = batch.lengths.iter().sum();
            let gmac = crate::peak::forward_macs(engines[0].config(), &batch.lengths) / 1e9;
            if let Some(o) = ort.as_deref_mut() {
                o.worker.input(&batch)?;
            }
            // Reference outputs: the first thread count.
            let mut reference: Vec<Option<(usize, Output)>> = vec![None; engines.len()];
            for th in ctxs {
                k += 1;
                // Correctness probe (also the first warm-up run).
                let mut digests = Vec::with_capacity(engines.len());
                for (ei, e) in engines.iter().enumerate() {
                    let out = e.run(&batch, th)?;
                    let d = out.digest();
                    digests.push(d);
                    match &reference[ei] {
                        None => reference[ei] = Some((th.count(), out)),
                        Some((t0, r)) => {
                            let identical = *r == out;
                            res.identity.push(IdentityCheck {
                                engine: e.name().into(),
                                batch: b,
                                seq: s,
                                threads_ref: *t0,
                                threads: th.count(),
                                identical,
                                digest_ref: hex(r.digest()),
                                digest: hex(d),
                            });
                            if !identical {
                                progress(&format!(
                                    "MISMATCH {} b{b} s{s}: {} threads vs {} threads give different outputs",
                                    e.name(),
                                    t0,
                                    th.count()
                                ));
                            }
                        }
                    }
                }
                if let Some(o) = ort.as_deref_mut() {
                    for (n, p) in o.engines.clone() {
                        o.worker.load(&n, &p, th.count())?;
                    }
                }
                let (samples, ort_samples) =
                    time_with_peers(engines, ort.as_deref_mut(), &batch, th, &grid.timing)?;
                let mut line = format!("[{k}/{cells}] b{b} s{s} t{}:", th.count());
                for ((e, ms), d) in engines.iter().zip(&samples).zip(&digests) {
                    let Some(sum) = Summary::of(ms) else {
                        bail!("no sample for {}", e.name());
                    };
                    let mut r = Record::new(e.name(), b, s, th.count(), &sum);
                    r.fill = Some(grid.fill.name().into());
                    r.tokens = Some(tokens);
                    r.digest = Some(hex(*d));
                    r.gmac = Some(gmac);
                    line.push_str(&format!(
                        "  {} p50 {:.3} ms p99 {:.3} ({} runs)",
                        e.name(),
                        r.p50_ms,
                        r.p99_ms,
                        r.runs
                    ));
                    res.records.push(r);
                }
                if let Some(o) = ort.as_deref() {
                    for ((n, _), ms) in o.engines.iter().zip(&ort_samples) {
                        let Some(sum) = Summary::of(ms) else {
                            bail!("no sample for {n}");
                        };
                        let mut r = Record::new(n, b, s, th.count(), &sum);
                        r.source = Some("peer".into());
                        r.fill = Some(grid.fill.name().into());
                        r.tokens = Some(tokens);
                        r.gmac = Some(gmac);
                        line.push_str(&format!(
                            "  {n} p50 {:.3} ms p99 {:.3} ({} runs)",
                            r.p50_ms, r.p99_ms, r.runs
                        ));
                        res.records.push(r);
                    }
                }
                progress(&line);
            }
        }
    }
    Ok(res)
}
