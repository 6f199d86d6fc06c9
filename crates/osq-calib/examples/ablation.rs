//! Calibrate a model with every method and measure the cosine similarity between FP32 and
//! integer-executor sentence embeddings on held-out text.
//!
//! `cargo run --release -p osq-calib --example ablation -- MODEL_DIR CALIB.txt EVAL.txt [BITS,..] [METHODS,..] [EVAL_N]`
//! METHODS: minmax/no-gamma, minmax, os/no-gamma/coarse, os/no-gamma, os/coarse, os, os+, ...

use std::path::Path;
use std::time::Instant;

use osq_calib::{data, CalibOptions, Method, Progress};
use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::integer::{IntOptions, IntegerModel};
use osq_model::quant::{BitsConfig, QuantModel};
use osq_model::BertModel;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: ablation MODEL CALIB EVAL [bits,..] [methods,..] [eval_n]");
        std::process::exit(2);
    }
    let model = BertModel::load(Path::new(&args[1]))?;
    let calib = data::load(
        Path::new(&args[2]),
        &model.tokenizer,
        256,
        0,
        data::CALIB_MAX_LEN,
    )?;
    let bits: Vec<BitsConfig> = args
        .get(4)
        .map(|s| s.split(',').filter_map(BitsConfig::parse).collect())
        .unwrap_or_else(|| vec![BitsConfig::W8A8, BitsConfig::W6A6, BitsConfig::W4A8]);
    let methods: Vec<String> = args
        .get(5)
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| {
            [
                "minmax/no-gamma",
                "minmax",
                "os/no-gamma/coarse",
                "os/no-gamma",
                "os/coarse",
                "os",
                "os+",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        });
    let eval_n: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let eval_s: Vec<String> = data::read_sentences(Path::new(&args[3]))?
        .into_iter()
        .take(eval_n)
        .collect();
    let eval = data::batches(&model.tokenizer, &eval_s, 128)?;
    let exec = ThreadPool::new(0)?;
    let t = Instant::now();
    let fp: Vec<Vec<f32>> = eval
        .iter()
        .map(|b| fp32::sentence_embeddings(&model.weights, b, &exec))
        .collect::<Result<_, _>>()?;
    eprintln!("fp32 eval embeddings: {:.1}s", t.elapsed().as_secs_f64());
    let h = model.config().hidden_size;
    println!("| method | bits | cos(FP32, int) mean | min | calib s | output MSE | MinMax MSE |");
    println!("|---|---|---|---|---|---|---|");
    for b in &bits {
        for m in &methods {
            let mut parts = m.split('/');
            let Some(method) = parts.next().and_then(Method::parse) else {
                eprintln!("unknown method {m}");
                continue;
            };
            let mut o = CalibOptions::new(method, *b);
            o.progress = Progress::new(true);
            for p in parts {
                match p {
                    "no-gamma" => o.gamma = false,
                    "coarse" => o.coarse_only = true,
                    "global" => o.per_node_batches = 0,
                    x if x.starts_with("pn") => o.per_node_batches = x[2..].parse().unwrap_or(2),
                    _ => eprintln!("ignored flag {p}"),
                }
            }
            let t = Instant::now();
            let c = match osq_calib::calibrate(&model.weights, &calib, &o) {
                Ok(c) => c,
                Err(e) => {
                    println!("| {m} | {b} | error: {e} | | | | |");
                    continue;
                }
            };
            let secs = t.elapsed().as_secs_f64();
            let params = match c.params() {
                Ok(p) => p,
                Err(e) => {
                    println!(
                        "| {m} | {b} | export error: {e} | | {secs:.1} | {:.3e} | {:.3e} |",
                        c.report.output_mse, c.report.output_mse_minmax
                    );
                    continue;
                }
            };
            let im = IntegerModel::new(QuantModel::new(params)?)?;
            let (mut sum, mut n, mut min) = (0f64, 0usize, 1f64);
            for (batch, f) in eval.iter().zip(&fp) {
                let e = im.embed(batch, &IntOptions::default())?;
                for (a, bb) in e.chunks_exact(h).zip(f.chunks_exact(h)) {
                    let cs: f64 = a.iter().zip(bb).map(|(x, y)| *x as f64 * *y as f64).sum();
                    sum += cs;
                    n += 1;
                    min = min.min(cs);
                }
            }
            println!(
                "| {m} | {b} | {:.4} | {:.4} | {secs:.1} | {:.3e} | {:.3e} |",
                sum / n as f64,
                min,
                c.report.output_mse,
                c.report.output_mse_minmax
            );
            eprintln!("{}", serde_json::to_string(&c.report.timings)?);
            if let Some(co) = &c.report.coarse {
                eprintln!(
                    "coarse: global α {} loss {:.4e} (α=1: {:.4e}), final {:.4e}",
                    co.global_alpha, co.global_loss, co.loss_alpha_one, co.final_loss
                );
                for (l, r) in co.ratios.iter().enumerate() {
                    eprintln!(
                        "  layer {l}: {:?}",
                        r.iter().map(|a| format!("{a:.2}")).collect::<Vec<_>>()
                    );
                }
            }
            if let Some(fi) = &c.report.fine {
                eprintln!(
                    "fine: {:.4e} -> {:.4e} kept {}",
                    fi.loss_before, fi.loss_after, fi.kept
                );
            }
        }
    }
    Ok(())
}
