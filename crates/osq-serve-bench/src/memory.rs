//! Peak memory of each engine, measured in a fresh child process per engine.
//!
//! The parent re-runs its own executable with the hidden `mem-probe` subcommand; the child
//! records `VmHWM`/`VmRSS` of `/proc/self/status` at start, after loading the engine, and after
//! one forward at the probe's (batch, seq), and prints one JSON line. It also resets the peak
//! (`echo 5 > /proc/self/clear_refs`) after loading, so that the serving peak (forward only,
//! the load transients such as the memory-mapped checkpoint excluded) is reported as well.
//! Alongside, [`weight_bytes`] counts the bytes the engine keeps for its weights.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use osq_kernels::{MatRef, PackedB};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineKind};

/// `(VmHWM, VmRSS)` of this process in KiB.
pub fn status_kib() -> Result<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = s
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("/proc/self/status has no {name}"))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .with_context(|| format!("parsing {name} in /proc/self/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0). Returns whether it worked.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Resident-weight accounting of a loaded engine (bytes).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WeightBytes {
    /// Everything the engine keeps for its weights.
    pub total: u64,
    /// Integer engines: packed GEMM operands (`PackedB` buffers + column sums).
    pub packed: u64,
    /// Integer engines: embedding codes (word/position/type tables).
    pub embedding_codes: u64,
    /// Integer engines: Linear weight codes still held by `QuantParams` after packing; the
    /// integer executor never reads them (a duplicate of `packed`).
    pub redundant_linear_codes: u64,
    /// f32 scales, biases, LN parameters and derived integer constants.
    pub other: u64,
}

/// Bytes the engine keeps for its weights (FP32: every f32 tensor; integer: see [`WeightBytes`]).
pub fn weight_bytes(e: &Engine) -> Result<WeightBytes> {
    if let Some(w) = e.fp32_weights() {
        let f = |v: &Vec<f32>| v.len() as u64 * 4;
        let emb = &w.embeddings;
        let mut total = f(&emb.word)
            + f(&emb.position)
            + f(&emb.token_type)
            + f(&emb.ln.gamma)
            + f(&emb.ln.beta);
        for l in &w.layers {
            for lin in [&l.query, &l.key, &l.value, &l.attn_out, &l.ffn1, &l.ffn2] {
                total += f(&lin.weight) + f(&lin.bias);
            }
            for ln in [&l.attn_ln, &l.ffn_ln] {
                total += f(&ln.gamma) + f(&ln.beta);
            }
        }
        if let Some(hd) = &w.head {
            for lin in hd.dense.iter().map(|(d, _)| d).chain([&hd.out]) {
                total += f(&lin.weight) + f(&lin.bias);
            }
        }
        return Ok(WeightBytes {
            total,
            other: total,
            ..Default::default()
        });
    }
    let m = e
        .integer()
        .ok_or_else(|| anyhow!("engine has neither FP32 nor integer weights"))?;
    let qm = m.quant();
    let p = &qm.params;
    let four = p.bits.weight_bits() == 4;
    let mut wb = WeightBytes::default();
    let tab =
        |t: &osq_model::quant::graph::QTable| (t.codes.len() as u64, t.scales.len() as u64 * 4);
    for t in [&p.word, &p.position, &p.token_type] {
        let (c, s) = tab(t);
        wb.embedding_codes += c;
        wb.other += s;
    }
    wb.other += (p.emb_ln.gamma.len() + p.emb_ln.beta.len()) as u64 * 4;
    // Derived embedding multipliers.
    let fm = std::mem::size_of::<osq_model::quant::nonlin::FixedMul>() as u64;
    wb.other += (qm.emb.word.len() + qm.emb.position.len() + qm.emb.token_type.len()) as u64 * fm;
    for lp in &p.layers {
        for lin in [
            &lp.query,
            &lp.key,
            &lp.value,
            &lp.attn_out,
            &lp.ffn1,
            &lp.ffn2,
        ] {
            wb.redundant_linear_codes += lin.w.codes.len() as u64;
            wb.other += (lin.w.scales.len() + lin.bias.len()) as u64 * 4;
        }
        for ln in [&lp.attn_ln, &lp.ffn_ln] {
            wb.other += (ln.gamma.len() + ln.beta.len()) as u64 * 4;
        }
        // Packed operands as IntegerModel::new builds them (Q/K/V stacked): same sizes.
        let mut qkv = lp.query.w.codes.clone();
        qkv.extend_from_slice(&lp.key.w.codes);
        qkv.extend_from_slice(&lp.value.w.codes);
        let pk = |codes: &[i8], n: usize, k: usize| -> Result<u64> {
            let m = MatRef::new(codes, n, k, k).map_err(|e| anyhow!("{e}"))?;
            let b = if four {
                PackedB::pack_s4(m)
            } else {
                PackedB::pack_s8(m)
            }
            .map_err(|e| anyhow!("{e}"))?;
            Ok(b.data().len() as u64 + b.colsum().len() as u64 * 4)
        };
        let (n, k) = (lp.query.n(), lp.query.k());
        wb.packed += pk(&qkv, 3 * n, k)?;
        for lin in [&lp.attn_out, &lp.ffn1, &lp.ffn2] {
            wb.packed += pk(&lin.w.codes, lin.n(), lin.k())?;
        }
    }
    for ld in &qm.layers {
        wb.other += (ld.gelu.rise.len() + ld.gelu.fall.len()) as u64 * 8;
        for ln in [&ld.attn_ln, &ld.ffn_ln] {
            wb.other += ln.c.len() as u64 * 8 + ln.gamma.as_ref().map_or(0, |g| g.len() as u64 * 8);
        }
        for lin in [
            &ld.query,
            &ld.key,
            &ld.value,
            &ld.attn_out,
            &ld.ffn1,
            &ld.ffn2,
        ] {
            wb.other += lin.bias.len() as u64 * 8 + lin.requant.n() as u64 * 8;
        }
        wb.other += (ld.attn_shortcut.len() + ld.ffn_shortcut.len()) as u64
            * std::mem::size_of::<osq_model::quant::nonlin::SignedMul>() as u64;
    }
    wb.total = wb.packed + wb.embedding_codes + wb.redundant_linear_codes + wb.other;
    Ok(wb)
}

/// What a `mem-probe` child reports.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    pub engine: String,
    pub batch: usize,
    pub seq: usize,
    /// At process start (binary, allocator, nothing loaded).
    pub start_hwm_kib: u64,
    pub start_rss_kib: u64,
    pub load_hwm_kib: u64,
    pub load_rss_kib: u64,
    /// Peak over the whole process life (load + forward): the "peak memory".
    pub peak_hwm_kib: u64,
    pub end_rss_kib: u64,
    /// Peak during the forward only (peak reset after load); `None` if the reset failed.
    pub serve_hwm_kib: Option<u64>,
    pub weights: WeightBytes,
    pub load_seconds: f64,
}

/// Child side: load `kind`, run one forward, report. Prints the JSON line on stdout.
pub fn probe_child(
    kind: EngineKind,
    model: Option<&Path>,
    params: Option<&Path>,
    data: &Path,
    batch: usize,
    seq: usize,
) -> Result<Probe> {
    let (start_hwm, start_rss) = status_kib()?;
    let sentences = crate::inputs::read_sentences(data)?;
    let t0 = std::time::Instant::now();
    let engine = match kind {
        EngineKind::Fp32 => {
            let m = model.ok_or_else(|| anyhow!("mem-probe fp32 needs --model"))?;
            Engine::load_fp32(m)?
        }
        _ => {
            let p = params.ok_or_else(|| anyhow!("mem-probe {} needs --params", kind.name()))?;
            Engine::load_int(kind, p, model)?
        }
    };
    let load_seconds = t0.elapsed().as_secs_f64();
    let (load_hwm, load_rss) = status_kib()?;
    let reset = reset_peak();
    let threads = crate::engine::Threads::new(1)?;
    let seq = seq.min(engine.max_positions());
    let b = crate::inputs::make_batch(
        engine.tokenizer(),
        &sentences,
        batch,
        seq,
        crate::inputs::Fill::Full,
        0,
    )?;
    let out = engine.run(&b, &threads)?;
    std::hint::black_box(&out);
    let (hwm, end_rss) = status_kib()?;
    let weights = weight_bytes(&engine)?;
    Ok(Probe {
        engine: kind.name().into(),
        batch,
        seq,
        start_hwm_kib: start_hwm,
        start_rss_kib: start_rss,
        load_hwm_kib: load_hwm,
        load_rss_kib: load_rss,
        peak_hwm_kib: if reset { load_hwm.max(hwm) } else { hwm },
        end_rss_kib: end_rss,
        serve_hwm_kib: reset.then_some(hwm),
        weights,
        load_seconds,
    })
}

/// Parent side: spawns `exe mem-probe ...` and parses its JSON line.
pub fn probe_in_child(
    exe: &Path,
    kind: EngineKind,
    model: Option<&Path>,
    params: Option<&Path>,
    data: &Path,
    batch: usize,
    seq: usize,
) -> Result<Probe> {
    let mut cmd = Command::new(exe);
    cmd.arg("mem-probe")
        .arg("--engine")
        .arg(kind.name())
        .arg("--data")
        .arg(data)
        .arg("--batch")
        .arg(batch.to_string())
        .arg("--seq")
        .arg(seq.to_string());
    if let Some(m) = model {
        cmd.arg("--model").arg(m);
    }
    if let Some(p) = params {
        cmd.arg("--params").arg(p);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {} mem-probe", exe.display()))?;
    if !out.status.success() {
        bail!(
            "mem-probe {} failed ({}): {}",
            kind.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("mem-probe {} printed no JSON", kind.name()))?;
    serde_json::from_str(line).with_context(|| format!("parsing mem-probe output: {line}"))
}
