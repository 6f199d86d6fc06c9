//! Nanoseconds per element of each `rowops` routine on every available path, on rows shaped like
//! all-MiniLM-L6-v2's (softmax 128, LayerNorm/residual 384, GELU 1536) and the K/V packers, by
//! on-CPU time of the thread (Linux schedstat), so a loaded machine still gives usable figures.
//! `cargo run --release -p osq-kernels --example rowops_ns`

use osq_kernels::rowops::{CodeRequant, GeluLut, LayerNorm, Residual, Softmax};
use osq_kernels::{Isa, MatRef, PackedB};
use std::hint::black_box;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Median over 7 batches of CPU ns per element.
fn time(elems: usize, mut f: impl FnMut()) -> f64 {
    // WALL=1: wall time (a quiet machine; the thread CPU clock of schedstat ticks too coarsely to
    // tell changes of a few per cent apart).
    let wall = std::env::var_os("WALL").is_some();
    let mut v = Vec::new();
    for _ in 0..7 {
        let (c0, t0) = (thread_cpu_ns(), std::time::Instant::now());
        let mut reps = 0;
        // Batches of 50 calls between reads of the (slow) schedstat file.
        loop {
            let spent = if wall {
                t0.elapsed().as_nanos() as u64
            } else {
                thread_cpu_ns() - c0
            };
            if spent >= 20_000_000 {
                v.push(spent as f64 / (reps * elems) as f64);
                break;
            }
            for _ in 0..50 {
                f();
            }
            reps += 50;
        }
    }
    v.sort_by(f64::total_cmp);
    v[3]
}

fn main() {
    let mut s = 7u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 16
    };
    let mut hi = [0i64; 1024];
    let mut lo = [0i64; 1024];
    for j in 0..1024 {
        hi[j] = ((-(j as f64) / 1024.0).exp2() * 1073741824.0).round() as i64;
        lo[j] = ((-(j as f64) / 1048576.0).exp2() * 1073741824.0).round() as i64;
    }
    let sm = Softmax::new(
        (2_097_152_000, 21),
        (1549082005, 30),
        16_711_680,
        0,
        255,
        &hi,
        &lo,
    )
    .unwrap();
    // SOFTMAX_TABLE=0: time the two-level path instead of the direct e(d) table.
    let sm = if std::env::var("SOFTMAX_TABLE").as_deref() == Ok("0") {
        sm.without_table()
    } else {
        sm
    };
    // SM_SPREAD: range of the synthetic scores (40000: d spans the whole direct table of
    // d_max ≈ 22,600 entries, 90 KiB; 2000: an L1-resident part of it).
    let sm_spread: u64 = std::env::var("SM_SPREAD")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40000);
    let scores: Vec<i32> = (0..128 * 128)
        .map(|_| (next() % sm_spread) as i32 - (sm_spread / 2) as i32)
        .collect();
    let ln = LayerNorm::new(100, 1 << 36, &vec![1i64 << 40; 384], None, 0, 255).unwrap();
    let r: Vec<i32> = (0..128 * 384)
        .map(|_| (next() % (1 << 24)) as i32 - (1 << 23))
        .collect();
    let res = Residual::new(
        &vec![1 << 30; 384],
        &vec![20; 384],
        &vec![false; 384],
        &vec![1 << 20; 384],
    )
    .unwrap();
    let x: Vec<u8> = (0..128 * 384).map(|_| next() as u8).collect();
    let cr = CodeRequant::new(&vec![1 << 20; 384], 16, 10, 0, 255).unwrap();
    let entries: Vec<u32> = (0..8192).map(|_| GeluLut::entry(1000, 3, 4)).collect();
    let gl = GeluLut::new(entries, -(1 << 23), 11, &vec![1000; 1536]).unwrap();
    let spread: i64 = std::env::var("SPREAD")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 23);
    let hb: Vec<i32> = (0..128 * 1536)
        .map(|_| ((next() as i64 % spread) - spread / 2) as i32)
        .collect();
    for isa in Isa::available() {
        let (mut e, mut o) = (vec![0u32; 128], vec![0u8; 128 * 384]);
        let t_sm = time(128 * 128, || {
            for (srow, orow) in scores.chunks_exact(128).zip(o.chunks_exact_mut(128)) {
                sm.row(isa, srow, &mut e, orow);
            }
        });
        let t_ln = time(128 * 384, || {
            for (rr, orow) in r.chunks_exact(384).zip(o.chunks_exact_mut(384)) {
                black_box(ln.row(isa, rr, orow));
            }
        });
        let mut ri = vec![0i32; 384];
        let t_res = time(128 * 384, || {
            for (rr, xr) in r.chunks_exact(384).zip(x.chunks_exact(384)) {
                res.row(isa, rr, xr, 7, &mut ri);
                black_box(&ri);
            }
        });
        let t_cr = time(128 * 384, || {
            for (rr, orow) in r.chunks_exact(384).zip(o.chunks_exact_mut(384)) {
                cr.row(isa, rr, orow);
            }
        });
        let mut og = vec![0u8; 1536];
        let t_g = time(128 * 1536, || {
            for hr in hb.chunks_exact(1536) {
                gl.row(isa, hr, &mut og, &|_| 0);
                black_box(&og);
            }
        });
        println!(
            "{:<12} ns/elem: softmax {t_sm:.3}  LN {t_ln:.3}  residual {t_res:.3}  codes {t_cr:.3}  GELU {t_g:.3}",
            isa.name()
        );
    }
    let m = MatRef::new(&x, 128, 32, 384).unwrap();
    let t_k = time(4096, || {
        black_box(PackedB::pack_u8_nk(m, 3).unwrap());
    });
    let t_v = time(4096, || {
        black_box(PackedB::pack_u8_kn(m, 3).unwrap());
    });
    println!("pack ns/elem (128x32 head): K {t_k:.3}  V {t_v:.3}");
}
