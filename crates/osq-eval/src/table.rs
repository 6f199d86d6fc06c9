//! The accuracy tables of `osq eval`: the paper's Table-4 pattern (bits × methods) in Markdown
//! and one JSON record per configuration.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// One evaluated configuration.
#[derive(Clone, Debug)]
pub struct EvalRow {
    pub dir: Option<PathBuf>,
    pub method: String,
    pub bits: String,
    pub accuracy: f64,
    /// Fraction of sentences whose prediction equals the FP32 prediction.
    pub agreement: f64,
    /// Sentences right here but wrong in FP32, and wrong here but right in FP32.
    pub gained: usize,
    pub lost: usize,
    pub mean_cosine: f64,
    pub min_cosine: f64,
    pub seconds: f64,
}

/// Mean and minimum cosine of the `h`-wide rows of `a` and `b`.
pub fn cosines(a: &[f32], b: &[f32], h: usize) -> (f64, f64) {
    let c: Vec<f64> = a
        .chunks_exact(h)
        .zip(b.chunks_exact(h))
        .map(|(x, y)| osq_model::metrics::cosine(x, y))
        .collect();
    if c.is_empty() {
        return (0.0, 0.0);
    }
    let min = c.iter().copied().fold(f64::INFINITY, f64::min);
    (c.iter().sum::<f64>() / c.len() as f64, min)
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

const BITS_ORDER: [&str; 4] = ["w8a8", "w6a6", "w4a8", "w4a4"];

/// The Markdown tables: Table-4 pattern (rows FP32 / bits, columns methods), then details.
pub fn markdown(rows: &[EvalRow], n: usize, test: &Path) -> String {
    let mut s = String::new();
    let fp = rows.iter().find(|r| r.dir.is_none());
    let q: Vec<&EvalRow> = rows.iter().filter(|r| r.dir.is_some()).collect();
    let mut methods: Vec<String> = Vec::new();
    for r in &q {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
    }
    let mut bits: Vec<String> = BITS_ORDER.iter().map(|b| b.to_string()).collect();
    for r in &q {
        if !bits.contains(&r.bits) {
            bits.push(r.bits.clone());
        }
    }
    bits.retain(|b| q.iter().any(|r| &r.bits == b));
    s.push_str(&format!(
        "Accuracy (%) of the linear probe on {} ({n} sentences); integer executor for every \
         quantized row.\n\n",
        test.display()
    ));
    if methods.is_empty() {
        if let Some(f) = fp {
            s.push_str(&format!("| FP32 |\n|---|\n| {} |\n", pct(f.accuracy)));
        }
    } else {
        s.push_str("| bits |");
        for m in &methods {
            s.push_str(&format!(" {m} |"));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(methods.len()));
        s.push('\n');
        if let Some(f) = fp {
            s.push_str("| FP32 |");
            for _ in &methods {
                s.push_str(&format!(" {} |", pct(f.accuracy)));
            }
            s.push('\n');
        }
        for b in &bits {
            s.push_str(&format!("| {} |", b.to_uppercase()));
            for m in &methods {
                let cell: Vec<String> = q
                    .iter()
                    .filter(|r| &r.method == m && &r.bits == b)
                    .map(|r| pct(r.accuracy))
                    .collect();
                s.push_str(&format!(
                    " {} |",
                    if cell.is_empty() {
                        "–".to_string()
                    } else {
                        cell.join(" / ")
                    }
                ));
            }
            s.push('\n');
        }
    }
    s.push_str(
        "\n| method | bits | accuracy % | Δ vs FP32 (points) | gained / lost | agree w/ FP32 % | \
         mean cos | min cos | time s | params |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let fa = fp.map(|f| f.accuracy);
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} | {:.5} | {:.4} | {:.1} | {} |\n",
            r.method,
            r.bits,
            pct(r.accuracy),
            fa.map(|f| format!("{:+.2}", 100.0 * (r.accuracy - f)))
                .unwrap_or_default(),
            r.gained,
            r.lost,
            pct(r.agreement),
            r.mean_cosine,
            r.min_cosine,
            r.seconds,
            r.dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "–".into()),
        ));
    }
    s
}

pub fn row_json(r: &EvalRow, fp: f64) -> Value {
    json!({
        "method": r.method,
        "bits": r.bits,
        "params": r.dir.as_ref().map(|d| d.display().to_string()),
        "accuracy": r.accuracy,
        "delta_points": 100.0 * (r.accuracy - fp),
        "agreement_with_fp32": r.agreement,
        "gained_vs_fp32": r.gained,
        "lost_vs_fp32": r.lost,
        "mean_cosine": r.mean_cosine,
        "min_cosine": r.min_cosine,
        "seconds": r.seconds,
    })
}
