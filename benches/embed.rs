//! Criterion: `osq::Model::embed` through the facade, as an application calls it.
//! Always on the tiny generated model; on all-MiniLM-L6-v2 too when `$OSQ_BENCH_PARAMS` (or
//! `out/bench/params-w8a8`, written by `tools/bench.sh`) holds a parameter directory: one
//! sentence of ~128 tokens, 1 and 2 threads. Engine-level benches (FP32 vs int8 vs int4, rows
//! of exactly `seq` tokens) are `cargo bench -p osq-serve-bench --bench forward`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench_model(c: &mut Criterion, group: &str, dir: &std::path::Path, texts: &[String]) {
    let mut g = c.benchmark_group(group);
    for threads in [1, 2] {
        let model = osq::Model::load_with(
            dir,
            osq::ModelOptions {
                threads,
                ..Default::default()
            },
        )
        .expect("parameter directory");
        let tokens = model
            .count_tokens(texts)
            .expect("tokens")
            .iter()
            .sum::<usize>();
        g.bench_with_input(
            BenchmarkId::new(
                "embed",
                format!("{}texts-{tokens}tok-t{threads}", texts.len()),
            ),
            texts,
            |b, texts| b.iter(|| model.embed(texts).expect("embed")),
        );
    }
    g.finish();
}

fn tiny(c: &mut Criterion) {
    let dir = osq_model::testing::doc_params_dir();
    let texts: Vec<String> = osq_model::testing::SENTENCES
        .iter()
        .map(|s| s.to_string())
        .collect();
    bench_model(c, "embed-tiny", &dir, &texts);
}

fn minilm(c: &mut Criterion) {
    let dir = std::env::var_os("OSQ_BENCH_PARAMS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out/bench/params-w8a8"));
    if !dir.join("quant.json").is_file() {
        eprintln!(
            "embed-minilm: skipped ({} has no parameters; run tools/bench.sh)",
            dir.display()
        );
        return;
    }
    // one text of about 128 tokens
    let text =
        "a gripping , beautifully acted film that never lets go of its characters . ".repeat(8);
    bench_model(c, "embed-minilm", &dir, &[text]);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = tiny, minilm
}
criterion_main!(benches);
