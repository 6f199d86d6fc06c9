//! GEMM throughput per path: every available ISA × s8/s4 × 1 thread (`parallel: false`) and
//! 2 threads (`parallel: true` in a local 2-thread rayon pool), over the BERT-base and MiniLM
//! projection shapes at M = 128 with u8 output. `Throughput::Elements(M·N·K)`: criterion's
//! elements/s are MAC/s. The scalar reference runs on one small shape only.
//!
//! `cargo bench -p osq-kernels --bench gemm` (a few minutes); filter with e.g. `-- avx512vnni/s4`.
//! For a compact table instead: `cargo run --release -p osq-kernels --example gemm_gmacs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use osq_kernels::*;
use rayon::ThreadPoolBuilder;
use std::time::Duration;

const M: usize = 128;
/// (N, K): BERT-base QKV-sized / fused QKV / FFN up / FFN down, then MiniLM-L6 (hidden 384).
const SHAPES: [(usize, usize); 8] = [
    (768, 768),
    (2304, 768),
    (3072, 768),
    (768, 3072),
    (384, 384),
    (1152, 384),
    (1536, 384),
    (384, 1536),
];

struct Problem {
    a: Vec<u8>,
    b: PackedB,
    rq: Requant,
    bias: Vec<i32>,
    out: Vec<u8>,
    n: usize,
    k: usize,
}

fn problem(n: usize, k: usize, s4: bool) -> Problem {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (n * 31 + k) as u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let a: Vec<u8> = (0..M * k).map(|_| rnd() as u8).collect();
    let w: Vec<i8> = (0..n * k)
        .map(|_| {
            if s4 {
                (rnd() % 15) as i8 - 7
            } else {
                (rnd() % 255) as i8
            }
        })
        .collect();
    let wv = MatRef::new(&w, n, k, k).unwrap();
    let b = if s4 {
        PackedB::pack_s4(wv).unwrap()
    } else {
        PackedB::pack_s8(wv).unwrap()
    };
    Problem {
        a,
        b,
        rq: Requant::per_tensor(n, 1.0 / (k as f64 * 2000.0), 128, 0, 255).unwrap(),
        bias: (0..n).map(|i| i as i32 * 7 - 1000).collect(),
        out: vec![0u8; M * n],
        n,
        k,
    }
}

fn run(p: &mut Problem, isa: Isa, parallel: bool) {
    let (n, k) = (p.n, p.k);
    gemm(
        MatRef::new(&p.a, M, k, k).unwrap(),
        &p.b,
        &Epilogue {
            a_zero: 3,
            bias: Some(&p.bias),
        },
        Output::Codes {
            out: MatMut::new(&mut p.out, M, n, n).unwrap(),
            requant: &p.rq,
        },
        &GemmOptions {
            isa: Some(isa),
            parallel,
        },
    )
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let pool = ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let isas: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect();
    for (i, &(n, k)) in SHAPES.iter().enumerate() {
        let mut g = c.benchmark_group(format!("gemm_m{M}_n{n}_k{k}"));
        g.throughput(Throughput::Elements((M * n * k) as u64));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for s4 in [false, true] {
            let fmt = if s4 { "s4" } else { "s8" };
            let mut p = problem(n, k, s4);
            if i == 4 && !s4 {
                g.bench_function(BenchmarkId::new("scalar/s8", "1t"), |bch| {
                    bch.iter(|| run(&mut p, Isa::Scalar, false))
                });
            }
            for &isa in &isas {
                let id = format!("{}/{fmt}", isa.name());
                g.bench_function(BenchmarkId::new(&id, "1t"), |bch| {
                    bch.iter(|| run(&mut p, isa, false))
                });
                g.bench_function(BenchmarkId::new(&id, "2t"), |bch| {
                    pool.install(|| bch.iter(|| run(&mut p, isa, true)))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
