//! Compact GMAC/s table of the GEMM paths: every available ISA × s8/s4 × 1/2 threads over the
//! BERT-base and MiniLM projection shapes (M = 128, u8 output with requant by default).
//!
//! `cargo run --release -p osq-kernels --example gemm_gmacs [-- [--time SECS]
//! [--shapes base|minilm|attn|all] [--isa NAME] [--a-max CODE] [--out u8|i32|fixed|f32]]`
//! (`--a-max 63`: 6-bit activations, which let AVX2 take its `vpmaddubsw` path.)
//!
//! Each cell is the best of 5 timed batches of `--time / 5` seconds by wall time (the machine is
//! shared: best-of filters out interference from other jobs) and, in brackets, their median by the
//! busiest thread's on-CPU time (Linux schedstat); the paths of one shape run side by side.

use osq_kernels::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::time::{Duration, Instant};

const M: usize = 128;
const BASE: [(usize, usize); 4] = [(768, 768), (2304, 768), (3072, 768), (768, 3072)];
const MINILM: [(usize, usize); 4] = [(384, 384), (1152, 384), (1536, 384), (384, 1536)];
/// Per-head attention products of MiniLM (head dim 32, 128 tokens): Q·Kᵀ and P·V.
const ATTN: [(usize, usize); 2] = [(128, 32), (32, 128)];

struct Problem {
    a: Vec<u8>,
    b: PackedB,
    rq: Requant,
    bias: Vec<i32>,
    out: Vec<u8>,
    out32: Vec<i32>,
    outf: Vec<f32>,
    scale: Vec<f32>,
    kind: OutKind,
    n: usize,
    k: usize,
}

/// Which epilogue the timed calls use.
#[derive(Clone, Copy, PartialEq)]
enum OutKind {
    Codes,
    Acc,
    Fixed,
    Float,
}

fn problem(n: usize, k: usize, s4: bool, a_max: u8, kind: OutKind) -> Problem {
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ (n * 131 + k) as u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let a: Vec<u8> = (0..M * k)
        .map(|_| (rnd() % (a_max as u64 + 1)) as u8)
        .collect();
    let w: Vec<i8> = (0..n * k)
        .map(|_| {
            if s4 {
                (rnd() % 15) as i8 - 7
            } else {
                (rnd() % 255) as i8 as i16 as i8
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
        out32: vec![0i32; M * n],
        outf: vec![0f32; M * n],
        scale: vec![1e-3; n],
        kind,
        n,
        k,
    }
}

fn run(p: &mut Problem, isa: Isa, parallel: bool) {
    let (n, k) = (p.n, p.k);
    let out = match p.kind {
        OutKind::Codes => Output::Codes {
            out: MatMut::new(&mut p.out, M, n, n).unwrap(),
            requant: &p.rq,
        },
        OutKind::Acc => Output::Acc {
            out: MatMut::new(&mut p.out32, M, n, n).unwrap(),
        },
        OutKind::Fixed => Output::Fixed {
            out: MatMut::new(&mut p.out32, M, n, n).unwrap(),
            requant: &p.rq,
        },
        OutKind::Float => Output::Float {
            out: MatMut::new(&mut p.outf, M, n, n).unwrap(),
            scale: &p.scale,
        },
    };
    gemm(
        MatRef::new(&p.a, M, k, k).unwrap(),
        &p.b,
        &Epilogue {
            a_zero: 3,
            bias: Some(&p.bias),
        },
        out,
        &GemmOptions {
            isa: Some(isa),
            parallel,
        },
    )
    .unwrap();
}

/// Nanoseconds the calling thread has run on a CPU (Linux schedstat; 0 elsewhere).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of every thread that works: the caller, or each thread of the pool.
fn cpu_times(pool: Option<&ThreadPool>) -> Vec<u64> {
    match pool {
        Some(p) => p.broadcast(|_| thread_cpu_ns()),
        None => vec![thread_cpu_ns()],
    }
}

/// GMAC/s over 5 batches of `secs / 5` seconds: `(best by wall time, median by CPU time)`. The
/// CPU-time figure divides by the busiest thread's on-CPU time, so time slices lost to other jobs
/// on a shared machine do not count (cache interference still does).
fn measure(p: &mut Problem, isa: Isa, pool: Option<&ThreadPool>, secs: f64) -> (f64, f64) {
    let macs = (M * p.n * p.k) as f64;
    // The timed loop runs inside the pool (as criterion's `pool.install(|| b.iter(..))`), so each
    // call forks from a worker instead of being injected from outside.
    let timed = |p: &mut Problem, batch: Duration| {
        let go = |p: &mut Problem| {
            let t0 = Instant::now();
            let mut iters = 0u64;
            while t0.elapsed() < batch {
                run(p, isa, pool.is_some());
                iters += 1;
            }
            (iters, t0.elapsed().as_secs_f64())
        };
        match pool {
            Some(pl) => pl.install(|| go(p)),
            None => go(p),
        }
    };
    timed(p, Duration::ZERO);
    let batch = Duration::from_secs_f64(secs / 5.0);
    let mut best_wall = 0f64;
    let mut by_cpu = Vec::new();
    for _ in 0..5 {
        let c0 = cpu_times(pool);
        let (iters, wall) = timed(p, batch);
        let c1 = cpu_times(pool);
        let cpu = c1.iter().zip(&c0).map(|(b, a)| b - a).max().unwrap_or(0) as f64 * 1e-9;
        let work = macs * iters as f64 / 1e9;
        best_wall = best_wall.max(work / wall);
        if cpu > 0.0 {
            by_cpu.push(work / cpu);
        }
    }
    by_cpu.sort_by(f64::total_cmp);
    (
        best_wall,
        by_cpu.get(by_cpu.len() / 2).copied().unwrap_or(0.0),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: f64 = opt("--time").map_or(0.5, |s| s.parse().expect("--time SECS"));
    let shapes: Vec<(usize, usize)> = match opt("--shapes").as_deref() {
        Some("base") => BASE.to_vec(),
        Some("minilm") => MINILM.to_vec(),
        Some("attn") => ATTN.to_vec(),
        _ => BASE.iter().chain(&MINILM).copied().collect(),
    };
    let isas: Vec<Isa> = match opt("--isa") {
        Some(s) => vec![Isa::parse(&s).expect("--isa").require().expect("--isa")],
        None => Isa::available()
            .into_iter()
            .filter(|&i| i != Isa::Scalar)
            .collect(),
    };
    let a_max: u8 = opt("--a-max").map_or(255, |s| s.parse().expect("--a-max 0..255"));
    let (kind, kname) = match opt("--out").as_deref() {
        None | Some("u8") => (OutKind::Codes, "u8"),
        Some("i32") => (OutKind::Acc, "i32"),
        Some("fixed") => (OutKind::Fixed, "i32 fixed"),
        Some("f32") => (OutKind::Float, "f32"),
        Some(o) => panic!("--out {o}: expected u8, i32, fixed or f32"),
    };
    let pool = ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    println!(
        "GMAC/s, M = {M}, {kname} output, A codes 0..={a_max}, 5 batches of {:.2} s; cells: \
         1 thread / 2 threads, best by wall time [median by busiest thread's CPU time]",
        secs / 5.0
    );
    print!("{:<10}", "N x K");
    for isa in &isas {
        for f in ["s8", "s4"] {
            print!(" | {:<27}", format!("{} {f}", isa.name()));
        }
    }
    println!();
    for &(n, k) in &shapes {
        print!("{:<10}", format!("{n}x{k}"));
        let mut probs = [
            problem(n, k, false, a_max, kind),
            problem(n, k, true, a_max, kind),
        ];
        for &isa in &isas {
            for p in probs.iter_mut() {
                let one = measure(p, isa, None, secs);
                let two = measure(p, isa, Some(&pool), secs);
                let cell = format!("{:.0}/{:.0} [{:.0}/{:.0}]", one.0, two.0, one.1, two.1);
                print!(" | {cell:<27}");
            }
        }
        println!();
    }
    if opt("--isa").is_none() {
        let mut p = problem(384, 384, false, a_max, kind);
        let g = measure(&mut p, Isa::Scalar, None, secs.min(1.0));
        println!("scalar s8 384x384, 1 thread: {:.2} [{:.2}]", g.0, g.1);
    }
}
