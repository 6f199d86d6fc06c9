//! Per-stage timing of the integer forward, from the executor's own stage timers
//! (`IntegerModel::forward_timed`): the code timed is the code benchmarked. `perf` is not
//! available on every machine (no PMU in most VMs), hence timers. Attention sub-stages are thread
//! time summed over the (sequence, head) tasks; the other stages are wall time.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use osq_model::quant::integer::{IntOptions, IntegerModel, STAGES};
use osq_model::quant::QuantModel;
use osq_model::Batch;
use serde::Serialize;

use crate::engine::{Engine, EngineKind, Threads};
use crate::inputs::{make_batch, read_sentences, Fill};

/// GEMM multiply-accumulates of one forward, per stage name.
pub fn gemm_macs(qm: &QuantModel, lengths: &[usize]) -> Vec<(&'static str, u64)> {
    let c = qm.config();
    let (h, inter, nl, heads, dh) = (
        c.hidden_size as u64,
        c.intermediate_size as u64,
        c.num_hidden_layers as u64,
        c.num_attention_heads as u64,
        c.head_dim() as u64,
    );
    let t: u64 = lengths.iter().map(|&l| l as u64).sum();
    let l2: u64 = lengths.iter().map(|&l| (l * l) as u64).sum();
    vec![
        ("  QKV GEMM", nl * t * 3 * h * h),
        ("  Q.K^T GEMM", nl * heads * l2 * dh),
        ("  P.V GEMM", nl * heads * l2 * dh),
        ("  attn-out GEMM", nl * t * h * h),
        ("  FFN1 GEMM", nl * t * h * inter),
        ("  FFN2 GEMM", nl * t * inter * h),
    ]
}

/// One stage of a profile.
#[derive(Clone, Debug, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub ms: f64,
    /// Share of the forward wall time (thread-time sub-stages: share of their sum).
    pub share: f64,
    pub gmacs_per_s: Option<f64>,
}

/// Profile of one (batch, seq, threads).
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub engine: String,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub runs: usize,
    /// Mean wall time of the timed forward.
    pub forward_ms: f64,
    /// Mean wall time of the untimed forward on the same input, measured alternately.
    pub executor_ms: f64,
    pub total_gmac: f64,
    pub stages: Vec<StageRow>,
}

/// Profiles `model` on `batch` with `threads`, `runs` times (after 3 warm-ups), alternating timed
/// and untimed runs; errors if the two give different codes.
pub fn profile(
    model: &IntegerModel,
    name: &str,
    batch: &Batch,
    threads: &Threads,
    runs: usize,
) -> Result<Profile> {
    let opts = IntOptions::default();
    let run = |timed: bool| {
        threads
            .pool()
            .install(|| {
                if timed {
                    model.forward_timed(batch, &opts)
                } else {
                    model.forward(batch, &opts)
                }
            })
            .map_err(|e| anyhow!("{e}"))
    };
    if run(true)?.hidden != run(false)?.hidden {
        bail!("timed and untimed forwards differ");
    }
    for _ in 0..3 {
        run(true)?;
    }
    let mut acc = vec![0u64; STAGES.len()];
    let (mut fwd, mut exe) = (0f64, 0f64);
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        let o = run(true)?;
        fwd += t0.elapsed().as_secs_f64();
        for (a, v) in acc.iter_mut().zip(o.stage_ns.unwrap_or_default()) {
            *a += v;
        }
        let t0 = Instant::now();
        std::hint::black_box(run(false)?);
        exe += t0.elapsed().as_secs_f64();
    }
    let n = runs.max(1) as f64;
    let forward_ms = fwd * 1e3 / n;
    let qm = model.quant();
    let macs = gemm_macs(qm, &batch.lengths);
    let first_sub = STAGES
        .iter()
        .position(|s| s.starts_with("  "))
        .unwrap_or(STAGES.len());
    let sub_total: u64 = acc[first_sub..].iter().sum();
    let stages = STAGES
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let ms = acc[i] as f64 / 1e6 / n;
            let share = if i >= first_sub {
                acc[i] as f64 / sub_total.max(1) as f64
            } else {
                ms / forward_ms
            };
            let gmacs_per_s = macs
                .iter()
                .find(|(m, _)| *m == s)
                .map(|&(_, mac)| mac as f64 / (ms * 1e-3) / 1e9);
            StageRow {
                stage: s.to_string(),
                ms,
                share,
                gmacs_per_s,
            }
        })
        .collect();
    Ok(Profile {
        engine: name.into(),
        batch: batch.batch,
        seq: batch.seq_len,
        threads: threads.count(),
        runs: runs.max(1),
        forward_ms,
        executor_ms: exe * 1e3 / n,
        total_gmac: macs.iter().map(|m| m.1).sum::<u64>() as f64 / 1e9,
        stages,
    })
}

/// Text rendering of a profile.
pub fn render(p: &Profile) -> String {
    let mut s = format!(
        "{} b{} s{} t{}: timed forward {:.3} ms, untimed {:.3} ms ({} runs, alternated), GEMM work {:.3} GMAC\n",
        p.engine, p.batch, p.seq, p.threads, p.forward_ms, p.executor_ms, p.runs, p.total_gmac
    );
    s.push_str(&format!(
        "  {:<30} {:>9} {:>7} {:>10}\n",
        "stage", "ms", "share", "GMAC/s"
    ));
    for r in &p.stages {
        s.push_str(&format!(
            "  {:<30} {:>9.3} {:>6.1}% {:>10}\n",
            r.stage,
            r.ms,
            r.share * 100.0,
            r.gmacs_per_s.map(|g| format!("{g:.1}")).unwrap_or_default()
        ));
    }
    s
}

/// `osq-serve-bench profile`.
#[allow(clippy::too_many_arguments)]
pub fn cli(
    params: &Path,
    model: Option<&Path>,
    data: &Path,
    batch: usize,
    seq: usize,
    threads: &[usize],
    runs: usize,
    json: Option<&Path>,
) -> Result<()> {
    let sentences = read_sentences(data)?;
    let probe = osq_model::quant::format::load(params)
        .map_err(|e| anyhow!("loading {}: {e}", params.display()))?;
    let kind = if probe.bits.weight_bits() == 4 {
        EngineKind::Int4
    } else {
        EngineKind::Int8
    };
    drop(probe);
    let e = Engine::load_int(kind, params, model)?;
    let m = e
        .integer()
        .ok_or_else(|| anyhow!("not an integer engine"))?;
    let slow: Vec<String> = m
        .fast_rows()
        .into_iter()
        .filter(|r| !r.2)
        .map(|(l, what, _)| format!("layer {l} {what}"))
        .collect();
    if slow.is_empty() {
        println!(
            "every row step runs its fast form (softmax/GELU table reads: {})",
            osq_kernels::rowops::TableReads::active().name()
        );
    } else {
        println!(
            "row steps on the definition (fast form's bounds not met): {}",
            slow.join(", ")
        );
    }
    let seq = seq.min(e.max_positions());
    let b = make_batch(e.tokenizer(), &sentences, batch, seq, Fill::Full, 0)?;
    let mut all = Vec::new();
    for &t in threads {
        let th = Threads::new(t)?;
        let p = profile(m, e.name(), &b, &th, runs)?;
        print!("{}", render(&p));
        all.push(p);
    }
    if let Some(j) = json {
        crate::report::write_atomic(j, &serde_json::to_string_pretty(&all)?)?;
    }
    Ok(())
}
