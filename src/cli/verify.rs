//! `osq verify`: runs the integer executor (on one or every ISA), the deploy-mode fake-quant
//! reference and the paper-mode fake-quant executor on real sentences and compares the codes of
//! every node in every layer. Integer vs deploy reference must be 100 % equal (exit status 1
//! otherwise); integer vs paper mode is what a user of the paper's PyTorch code would see.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use osq_kernels::Isa;
use osq_model::fp32::{self, Exec};
use osq_model::quant::integer::{pool_embeddings, IntOptions, IntegerModel};
use osq_model::quant::paper::PaperModel;
use osq_model::quant::trace::NodeStats;
use osq_model::quant::{format, reference, Node, QuantModel, TraceStats};
use osq_model::{BertWeights, Tokenizer};

use super::data::read_sentences;

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Parameter directory written by `osq quantize`.
    #[arg(long)]
    pub params: PathBuf,
    /// Sentences, one per line (UTF-8).
    #[arg(long)]
    pub data: PathBuf,
    /// Number of sentences (first N lines).
    #[arg(long, default_value_t = 256)]
    pub limit: usize,
    /// Kernel ISA: scalar, avx2, avx512vnni, neon, neon-dotprod, or all (every available one).
    #[arg(long, default_value = "all")]
    pub isa: String,
    /// Write the full report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// FP32 model directory: also report the cosine of integer vs FP32 sentence embeddings.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Maximum tokens per sentence.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
}

pub fn parse_isas(s: &str) -> Result<Vec<Isa>> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Isa::available());
    }
    let mut v = Vec::new();
    for part in s.split(',') {
        let isa = Isa::parse(part).map_err(|e| anyhow::anyhow!("--isa: {e}"))?;
        isa.require().map_err(|e| anyhow::anyhow!("--isa: {e}"))?;
        v.push(isa);
    }
    Ok(v)
}

fn stats_json(s: &NodeStats) -> Value {
    json!({
        "total": s.total,
        "equal": s.equal,
        "percent_equal": s.percent_equal(),
        "max_abs_diff": s.max_abs_diff,
        "beyond_one": s.beyond_one,
        "cosine": s.cosine(),
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += x as f64 * y as f64;
        na += x as f64 * x as f64;
        nb += y as f64 * y as f64;
    }
    d / (na.sqrt() * nb.sqrt()).max(f64::MIN_POSITIVE)
}

pub fn load_params(dir: &Path) -> Result<(IntegerModel, Tokenizer)> {
    let p = format::load(dir).with_context(|| format!("loading parameters {}", dir.display()))?;
    let tok = Tokenizer::from_file(
        &dir.join("tokenizer.json"),
        p.config.max_position_embeddings,
    )?;
    let qm =
        QuantModel::new(p).with_context(|| format!("deriving constants of {}", dir.display()))?;
    Ok((IntegerModel::new(qm)?, tok))
}

pub fn run(a: &VerifyArgs) -> Result<bool> {
    if a.batch == 0 || a.limit == 0 {
        bail!("--batch and --limit must be positive");
    }
    let isas = parse_isas(&a.isa)?;
    let (im, tok) = load_params(&a.params)?;
    let qm = im.quant();
    let p = &qm.params;
    let h = p.config.hidden_size;
    let nl = p.layers.len();
    let fp = match &a.model {
        Some(m) => {
            let w = BertWeights::load_dir(m)
                .with_context(|| format!("loading model {}", m.display()))?;
            if w.config != p.config {
                bail!(
                    "--model {}: its config differs from the one in {}",
                    m.display(),
                    a.params.display()
                );
            }
            Some(w)
        }
        None => None,
    };
    let sentences = read_sentences(&a.data, a.limit)?;
    let paper = PaperModel::new(p);
    let exec = Exec::new(0)?;
    let mut per_isa: Vec<TraceStats> = isas.iter().map(|_| TraceStats::new(nl)).collect();
    let mut hidden_equal = vec![true; isas.len()];
    let mut vs_paper = TraceStats::new(nl);
    let mut vs_step = TraceStats::new(nl);
    let mut emb_cos = Vec::new();
    let mut emb_cos_paper = Vec::new();
    let mut tokens = 0usize;
    let t0 = Instant::now();
    for chunk in sentences.chunks(a.batch) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let batch = tok.encode_batch(&refs, a.max_len)?;
        tokens += batch.lengths.iter().sum::<usize>();
        let want = reference::forward(qm, &batch)?;
        let pap = paper.forward(&batch)?;
        let ref_traces: Vec<_> = want.iter().map(|r| r.trace.clone()).collect();
        let step = paper.forward_forced(&batch, &ref_traces)?;
        let mut first = None;
        for (ii, &isa) in isas.iter().enumerate() {
            let out = im.forward(
                &batch,
                &IntOptions {
                    isa: Some(isa),
                    trace: true,
                },
            )?;
            let traces = out.traces.as_ref().expect("trace requested");
            for (b, r) in want.iter().enumerate() {
                per_isa[ii].add(&traces[b], &r.trace, p);
                if out.sequence(b, h) != &r.hidden[..] {
                    hidden_equal[ii] = false;
                }
            }
            if ii == 0 {
                for (b, pp) in pap.iter().enumerate() {
                    vs_paper.add(&traces[b], &pp.trace, p);
                    vs_step.add(&traces[b], &step[b].trace, p);
                }
                first = Some(out);
            }
        }
        if let (Some(w), Some(out)) = (&fp, &first) {
            let e_int = pool_embeddings(qm, out);
            let e_fp = fp32::sentence_embeddings(w, &batch, &exec)?;
            // Paper-mode embeddings from its final codes.
            let q = p.output_node();
            for b in 0..batch.batch {
                emb_cos.push(cosine(
                    &e_int[b * h..(b + 1) * h],
                    &e_fp[b * h..(b + 1) * h],
                ));
                let codes = &pap[b].hidden;
                let mut e = vec![0f32; h];
                for row in codes.chunks_exact(h) {
                    for (o, &c) in e.iter_mut().zip(row) {
                        *o += q.dequantize(c as i32);
                    }
                }
                emb_cos_paper.push(cosine(&e, &e_fp[b * h..(b + 1) * h]));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();

    // Report.
    let mut merged = TraceStats::new(nl);
    per_isa.iter().for_each(|s| merged.merge(s));
    let isa_names: Vec<&str> = isas.iter().map(|i| i.name()).collect();
    println!(
        "osq verify: {} ({}, {}), {} sentences, {tokens} tokens, ISAs: {} ({secs:.1} s)",
        a.params.display(),
        p.bits,
        p.method,
        sentences.len(),
        isa_names.join(", ")
    );
    println!(
        "columns: integer vs deploy reference | integer vs paper mode per step (each node from the"
    );
    println!(
        "         integer executor's input codes) | integer vs paper mode cascaded (end to end)"
    );
    println!(
        "{:<5} {:<8} | {:>9} {:>4} {:>9} | {:>9} {:>4} {:>5} | {:>9} {:>4} {:>9}",
        "layer",
        "node",
        "equal%",
        "max",
        "cosine",
        "equal%",
        "max",
        ">1",
        "equal%",
        "max",
        "cosine"
    );
    let mut rows = Vec::new();
    for l in 0..nl {
        for n in Node::ALL {
            if !n.in_layer(l) {
                continue;
            }
            let r = &merged.layers[l][n.index()];
            let pp = &vs_paper.layers[l][n.index()];
            let ps = &vs_step.layers[l][n.index()];
            println!(
                "{:<5} {:<8} | {:>9.4} {:>4} {:>9.6} | {:>9.4} {:>4} {:>5} | {:>9.4} {:>4} {:>9.6}",
                l,
                n.name(),
                r.percent_equal(),
                r.max_abs_diff,
                r.cosine(),
                ps.percent_equal(),
                ps.max_abs_diff,
                ps.beyond_one,
                pp.percent_equal(),
                pp.max_abs_diff,
                pp.cosine()
            );
            rows.push(json!({
                "layer": l, "node": n.name(),
                "integer_vs_reference": stats_json(r),
                "integer_vs_paper_per_step": stats_json(ps),
                "integer_vs_paper_cascaded": stats_json(pp),
            }));
        }
    }
    println!("per node over all layers: integer vs paper mode per step | cascaded");
    let mut per_node = serde_json::Map::new();
    for n in Node::ALL {
        let s = vs_step.node_total(n);
        let c = vs_paper.node_total(n);
        println!(
            "  {:<8} {:>9.4} % equal, max |diff| {}, >1: {:<6} | {:>9.4} % equal, max |diff| {}",
            n.name(),
            s.percent_equal(),
            s.max_abs_diff,
            s.beyond_one,
            c.percent_equal(),
            c.max_abs_diff,
        );
        per_node.insert(
            n.name().into(),
            json!({"per_step": stats_json(&s), "cascaded": stats_json(&c)}),
        );
    }
    let mut exact = true;
    let mut isa_json = serde_json::Map::new();
    for (ii, isa) in isas.iter().enumerate() {
        let t = per_isa[ii].total();
        let ok = per_isa[ii].exact() && hidden_equal[ii];
        exact &= ok;
        println!(
            "integer[{}] vs deploy reference: {}/{} codes equal ({:.4} %) — {}",
            isa.name(),
            t.equal,
            t.total,
            t.percent_equal(),
            if ok { "BIT-EXACT" } else { "MISMATCH" }
        );
        isa_json.insert(
            isa.name().into(),
            json!({"bit_exact": ok, "stats": stats_json(&t)}),
        );
    }
    let ts = vs_step.total();
    println!(
        "integer vs paper mode, per step: {}/{} codes equal ({:.4} %), max |diff| {}, >1: {}",
        ts.equal,
        ts.total,
        ts.percent_equal(),
        ts.max_abs_diff,
        ts.beyond_one
    );
    let tp = vs_paper.total();
    println!(
        "integer vs paper mode, cascaded: {}/{} codes equal ({:.4} %), max |diff| {}, >1: {}",
        tp.equal,
        tp.total,
        tp.percent_equal(),
        tp.max_abs_diff,
        tp.beyond_one
    );
    let mut emb = Value::Null;
    if !emb_cos.is_empty() {
        let mean = emb_cos.iter().sum::<f64>() / emb_cos.len() as f64;
        let min = emb_cos.iter().copied().fold(f64::INFINITY, f64::min);
        let pmean = emb_cos_paper.iter().sum::<f64>() / emb_cos_paper.len() as f64;
        println!(
            "sentence embeddings vs FP32: integer mean cosine {mean:.6} (min {min:.6}); paper mode mean {pmean:.6}"
        );
        emb = json!({"integer_mean_cosine": mean, "integer_min_cosine": min, "paper_mean_cosine": pmean});
    }
    if let Some(path) = &a.json {
        let report = json!({
            "params": a.params.display().to_string(),
            "bits": p.bits.name(),
            "method": p.method,
            "sentences": sentences.len(),
            "tokens": tokens,
            "bit_exact": exact,
            "isas": isa_json,
            "integer_vs_paper_per_step": stats_json(&ts),
            "integer_vs_paper_cascaded": stats_json(&tp),
            "integer_vs_paper_per_node": per_node,
            "embeddings_vs_fp32": emb,
            "layers": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(exact)
}
