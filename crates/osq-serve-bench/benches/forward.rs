//! Criterion: end-to-end forward, FP32 reference vs the integer executor (int8, int4).
//!
//! - Always: the tiny generated BERT of `osq_model::testing` (hidden 32, 2 layers), quantized
//!   with MinMax on a few sentences.
//! - When `models/all-MiniLM-L6-v2` and an int8 parameter directory exist: batch 1, seq 128,
//!   1 and 2 threads. The parameter directory is `$OSQ_BENCH_PARAMS`, else
//!   `out/bench/params-w8a8` (written by `tools/bench.sh`); int4 from `$OSQ_BENCH_PARAMS_INT4`,
//!   else `out/bench/params-w4a8`. Skipped with a message otherwise.
//!
//! `cargo bench --bench forward` (add `-- minilm` to run only the real model).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use osq_model::fp32::ThreadPool;
use osq_model::quant::integer::IntegerModel;
use osq_model::quant::{minmax, BitsConfig, QuantModel, QuantParams};
use osq_model::testing::{temp_dir, write_tiny_bert};
use osq_model::{BertWeights, Tokenizer};
use osq_serve_bench::engine::{Engine, EngineKind, Threads};
use osq_serve_bench::inputs::{make_batch, read_sentences, Fill};

const TINY_SENTENCES: &[&str] = &[
    "the cat sat on the mat.",
    "this movie is very good!",
    "i hate that bad film, and the dog was not great.",
    "they loved the movie, it was a great film and i love this",
    "is it good? not very.",
    "you and i were in the film",
];

fn tiny_engines() -> Vec<Engine> {
    let dir = temp_dir("bench-forward").expect("temp dir");
    write_tiny_bert(&dir, 11).expect("tiny model");
    let w = BertWeights::load_dir(&dir).expect("tiny weights");
    let tok = || {
        Tokenizer::from_file(
            &dir.join("tokenizer.json"),
            w.config.max_position_embeddings,
        )
        .expect("tiny tokenizer")
    };
    let calib = tok().encode_batch(TINY_SENTENCES, 64).expect("calib batch");
    let ranges = minmax::collect(&w, &[calib], &ThreadPool::single(), true).expect("ranges");
    let int = |bits: BitsConfig, kind: EngineKind| {
        let p = QuantParams::build(&w, &ranges, bits, "minmax", true).expect("params");
        let m = IntegerModel::new(QuantModel::new(p).expect("quant model")).expect("pack");
        Engine::from_integer(kind, m, tok())
    };
    vec![
        Engine::from_fp32(w.clone(), tok()),
        int(BitsConfig::W8A8, EngineKind::Int8),
        int(BitsConfig::W4A8, EngineKind::Int4),
    ]
}

fn bench_engines(
    c: &mut Criterion,
    group: &str,
    engines: &[Engine],
    sentences: &[String],
    shapes: &[(usize, usize)],
    threads: &[usize],
) {
    let mut g = c.benchmark_group(group);
    for &(b, s) in shapes {
        for &t in threads {
            let th = Threads::new(t).expect("thread pool");
            for e in engines {
                let batch =
                    make_batch(e.tokenizer(), sentences, b, s, Fill::Full, 0).expect("batch");
                g.bench_with_input(
                    BenchmarkId::new(e.name(), format!("b{b}-s{s}-t{t}")),
                    &batch,
                    |bench, batch| bench.iter(|| e.run(batch, &th).expect("forward")),
                );
            }
        }
    }
    g.finish();
}

fn tiny(c: &mut Criterion) {
    let engines = tiny_engines();
    let sentences: Vec<String> = TINY_SENTENCES.iter().map(|s| s.to_string()).collect();
    bench_engines(
        c,
        "forward-tiny",
        &engines,
        &sentences,
        &[(1, 32), (8, 64)],
        &[1],
    );
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn param_dir(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default));
    p.join("quant.json").is_file().then_some(p)
}

fn minilm(c: &mut Criterion) {
    let model = root().join("models/all-MiniLM-L6-v2");
    if !model.join("model.safetensors").is_file() {
        eprintln!(
            "forward-minilm: skipped ({} missing; run tools/fetch_model.sh)",
            model.display()
        );
        return;
    }
    let Some(p8) = param_dir("OSQ_BENCH_PARAMS", "out/bench/params-w8a8") else {
        eprintln!("forward-minilm: skipped (no int8 parameter directory: set OSQ_BENCH_PARAMS or run tools/bench.sh)");
        return;
    };
    let mut engines = vec![
        Engine::load_fp32(&model).expect("FP32 model"),
        Engine::load_int(EngineKind::Int8, &p8, Some(&model)).expect("int8 params"),
    ];
    if let Some(p4) = param_dir("OSQ_BENCH_PARAMS_INT4", "out/bench/params-w4a8") {
        match Engine::load_int(EngineKind::Int4, &p4, Some(&model)) {
            Ok(e) => engines.push(e),
            Err(e) => eprintln!("forward-minilm: int4 skipped: {e:#}"),
        }
    }
    let data = root().join("data/movie/eval.txt");
    let sentences = if Path::new(&data).is_file() {
        read_sentences(&data).expect("sentences")
    } else {
        eprintln!(
            "forward-minilm: {} missing, using built-in sentences",
            data.display()
        );
        TINY_SENTENCES.iter().map(|s| s.to_string()).collect()
    };
    bench_engines(
        c,
        "forward-minilm",
        &engines,
        &sentences,
        &[(1, 128)],
        &[1, 2],
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = tiny, minilm
}
criterion_main!(benches);
