//! The paper's Table 1 and Fig. 1 on our model.
//!
//! Table 1: for every LayerNorm, the cosine similarity between the signal and its 6-bit (or
//! other) MinMax quantize→dequantize, for `X̃ = γ ⊙ n + β` (the LN output) and
//! `X' = n + β/γ = X̃/γ` (the non-scaling LN of Gamma Migration), over the valid calibration
//! tokens. Fig. 1: per embedding dimension, `max_t |X̃_tj|`, `γ_j` and `max_t |X'_tj|` of one LN.

use std::fmt::Write as _;

use osq_model::svg::{esc, Svg};

use osq_model::fp32::ThreadPool;
use osq_model::quant::MinMax;
use osq_model::{Batch, BertWeights};

use crate::engine::{valid_rows, Engine, FakeQ, LnId, QGraph, Tap};
use crate::error::Result;
use crate::progress::Progress;

/// One row of Table 1.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LnRow {
    pub ln: String,
    pub kind: &'static str,
    pub layer: Option<usize>,
    /// Cosine similarity (%) of quantized vs real, with γ (`X̃`) and without (`X'`).
    pub cos_with_gamma: f64,
    pub cos_without_gamma: f64,
    pub range_with_gamma: (f32, f32),
    pub range_without_gamma: (f32, f32),
    pub max_gamma: f32,
}

/// Per-dimension data of Fig. 1.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Fig1 {
    pub ln: String,
    pub max_abs_x_tilde: Vec<f32>,
    pub gamma: Vec<f32>,
    pub max_abs_x_prime: Vec<f32>,
}

/// The whole report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub act_bits: u32,
    pub tokens: usize,
    pub table: Vec<LnRow>,
    pub fig1: Fig1,
}

fn lns(nl: usize) -> Vec<LnId> {
    let mut v = vec![LnId::Emb];
    for l in 0..nl {
        v.push(LnId::Attn(l));
        v.push(LnId::Ffn(l));
    }
    v
}

fn ln_of(tap: Tap, nl: usize) -> Option<LnId> {
    use osq_model::quant::Node;
    match tap {
        Tap::Node(0, Node::Emb) => Some(LnId::Emb),
        Tap::Node(l, Node::MhaLn) => Some(LnId::Attn(l)),
        Tap::Node(l, Node::FfnLn) if l < nl => Some(LnId::Ffn(l)),
        _ => None,
    }
}

fn gamma_of(w: &BertWeights, id: LnId) -> &[f32] {
    match id {
        LnId::Emb => &w.embeddings.ln.gamma,
        LnId::Attn(l) => &w.layers[l].attn_ln.gamma,
        LnId::Ffn(l) => &w.layers[l].ffn_ln.gamma,
    }
}

#[derive(Clone, Default)]
struct Acc {
    mm_t: Option<MinMax>,
    mm_p: Option<MinMax>,
    ch_t: Vec<f32>,
    ch_p: Vec<f32>,
    // Σ x·q, Σ x², Σ q² for the cosines
    dot_t: f64,
    xx_t: f64,
    qq_t: f64,
    dot_p: f64,
    xx_p: f64,
    qq_p: f64,
}

/// Compute Table 1 and Fig. 1 (`fig_ln`: the LN of the figure; `None` = the LN whose
/// `max|X̃| / max|X'|` is largest, i.e. where γ amplifies the outliers most).
pub fn compute(
    w: &BertWeights,
    batches: &[Batch],
    act_bits: u32,
    fig_ln: Option<LnId>,
    threads: usize,
    progress: &Progress,
) -> Result<Report> {
    crate::engine::check_batches(w, batches)?;
    let exec = ThreadPool::new(threads)?;
    let g = QGraph::new(w.clone(), false)?;
    let nl = g.num_layers();
    let h = w.config.hidden_size;
    let ids = lns(nl);
    let idx = |id: LnId| ids.iter().position(|&x| x == id).unwrap_or(0);
    let mut acc: Vec<Acc> = ids
        .iter()
        .map(|_| Acc {
            ch_t: vec![0.0; h],
            ch_p: vec![0.0; h],
            ..Default::default()
        })
        .collect();
    let eng = Engine::new(&g, &exec, None);
    let bar = progress.bar(2 * batches.len() as u64, "Table 1 / Fig. 1");
    // pass 1: ranges and per-channel absmax
    for b in batches {
        let mut obs = |tap: Tap, x: &[f32], cols: usize| {
            let Some(id) = ln_of(tap, nl) else { return };
            let gm = gamma_of(w, id);
            let a = &mut acc[idx(id)];
            let mut mt = a.mm_t.unwrap_or(MinMax::EMPTY);
            let mut mp = a.mm_p.unwrap_or(MinMax::EMPTY);
            valid_rows(b, x, cols, |r| {
                for j in 0..cols {
                    let xt = r[j];
                    let xp = xt / gm[j];
                    mt.update(xt);
                    mp.update(xp);
                    a.ch_t[j] = a.ch_t[j].max(xt.abs());
                    a.ch_p[j] = a.ch_p[j].max(xp.abs());
                }
            });
            a.mm_t = Some(mt);
            a.mm_p = Some(mp);
        };
        eng.forward(b, Some(&mut obs), None);
        bar.inc(1);
    }
    let qs: Vec<(FakeQ, FakeQ)> = acc
        .iter()
        .map(|a| {
            (
                FakeQ::from_range(&a.mm_t.unwrap_or(MinMax::EMPTY), act_bits),
                FakeQ::from_range(&a.mm_p.unwrap_or(MinMax::EMPTY), act_bits),
            )
        })
        .collect();
    // pass 2: cosine similarities
    for b in batches {
        let mut obs = |tap: Tap, x: &[f32], cols: usize| {
            let Some(id) = ln_of(tap, nl) else { return };
            let gm = gamma_of(w, id);
            let i = idx(id);
            let (qt, qp) = qs[i];
            let (it, zt) = (1.0 / qt.s, qt.zr());
            let (ip, zp) = (1.0 / qp.s, qp.zr());
            let a = &mut acc[i];
            valid_rows(b, x, cols, |r| {
                for j in 0..cols {
                    let xt = r[j];
                    let xp = xt / gm[j];
                    let yt = qt.apply(xt, it, zt) as f64;
                    let yp = qp.apply(xp, ip, zp) as f64;
                    a.dot_t += xt as f64 * yt;
                    a.xx_t += xt as f64 * xt as f64;
                    a.qq_t += yt * yt;
                    a.dot_p += xp as f64 * yp;
                    a.xx_p += xp as f64 * xp as f64;
                    a.qq_p += yp * yp;
                }
            });
        };
        eng.forward(b, Some(&mut obs), None);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let cos = |d: f64, a: f64, b: f64| 100.0 * d / (a.sqrt() * b.sqrt()).max(1e-30);
    let table: Vec<LnRow> = ids
        .iter()
        .zip(&acc)
        .map(|(&id, a)| {
            let (kind, layer) = match id {
                LnId::Emb => ("embedding", None),
                LnId::Attn(l) => ("attention", Some(l)),
                LnId::Ffn(l) => ("ffn", Some(l)),
            };
            let mt = a.mm_t.unwrap_or(MinMax::EMPTY);
            let mp = a.mm_p.unwrap_or(MinMax::EMPTY);
            LnRow {
                ln: id.name(),
                kind,
                layer,
                cos_with_gamma: cos(a.dot_t, a.xx_t, a.qq_t),
                cos_without_gamma: cos(a.dot_p, a.xx_p, a.qq_p),
                range_with_gamma: (mt.min, mt.max),
                range_without_gamma: (mp.min, mp.max),
                max_gamma: gamma_of(w, id).iter().fold(0f32, |m, g| m.max(g.abs())),
            }
        })
        .collect();
    let chosen = fig_ln.unwrap_or_else(|| {
        let ratio = |a: &Acc| {
            let t = a.ch_t.iter().copied().fold(0f32, f32::max);
            let p = a.ch_p.iter().copied().fold(0f32, f32::max);
            t / p.max(f32::MIN_POSITIVE)
        };
        let mut best = (0usize, f32::NEG_INFINITY);
        for (i, a) in acc.iter().enumerate() {
            let r = ratio(a);
            if r > best.1 {
                best = (i, r);
            }
        }
        ids[best.0]
    });
    let a = &acc[idx(chosen)];
    let fig1 = Fig1 {
        ln: chosen.name(),
        max_abs_x_tilde: a.ch_t.clone(),
        gamma: gamma_of(w, chosen).to_vec(),
        max_abs_x_prime: a.ch_p.clone(),
    };
    Ok(Report {
        act_bits,
        tokens: batches
            .iter()
            .map(|b| b.lengths.iter().sum::<usize>())
            .sum(),
        table,
        fig1,
    })
}

/// Table 1 as Markdown.
pub fn table_markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Cosine similarity (%) between the {}-bit MinMax quantize→dequantize and the real signal, \
         per LayerNorm, over {} calibration tokens. X̃: LN output (with γ); X': non-scaling LN \
         (γ migrated).\n",
        r.act_bits, r.tokens
    );
    let _ = writeln!(
        s,
        "| LayerNorm | X̃ (with γ) | X' (without γ) | range X̃ | range X' | max abs γ |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for row in &r.table {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {}{:.2}{} | [{:.2}, {:.2}] | [{:.2}, {:.2}] | {:.2} |",
            row.ln,
            row.cos_with_gamma,
            if row.cos_without_gamma > row.cos_with_gamma {
                "**"
            } else {
                ""
            },
            row.cos_without_gamma,
            if row.cos_without_gamma > row.cos_with_gamma {
                "**"
            } else {
                ""
            },
            row.range_with_gamma.0,
            row.range_with_gamma.1,
            row.range_without_gamma.0,
            row.range_without_gamma.1,
            row.max_gamma
        );
    }
    s
}

/// Fig. 1 as a hand-written SVG: three stacked panels (max|X̃|, γ, max|X'|) over the embedding
/// dimension, one bar per dimension, the largest dimensions labelled.
pub fn fig1_svg(f: &Fig1) -> String {
    let n = f.gamma.len().max(1);
    let (w, ph, left, top, gap) = (1000.0f64, 170.0f64, 60.0f64, 40.0f64, 45.0f64);
    let pw = w - left - 20.0;
    let height = top + 3.0 * ph + 3.0 * gap + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="15">Outliers of {} over the embedding dimension</text>"#,
        w / 2.0,
        esc(&f.ln)
    );
    let panels: [(&str, &[f32], &str); 3] = [
        (
            "(a) max_t |X̃_tj| (LN output, with γ)",
            &f.max_abs_x_tilde,
            "#c0392b",
        ),
        ("(b) γ_j", &f.gamma, "#2c7fb8"),
        (
            "(c) max_t |X'_tj| (non-scaling LN, γ migrated)",
            &f.max_abs_x_prime,
            "#27ae60",
        ),
    ];
    for (pi, (title, vals, color)) in panels.iter().enumerate() {
        let y0 = top + pi as f64 * (ph + gap);
        let lo = vals.iter().copied().fold(0f32, f32::min) as f64;
        let hi = vals.iter().copied().fold(0f32, f32::max) as f64;
        let span = (hi - lo).max(1e-12);
        let ymap = |v: f64| y0 + ph - (v - lo) / span * ph;
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{}" font-size="13">{}</text>"#,
            y0 - 6.0,
            esc(title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        // axis labels and zero line
        for v in [lo, hi] {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{:.2}</text>"#,
                left - 4.0,
                ymap(v) + 4.0,
                v
            );
        }
        if lo < 0.0 {
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#444" stroke-width="0.5"/>"##,
                left + pw,
                ymap(0.0),
                ymap(0.0)
            );
        }
        let bw = pw / n as f64;
        let mut path = String::new();
        for (j, &v) in vals.iter().enumerate() {
            let x = left + (j as f64 + 0.5) * bw;
            let _ = write!(
                path,
                "M{x:.2} {:.2}V{:.2}",
                ymap(0f64.max(lo)),
                ymap(v as f64)
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{path}" stroke="{color}" stroke-width="{:.2}" fill="none"/>"#,
            bw.max(1.0)
        );
        // label the three largest |values|
        let mut order: Vec<usize> = (0..vals.len()).collect();
        order.sort_by(|&a, &b| vals[b].abs().total_cmp(&vals[a].abs()));
        for &j in order.iter().take(3) {
            let x = left + (j as f64 + 0.5) * bw;
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{j}</text>"#,
                ymap(vals[j] as f64).min(y0 + ph) - 3.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="11">embedding dimension (0..{})</text>"#,
            left + pw / 2.0,
            y0 + ph + 14.0,
            n - 1
        );
    }
    let mut doc = Svg::new(w, height);
    doc.raw(&s);
    doc.finish()
}
