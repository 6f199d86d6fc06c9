//! Every compiled path of `osq_kernels::rowops` equals the scalar path on random and extreme rows
//! (the definitions themselves are checked against osq-model's in its own tests).

use osq_kernels::rowops::{
    emb_row, CodeRequant, GeluLut, LayerNorm, Residual, Softmax, TableReads,
};
use osq_kernels::Isa;
use proptest::prelude::*;

fn isas() -> Vec<Isa> {
    Isa::available()
}

/// Every ISA with every form of the softmax/GELU table reads.
fn forms() -> Vec<(Isa, TableReads)> {
    isas()
        .into_iter()
        .flat_map(|i| TableReads::ALL.map(|r| (i, r)))
        .collect()
}

fn tables() -> ([i64; 1024], [i64; 1024]) {
    let mut hi = [0i64; 1024];
    let mut lo = [0i64; 1024];
    for j in 0..1024 {
        hi[j] = ((-(j as f64) / 1024.0).exp2() * 1073741824.0).round() as i64;
        lo[j] = ((-(j as f64) / 1048576.0).exp2() * 1073741824.0).round() as i64;
    }
    (hi, lo)
}

/// A direct table past 2^16 entries (`d_max` ≈ 100,000, as OS parameters of a fine-tuned model
/// reach): built, and every path equals the scalar one on rows whose spread crosses `d_max`.
#[test]
fn softmax_large_direct_table_agrees() {
    let (hi, lo) = tables();
    let s = Softmax::new(
        (943_718_400, 22),
        (1549082005, 30),
        16_711_680,
        0,
        255,
        &hi,
        &lo,
    )
    .unwrap();
    let d_max = s.table_len().expect("d_max ≤ 2^17 gets a direct table");
    assert!((1 << 16..=1 << 17).contains(&d_max), "{d_max}");
    // One row holding every d = max − t in 0..d_max + 3: each table entry against the definition
    // (the exponentials `e`, not only the codes, which would hide a small error).
    let row: Vec<i32> = (0..d_max as i32 + 3).map(|d| 1000 - d).collect();
    let (mut e0, mut o0) = (vec![0u32; row.len()], vec![0u8; row.len()]);
    s.row(Isa::Scalar, &row, &mut e0, &mut o0);
    for (isa, reads) in forms() {
        let (mut e, mut o) = (vec![0u32; row.len()], vec![0u8; row.len()]);
        s.row_reads(isa, reads, &row, &mut e, &mut o);
        assert!(
            e == e0 && o == o0,
            "{isa:?} {reads:?}: every d of the table"
        );
    }
    let mut x = 12345u64;
    for n in [1usize, 15, 16, 17, 128, 385] {
        let sc: Vec<i32> = (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((x >> 33) % (2 * d_max as u64)) as i32 - 50_000
            })
            .collect();
        let (mut e0, mut o0) = (vec![0u32; n], vec![0u8; n]);
        s.row(Isa::Scalar, &sc, &mut e0, &mut o0);
        for (isa, reads) in forms() {
            let (mut e, mut o) = (vec![0u32; n], vec![0u8; n]);
            s.row_reads(isa, reads, &sc, &mut e, &mut o);
            assert!(e == e0 && o == o0, "{isa:?} {reads:?} n = {n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn softmax_paths_agree(scores in prop::collection::vec(any::<i32>(), 1..300), spread in 0u32..32, cm in (1i64 << 30)..(1i64 << 31), csh in 10u32..40, lut_sized in any::<bool>()) {
        let (hi, lo) = tables();
        // csh ≤ 21 with m0 ≥ 2^30 puts d_max below 2^16: the direct-table path.
        let csh = if lut_sized { csh.min(21) } else { csh };
        let s = Softmax::new((cm, csh), (1549082005, 30), 4_000_000, 3, 255, &hi, &lo).unwrap();
        let sc: Vec<i32> = scores.iter().map(|&v| v >> spread).collect();
        let n = sc.len();
        let (mut e0, mut o0) = (vec![0u32; n], vec![0u8; n]);
        s.row(Isa::Scalar, &sc, &mut e0, &mut o0);
        for (isa, reads) in forms() {
            let (mut e, mut o) = (vec![0u32; n], vec![0u8; n]);
            s.row_reads(isa, reads, &sc, &mut e, &mut o);
            prop_assert_eq!(&o, &o0);
            if s.table_len().is_some() {
                prop_assert_eq!(&e[..n], &e0[..n]);
            }
        }
    }

    #[test]
    fn layernorm_paths_agree(r in prop::collection::vec(any::<i32>(), 384), spread in 0u32..32, c0 in -(1i64 << 45)..(1i64 << 45), a in 1i64..(1 << 40)) {
        let c: Vec<i64> = (0..384).map(|j| c0 + j as i64 * 977).collect();
        let g: Vec<i64> = (0..384).map(|j| (j as i64 * 5_592_405) % (1 << 31) - (1 << 30)).collect();
        let ln = LayerNorm::new(12345, a as i128, &c, (a % 2 == 0).then_some(&g[..]), 0, 255).unwrap();
        let r: Vec<i32> = r.iter().map(|&v| v >> spread).collect();
        let mut o0 = vec![0u8; 384];
        let ok0 = ln.row(Isa::Scalar, &r, &mut o0);
        for isa in isas() {
            let mut o = vec![0u8; 384];
            let ok = ln.row(isa, &r, &mut o);
            prop_assert_eq!(ok, ok0);
            if ok { prop_assert_eq!(&o, &o0); }
        }
    }

    #[test]
    fn residual_codes_emb_gelu_paths_agree(y in prop::collection::vec(any::<i32>(), 96), x in prop::collection::vec(any::<u8>(), 96), z in any::<u8>(), seed in any::<u64>()) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); s };
        let n = 96;
        let m0: Vec<i64> = (0..n).map(|_| (next() >> 33) as i64).collect();
        let sh: Vec<u32> = (0..n).map(|_| 1 + (next() >> 58) as u32).collect();
        let neg: Vec<bool> = (0..n).map(|_| next() & 1 == 1).collect();
        let bias: Vec<i64> = (0..n).map(|_| (next() as i64) >> (2 + (next() >> 59))).collect();
        let res = Residual::new(&m0, &sh, &neg, &bias).unwrap();
        let cr = CodeRequant::new(&bias, 16, 7, 0, 255).unwrap();
        let codes: Vec<i8> = x.iter().map(|&v| v as i8).collect();
        let muls = [(m0[0], sh[0]), (m0[1], sh[1] + 20), (m0[2], sh[2])];
        let entries: Vec<u32> = (0..512).map(|i| if i % 37 == 0 { osq_kernels::rowops::gelu_fallback() } else { GeluLut::entry((next() >> 52) as u32, (i % 200) as u8, (i % 200 + 1) as u8) }).collect();
        let lut = GeluLut::new(entries, -(1 << 20), 11, &bias).unwrap();
        let def = |h: i32| (h as u32 >> 24) as u8;
        let (mut r0, mut c0, mut e0, mut g0) = (vec![0i32; n], vec![0u8; n], vec![0i32; n], vec![0u8; n]);
        res.row(Isa::Scalar, &y, &x, z, &mut r0);
        cr.row(Isa::Scalar, &y, &mut c0);
        prop_assert!(emb_row(Isa::Scalar, [&codes, &codes[1..], &codes], muls, &mut e0[..n - 1]));
        lut.row(Isa::Scalar, &y, &mut g0, &def);
        for isa in isas() {
            let (mut r1, mut c1, mut e1, mut g1) = (vec![0i32; n], vec![0u8; n], vec![0i32; n], vec![0u8; n]);
            res.row(isa, &y, &x, z, &mut r1);
            cr.row(isa, &y, &mut c1);
            emb_row(isa, [&codes, &codes[1..], &codes], muls, &mut e1[..n - 1]);
            prop_assert_eq!(&r1, &r0);
            prop_assert_eq!(&c1, &c0);
            prop_assert_eq!(&e1, &e0);
            for reads in TableReads::ALL {
                lut.row_reads(isa, reads, &y, &mut g1, &def);
                prop_assert_eq!(&g1, &g0, "{:?} {:?}", isa, reads);
            }
        }
    }

    /// Biases that fit i32 (the AVX-512 path's 32-bit saturating sum), against every y: overflow
    /// both ways, the limits themselves, values around the table's range and its buckets.
    #[test]
    fn gelu_i32_bias_saturates_like_the_definition(y in prop::collection::vec(prop_oneof![any::<i32>(), Just(i32::MAX), Just(i32::MIN), -(1i32 << 22)..(1 << 22)], 1..200), seed in any::<u64>()) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); s };
        let n = y.len();
        let bias: Vec<i64> = (0..n).map(|i| match i % 5 {
            0 => i32::MAX as i64,
            1 => i32::MIN as i64,
            2 => (next() as i32 >> (next() % 31)) as i64,
            _ => (next() as i32) as i64,
        }).collect();
        let entries: Vec<u32> = (0..4096).map(|i| if i % 101 == 0 { osq_kernels::rowops::gelu_fallback() } else { GeluLut::entry((next() >> 53) as u32, (i % 250) as u8, (i % 250 + 1) as u8) }).collect();
        let lut = GeluLut::new(entries, -(1 << 22), 11, &bias).unwrap();
        let def = |h: i32| (h as u32 >> 24) as u8;
        let mut g0 = vec![0u8; n];
        lut.row(Isa::Scalar, &y, &mut g0, &def);
        for (isa, reads) in forms() {
            let mut g1 = vec![0u8; n];
            lut.row_reads(isa, reads, &y, &mut g1, &def);
            prop_assert_eq!(&g1, &g0, "{:?} {:?}", isa, reads);
        }
    }
}
