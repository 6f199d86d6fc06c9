//! Ratios, the text table, CSV and the SVG plot.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use osq_model::svg::{esc, Svg};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::stats::Record;

/// `numerator.p50 / denominator.p50` in one cell (< 1: the numerator is faster).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Ratio {
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub numerator: String,
    pub denominator: String,
    pub p50_ratio: f64,
    /// `denominator.p50 / numerator.p50`: how many times faster the numerator is.
    pub speedup: f64,
    /// For the denominator [`FASTEST_PEER`]: which int8 peer was fastest in this cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// Denominator name of the ratio against the fastest int8 peer of a cell (ONNX Runtime in every
/// form measured, OpenVINO + NNCF).
pub const FASTEST_PEER: &str = "fastest-int8-peer";

/// The comparisons printed and stored: each osq integer engine against ORT int8 (dynamic and
/// QDQ), ORT fp32 and our FP32, per cell where both were measured.
pub const PAIRS: [(&str, &str); 13] = [
    ("osq-int8", "ov-int8-nncf"),
    ("osq-int8", "ort-opt-int8-pc"),
    ("osq-int8", "ort-opt-int8-pt"),
    ("osq-int8", "ort-int8-dynamic"),
    ("osq-int8", "ort-int8-qdq"),
    ("osq-int8", "osq-fp32"),
    ("osq-int8", "ort-fp32"),
    ("osq-fp32", "ort-fp32"),
    ("osq-int4", "ort-int8-dynamic"),
    ("osq-int4", "ort-int8-qdq"),
    ("osq-int4", "osq-fp32"),
    ("osq-int4", "osq-int8"),
    ("ort-int8-dynamic", "ort-fp32"),
];

/// `x` over `y` in one cell (both p50 > 0), named `x.engine / denominator`.
fn ratio(x: &Record, y: &Record, denominator: &str, peer: Option<String>) -> Ratio {
    Ratio {
        batch: x.batch,
        seq: x.seq,
        threads: x.threads,
        numerator: x.engine.clone(),
        denominator: denominator.into(),
        p50_ratio: x.p50_ms / y.p50_ms,
        speedup: y.p50_ms / x.p50_ms,
        peer,
    }
}

/// Ratios of [`PAIRS`] over every cell of `records`, then each osq integer engine over the
/// cell's fastest int8 peer ([`FASTEST_PEER`]).
pub fn ratios(records: &[Record]) -> Vec<Ratio> {
    let cells: BTreeSet<(usize, usize, usize)> = records.iter().map(|r| r.cell()).collect();
    let mut out = Vec::new();
    for c in cells {
        let find = |e: &str| {
            records
                .iter()
                .find(|r| r.cell() == c && r.engine == e && r.p50_ms > 0.0)
        };
        for (a, b) in PAIRS {
            if let (Some(x), Some(y)) = (find(a), find(b)) {
                out.push(ratio(x, y, b, None));
            }
        }
        let fastest = records
            .iter()
            .filter(|r| r.cell() == c && crate::peers::is_int8_peer(&r.engine) && r.p50_ms > 0.0)
            .min_by(|a, b| a.p50_ms.total_cmp(&b.p50_ms));
        if let Some(y) = fastest {
            for x in ["osq-int8", "osq-int4"].into_iter().filter_map(find) {
                out.push(ratio(x, y, FASTEST_PEER, Some(y.engine.clone())));
            }
        }
    }
    out
}

/// Keeps the ORT records whose cell is in `cells` (all when `cells` is empty), marked `ort`.
pub fn merge_ort(
    mut ort: Vec<Record>,
    cells: &BTreeSet<(usize, usize, usize)>,
) -> (Vec<Record>, Vec<Record>) {
    for r in &mut ort {
        r.source = Some("ort".into());
    }
    ort.into_iter()
        .partition(|r| cells.is_empty() || cells.contains(&r.cell()))
}

/// Fixed-width table of all records, one row per (cell, engine).
pub fn table(records: &[Record]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:>5} {:>5} {:>3} {:>10} {:>10} {:>10} {:>10} {:>11} {:>6} {:>7}",
        "engine",
        "batch",
        "seq",
        "thr",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "seq/s",
        "runs",
        "% peak"
    );
    let mut rs: Vec<&Record> = records.iter().collect();
    rs.sort_by(|a, b| {
        (a.batch, a.seq, a.threads, &a.engine).cmp(&(b.batch, b.seq, b.threads, &b.engine))
    });
    for r in rs {
        let _ = writeln!(
            s,
            "{:<18} {:>5} {:>5} {:>3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>11.2} {:>6} {:>7}",
            r.engine,
            r.batch,
            r.seq,
            r.threads,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.mean_ms,
            r.throughput_seq_per_s,
            r.runs,
            r.fraction_of_peak
                .map(|f| format!("{:.1}", f * 100.0))
                .unwrap_or_default()
        );
    }
    s
}

/// Ratio lines (`osq-int8 / ort-int8-dynamic = 0.52 (1.92× faster)`).
pub fn ratio_lines(rs: &[Ratio]) -> String {
    let mut s = String::new();
    for r in rs {
        let _ = writeln!(
            s,
            "b{:<3} s{:<4} t{}  {:>16} / {:<17} p50 ratio {:>6.3}  ({:.2}x {}){}",
            r.batch,
            r.seq,
            r.threads,
            r.numerator,
            r.denominator,
            r.p50_ratio,
            if r.speedup >= 1.0 {
                r.speedup
            } else {
                1.0 / r.speedup
            },
            if r.speedup >= 1.0 { "faster" } else { "slower" },
            r.peer
                .as_deref()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default()
        );
    }
    s
}

/// CSV with a header; optional fields empty when absent.
pub fn csv(records: &[Record]) -> String {
    let mut s = String::from(
        "engine,source,batch,seq,threads,p50_ms,p90_ms,p99_ms,mean_ms,min_ms,throughput_seq_per_s,runs,fill,tokens,digest\n",
    );
    for r in records {
        let opt = |x: &Option<String>| x.clone().unwrap_or_default();
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.engine,
            opt(&r.source),
            r.batch,
            r.seq,
            r.threads,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.mean_ms,
            r.min_ms.map(|x| x.to_string()).unwrap_or_default(),
            r.throughput_seq_per_s,
            r.runs,
            opt(&r.fill),
            r.tokens.map(|x| x.to_string()).unwrap_or_default(),
            opt(&r.digest)
        );
    }
    s
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// SVG: p50 latency (log scale) vs sequence length (log2 scale), batch 1, one panel per thread
/// count, one line per engine. `None` when there is no batch-1 record.
pub fn svg(records: &[Record], title: &str) -> Option<String> {
    let b1: Vec<&Record> = records.iter().filter(|r| r.batch == 1).collect();
    if b1.is_empty() {
        return None;
    }
    let threads: Vec<usize> = b1
        .iter()
        .map(|r| r.threads)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let engines: Vec<String> = b1
        .iter()
        .map(|r| r.engine.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let seqs: Vec<usize> = b1
        .iter()
        .map(|r| r.seq)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (pw, ph) = (420.0f64, 300.0f64);
    let (ml, mr, mt, mb) = (60.0f64, 20.0f64, 50.0f64, 50.0f64);
    let legend_h = 22.0 * engines.len().div_ceil(3) as f64;
    let width = ml + threads.len() as f64 * (pw + mr + ml);
    let height = mt + ph + mb + legend_h + 10.0;
    let ymin = b1
        .iter()
        .map(|r| r.p50_ms)
        .fold(f64::INFINITY, f64::min)
        .max(1e-3);
    let ymax = b1
        .iter()
        .map(|r| r.p50_ms)
        .fold(0.0, f64::max)
        .max(ymin * 1.5);
    let (ly0, ly1) = (ymin.log10().floor(), ymax.log10().ceil());
    let (sx0, sx1) = (
        (*seqs.first()? as f64).log2(),
        (*seqs.last()? as f64)
            .log2()
            .max((*seqs.first()? as f64).log2() + 1.0),
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<text x="{:.0}" y="20" font-size="15" text-anchor="middle">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    for (pi, &t) in threads.iter().enumerate() {
        let x0 = ml + pi as f64 * (pw + mr + ml);
        let y0 = mt;
        let fx = |seq: usize| x0 + ((seq as f64).log2() - sx0) / (sx1 - sx0) * pw;
        let fy = |ms: f64| y0 + ph - (ms.max(1e-9).log10() - ly0) / (ly1 - ly0) * ph;
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{y0:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">batch 1, {t} thread{}</text>"#,
            x0 + pw / 2.0,
            y0 - 8.0,
            if t == 1 { "" } else { "s" }
        );
        // y grid: decades and 2x/5x.
        let mut d = ly0 as i32;
        while d as f64 <= ly1 {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powi(d);
                if v.log10() < ly0 - 1e-9 || v.log10() > ly1 + 1e-9 {
                    continue;
                }
                let y = fy(v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                    x0 + pw
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                    x0 - 4.0,
                    y + 4.0,
                    if v >= 1.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v}")
                    }
                );
            }
            d += 1;
        }
        for &sq in &seqs {
            let x = fx(sq);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y0:.1}" y2="{:.1}" stroke="#eee"/>"##,
                y0 + ph
            );
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{sq}</text>"#,
                y0 + ph + 16.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">sequence length (tokens)</text>"#,
            x0 + pw / 2.0,
            y0 + ph + 34.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">p50 latency (ms, log)</text>"#,
            x0 - 42.0,
            y0 + ph / 2.0,
            x0 - 42.0,
            y0 + ph / 2.0
        );
        for (ei, e) in engines.iter().enumerate() {
            let mut pts: Vec<(usize, f64)> = b1
                .iter()
                .filter(|r| r.threads == t && &r.engine == e)
                .map(|r| (r.seq, r.p50_ms))
                .collect();
            pts.sort_by_key(|p| p.0);
            if pts.is_empty() {
                continue;
            }
            let c = COLORS[ei % COLORS.len()];
            let dash = if e.starts_with("ort-") {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
            let path: Vec<String> = pts
                .iter()
                .map(|&(q, v)| format!("{:.1},{:.1}", fx(q), fy(v)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for &(q, v) in &pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{} s{q} t{t}: {v:.3} ms</title></circle>"#,
                    fx(q),
                    fy(v),
                    esc(e)
                );
            }
        }
    }
    for (ei, e) in engines.iter().enumerate() {
        let c = COLORS[ei % COLORS.len()];
        let x = ml + (ei % 3) as f64 * 180.0;
        let y = mt + ph + mb + 8.0 + (ei / 3) as f64 * 22.0;
        let dash = if e.starts_with("ort-") {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{c}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 24.0,
            x + 30.0,
            y + 4.0,
            esc(e)
        );
    }
    let mut doc = Svg::new(width, height);
    doc.raw(&s);
    Some(doc.finish())
}

/// Writes `text` to `path` atomically (`.part` then rename).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let part = path.with_extension(format!(
        "{}.part",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&part, text).with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn rec(e: &str, seq: usize, t: usize, p50: f64) -> Record {
        let s = Summary {
            p50_ms: p50,
            p90_ms: p50,
            p99_ms: p50,
            mean_ms: p50,
            min_ms: p50,
            max_ms: p50,
            runs: 10,
        };
        Record::new(e, 1, seq, t, &s)
    }

    #[test]
    fn ratios_per_cell() {
        let rs = vec![
            rec("osq-int8", 128, 1, 2.0),
            rec("ort-int8-dynamic", 128, 1, 4.0),
            rec("osq-fp32", 128, 1, 8.0),
            rec("osq-int8", 128, 2, 1.0),
        ];
        let r = ratios(&rs);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].denominator, "ort-int8-dynamic");
        assert_eq!(r[0].p50_ratio, 0.5);
        assert_eq!(r[0].speedup, 2.0);
        assert_eq!(r[1].denominator, "osq-fp32");
        assert_eq!(r[1].speedup, 4.0);
        assert_eq!(r[2].denominator, FASTEST_PEER);
        assert_eq!(r[2].peer.as_deref(), Some("ort-int8-dynamic"));
        assert!(ratio_lines(&r).contains("2.00x faster"));
    }

    #[test]
    fn fastest_peer_is_the_fastest_int8_peer_of_the_cell() {
        let rs = vec![
            rec("osq-int8", 128, 1, 2.0),
            rec("ort-int8-dynamic", 128, 1, 4.0),
            rec("ov-int8-nncf", 128, 1, 1.6),
            rec("ort-fp32", 128, 1, 1.0), // not an int8 peer
            rec("ort-opt-int8-pc", 128, 1, 3.0),
        ];
        let r: Vec<Ratio> = ratios(&rs)
            .into_iter()
            .filter(|r| r.denominator == FASTEST_PEER)
            .collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].peer.as_deref(), Some("ov-int8-nncf"));
        assert_eq!(r[0].speedup, 0.8);
        assert!(ratio_lines(&r).contains("[ov-int8-nncf]"));
    }

    #[test]
    fn merge_keeps_matching_cells() {
        let ort = vec![
            rec("ort-int8-qdq", 128, 1, 3.0),
            rec("ort-int8-qdq", 64, 1, 3.0),
        ];
        let cells: BTreeSet<_> = [(1, 128, 1)].into_iter().collect();
        let (keep, drop) = merge_ort(ort, &cells);
        assert_eq!(keep.len(), 1);
        assert_eq!(drop.len(), 1);
        assert_eq!(keep[0].source.as_deref(), Some("ort"));
    }

    #[test]
    fn svg_and_csv() {
        let rs = vec![
            rec("osq-int8", 16, 1, 0.5),
            rec("osq-int8", 128, 1, 2.0),
            rec("ort-int8-dynamic", 128, 1, 4.0),
            rec("osq-int8", 128, 2, 1.2),
        ];
        let s = svg(&rs, "t <1>").unwrap();
        assert!(s.starts_with("<svg"));
        assert!(s.contains("batch 1, 2 threads"));
        assert!(s.contains("t &lt;1&gt;"));
        assert_eq!(s.matches("<polyline").count(), 3);
        let c = csv(&rs);
        assert_eq!(c.lines().count(), 5);
        assert!(table(&rs).contains("ort-int8-dynamic"));
    }
}
