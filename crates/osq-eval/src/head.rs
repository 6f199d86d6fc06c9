//! Scoring a task head directly: labelled `label<TAB>text` files (a label index, or a real value
//! for regression), the head's logits of every text from any engine, and the metric of the task
//! with its standard error — accuracy and macro-F1 for classification, Pearson's r for
//! regression.

use std::path::Path;

use anyhow::{bail, Context, Result};

use osq_model::head::{argmax, Task};

/// One labelled text: `label` is a class index, or the value for regression.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub label: f64,
    pub text: String,
}

/// Reads `label<TAB>text` lines; errors name the file and line.
pub fn read_scored(path: &Path, task: Task, labels: usize) -> Result<Vec<Scored>> {
    let (lines, _) =
        osq_model::text::read_lines(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let Some((l, t)) = line.split_once('\t') else {
            bail!("{}:{}: expected `label<TAB>text`", path.display(), i + 1);
        };
        let v: f64 = l.trim().parse().map_err(|_| {
            anyhow::anyhow!("{}:{}: label {l:?} is not a number", path.display(), i + 1)
        })?;
        if !v.is_finite() {
            bail!("{}:{}: label {l:?} is not finite", path.display(), i + 1);
        }
        if task != Task::Regression && (v.fract() != 0.0 || v < 0.0 || v as usize >= labels) {
            bail!(
                "{}:{}: label {l:?} is not a class index 0..{labels}",
                path.display(),
                i + 1
            );
        }
        out.push(Scored {
            label: v,
            text: t.to_string(),
        });
    }
    if out.is_empty() {
        bail!("{}: no labelled texts", path.display());
    }
    Ok(out)
}

/// A metric and its standard error.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Metric {
    pub value: f64,
    pub std_err: f64,
}

/// The task's metrics of `logits` `[n, labels]` against `y`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HeadScore {
    /// Accuracy (classification) — in percent.
    pub accuracy: Option<Metric>,
    /// Macro-F1 (classification) — in percent.
    pub macro_f1: Option<Metric>,
    /// Pearson's r × 100 (regression).
    pub pearson: Option<Metric>,
}

impl HeadScore {
    /// The headline metric: accuracy, or Pearson for regression.
    pub fn main(&self) -> Metric {
        self.accuracy.or(self.pearson).expect("a metric")
    }
}

/// Macro-F1 of predictions `p` against `y` over `k` classes.
pub fn macro_f1(p: &[usize], y: &[usize], k: usize) -> f64 {
    let mut f = 0.0;
    for c in 0..k {
        let tp = p
            .iter()
            .zip(y)
            .filter(|(a, b)| **a == c && **b == c)
            .count() as f64;
        let fp = p
            .iter()
            .zip(y)
            .filter(|(a, b)| **a == c && **b != c)
            .count() as f64;
        let fn_ = p
            .iter()
            .zip(y)
            .filter(|(a, b)| **a != c && **b == c)
            .count() as f64;
        f += if tp == 0.0 {
            0.0
        } else {
            2.0 * tp / (2.0 * tp + fp + fn_)
        };
    }
    f / k as f64
}

/// Pearson's correlation.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt().max(f64::MIN_POSITIVE)
}

/// Bootstrap resamples of the macro-F1 standard error (fixed seed: the same table every run).
const BOOTSTRAP: usize = 200;

/// Scores `logits` `[n, labels]` for `task` against `y`.
pub fn score(task: Task, logits: &[f32], labels: usize, y: &[f64]) -> HeadScore {
    let n = y.len();
    if task == Task::Regression {
        let p: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let r = pearson(&p, y);
        return HeadScore {
            accuracy: None,
            macro_f1: None,
            pearson: Some(Metric {
                value: 100.0 * r,
                std_err: 100.0 * (1.0 - r * r) / ((n as f64 - 2.0).max(1.0)).sqrt(),
            }),
        };
    }
    let pred: Vec<usize> = logits.chunks_exact(labels).map(argmax).collect();
    let yi: Vec<usize> = y.iter().map(|&v| v as usize).collect();
    let acc = pred.iter().zip(&yi).filter(|(a, b)| a == b).count() as f64 / n as f64;
    let f1 = macro_f1(&pred, &yi, labels);
    let mut rng = osq_model::rng::SplitMix64::new(20221123);
    let mut fs = Vec::with_capacity(BOOTSTRAP);
    let (mut bp, mut by) = (vec![0; n], vec![0; n]);
    for _ in 0..BOOTSTRAP {
        for i in 0..n {
            let j = (rng.next_u64() % n as u64) as usize;
            bp[i] = pred[j];
            by[i] = yi[j];
        }
        fs.push(macro_f1(&bp, &by, labels));
    }
    let m = fs.iter().sum::<f64>() / fs.len() as f64;
    let sd = (fs.iter().map(|f| (f - m).powi(2)).sum::<f64>() / (fs.len() - 1) as f64).sqrt();
    HeadScore {
        accuracy: Some(Metric {
            value: 100.0 * acc,
            std_err: 100.0 * (acc * (1.0 - acc) / n as f64).sqrt(),
        }),
        macro_f1: Some(Metric {
            value: 100.0 * f1,
            std_err: 100.0 * sd,
        }),
        pearson: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_known_cases() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // two classes, one error each way: F1 = 0.5 for both
        assert!((macro_f1(&[0, 1, 0, 1], &[0, 0, 1, 1], 2) - 0.5).abs() < 1e-12);
        let s = score(
            Task::SingleLabel,
            &[2.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 1.0],
            2,
            &[0.0, 1.0, 1.0, 1.0],
        );
        assert_eq!(s.accuracy.unwrap().value, 75.0);
        assert!((s.accuracy.unwrap().std_err - 100.0 * (0.75f64 * 0.25 / 4.0).sqrt()).abs() < 1e-9);
        let r = score(
            Task::Regression,
            &[0.1, 0.2, 0.3, 0.5],
            1,
            &[1.0, 2.0, 3.0, 5.0],
        );
        assert!((r.pearson.unwrap().value - 100.0).abs() < 1e-9);
    }
}
