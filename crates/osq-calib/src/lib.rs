//! osq-calib: calibration of the nine-node quantized BERT of Outlier Suppression.
//!
//! Produces what [`osq_model::quant::QuantParams::build`] consumes — node ranges per layer per
//! node (plus the absmax of the fixed-point intermediates) and, for OS+, modified FP32 weights and
//! LayerNorm parameters — and turns them into [`QuantParams`].
//!
//! - [`engine`]: the quant graph in f32 with fake-quant nodes, observation taps and a tape;
//! - [`observe`]: MinMax, mean-of-batches MinMax, Percentile, OMSE;
//! - [`twc`]: Token-Wise Clipping coarse stage; [`fine`] + [`backward`]: its LSQ+ fine stage;
//! - [`osplus`]: OS+ channel-wise shifting and scaling;
//! - [`objective`]: the loss TWC minimizes (hidden states, or a task head's logits);
//! - [`head`]: the ranges of a sequence head's nodes;
//! - [`report`]: the paper's Table 1 and Fig. 1 on our model;
//! - [`data`]: calibration sentences → batches.
//!
//! See docs/calibration.md for the method details and the decisions taken.

pub mod backward;
pub mod data;
pub mod engine;
pub mod error;
pub mod export;
pub mod fine;
pub mod head;
pub mod objective;
pub mod observe;
pub mod osplus;
pub mod progress;
pub mod report;
pub mod twc;

use std::time::Instant;

use osq_model::fp32::ThreadPool;
use osq_model::quant::{BitsConfig, NodeRanges, QuantParams};
use osq_model::{Batch, BertWeights};

pub use engine::{QGraph, QuantSet};
pub use error::{CalibError, Result};
pub use objective::Loss;
use objective::Objective;
pub use progress::Progress;

/// Calibration method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Global min/max.
    MinMax,
    /// Mean over batches (of 32) of the batch min/max.
    MinMaxMean,
    /// Histogram percentile (2048 bins, 0.99999), averaged over batches.
    Percentile,
    /// Per-node MSE-optimal clipping range.
    Omse,
    /// Outlier Suppression: Gamma Migration + Token-Wise Clipping (coarse + fine).
    Os,
    /// OS+: channel-wise shifting and scaling, then Token-Wise Clipping.
    OsPlus,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::MinMax,
        Method::MinMaxMean,
        Method::Percentile,
        Method::Omse,
        Method::Os,
        Method::OsPlus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::MinMaxMean => "minmax-mean",
            Method::Percentile => "percentile",
            Method::Omse => "omse",
            Method::Os => "os",
            Method::OsPlus => "os+",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// Options of [`calibrate`].
#[derive(Clone, Debug)]
pub struct CalibOptions {
    pub method: Method,
    pub bits: BitsConfig,
    /// Gamma Migration (ignored by OS+, which replaces it).
    pub gamma: bool,
    /// Skip the fine stage of Token-Wise Clipping.
    pub coarse_only: bool,
    /// Batches used by the per-node stage of the TWC coarse search (0 = global ratio only).
    pub per_node_batches: usize,
    /// Batches used by the OS+ `t` search (0 = all).
    pub osplus_batches: usize,
    pub fine: fine::FineConfig,
    /// What the TWC stages compare with the FP32 model (hidden states by default).
    pub loss: Loss,
    /// Threads (0 = all cores).
    pub threads: usize,
    pub progress: Progress,
}

impl CalibOptions {
    pub fn new(method: Method, bits: BitsConfig) -> Self {
        CalibOptions {
            method,
            bits,
            gamma: true,
            coarse_only: false,
            per_node_batches: 2,
            osplus_batches: 0,
            fine: fine::FineConfig::default(),
            loss: Loss::default(),
            threads: 0,
            progress: Progress::hidden(),
        }
    }

    /// Whether Gamma Migration is applied for these options.
    pub fn migrate(&self) -> bool {
        self.gamma && self.method != Method::OsPlus
    }

    /// The label stored in the parameter file (`method`, `/no-gamma`, `/coarse`).
    pub fn label(&self) -> String {
        let mut s = self.method.name().to_string();
        if !self.gamma && self.method != Method::OsPlus {
            s.push_str("/no-gamma");
        }
        if self.coarse_only && matches!(self.method, Method::Os | Method::OsPlus) {
            s.push_str("/coarse");
        }
        s
    }
}

/// Seconds spent in each phase.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    pub osplus: f64,
    pub observe: f64,
    pub ranges: f64,
    pub fine: f64,
    pub total: f64,
}

/// What a calibration did (written as `calibration.json` next to the parameters).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CalibReport {
    pub method: String,
    pub bits: String,
    pub gamma_migration: bool,
    pub samples: usize,
    pub batches: usize,
    pub tokens: usize,
    pub timings: Timings,
    /// The output the losses below compare (`hidden` or `logits`).
    pub loss: Loss,
    /// Output MSE (fake-quant activations, FP32 weights) of the final ranges.
    pub output_mse: f64,
    /// Output MSE of plain MinMax ranges on the same graph, for comparison.
    pub output_mse_minmax: f64,
    pub coarse: Option<twc::CoarseResult>,
    pub fine: Option<fine::FineResult>,
    pub osplus: Option<Vec<osplus::EdgeResult>>,
}

/// The result of a calibration.
#[derive(Clone, Debug)]
pub struct Calibrated {
    /// The (possibly OS+-folded) graph the ranges belong to.
    pub graph: QGraph,
    pub ranges: NodeRanges,
    pub bits: BitsConfig,
    pub label: String,
    pub report: CalibReport,
}

impl Calibrated {
    /// The quantized parameters (weights quantized with the graph's migration / OS+ folds).
    pub fn params(&self) -> Result<QuantParams> {
        export::to_params(&self.graph, &self.ranges, self.bits, &self.label)
    }
}

/// Calibrate `w` on `batches`.
pub fn calibrate(w: &BertWeights, batches: &[Batch], opts: &CalibOptions) -> Result<Calibrated> {
    let t0 = Instant::now();
    engine::check_batches(w, batches)?;
    let exec = ThreadPool::new(opts.threads)?;
    let p = &opts.progress;
    let mut timings = Timings::default();
    let mut graph = QGraph::new(w.clone(), opts.migrate())?;
    let obj = Objective::new(w, opts.loss).ok_or_else(|| {
        CalibError::Failed(
            "the logits loss needs a model with a task head (*ForSequenceClassification or \
             *ForTokenClassification); this one has none"
                .into(),
        )
    })?;

    let mut osplus_res = None;
    if opts.method == Method::OsPlus {
        let t = Instant::now();
        let k = if opts.osplus_batches == 0 {
            batches.len()
        } else {
            opts.osplus_batches.min(batches.len())
        };
        osplus_res = Some(osplus::apply(
            &mut graph,
            &batches[..k],
            &exec,
            opts.bits,
            p,
        )?);
        timings.osplus = t.elapsed().as_secs_f64();
    }

    let t = Instant::now();
    let tokens_needed = matches!(opts.method, Method::Os | Method::OsPlus);
    let stats = observe::collect(&graph, batches, &exec, tokens_needed, p)?;
    timings.observe = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let minmax = stats.simple(observe::Simple::MinMax);
    let mut coarse_res = None;
    let ranges = match opts.method {
        Method::MinMax => minmax.clone(),
        Method::MinMaxMean => stats.simple(observe::Simple::MeanMinMax),
        Method::Percentile => stats.simple(observe::Simple::Percentile),
        Method::Omse => observe::omse(&graph, batches, &exec, &stats, opts.bits, p),
        Method::Os | Method::OsPlus => {
            let (res, r) = twc::coarse(
                &graph,
                &obj,
                batches,
                &exec,
                &stats,
                opts.bits,
                opts.per_node_batches,
                p,
            );
            coarse_res = Some(res);
            r
        }
    };
    timings.ranges = t.elapsed().as_secs_f64();

    let mut fine_res = None;
    let ranges = if matches!(opts.method, Method::Os | Method::OsPlus) && !opts.coarse_only {
        let t = Instant::now();
        let start = observe::quant_set(&ranges, opts.bits);
        let (q, res) = fine::learn(
            &graph,
            &obj,
            batches,
            &stats.targets,
            &exec,
            &start,
            opts.fine,
            p,
        );
        timings.fine = t.elapsed().as_secs_f64();
        fine_res = Some(res);
        fine::ranges_of(&q, &ranges)
    } else {
        ranges
    };
    let mut ranges = ranges;
    ranges.head = head::ranges(w, batches, &exec, &ranges, opts.method, opts.bits)?;
    check_ranges(&ranges)?;

    let q = observe::quant_set(&ranges, opts.bits);
    let output_mse = twc::output_mse(&graph, &obj, batches, &stats.targets, &exec, &q);
    let qm = observe::quant_set(&minmax, opts.bits);
    let output_mse_minmax = twc::output_mse(&graph, &obj, batches, &stats.targets, &exec, &qm);
    timings.total = t0.elapsed().as_secs_f64();
    let label = opts.label();
    let report = CalibReport {
        method: label.clone(),
        bits: opts.bits.name().into(),
        gamma_migration: opts.migrate(),
        samples: batches.iter().map(|b| b.batch).sum(),
        batches: batches.len(),
        tokens: batches
            .iter()
            .map(|b| b.lengths.iter().sum::<usize>())
            .sum(),
        timings,
        loss: obj.kind(),
        output_mse,
        output_mse_minmax,
        coarse: coarse_res,
        fine: fine_res,
        osplus: osplus_res,
    };
    Ok(Calibrated {
        graph,
        ranges,
        bits: opts.bits,
        label,
        report,
    })
}

/// Every node range must be finite and non-empty.
pub fn check_ranges(r: &NodeRanges) -> Result<()> {
    for (l, lr) in r.layers.iter().enumerate() {
        for (i, mm) in lr.nodes.iter().enumerate() {
            if let Some(mm) = mm {
                if mm.is_empty() || !mm.min.is_finite() || !mm.max.is_finite() {
                    return Err(CalibError::Failed(format!(
                        "layer {l} node {}: invalid range [{}, {}]",
                        osq_model::quant::Node::ALL[i].name(),
                        mm.min,
                        mm.max
                    )));
                }
            }
        }
    }
    Ok(())
}
