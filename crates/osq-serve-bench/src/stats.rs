//! Latency statistics and the record format shared with `tools/onnx_bench.py`.

use serde::{Deserialize, Serialize};

/// Percentile with linear interpolation between closest ranks (numpy's default, as
/// `np.percentile` in `tools/onnx_bench.py`). `sorted` must be ascending and non-empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of an empty sample");
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let pos = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let f = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * f
}

/// Summary of a latency sample in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

impl Summary {
    /// Summary of `ms` (any order). `None` when empty.
    pub fn of(ms: &[f64]) -> Option<Summary> {
        if ms.is_empty() {
            return None;
        }
        let mut s = ms.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        Some(Summary {
            p50_ms: percentile(&s, 50.0),
            p90_ms: percentile(&s, 90.0),
            p99_ms: percentile(&s, 99.0),
            mean_ms: s.iter().sum::<f64>() / s.len() as f64,
            min_ms: s[0],
            max_ms: s[s.len() - 1],
            runs: s.len(),
        })
    }
}

fn r4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// One measured cell. The first ten fields are exactly `tools/onnx_bench.py`'s record; the
/// others are optional so that ORT records parse as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub engine: String,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub throughput_seq_per_s: f64,
    pub runs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ms: Option<f64>,
    /// `osq`, `peer` (timed by the peer worker) or `ort` (merged from `tools/onnx_bench.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Input fill (`full`/`pad`) for osq records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<String>,
    /// Real tokens in the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    /// FNV-1a digest of the outputs (equal across thread counts, asserted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Useful multiply-accumulates of one forward of this cell (GMAC; [`crate::peak`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmac: Option<f64>,
    /// `gmac` at p50 over the measured `vpdpbusd zmm` peak of `threads` cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction_of_peak: Option<f64>,
}

impl Record {
    pub fn new(engine: &str, batch: usize, seq: usize, threads: usize, s: &Summary) -> Record {
        Record {
            engine: engine.to_string(),
            batch,
            seq,
            threads,
            p50_ms: r4(s.p50_ms),
            p90_ms: r4(s.p90_ms),
            p99_ms: r4(s.p99_ms),
            mean_ms: r4(s.mean_ms),
            throughput_seq_per_s: (batch as f64 * 1e3 / s.mean_ms * 1e3).round() / 1e3,
            runs: s.runs,
            min_ms: Some(r4(s.min_ms)),
            source: Some("osq".into()),
            fill: None,
            tokens: None,
            digest: None,
            gmac: None,
            fraction_of_peak: None,
        }
    }

    /// `(batch, seq, threads)`.
    pub fn cell(&self) -> (usize, usize, usize) {
        (self.batch, self.seq, self.threads)
    }

    pub fn is_ort(&self) -> bool {
        self.source.as_deref() == Some("ort") || self.engine.starts_with("ort-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        let s: Vec<f64> = (1..=10).map(|x| x as f64).collect();
        assert_eq!(percentile(&s, 50.0), 5.5);
        assert!((percentile(&s, 90.0) - 9.1).abs() < 1e-12);
        assert!((percentile(&s, 99.0) - 9.91).abs() < 1e-12);
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 100.0), 10.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }

    #[test]
    fn summary_and_record() {
        let s = Summary::of(&[4.0, 2.0, 3.0, 1.0]).unwrap();
        assert_eq!(s.p50_ms, 2.5);
        assert_eq!(s.mean_ms, 2.5);
        assert_eq!(s.min_ms, 1.0);
        let r = Record::new("osq-int8", 8, 128, 2, &s);
        assert_eq!(r.throughput_seq_per_s, 3200.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn ort_record_parses() {
        let j = r#"{"engine": "ort-int8-dynamic", "batch": 1, "seq": 128, "threads": 1,
            "p50_ms": 23.7, "p90_ms": 35.6, "p99_ms": 44.5, "mean_ms": 26.0,
            "throughput_seq_per_s": 38.4, "runs": 200}"#;
        let r: Record = serde_json::from_str(j).unwrap();
        assert!(r.is_ort());
        assert_eq!(r.cell(), (1, 128, 1));
    }
}
