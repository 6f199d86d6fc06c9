//! Every available ISA against the scalar reference, bit for bit, on random shapes (row, panel and K
//! tails, strided A and output), all B formats (s8, s4, u8 with a zero point in both layouts), all
//! output kinds, ReQuant ties and extreme codes, bounds and multipliers.
//!
//! `OSQ_EXPECT_ISAS=scalar,neon` (comma list) makes the test fail unless exactly those ISAs are
//! available, so scripts can prove which paths ran (e.g. under `QEMU_CPU=cortex-a72`).

use osq_kernels::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Clone, Copy, Debug)]
enum BKind {
    S8,
    S4,
    U8Nk,
    U8Kn,
}

struct Case {
    m: usize,
    k: usize,
    n: usize,
    lda: usize,
    ldc: usize,
    a: Vec<u8>,
    a_zero: u8,
    b: PackedB,
    bias: Option<Vec<i32>>,
    rq: Requant,
    scale: Vec<f32>,
    parallel: bool,
}

/// A codes: uniform, or saturated at 0/255, or a narrow band.
fn gen_a(r: &mut Rng, len: usize) -> Vec<u8> {
    match r.below(4) {
        0 => vec![if r.below(2) == 0 { 0 } else { 255 }; len],
        1 => (0..len).map(|_| [0u8, 255][r.below(2) as usize]).collect(),
        _ => (0..len).map(|_| r.next() as u8).collect(),
    }
}

fn gen_case(r: &mut Rng, m: usize, k: usize, n: usize) -> Case {
    let lda = k + if r.chance(300) {
        r.below(9) as usize
    } else {
        0
    };
    let ldc = n + if r.chance(300) {
        r.below(9) as usize
    } else {
        0
    };
    let a = gen_a(r, (m - 1) * lda + k);
    let kind = [BKind::S8, BKind::S4, BKind::U8Nk, BKind::U8Kn][r.below(4) as usize];
    let extreme = r.chance(150);
    let b = match kind {
        BKind::S8 | BKind::S4 => {
            let (lo, hi) = if matches!(kind, BKind::S4) {
                (-8, 7)
            } else {
                (-128, 127)
            };
            let w: Vec<i8> = (0..n * k)
                .map(|_| {
                    if extreme {
                        [lo, hi][r.below(2) as usize] as i8
                    } else {
                        r.range(lo, hi) as i8
                    }
                })
                .collect();
            let wv = MatRef::new(&w, n, k, k).unwrap();
            if matches!(kind, BKind::S4) {
                PackedB::pack_s4(wv).unwrap()
            } else {
                PackedB::pack_s8(wv).unwrap()
            }
        }
        BKind::U8Nk => {
            let bb = gen_a(r, n * k);
            PackedB::pack_u8_nk(MatRef::new(&bb, n, k, k).unwrap(), r.next() as u8).unwrap()
        }
        BKind::U8Kn => {
            let bb = gen_a(r, n * k);
            PackedB::pack_u8_kn(MatRef::new(&bb, k, n, n).unwrap(), r.next() as u8).unwrap()
        }
    };
    let bias = match r.below(4) {
        0 => None,
        1 => Some(
            (0..n)
                .map(|_| [i32::MIN, i32::MAX, 0, -1][r.below(4) as usize])
                .collect(),
        ),
        _ => Some(
            (0..n)
                .map(|_| r.range(-3_000_000, 3_000_000) as i32)
                .collect(),
        ),
    };
    let (m0, shift): (Vec<i32>, Vec<i32>) = match r.below(5) {
        // Ties: t·0.5 for odd t.
        0 => (vec![1 << 30; n], vec![31; n]),
        // Extreme multipliers and shifts.
        1 => (0..n)
            .map(|_| {
                (
                    [1 << 30, i32::MAX][r.below(2) as usize],
                    [1, 2, 31, 61, 62][r.below(5) as usize],
                )
            })
            .unzip(),
        _ => (0..n)
            .map(|_| {
                (
                    r.range(1 << 30, i32::MAX as i64) as i32,
                    r.range(1, 40) as i32,
                )
            })
            .unzip(),
    };
    let (z_out, qmin, qmax) = match r.below(8) {
        0 => (i32::MIN, 0, 255),
        1 => (r.next() as i32, i32::MIN, i32::MAX),
        2 => (r.range(-300, 300) as i32, -1000, 1000),
        3 => (i32::MAX, i32::MIN, i32::MAX),
        4 => (7, 3, 3),
        _ => (r.range(0, 255) as i32, 0, 255),
    };
    let rq = Requant::from_parts(&m0, &shift, z_out, qmin, qmax).unwrap();
    let scale = (0..n)
        .map(|_| match r.below(16) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => -1e-38,
            3 => 3.0e38,
            _ => (r.range(-1_000_000, 1_000_000) as f32) * 1e-6,
        })
        .collect();
    Case {
        m,
        k,
        n,
        lda,
        ldc,
        a,
        a_zero: r.next() as u8,
        b,
        bias,
        rq,
        scale,
        parallel: r.chance(200),
    }
}

/// Runs all four output kinds on one ISA; every output buffer starts as a sentinel pattern so
/// writes outside the `m × n` view (row padding) are caught too. F32 compared by bits.
fn run(c: &Case, isa: Isa) -> (Vec<u8>, Vec<i32>, Vec<i32>, Vec<u32>) {
    let opts = GemmOptions {
        isa: Some(isa),
        parallel: c.parallel,
    };
    let av = MatRef::new(&c.a, c.m, c.k, c.lda).unwrap();
    let ep = Epilogue {
        a_zero: c.a_zero,
        bias: c.bias.as_deref(),
    };
    let len = (c.m - 1) * c.ldc + c.n;
    let mut codes = vec![0xA5u8; len];
    let mut acc = vec![0x5A5A_5A5Ai32; len];
    let mut fixed = vec![0x5A5A_5A5Ai32; len];
    let mut fl = vec![f32::from_bits(0x7FC0_1234); len];
    let mm = |o| MatMut::new(o, c.m, c.n, c.ldc).unwrap();
    gemm(
        av,
        &c.b,
        &ep,
        Output::Codes {
            out: MatMut::new(&mut codes, c.m, c.n, c.ldc).unwrap(),
            requant: &c.rq,
        },
        &opts,
    )
    .unwrap();
    gemm(av, &c.b, &ep, Output::Acc { out: mm(&mut acc) }, &opts).unwrap();
    gemm(
        av,
        &c.b,
        &ep,
        Output::Fixed {
            out: mm(&mut fixed),
            requant: &c.rq,
        },
        &opts,
    )
    .unwrap();
    gemm(
        av,
        &c.b,
        &ep,
        Output::Float {
            out: MatMut::new(&mut fl, c.m, c.n, c.ldc).unwrap(),
            scale: &c.scale,
        },
        &opts,
    )
    .unwrap();
    (codes, acc, fixed, fl.iter().map(|v| v.to_bits()).collect())
}

fn check(c: &Case, isas: &[Isa], what: &str) {
    let want = run(c, Isa::Scalar);
    for &isa in isas {
        let got = run(c, isa);
        let ctx = format!(
            "{} {what}: m={} k={} n={} lda={} ldc={} fmt={:?} zb={} za={} z_out={} q=[{}, {}]",
            isa.name(),
            c.m,
            c.k,
            c.n,
            c.lda,
            c.ldc,
            c.b.format(),
            c.b.zero_point(),
            c.a_zero,
            c.rq.z_out(),
            c.rq.qmin(),
            c.rq.qmax()
        );
        assert_eq!(got.0, want.0, "u8 codes differ: {ctx}");
        assert_eq!(got.1, want.1, "i32 accumulators differ: {ctx}");
        assert_eq!(got.2, want.2, "i32 fixed point differs: {ctx}");
        assert_eq!(got.3, want.3, "f32 bits differ: {ctx}");
    }
}

fn simd_isas() -> Vec<Isa> {
    let avail = Isa::available();
    let names: Vec<&str> = avail.iter().map(|i| i.name()).collect();
    eprintln!("all_isas: ISAs available and compared to scalar: {names:?}");
    if let Ok(want) = std::env::var("OSQ_EXPECT_ISAS") {
        let mut want: Vec<&str> = want
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut have = names.clone();
        want.sort_unstable();
        have.sort_unstable();
        assert_eq!(
            have, want,
            "OSQ_EXPECT_ISAS does not match Isa::available()"
        );
    }
    avail.into_iter().filter(|&i| i != Isa::Scalar).collect()
}

#[test]
fn expected_isas_are_available() {
    let isas = simd_isas();
    #[cfg(target_arch = "aarch64")]
    assert!(isas.contains(&Isa::Neon), "NEON is aarch64 baseline");
    let _ = isas;
}

#[test]
fn random_shapes_match_scalar() {
    let isas = simd_isas();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..600 {
        let m = 1 + r.below(9) as usize;
        let n = 1 + r.below(40) as usize;
        let k = if i < 70 {
            i + 1
        } else {
            1 + r.below(70) as usize
        };
        let c = gen_case(&mut r, m, k, n);
        check(&c, &isas, &format!("case {i}"));
    }
}

#[test]
fn larger_shapes_match_scalar() {
    let isas = simd_isas();
    let mut r = Rng(0x2545_F491_4F6C_DD1D);
    for (i, &(m, k, n)) in [
        (13, 200, 50),
        (33, 129, 64),
        (8, 768, 48),
        (17, 1000, 17),
        (64, 64, 160),
    ]
    .iter()
    .enumerate()
    {
        for j in 0..4 {
            let mut c = gen_case(&mut r, m, k, n);
            c.parallel = j % 2 == 0;
            check(&c, &isas, &format!("large {i}.{j}"));
        }
    }
}

/// K = MAX_K with the largest products: the exact sums reach their extremes, on every format.
#[test]
fn extreme_sums_at_max_k() {
    let isas = simd_isas();
    let (m, n, k) = (5, 18, MAX_K);
    for (a_code, w_code, s4) in [
        (255u8, -128i8, false),
        (255, 127, false),
        (0, -128, false),
        (255, -8, true),
        (255, 7, true),
    ] {
        let a = vec![a_code; m * k];
        let w = vec![w_code; n * k];
        let wv = MatRef::new(&w, n, k, k).unwrap();
        let b = if s4 {
            PackedB::pack_s4(wv).unwrap()
        } else {
            PackedB::pack_s8(wv).unwrap()
        };
        let mut r = Rng(7);
        let mut c = gen_case(&mut r, m, k, n);
        c.a = a;
        c.lda = k;
        c.b = b;
        c.a_zero = 0;
        c.parallel = false;
        check(&c, &isas, &format!("max K a={a_code} w={w_code}"));
    }
}

/// The zero-point row sums (`vpsadbw` forms) equal the plain sum on every length around the
/// vector widths, with all-255 rows (the largest sums) and random codes.
#[test]
fn row_sums_equal_the_plain_sum() {
    let mut x = 7u64;
    for len in (0..200).chain([383, 384, 385, 4096, 32768]) {
        for fill in [None, Some(255u8), Some(0)] {
            let row: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    fill.unwrap_or((x >> 56) as u8)
                })
                .collect();
            let want: u32 = row.iter().map(|&v| v as u32).sum();
            for isa in Isa::available() {
                assert_eq!(
                    row_sum_u8(isa, &row),
                    want,
                    "{isa:?} len {len} fill {fill:?}"
                );
            }
        }
    }
}
