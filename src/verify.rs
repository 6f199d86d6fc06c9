//! [`Model::verify`]: the integer engine against the deploy-mode fake-quant reference (must be
//! 100 % equal, on every ISA asked for) and the paper-mode fake-quant executor (what a user of
//! the paper's PyTorch code sees), node by node in every layer; optionally the embeddings'
//! cosine to the FP32 model.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};

use osq_kernels::Isa;
use osq_model::fp32::{self, ThreadPool};
use osq_model::metrics::cosine;
use osq_model::quant::integer::{pool_embeddings, IntOptions};
use osq_model::quant::paper::PaperModel;
use osq_model::quant::trace::{LogitStats, NodeStats};
use osq_model::quant::{deploy, Node, TraceStats};
use osq_model::BertWeights;

use crate::error::{Error, Result};
use crate::model::Model;

/// Options of [`Model::verify`].
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// ISAs to run the integer engine on (empty: every one this CPU has).
    pub isas: Vec<Isa>,
    /// FP32 model directory: also compare sentence embeddings with FP32.
    pub fp32_model: Option<PathBuf>,
    /// Texts per batch.
    pub batch_size: usize,
    /// A progress bar on stderr.
    pub progress: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            isas: Vec::new(),
            fp32_model: None,
            batch_size: 32,
            progress: false,
        }
    }
}

/// Per-ISA outcome.
#[derive(Clone, Debug)]
pub struct IsaResult {
    /// The ISA.
    pub isa: Isa,
    /// Integer vs deploy reference over every node and layer.
    pub stats: NodeStats,
    /// Every code, the final hidden codes and every head logit equal.
    pub bit_exact: bool,
    /// Integer vs deploy reference logits of the task head (all zero without a head).
    pub logits: LogitStats,
}

/// The task head's agreement with FP32 (when an FP32 model with the same head was given).
#[derive(Clone, Debug, Default)]
pub struct HeadVsFp32 {
    /// Sequences (token heads: tokens) compared.
    pub rows: usize,
    /// Rows where the integer engine's top label is FP32's (regression: none counted).
    pub same_label: usize,
    /// Largest |integer − FP32| logit.
    pub max_abs_diff: f64,
    /// Mean |integer − FP32| logit.
    pub mean_abs_diff: f64,
}

/// What [`Model::verify`] measured.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// Parameter directory, bits and method.
    pub params: PathBuf,
    /// Bit configuration name.
    pub bits: String,
    /// Calibration method label.
    pub method: String,
    /// Texts and tokens compared.
    pub texts: usize,
    /// Tokens compared.
    pub tokens: usize,
    /// Seconds taken.
    pub seconds: f64,
    /// One entry per ISA.
    pub isas: Vec<IsaResult>,
    /// Integer vs deploy reference per layer and node (all ISAs merged).
    pub deploy: TraceStats,
    /// Integer vs paper mode, each node from the integer engine's input codes.
    pub paper_per_step: TraceStats,
    /// Integer vs paper mode, each simulation feeding itself through all layers.
    pub paper_cascaded: TraceStats,
    /// Cosine of integer vs FP32 sentence embeddings (when an FP32 model was given).
    pub fp32_cosines: Vec<f64>,
    /// Cosine of paper-mode vs FP32 sentence embeddings.
    pub fp32_cosines_paper: Vec<f64>,
    /// The task head against FP32 (models with a head, FP32 model given).
    pub head_vs_fp32: Option<HeadVsFp32>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// A [`NodeStats`] as JSON.
pub fn stats_json(s: &NodeStats) -> Value {
    json!({
        "total": s.total,
        "equal": s.equal,
        "percent_equal": s.percent_equal(),
        "max_abs_diff": s.max_abs_diff,
        "beyond_one": s.beyond_one,
        "cosine": s.cosine(),
    })
}

impl VerifyReport {
    /// Whether every ISA produced exactly the deploy reference's codes.
    pub fn bit_exact(&self) -> bool {
        self.isas.iter().all(|r| r.bit_exact)
    }

    /// The full report as JSON (what `osq verify --json` writes).
    pub fn to_json(&self) -> Value {
        let nl = self.deploy.layers.len();
        let mut rows = Vec::new();
        for l in 0..nl {
            for n in Node::ALL.into_iter().filter(|n| n.in_layer(l)) {
                rows.push(json!({
                    "layer": l, "node": n.name(),
                    "integer_vs_reference": stats_json(&self.deploy.layers[l][n.index()]),
                    "integer_vs_paper_per_step": stats_json(&self.paper_per_step.layers[l][n.index()]),
                    "integer_vs_paper_cascaded": stats_json(&self.paper_cascaded.layers[l][n.index()]),
                }));
            }
        }
        let per_node: serde_json::Map<String, Value> = Node::ALL
            .into_iter()
            .map(|n| {
                (
                    n.name().to_string(),
                    json!({
                        "per_step": stats_json(&self.paper_per_step.node_total(n)),
                        "cascaded": stats_json(&self.paper_cascaded.node_total(n)),
                    }),
                )
            })
            .collect();
        let isas: serde_json::Map<String, Value> = self
            .isas
            .iter()
            .map(|r| {
                (
                    r.isa.name().to_string(),
                    json!({"bit_exact": r.bit_exact, "stats": stats_json(&r.stats)}),
                )
            })
            .collect();
        let emb = if self.fp32_cosines.is_empty() {
            Value::Null
        } else {
            let min = self
                .fp32_cosines
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            json!({
                "integer_mean_cosine": mean(&self.fp32_cosines),
                "integer_min_cosine": min,
                "paper_mean_cosine": mean(&self.fp32_cosines_paper),
            })
        };
        let head = match &self.head_vs_fp32 {
            _ if self.deploy.logits.total == 0 => Value::Null,
            hf => json!({
                "input_node": {
                    "integer_vs_reference": stats_json(&self.deploy.head),
                    "integer_vs_paper_per_step": stats_json(&self.paper_per_step.head),
                    "integer_vs_paper_cascaded": stats_json(&self.paper_cascaded.head),
                },
                "logits_integer_vs_reference": {
                    "total": self.deploy.logits.total,
                    "equal": self.deploy.logits.equal,
                    "max_abs_diff": self.deploy.logits.max_abs_diff,
                },
                "logits_integer_vs_paper_cascaded_max_abs_diff": self.paper_cascaded.logits.max_abs_diff,
                "vs_fp32": hf.as_ref().map(|f| json!({
                    "rows": f.rows,
                    "same_label": f.same_label,
                    "max_abs_diff": f.max_abs_diff,
                    "mean_abs_diff": f.mean_abs_diff,
                })),
            }),
        };
        json!({
            "head": head,
            "params": self.params.display().to_string(),
            "bits": self.bits,
            "method": self.method,
            "sentences": self.texts,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "bit_exact": self.bit_exact(),
            "isas": isas,
            "integer_vs_paper_per_step": stats_json(&self.paper_per_step.total()),
            "integer_vs_paper_cascaded": stats_json(&self.paper_cascaded.total()),
            "integer_vs_paper_per_node": per_node,
            "embeddings_vs_fp32": emb,
            "layers": rows,
        })
    }

    /// The human-readable table `osq verify` prints.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let names: Vec<&str> = self.isas.iter().map(|r| r.isa.name()).collect();
        let _ = writeln!(
            o,
            "osq verify: {} ({}, {}), {} sentences, {} tokens, ISAs: {} ({:.1} s)",
            self.params.display(),
            self.bits,
            self.method,
            self.texts,
            self.tokens,
            names.join(", "),
            self.seconds
        );
        o.push_str(
            "columns: integer vs deploy reference | integer vs paper mode per step (each node from the\n         \
             integer executor's input codes) | integer vs paper mode cascaded (end to end)\n",
        );
        let _ = writeln!(
            o,
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
        for l in 0..self.deploy.layers.len() {
            for n in Node::ALL.into_iter().filter(|n| n.in_layer(l)) {
                let r = &self.deploy.layers[l][n.index()];
                let ps = &self.paper_per_step.layers[l][n.index()];
                let pp = &self.paper_cascaded.layers[l][n.index()];
                let _ = writeln!(
                    o,
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
            }
        }
        o.push_str("per node over all layers: integer vs paper mode per step | cascaded\n");
        for n in Node::ALL {
            let s = self.paper_per_step.node_total(n);
            let c = self.paper_cascaded.node_total(n);
            let _ = writeln!(
                o,
                "  {:<8} {:>9.4} % equal, max |diff| {}, >1: {:<6} | {:>9.4} % equal, max |diff| {}",
                n.name(),
                s.percent_equal(),
                s.max_abs_diff,
                s.beyond_one,
                c.percent_equal(),
                c.max_abs_diff,
            );
        }
        for r in &self.isas {
            let _ = writeln!(
                o,
                "integer[{}] vs deploy reference: {}/{} codes equal ({:.4} %) — {}",
                r.isa.name(),
                r.stats.equal,
                r.stats.total,
                r.stats.percent_equal(),
                if r.bit_exact { "BIT-EXACT" } else { "MISMATCH" }
            );
        }
        for (what, t) in [
            ("per step", self.paper_per_step.total()),
            ("cascaded", self.paper_cascaded.total()),
        ] {
            let _ = writeln!(
                o,
                "integer vs paper mode, {what}: {}/{} codes equal ({:.4} %), max |diff| {}, >1: {}",
                t.equal,
                t.total,
                t.percent_equal(),
                t.max_abs_diff,
                t.beyond_one
            );
        }
        if self.deploy.logits.total > 0 {
            let (d, st, l) = (
                &self.deploy.head,
                &self.paper_per_step.head,
                &self.deploy.logits,
            );
            let input = if d.total > 0 {
                format!(
                    "classifier input {}/{} codes equal to the reference, per step vs paper {:.4} % (>1: {}); ",
                    d.equal,
                    d.total,
                    st.percent_equal(),
                    st.beyond_one
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "task head: {input}logits {}/{} bit-identical to the reference",
                l.equal, l.total
            );
            if let Some(f) = &self.head_vs_fp32 {
                let _ = writeln!(
                    o,
                    "task head vs FP32: same top label on {}/{} rows, logits max |diff| {:.4}, mean {:.4}",
                    f.same_label, f.rows, f.max_abs_diff, f.mean_abs_diff
                );
            }
        }
        if !self.fp32_cosines.is_empty() {
            let min = self
                .fp32_cosines
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let _ = writeln!(
                o,
                "sentence embeddings vs FP32: integer mean cosine {:.6} (min {min:.6}); paper mode mean {:.6}",
                mean(&self.fp32_cosines),
                mean(&self.fp32_cosines_paper)
            );
        }
        o
    }
}

impl Model {
    /// Runs the integer engine on `texts` on every ISA of `opts` and compares its codes with
    /// the deploy-mode reference and the paper-mode executor, node by node.
    ///
    /// ```
    /// # let model = osq::Model::load(osq_model::testing::doc_params_dir())?;
    /// let r = model.verify(&["the cat sat on the mat.", "a dog"], &osq::VerifyOptions::default())?;
    /// assert!(r.bit_exact());
    /// assert_eq!(r.texts, 2);
    /// # Ok::<(), osq::Error>(())
    /// ```
    pub fn verify<S: AsRef<str>>(&self, texts: &[S], opts: &VerifyOptions) -> Result<VerifyReport> {
        if texts.is_empty() || opts.batch_size == 0 {
            return Err(Error::Input(
                "verify needs at least one text and a positive batch size".into(),
            ));
        }
        let isas = if opts.isas.is_empty() {
            Isa::available()
        } else {
            for i in &opts.isas {
                i.require().map_err(|e| Error::Input(e.to_string()))?;
            }
            opts.isas.clone()
        };
        let (im, tok, pool, max_len) = self.parts();
        let qm = im.quant();
        let p = &qm.params;
        let h = p.config.hidden_size;
        let nl = p.layers.len();
        let fp = match &opts.fp32_model {
            Some(m) => {
                let w = BertWeights::load_dir(m)?;
                if w.config != p.config {
                    return Err(Error::Input(format!(
                        "FP32 model {}: its config differs from the one of {}",
                        m.display(),
                        self.info().params.display()
                    )));
                }
                Some(w)
            }
            None => None,
        };
        let paper = PaperModel::new(p);
        let exec = ThreadPool::new(self.info().threads)?;
        let mut per_isa: Vec<TraceStats> = isas.iter().map(|_| TraceStats::new(nl)).collect();
        let mut hidden_equal = vec![true; isas.len()];
        let mut vs_paper = TraceStats::new(nl);
        let mut vs_step = TraceStats::new(nl);
        let (mut cos, mut cos_paper) = (Vec::new(), Vec::new());
        let mut tokens = 0usize;
        let mut hv: Option<HeadVsFp32> = None;
        let t0 = Instant::now();
        let bar = osq_calib::Progress::new(opts.progress).bar(texts.len() as u64, "verify");
        for chunk in texts.chunks(opts.batch_size) {
            bar.inc(chunk.len() as u64);
            let refs: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
            let batch = tok.encode_batch(&refs, max_len)?;
            tokens += batch.lengths.iter().sum::<usize>();
            let (want, pap, step) = pool.install(|| -> Result<_> {
                let want = deploy::forward(qm, &batch)?;
                let pap = paper.forward(&batch)?;
                let ref_traces: Vec<_> = want.iter().map(|r| r.trace.clone()).collect();
                let step = paper.forward_forced(&batch, &ref_traces)?;
                Ok((want, pap, step))
            })?;
            let mut first = None;
            for (ii, &isa) in isas.iter().enumerate() {
                let o = IntOptions {
                    isa: Some(isa),
                    trace: true,
                };
                let out = pool.install(|| im.forward(&batch, &o))?;
                let traces = out
                    .traces
                    .as_ref()
                    .ok_or_else(|| Error::Input("the integer engine returned no trace".into()))?;
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
            if let (Some(w), Some(out), Some(hp)) = (&fp, &first, &p.head) {
                if let (Some(io), Some(_)) = (&out.head, &w.head) {
                    let lf = fp32::classify(w, &batch, &exec)?;
                    let f = hv.get_or_insert_with(HeadVsFp32::default);
                    let nl = hp.num_labels();
                    let mut rows_fp = Vec::new();
                    if hp.task == osq_model::head::Task::Token {
                        for b in 0..batch.batch {
                            let r = b * batch.seq_len * nl;
                            rows_fp.extend_from_slice(&lf[r..r + batch.lengths[b] * nl]);
                        }
                    } else {
                        rows_fp = lf;
                    }
                    let mut sum = f.mean_abs_diff * (f.rows * nl) as f64;
                    for (a, b) in io.logits.chunks_exact(nl).zip(rows_fp.chunks_exact(nl)) {
                        f.rows += 1;
                        if hp.task != osq_model::head::Task::Regression
                            && osq_model::head::argmax(a) == osq_model::head::argmax(b)
                        {
                            f.same_label += 1;
                        }
                        for (x, y) in a.iter().zip(b) {
                            let d = (*x as f64 - *y as f64).abs();
                            f.max_abs_diff = f.max_abs_diff.max(d);
                            sum += d;
                        }
                    }
                    f.mean_abs_diff = sum / (f.rows * nl).max(1) as f64;
                }
            }
            if let (Some(w), Some(out)) = (&fp, &first) {
                let e_int = pool_embeddings(qm, out);
                let e_fp = fp32::sentence_embeddings(w, &batch, &exec)?;
                let q = p.output_node();
                for b in 0..batch.batch {
                    let f = &e_fp[b * h..(b + 1) * h];
                    cos.push(cosine(&e_int[b * h..(b + 1) * h], f));
                    let mut e = vec![0f32; h];
                    for row in pap[b].hidden.chunks_exact(h) {
                        for (o, &c) in e.iter_mut().zip(row) {
                            *o += q.dequantize(c as i32);
                        }
                    }
                    cos_paper.push(cosine(&e, f));
                }
            }
        }
        bar.finish_and_clear();
        let mut merged = TraceStats::new(nl);
        per_isa.iter().for_each(|s| merged.merge(s));
        let isas = isas
            .iter()
            .enumerate()
            .map(|(ii, &isa)| IsaResult {
                isa,
                stats: per_isa[ii].total(),
                bit_exact: per_isa[ii].exact() && hidden_equal[ii],
                logits: per_isa[ii].logits,
            })
            .collect();
        Ok(VerifyReport {
            params: self.info().params,
            bits: p.bits.name().into(),
            method: p.method.clone(),
            texts: texts.len(),
            tokens,
            seconds: t0.elapsed().as_secs_f64(),
            isas,
            deploy: merged,
            paper_per_step: vs_step,
            paper_cascaded: vs_paper,
            fp32_cosines: cos,
            fp32_cosines_paper: cos_paper,
            head_vs_fp32: hv,
        })
    }
}
