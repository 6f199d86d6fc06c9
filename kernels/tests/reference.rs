//! The scalar path against the formula of docs/arithmetic.md written out naively on unpacked
//! matrices: this pins packing, zero-point folding and every epilogue kind.

use osq_kernels::requant::requant_to_code;
use osq_kernels::*;
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn naive_t(
    a: &[u8],
    m: usize,
    k: usize,
    za: i32,
    b: &[i32],
    n: usize,
    zb: i32,
    bias: &[i32],
) -> Vec<i32> {
    let mut t = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0i64;
            for kk in 0..k {
                s += (a[i * k + kk] as i64 - za as i64) * (b[j * k + kk] as i64 - zb as i64);
            }
            t[i * n + j] = (s + bias[j] as i64) as i32;
        }
    }
    t
}

fn scalar() -> GemmOptions {
    GemmOptions {
        isa: Some(Isa::Scalar),
        parallel: false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn scalar_matches_naive_formula(m in 1usize..9, n in 1usize..40, k in 1usize..70, s4 in any::<bool>(),
                                    za in 0u8..=255, seed in any::<u64>(), mult in 1e-4f64..0.5, zo in 0i32..256) {
        let mut x = seed | 1;
        let mut rnd = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let a: Vec<u8> = (0..m * k).map(|_| rnd() as u8).collect();
        let (lo, hi) = if s4 { (-8i64, 7i64) } else { (-128, 127) };
        let w: Vec<i8> = (0..n * k).map(|_| (lo + (rnd() % (hi - lo + 1) as u64) as i64) as i8).collect();
        let bias: Vec<i32> = (0..n).map(|_| (rnd() % 200_001) as i32 - 100_000).collect();
        let wv = MatRef::new(&w, n, k, k).unwrap();
        let pb = if s4 { PackedB::pack_s4(wv).unwrap() } else { PackedB::pack_s8(wv).unwrap() };
        let wi: Vec<i32> = w.iter().map(|&v| v as i32).collect();
        let t = naive_t(&a, m, k, za as i32, &wi, n, 0, &bias);
        let av = MatRef::new(&a, m, k, k).unwrap();
        let ep = Epilogue { a_zero: za, bias: Some(&bias) };

        let mut acc = vec![0i32; m * n];
        gemm(av, &pb, &ep, Output::Acc { out: MatMut::new(&mut acc, m, n, n).unwrap() }, &scalar()).unwrap();
        prop_assert_eq!(&acc, &t);

        let rq = Requant::per_tensor(n, mult, zo, 0, 255).unwrap();
        let mut codes = vec![0u8; m * n];
        gemm(av, &pb, &ep, Output::Codes { out: MatMut::new(&mut codes, m, n, n).unwrap(), requant: &rq }, &scalar()).unwrap();
        let (m0, sh) = quantize_multiplier(mult).unwrap();
        let want: Vec<u8> = t.iter().map(|&v| requant_to_code(v, m0, sh, zo, 0, 255) as u8).collect();
        prop_assert_eq!(codes, want);
    }

    #[test]
    fn activation_b_operand_with_zero_point(m in 1usize..6, n in 1usize..20, k in 1usize..40,
                                            za in 0u8..=255, zb in 0u8..=255, seed in any::<u64>()) {
        let mut x = seed | 1;
        let mut rnd = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let a: Vec<u8> = (0..m * k).map(|_| rnd() as u8).collect();
        let bnk: Vec<u8> = (0..n * k).map(|_| rnd() as u8).collect();
        let bi: Vec<i32> = bnk.iter().map(|&v| v as i32).collect();
        let t = naive_t(&a, m, k, za as i32, &bi, n, zb as i32, &vec![0; n]);
        let av = MatRef::new(&a, m, k, k).unwrap();
        let ep = Epilogue { a_zero: za, bias: None };
        // [N, K] layout (keys).
        let pb = PackedB::pack_u8_nk(MatRef::new(&bnk, n, k, k).unwrap(), zb).unwrap();
        let mut acc = vec![0i32; m * n];
        gemm(av, &pb, &ep, Output::Acc { out: MatMut::new(&mut acc, m, n, n).unwrap() }, &scalar()).unwrap();
        prop_assert_eq!(&acc, &t);
        // [K, N] layout (values): transpose.
        let bkn: Vec<u8> = (0..k * n).map(|i| bnk[(i % n) * k + i / n]).collect();
        let pb = PackedB::pack_u8_kn(MatRef::new(&bkn, k, n, n).unwrap(), zb).unwrap();
        let mut acc2 = vec![0i32; m * n];
        gemm(av, &pb, &ep, Output::Acc { out: MatMut::new(&mut acc2, m, n, n).unwrap() }, &scalar()).unwrap();
        prop_assert_eq!(&acc2, &t);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let w = vec![1i8; 12];
    let pb = PackedB::pack_s8(MatRef::new(&w, 3, 4, 4).unwrap()).unwrap();
    let a = vec![1u8; 10];
    // K mismatch.
    let av = MatRef::new(&a, 2, 5, 5).unwrap();
    let mut out = vec![0i32; 6];
    let r = gemm(
        av,
        &pb,
        &Epilogue::default(),
        Output::Acc {
            out: MatMut::new(&mut out, 2, 3, 3).unwrap(),
        },
        &scalar(),
    );
    assert!(matches!(r, Err(KernelError::Shape(_))), "{r:?}");
    // Output shape mismatch.
    let av = MatRef::new(&a, 2, 4, 4).unwrap();
    let r = gemm(
        av,
        &pb,
        &Epilogue::default(),
        Output::Acc {
            out: MatMut::new(&mut out, 3, 2, 2).unwrap(),
        },
        &scalar(),
    );
    assert!(r.is_err());
    // Bias length.
    let bias = vec![0i32; 2];
    let r = gemm(
        av,
        &pb,
        &Epilogue {
            a_zero: 0,
            bias: Some(&bias),
        },
        Output::Acc {
            out: MatMut::new(&mut out, 2, 3, 3).unwrap(),
        },
        &scalar(),
    );
    assert!(r.is_err());
    // Views that do not fit their buffers, 4-bit codes out of range.
    assert!(MatRef::new(&a, 3, 4, 4).is_err());
    assert!(MatRef::new(&a, 2, 4, 3).is_err());
    assert!(PackedB::pack_s4(MatRef::new(&w, 3, 4, 4).unwrap()).is_ok());
    let w9 = vec![9i8; 4];
    assert!(matches!(
        PackedB::pack_s4(MatRef::new(&w9, 1, 4, 4).unwrap()),
        Err(KernelError::Range(_))
    ));
    assert!(PackedB::pack_s8(MatRef::new(&w, 0, 4, 4).unwrap()).is_err());
    assert!(Requant::per_tensor(3, f64::NAN, 0, 0, 255).is_err());
}
