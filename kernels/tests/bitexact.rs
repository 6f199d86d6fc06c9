//! Every SIMD path this CPU has (`Isa::available()`) against `Isa::Scalar`, bit for bit, on full
//! output buffers (row gaps of a strided output included: they must stay untouched). Runs
//! unchanged on x86-64 (AVX2, AVX-512-VNNI) and aarch64 (NEON, dotprod; CI under qemu). The
//! largest shapes run on x86-64 only, or everywhere with `OSQ_BIG_TESTS=1`.

use osq_kernels::requant::{requant_to_code, requant_to_i32};
use osq_kernels::*;
use proptest::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::OnceLock;

/// xorshift64: deterministic data from a seed.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// How B is given and packed.
#[derive(Clone, Debug)]
enum BSrc {
    /// `[N, K]` weights, `pack_s8`.
    S8(Vec<i8>),
    /// `[N, K]` weights −8..7, `pack_s4`.
    S4(Vec<i8>),
    /// `[N, K]` u8 codes with a zero point, `pack_u8_nk`.
    U8Nk(Vec<u8>, u8),
    /// `[K, N]` u8 codes with a zero point, `pack_u8_kn`.
    U8Kn(Vec<u8>, u8),
}

#[derive(Clone, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldc: usize,
    /// `(m − 1)·lda + k` bytes: the last row ends at the end of the buffer.
    a: Vec<u8>,
    b: BSrc,
    za: u8,
    bias: Option<Vec<i32>>,
    m0: Vec<i32>,
    shift: Vec<i32>,
    z_out: i32,
    qmin: i32,
    qmax: i32,
    scale: Vec<f32>,
    /// `t` from the scalar path, dense `[m, n]`.
    t: Vec<i32>,
}

/// Above this many MACs the scalar reference runs once (i32 output) and the other three outputs
/// are derived from its `t` with the scalar epilogue functions (`requant_to_code`,
/// `requant_to_i32`, `as f32 ·`), which are what `Isa::Scalar` runs: keeps debug tests fast.
const FULL_SCALAR_MACS: usize = 1 << 21;

/// The four outputs of one case, whole buffers (`(m − 1)·ldc + n` plus a tail of sentinel).
#[derive(Debug, PartialEq)]
struct Outputs {
    codes: Vec<u8>,
    acc: Vec<i32>,
    fixed: Vec<i32>,
    float_bits: Vec<u32>,
}

fn pack(b: &BSrc, n: usize, k: usize) -> PackedB {
    match b {
        BSrc::S8(w) => PackedB::pack_s8(MatRef::new(w, n, k, k).unwrap()).unwrap(),
        BSrc::S4(w) => PackedB::pack_s4(MatRef::new(w, n, k, k).unwrap()).unwrap(),
        BSrc::U8Nk(v, z) => PackedB::pack_u8_nk(MatRef::new(v, n, k, k).unwrap(), *z).unwrap(),
        BSrc::U8Kn(v, z) => PackedB::pack_u8_kn(MatRef::new(v, k, n, n).unwrap(), *z).unwrap(),
    }
}

/// A local rayon pool of 2, 3 or 4 threads.
fn pool(threads: usize) -> &'static ThreadPool {
    static POOLS: OnceLock<Vec<ThreadPool>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        (2..=4)
            .map(|t| ThreadPoolBuilder::new().num_threads(t).build().unwrap())
            .collect()
    });
    &pools[threads - 2]
}

impl Case {
    fn out_len(&self) -> usize {
        (self.m - 1) * self.ldc + self.n + 3
    }

    /// `t` from the scalar path, after any change of A, B, zero points or bias.
    fn compute_t(&mut self) {
        let pb = pack(&self.b, self.n, self.k);
        let mut t = vec![0i32; self.m * self.n];
        gemm(
            MatRef::new(&self.a, self.m, self.k, self.lda).unwrap(),
            &pb,
            &Epilogue {
                a_zero: self.za,
                bias: self.bias.as_deref(),
            },
            Output::Acc {
                out: MatMut::new(&mut t, self.m, self.n, self.n).unwrap(),
            },
            &GemmOptions {
                isa: Some(Isa::Scalar),
                parallel: false,
            },
        )
        .unwrap();
        self.t = t;
    }

    fn requant(&self) -> Requant {
        Requant::from_parts(&self.m0, &self.shift, self.z_out, self.qmin, self.qmax).unwrap()
    }

    /// Runs all four output kinds with `isa`; `parallel` → inside `pool` with `parallel: true`.
    fn run(&self, pb: &PackedB, isa: Isa, pool: Option<&ThreadPool>) -> Outputs {
        let go = || {
            let opts = GemmOptions {
                isa: Some(isa),
                parallel: pool.is_some(),
            };
            let a = MatRef::new(&self.a, self.m, self.k, self.lda).unwrap();
            let ep = Epilogue {
                a_zero: self.za,
                bias: self.bias.as_deref(),
            };
            let (m, n, ldc, len) = (self.m, self.n, self.ldc, self.out_len());
            let rq = self.requant();
            let mut codes = vec![0xA5u8; len];
            gemm(
                a,
                pb,
                &ep,
                Output::Codes {
                    out: MatMut::new(&mut codes, m, n, ldc).unwrap(),
                    requant: &rq,
                },
                &opts,
            )
            .unwrap();
            let mut acc = vec![0x5A5A_5A5Ai32; len];
            gemm(
                a,
                pb,
                &ep,
                Output::Acc {
                    out: MatMut::new(&mut acc, m, n, ldc).unwrap(),
                },
                &opts,
            )
            .unwrap();
            let mut fixed = vec![-0x3C3C_3C3Ci32; len];
            gemm(
                a,
                pb,
                &ep,
                Output::Fixed {
                    out: MatMut::new(&mut fixed, m, n, ldc).unwrap(),
                    requant: &rq,
                },
                &opts,
            )
            .unwrap();
            let mut float = vec![f32::from_bits(0x7FC0_1234); len];
            gemm(
                a,
                pb,
                &ep,
                Output::Float {
                    out: MatMut::new(&mut float, m, n, ldc).unwrap(),
                    scale: &self.scale,
                },
                &opts,
            )
            .unwrap();
            Outputs {
                codes,
                acc,
                fixed,
                float_bits: float.iter().map(|v| v.to_bits()).collect(),
            }
        };
        match pool {
            Some(p) => p.install(go),
            None => go(),
        }
    }

    /// The scalar reference outputs.
    fn want(&self, pb: &PackedB) -> Outputs {
        if self.m * self.n * self.k <= FULL_SCALAR_MACS {
            let w = self.run(pb, Isa::Scalar, None);
            for i in 0..self.m {
                assert_eq!(
                    w.acc[i * self.ldc..i * self.ldc + self.n],
                    self.t[i * self.n..(i + 1) * self.n]
                );
            }
            return w;
        }
        let len = self.out_len();
        let mut w = Outputs {
            codes: vec![0xA5u8; len],
            acc: vec![0x5A5A_5A5Ai32; len],
            fixed: vec![-0x3C3C_3C3Ci32; len],
            float_bits: vec![0x7FC0_1234; len],
        };
        for i in 0..self.m {
            for j in 0..self.n {
                let (t, o) = (self.t[i * self.n + j], i * self.ldc + j);
                let (m0, sh) = (self.m0[j], self.shift[j]);
                w.acc[o] = t;
                w.codes[o] = requant_to_code(t, m0, sh, self.z_out, self.qmin, self.qmax) as u8;
                w.fixed[o] = requant_to_i32(t, m0, sh);
                w.float_bits[o] = (t as f32 * self.scale[j]).to_bits();
            }
        }
        w
    }

    /// Every available ISA, on one thread and in each local pool of `threads` threads (with
    /// `parallel: true`), against the scalar reference.
    fn check(&self, threads: &[usize]) {
        let pb = pack(&self.b, self.n, self.k);
        let want = self.want(&pb);
        for isa in Isa::available() {
            if isa == Isa::Scalar {
                continue;
            }
            let got = self.run(&pb, isa, None);
            self.compare(isa, "1 thread", &want, &got);
            for &t in threads {
                let got = self.run(&pb, isa, Some(pool(t)));
                self.compare(isa, &format!("{t} threads"), &want, &got);
            }
        }
    }

    fn compare(&self, isa: Isa, what: &str, want: &Outputs, got: &Outputs) {
        let ctx = || {
            format!(
                "{} {what}: m={} n={} k={} lda={} ldc={} b={} za={} z_out={} q=[{}, {}]",
                isa.name(),
                self.m,
                self.n,
                self.k,
                self.lda,
                self.ldc,
                match &self.b {
                    BSrc::S8(_) => "s8".to_string(),
                    BSrc::S4(_) => "s4".to_string(),
                    BSrc::U8Nk(_, z) => format!("u8nk(z={z})"),
                    BSrc::U8Kn(_, z) => format!("u8kn(z={z})"),
                },
                self.za,
                self.z_out,
                self.qmin,
                self.qmax
            )
        };
        let first = |w: &[u32], g: &[u32]| {
            w.iter()
                .zip(g)
                .position(|(a, b)| a != b)
                .map(|i| (i / self.ldc, i % self.ldc, w[i], g[i]))
        };
        if want.acc != got.acc {
            let w: Vec<u32> = want.acc.iter().map(|&v| v as u32).collect();
            let g: Vec<u32> = got.acc.iter().map(|&v| v as u32).collect();
            panic!("i32 output differs at {:?}: {}", first(&w, &g), ctx());
        }
        if want.codes != got.codes {
            let w: Vec<u32> = want.codes.iter().map(|&v| v as u32).collect();
            let g: Vec<u32> = got.codes.iter().map(|&v| v as u32).collect();
            panic!("u8 output differs at {:?}: {}", first(&w, &g), ctx());
        }
        if want.fixed != got.fixed {
            let w: Vec<u32> = want.fixed.iter().map(|&v| v as u32).collect();
            let g: Vec<u32> = got.fixed.iter().map(|&v| v as u32).collect();
            panic!("i32 fixed output differs at {:?}: {}", first(&w, &g), ctx());
        }
        if want.float_bits != got.float_bits {
            panic!(
                "f32 output differs at {:?}: {}",
                first(&want.float_bits, &got.float_bits),
                ctx()
            );
        }
    }
}

/// Which B operand a generated case uses.
#[derive(Clone, Copy, Debug)]
enum BKind {
    S8,
    S4,
    U8Nk,
    U8Kn,
}

/// Fill patterns for A and B.
#[derive(Clone, Copy, Debug)]
enum Fill {
    Random,
    /// Every code equal to the value.
    Const(i32),
    /// Random codes from the two extremes of the range.
    Extremes,
}

struct Builder {
    m: usize,
    n: usize,
    k: usize,
    lda_pad: usize,
    ldc_pad: usize,
    bkind: BKind,
    /// Largest A code (random A is drawn from `0..=a_max`).
    a_max: u8,
    a_fill: Fill,
    b_fill: Fill,
    za: u8,
    zb: u8,
    bias: bool,
    seed: u64,
}

impl Builder {
    fn new(m: usize, n: usize, k: usize, bkind: BKind, seed: u64) -> Self {
        Builder {
            m,
            n,
            k,
            lda_pad: 0,
            ldc_pad: 0,
            bkind,
            a_max: 255,
            a_fill: Fill::Random,
            b_fill: Fill::Random,
            za: 0,
            zb: 128,
            bias: true,
            seed,
        }
    }

    fn build(&self) -> Case {
        let mut r = Rng::new(self.seed);
        let (m, n, k) = (self.m, self.n, self.k);
        let lda = k + self.lda_pad;
        let ldc = n + self.ldc_pad;
        let alen = (m - 1) * lda + k;
        let a: Vec<u8> = (0..alen)
            .map(|i| {
                if i % lda >= k {
                    // Row gap: never part of the product.
                    return 0xEE;
                }
                match self.a_fill {
                    Fill::Random => r.range(0, self.a_max as i64) as u8,
                    Fill::Const(v) => v as u8,
                    Fill::Extremes => {
                        if r.next() & 1 == 0 {
                            0
                        } else {
                            self.a_max
                        }
                    }
                }
            })
            .collect();
        let (lo, hi) = match self.bkind {
            BKind::S8 => (-128, 127),
            BKind::S4 => (-8, 7),
            BKind::U8Nk | BKind::U8Kn => (0, 255),
        };
        let code = |r: &mut Rng| match self.b_fill {
            Fill::Random => r.range(lo, hi),
            Fill::Const(v) => v as i64,
            Fill::Extremes => {
                if r.next() & 1 == 0 {
                    lo
                } else {
                    hi
                }
            }
        };
        let codes: Vec<i64> = (0..n * k).map(|_| code(&mut r)).collect();
        let b = match self.bkind {
            BKind::S8 => BSrc::S8(codes.iter().map(|&v| v as i8).collect()),
            BKind::S4 => BSrc::S4(codes.iter().map(|&v| v as i8).collect()),
            BKind::U8Nk => BSrc::U8Nk(codes.iter().map(|&v| v as u8).collect(), self.zb),
            // codes is [N, K]; the [K, N] source is its transpose.
            BKind::U8Kn => BSrc::U8Kn(
                (0..k * n)
                    .map(|i| codes[(i % n) * k + i / n] as u8)
                    .collect(),
                self.zb,
            ),
        };
        let bias = self
            .bias
            .then(|| (0..n).map(|_| r.range(-300_000, 300_000) as i32).collect());
        let scale = (0..n)
            .map(|j| match j % 7 {
                0 => 0.0,
                1 => -1.5e-3,
                _ => (r.range(-10_000, 10_000) as f32) * 3.1e-7,
            })
            .collect();
        let mut case = Case {
            m,
            n,
            k,
            lda,
            ldc,
            a,
            b,
            za: self.za,
            bias,
            m0: vec![1 << 30; n],
            shift: vec![31; n],
            z_out: 0,
            qmin: 0,
            qmax: 255,
            scale,
            t: vec![],
        };
        // Requant sized to the actual accumulators so the codes spread over the range with some
        // clamping on both sides.
        case.compute_t();
        let tmax = case.t.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as f64 + 1.0;
        let e = tmax.log2().ceil() as i64 + 24;
        case.m0 = (0..n)
            .map(|_| r.range(1 << 30, i32::MAX as i64) as i32)
            .collect();
        case.shift = (0..n)
            .map(|_| r.range(e - 3, e + 2).clamp(1, 62) as i32)
            .collect();
        case.z_out = r.range(0, 255) as i32;
        case
    }
}

const KINDS: [BKind; 4] = [BKind::S8, BKind::S4, BKind::U8Nk, BKind::U8Kn];

fn big_tests() -> bool {
    cfg!(target_arch = "x86_64") || std::env::var_os("OSQ_BIG_TESTS").is_some()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    /// Small random shapes: every tail of rows, panels and K, strides, every B source, every
    /// output kind.
    #[test]
    fn random_small_shapes(m in 1usize..28, n in 1usize..70, k in 1usize..300, lda_pad in 0usize..6,
                           ldc_pad in 0usize..6, kind in 0usize..4, za in 0u8..=255, zb in 0u8..=255,
                           a_max in prop_oneof![Just(255u8), Just(129), Just(130), Just(127), Just(64), Just(65), Just(15), 0u8..=255],
                           bias in any::<bool>(), seed in any::<u64>()) {
        let mut b = Builder::new(m, n, k, KINDS[kind], seed);
        b.lda_pad = lda_pad;
        b.ldc_pad = ldc_pad;
        b.za = za;
        b.zb = zb;
        b.a_max = a_max;
        b.bias = bias;
        b.build().check(&[]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Longer K (up to 3100, never a multiple of 64 by construction of the offsets).
    #[test]
    fn random_long_k(m in 1usize..19, n in 1usize..40, kb in 0usize..48, koff in 1usize..64,
                     kind in 0usize..4, za in 0u8..=255, seed in any::<u64>()) {
        let mut b = Builder::new(m, n, kb * 64 + koff, KINDS[kind], seed);
        b.lda_pad = seed as usize % 9;
        b.ldc_pad = (seed >> 8) as usize % 5;
        b.za = za;
        b.build().check(&[]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    /// One of M, N, K drawn up to 3100 (the others small enough to keep the case cheap).
    #[test]
    fn random_one_big_dim(which in 0usize..3, big in 1usize..3100, s1 in 1usize..24, s2 in 1usize..40,
                          kind in 0usize..4, za in 0u8..=255, seed in any::<u64>()) {
        let big = if big_tests() { big } else { big.min(700) };
        let (m, n, k) = match which {
            0 => (big, s2, s1 * 3),
            1 => (s1, big, s2),
            _ => (s1, s2, big),
        };
        let mut b = Builder::new(m, n, k, KINDS[kind], seed);
        b.lda_pad = seed as usize % 7;
        b.ldc_pad = (seed >> 4) as usize % 4;
        b.za = za;
        b.build().check(&[]);
    }
}

/// K not a multiple of 4/8/16/64 (and exactly those), every row tail, one or more panels.
#[test]
fn k_and_row_tails() {
    let mut seed = 1;
    for &k in &[
        1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129,
    ] {
        for &(m, n) in &[(1, 1), (9, 16), (17, 33), (8, 32), (7, 48)] {
            for kind in KINDS {
                let mut b = Builder::new(m, n, k, kind, seed);
                b.lda_pad = seed as usize % 3;
                b.ldc_pad = seed as usize % 2;
                b.za = (seed * 37 % 256) as u8;
                b.build().check(&[]);
                seed += 1;
            }
        }
    }
}

/// Extreme codes: A all 0 / all 255 / 0-or-255, B all −128 / 127 / −127 / extremes, s4 −8 / 7.
#[test]
fn extreme_codes() {
    let a_fills = [
        Fill::Const(0),
        Fill::Const(255),
        Fill::Extremes,
        Fill::Random,
    ];
    let s8_fills = [
        Fill::Const(-128),
        Fill::Const(127),
        Fill::Const(-127),
        Fill::Extremes,
    ];
    let s4_fills = [Fill::Const(-8), Fill::Const(7), Fill::Extremes];
    let u8_fills = [Fill::Const(0), Fill::Const(255), Fill::Extremes];
    let mut seed = 100;
    let mid_k = if big_tests() { 1029 } else { 261 };
    for &(m, n, k) in &[(11, 19, 67), (9, 33, mid_k), (3, 16, 8)] {
        for af in a_fills {
            for (kind, fills) in [
                (BKind::S8, &s8_fills[..]),
                (BKind::S4, &s4_fills[..]),
                (BKind::U8Nk, &u8_fills[..]),
                (BKind::U8Kn, &u8_fills[..]),
            ] {
                for &bf in fills {
                    for za in [0u8, 255] {
                        let mut b = Builder::new(m, n, k, kind, seed);
                        b.a_fill = af;
                        b.b_fill = bf;
                        b.za = za;
                        b.zb = if za == 0 { 255 } else { 0 };
                        b.ldc_pad = 1;
                        b.build().check(&[]);
                        seed += 1;
                    }
                }
            }
        }
    }
}

/// The largest K the API accepts with the largest products: the sums sit just inside i32
/// (|255·128·32768| < 2^31), and for s4 the kernels' 16·w accumulators as well.
#[test]
fn max_k_extremes() {
    if !big_tests() {
        return;
    }
    let k = MAX_K;
    for (kind, bf) in [
        (BKind::S8, Fill::Const(-128)),
        (BKind::S8, Fill::Const(127)),
        (BKind::S4, Fill::Const(-8)),
        (BKind::S4, Fill::Const(7)),
    ] {
        let mut b = Builder::new(3, 17, k, kind, 7);
        b.a_fill = Fill::Const(255);
        b.b_fill = bf;
        b.bias = false;
        b.build().check(&[]);
    }
    let mut b = Builder::new(2, 5, k - 3, BKind::S4, 9);
    b.a_fill = Fill::Extremes;
    b.b_fill = Fill::Extremes;
    b.build().check(&[]);
}

/// AVX2 uses `vpmaddubsw` only when `a_max·2·max|b| ≤ 32767`, and adds two of them in i16 only
/// when `a_max·4·max|b| ≤ 32767`. A = a_max everywhere against B at the extreme code makes every
/// pair (quad) sum exactly `±2·a_max·max|b|` (`±4·…`), on both sides of both bounds:
/// pairs 127·2·128 = 32512 ≤ 32767 < 128·2·128, 129·2·127 = 32766 ≤ 32767 < 130·2·127;
/// quads 63·4·128 = 32256 ≤ 32767 < 64·4·128, 64·4·127 = 32512 ≤ 32767 < 65·4·127.
#[test]
fn maddubs_threshold_both_sides() {
    let mut seed = 500;
    for (bf, a_maxes) in [
        (
            Fill::Const(-128),
            &[62u8, 63, 64, 65, 126, 127, 128, 129][..],
        ),
        (Fill::Const(127), &[63, 64, 65, 66, 128, 129, 130, 131][..]),
        (Fill::Const(-127), &[64, 65, 129, 130][..]),
        (Fill::Extremes, &[63, 64, 65, 127, 128, 129, 130][..]),
    ] {
        for &a_max in a_maxes {
            for af in [Fill::Const(a_max as i32), Fill::Random, Fill::Extremes] {
                // K = 203 ends in a partial group, K = 206 in a partial pair of groups.
                let k = if seed % 2 == 0 { 203 } else { 206 };
                let mut b = Builder::new(13, 40, k, BKind::S8, seed);
                b.a_max = a_max;
                b.a_fill = af;
                b.b_fill = bf;
                b.lda_pad = 3;
                b.build().check(&[]);
                seed += 1;
            }
        }
    }
    // An activation B operand: stored codes are `code − 128`, so 0 becomes −128.
    for a_max in [127u8, 128] {
        let mut b = Builder::new(5, 24, 99, BKind::U8Kn, seed);
        b.a_max = a_max;
        b.a_fill = Fill::Const(a_max as i32);
        b.b_fill = Fill::Const(0);
        b.build().check(&[]);
    }
}

/// Requant ties (m0 = 2^30, shift = 31: y = t/2 ties for every odd t, both signs), clamps at
/// qmin/qmax with various z_out, ranges wider than u8 (the u8 store truncates like `as u8`), and
/// the extreme multipliers (shift 1 saturates the fixed-point output, shift 62 rounds to 0/±1).
#[test]
fn requant_ties_and_clamps() {
    let mut seed = 900;
    for kind in [BKind::S8, BKind::S4] {
        for &(z, qmin, qmax) in &[
            (0, 0, 255),
            (128, 0, 255),
            (-5, 3, 200),
            (300, 0, 255),
            (0, -1000, 1000),
            (7, 7, 7),
            (-70_000, -200_000, 100_000),
        ] {
            for &(m0, shift) in &[
                (1 << 30, 31),
                (1 << 30, 30),
                (1 << 30, 1),
                (i32::MAX, 1),
                (i32::MAX, 62),
                (1 << 30, 62),
                (1_500_000_000, 40),
            ] {
                let mut b = Builder::new(10, 37, 21, kind, seed);
                b.a_max = 6;
                b.za = 3;
                b.zb = 0;
                b.ldc_pad = 2;
                let mut c = b.build();
                c.m0 = vec![m0; c.n];
                c.shift = vec![shift; c.n];
                c.z_out = z;
                c.qmin = qmin;
                c.qmax = qmax;
                // Small odd and even t of both signs around 0.
                c.bias = Some((0..c.n as i32).map(|j| (j % 9) - 4 - 40).collect());
                c.compute_t();
                c.check(&[]);
                seed += 1;
            }
        }
    }
    // Per-channel mixtures with t spanning the whole i32 range.
    let mut b = Builder::new(9, 48, 300, BKind::S8, seed);
    b.a_fill = Fill::Extremes;
    b.b_fill = Fill::Extremes;
    let mut c = b.build();
    c.bias = Some(
        (0..c.n)
            .map(|j| [i32::MAX - 20_000_000, i32::MIN + 20_000_000, 0][j % 3])
            .collect(),
    );
    c.compute_t();
    c.m0 = (0..c.n as i32)
        .map(|j| (1 << 30) + j * 12_345_677)
        .collect();
    c.shift = (0..c.n as i32).map(|j| 1 + (j * 5) % 62).collect();
    c.check(&[]);
}

/// Strided A and strided output on several tiles.
#[test]
fn strided_operands() {
    for (i, &(m, n, k, lda_pad, ldc_pad)) in [
        (17, 35, 45, 19, 13),
        (8, 16, 64, 64, 16),
        (33, 50, 130, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        for kind in KINDS {
            let mut b = Builder::new(m, n, k, kind, 1000 + i as u64);
            b.lda_pad = lda_pad;
            b.ldc_pad = ldc_pad;
            b.za = 77;
            b.build().check(&[]);
        }
    }
}

/// Large enough for the driver to split into tiles; local rayon pools of 2, 3 and 4 threads.
#[test]
fn parallel_tiles() {
    for (i, &(m, n, k)) in [(37, 300, 200), (130, 70, 260), (5, 1000, 450)]
        .iter()
        .enumerate()
    {
        for kind in KINDS {
            let mut b = Builder::new(m, n, k, kind, 2000 + i as u64);
            b.ldc_pad = 3;
            b.lda_pad = 2;
            b.za = 12;
            b.build().check(&[2, 3, 4]);
        }
    }
}

/// BERT-base shapes: K = 3072 against N = 768 (FFN down) and K = 768 against N = 3072 (FFN up),
/// with row tails, on x86-64 (or with `OSQ_BIG_TESTS`).
#[test]
fn big_shapes() {
    if !big_tests() {
        return;
    }
    for (i, &(m, n, k, kind)) in [
        (9, 768, 3072, BKind::S8),
        (9, 768, 3072, BKind::S4),
        (3, 3072, 768, BKind::S8),
        (5, 2304, 771, BKind::S4),
    ]
    .iter()
    .enumerate()
    {
        let mut b = Builder::new(m, n, k, kind, 3000 + i as u64);
        b.za = 100;
        b.build().check(if i == 0 { &[2] } else { &[] });
    }
}

/// A forced ISA the CPU lacks is an error, never a silent fallback.
#[test]
fn forced_unavailable_isa_is_an_error() {
    let w = vec![1i8; 16];
    let pb = PackedB::pack_s8(MatRef::new(&w, 4, 4, 4).unwrap()).unwrap();
    let a = vec![1u8; 8];
    let mut tested = 0;
    for isa in Isa::ALL {
        let mut out = vec![0i32; 8];
        let r = gemm(
            MatRef::new(&a, 2, 4, 4).unwrap(),
            &pb,
            &Epilogue::default(),
            Output::Acc {
                out: MatMut::new(&mut out, 2, 4, 4).unwrap(),
            },
            &GemmOptions {
                isa: Some(isa),
                parallel: false,
            },
        );
        if isa.is_available() {
            r.unwrap();
            assert_eq!(out, vec![4; 8], "{}", isa.name());
        } else {
            assert_eq!(r, Err(KernelError::IsaUnavailable(isa.name())));
            tested += 1;
        }
    }
    // Neither architecture has every path.
    assert!(tested > 0);
    assert_eq!(Isa::available()[0], Isa::Scalar);
}

/// The tile shapes of the AMX-INT8 kernel (K a multiple of 64, at least 16 rows) and its edges:
/// one and two row tiles, row tails below 16 (VNNI rows), odd panel counts and column tails,
/// strides, random and extreme codes, every B kind, with 1 and 2 threads. Runs on every ISA; on
/// a CPU with AMX this is where the tile kernel meets the reference.
#[test]
fn amx_tile_shapes() {
    let mut seed = 7000;
    for &(m, n, k) in &[
        (16, 16, 64),
        (32, 32, 64),
        (17, 33, 128),
        (47, 50, 192),
        (64, 96, 384),
        (128, 40, 256),
        (40, 1, 64),
        (15, 48, 64),
        (33, 16, 1536),
    ] {
        for kind in KINDS {
            for fill in [Fill::Random, Fill::Extremes] {
                let extremes = matches!(fill, Fill::Extremes);
                let mut b = Builder::new(m, n, k, kind, seed);
                b.a_fill = fill;
                b.b_fill = if extremes {
                    Fill::Extremes
                } else {
                    Fill::Random
                };
                b.lda_pad = if seed % 2 == 0 { 0 } else { 5 };
                b.ldc_pad = 3;
                b.build().check(&[2]);
                seed += 1;
            }
        }
    }
}
