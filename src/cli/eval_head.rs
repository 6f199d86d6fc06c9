//! `osq eval` without a probe: the task head itself, FP32 and on the integer engine of every
//! parameter directory, scored on labelled data (accuracy and macro-F1 with standard errors, or
//! Pearson for regression), with the agreement of each parameter set's labels with FP32's.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use osq_eval::embed::{check_params_match, embed_all, tokenize};
use osq_eval::head::{read_scored, score, HeadScore, Metric};
use osq_model::fp32;
use osq_model::head::{argmax, Task};
use osq_model::quant::format;
use osq_model::quant::integer::{IntOptions, IntegerModel};
use osq_model::quant::QuantModel;
use osq_model::ThreadPool;

use super::eval::{load_model, progress, write_file, EvalArgs};

fn fmt(m: &Metric) -> String {
    format!("{:.2} ± {:.2}", m.value, m.std_err)
}

/// `osq eval --model M --params a,b --test FILE` on a model with a task head.
pub fn eval_head(a: &EvalArgs) -> Result<()> {
    let t0 = Instant::now();
    let model = load_model(&a.model)?;
    let w = &model.weights;
    let Some(head) = &w.head else {
        bail!(
            "{}: the model has no task head; score its embeddings with --probe (osq train-probe)",
            a.model.display()
        );
    };
    if head.task == Task::Token {
        bail!("osq eval scores sequence heads; token classification needs per-token labels");
    }
    let nl = head.num_labels();
    let ex = read_scored(&a.test, head.task, nl)?;
    let ex = match a.limit {
        Some(0) => bail!("--limit 0 leaves nothing to evaluate"),
        Some(n) => ex[..n.min(ex.len())].to_vec(),
        None => ex,
    };
    let y: Vec<f64> = ex.iter().map(|e| e.label).collect();
    let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
    let mut sets = Vec::new();
    for d in &a.params {
        let p = format::load(d).with_context(|| format!("loading parameters {}", d.display()))?;
        check_params_match(&p, w, d)?;
        if p.head.is_none() {
            bail!(
                "{}: the parameters have no task head (calibrated from another model?)",
                d.display()
            );
        }
        sets.push((d.clone(), p));
    }
    let exec = ThreadPool::new(a.threads)?;
    let tok = tokenize(&model, &texts, a.max_len, a.batch_size)?;
    // embed_all scatters any [batch, width] rows back to input order: here the logits
    let l32 = embed_all(&tok, nl, &progress(a.quiet), "fp32", |b| {
        Ok(fp32::classify(w, b, &exec)?)
    })?;
    let s32 = score(head.task, &l32, nl, &y);
    let labels32: Vec<usize> = l32.chunks_exact(nl).map(argmax).collect();
    let mut rows: Vec<(String, String, HeadScore, Option<f64>, f64)> =
        vec![("fp32".into(), "fp32".into(), s32.clone(), None, 0.0)];
    for (d, p) in sets {
        let (method, bits) = (p.method.clone(), p.bits.name().to_string());
        let im = IntegerModel::new(
            QuantModel::new(p).with_context(|| format!("deriving {}", d.display()))?,
        )?;
        let t = Instant::now();
        let opts = IntOptions::default();
        let lq = embed_all(
            &tok,
            nl,
            &progress(a.quiet),
            &format!("{method} {bits}"),
            |b| {
                let out = exec.run(|| im.forward(b, &opts))?;
                Ok(out.head.context("internal: no head output")?.logits)
            },
        )?;
        let agree = (head.task != Task::Regression).then(|| {
            let same = lq
                .chunks_exact(nl)
                .map(argmax)
                .zip(&labels32)
                .filter(|(x, y)| x == *y)
                .count();
            100.0 * same as f64 / labels32.len() as f64
        });
        rows.push((
            method,
            bits,
            score(head.task, &lq, nl, &y),
            agree,
            t.elapsed().as_secs_f64(),
        ));
    }
    let metric = if head.task == Task::Regression {
        "Pearson ×100"
    } else {
        "accuracy %"
    };
    let mut md = format!(
        "{} texts of {}, task {}, {} labels; integer engine, FP32 logits by osq's FP32 path\n\n| method | bits | {metric} | macro-F1 % | Δ vs FP32 | same label as FP32 % |\n|---|---|---:|---:|---:|---:|\n",
        y.len(),
        a.test.display(),
        head.task.name(),
        nl
    );
    for (m, b, s, agree, _) in &rows {
        let main = s.main();
        md.push_str(&format!(
            "| {m} | {b} | {} | {} | {:+.2} | {} |\n",
            fmt(&main),
            s.macro_f1.as_ref().map_or("—".into(), fmt),
            main.value - s32.main().value,
            agree.map_or("—".into(), |v| format!("{v:.2}"))
        ));
    }
    if !a.json {
        println!("{md}");
    }
    if let Some(p) = &a.markdown {
        write_file(p, &md)?;
    }
    let v = json!({
        "test": a.test.display().to_string(),
        "n": y.len(),
        "model": a.model.display().to_string(),
        "task": head.task.name(),
        "labels": head.labels,
        "executor": "integer",
        "results": rows.iter().map(|(m, b, s, agree, secs)| json!({
            "method": m, "bits": b, "score": s, "same_label_as_fp32": agree, "seconds": secs,
        })).collect::<Vec<_>>(),
        "seconds": t0.elapsed().as_secs_f64(),
    });
    let text = serde_json::to_string_pretty(&v)?;
    if a.json {
        println!("{text}");
    }
    if let Some(p) = &a.report {
        write_file(p, &(text + "\n"))?;
    }
    Ok(())
}
