//! The fast row forms of [`super::rows`] against the definitions ([`super::nonlin`],
//! `LinDerived`), on every ISA path this CPU runs (scalar included), on random rows and on
//! extreme ones (saturating sums, i32 limits, constant rows, single elements).

use osq_kernels::Isa;

use super::graph::{LinDerived, CODE_FRAC_BITS};
use super::nonlin::{sat_i32, FixedMul, GeluTable, LayerNormInt, SignedMul, SoftmaxInt};
use super::rows::{self, codes_row, gelu_row, ln_row, residual_row, softmax_row};
use super::QParams;
use crate::testing::SplitMix64;

fn extreme_i32(rng: &mut SplitMix64, n: usize, kind: u64) -> Vec<i32> {
    (0..n)
        .map(|j| match kind % 6 {
            0 => rng.next_u64() as i32,
            1 => [i32::MIN, i32::MAX, 0, -1, 1][(rng.next_u64() % 5) as usize],
            2 => i32::MAX - j as i32,
            3 => ((rng.next_u64() % (1 << 27)) as i64 - (1 << 26)) as i32,
            4 => ((rng.next_u64() % (1 << 20)) as i64 - (1 << 19)) as i32,
            _ => 12345,
        })
        .collect()
}

#[test]
fn softmax_rows_equal_definition() {
    let mut rng = SplitMix64::new(3);
    for case in 0..60 {
        let bits = [8u32, 6, 4][case % 3];
        let qp = QParams::activation(0.0, (0.05 + rng.uniform()) as f32, bits);
        let (sq, sk) = (1e-3 + 0.3 * rng.uniform(), 1e-3 + 0.3 * rng.uniform());
        let def = SoftmaxInt::new(
            sq,
            sk,
            [32, 64][case % 2],
            qp.scale as f64,
            qp.zero_point,
            qp.qmax,
        )
        .unwrap();
        let fast = rows::softmax_for_tests(&def);
        assert!(
            fast.is_some(),
            "case {case}: fast softmax rejected usual constants"
        );
        for len in [1usize, 2, 3, 17, 128, 300] {
            for kind in 0..6 {
                let s = extreme_i32(&mut rng, len, kind + case as u64);
                let (mut e64, mut want) = (vec![0i64; len], vec![0u8; len]);
                def.row(&s, &mut e64, &mut want);
                for isa in Isa::available() {
                    let (mut e, mut got) = (vec![0u32; len], vec![0u8; len]);
                    softmax_row(isa, &def, fast.as_ref(), &s, &mut e, &mut e64, &mut got);
                    assert_eq!(got, want, "case {case} len {len} kind {kind} {isa:?}");
                }
            }
        }
    }
}

#[test]
fn layer_norm_rows_equal_definition() {
    let mut rng = SplitMix64::new(11);
    for case in 0..40 {
        let h = [384usize, 7, 1, 768, 2048][case % 5];
        let gamma: Vec<f32> = (0..h).map(|_| 0.2 + 1.7 * rng.uniform() as f32).collect();
        let beta: Vec<f32> = (0..h).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect();
        let s_r = [1e-6, 3e-7, 2e-5, 1e-9][case % 4];
        let s_out = [0.03, 0.2, 0.004][case % 3];
        let migrated = case % 3 != 2;
        let def =
            LayerNormInt::new(&gamma, &beta, 1e-12, s_r, s_out, 120, 0, 255, migrated).unwrap();
        let fast = rows::layer_norm(&def);
        assert!(fast.is_some());
        for kind in 0..12 {
            let r = extreme_i32(&mut rng, h, kind);
            let mut want = vec![0u8; h];
            def.row(&r, &mut want);
            if h == 384 && kind % 6 == 4 {
                let mut tmp = vec![0u8; h];
                let f = fast.as_ref().unwrap();
                assert!(
                    f.row(Isa::Scalar, &r, &mut tmp),
                    "fast LN declined a usual row"
                );
            }
            for isa in Isa::available() {
                let mut got = vec![0u8; h];
                ln_row(isa, &def, fast.as_ref(), &r, &mut got);
                assert_eq!(got, want, "case {case} kind {kind} {isa:?}");
            }
        }
    }
    // γ too large for the split: the definition runs.
    let def = LayerNormInt::new(&[3.0; 4], &[0.0; 4], 1e-12, 1e-6, 0.1, 0, 0, 255, false).unwrap();
    assert!(rows::layer_norm(&def).is_none());
}

fn lin(rng: &mut SplitMix64, n: usize, codes: Option<QParams>, bias_bits: u32) -> LinDerived {
    LinDerived {
        requant: osq_kernels::Requant::new(&vec![0.5; n], 0, 0, 0).unwrap(),
        bias: (0..n)
            .map(|_| (rng.next_u64() as i64) >> (64 - bias_bits))
            .collect(),
        codes,
    }
}

#[test]
fn residual_codes_gelu_emb_rows_equal_definition() {
    let mut rng = SplitMix64::new(29);
    let n = 384;
    for case in 0..40 {
        let scale = [1e3, 1e-3, 1e-25, 1e7, 1.0][case % 5];
        let sc: Vec<SignedMul> = (0..n)
            .map(|j| {
                let g = 0.1 + 3.0 * rng.uniform();
                SignedMul::new(if j % 5 == 1 { -g * scale } else { g * scale }).unwrap()
            })
            .collect();
        let bits = [8u32, 6, 4][case % 3];
        let qp = QParams::activation(-1.0, 2.0, bits);
        let l = lin(&mut rng, n, Some(qp), [20, 40, 62][case % 3]);
        let fast_res = rows::residual_for_tests(&sc, &l);
        assert!(fast_res.is_some());
        let fast_codes = rows::code_requant_for_tests(&l);
        assert!(fast_codes.is_some());
        for kind in 0..6 {
            let y = extreme_i32(&mut rng, n, kind);
            let x: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            let z = rng.next_u64() as u8;
            let want_r: Vec<i32> = (0..n)
                .map(|j| sat_i32(l.fixed(y[j], j) + sc[j].apply(x[j] as i64 - z as i64)))
                .collect();
            let want_c: Vec<u8> = (0..n).map(|j| l.code(y[j], j)).collect();
            for isa in Isa::available() {
                let mut r = vec![0i32; n];
                residual_row(isa, &l, &sc, fast_res.as_ref(), &y, &x, z, &mut r);
                assert_eq!(r, want_r, "case {case} kind {kind} {isa:?}");
                let mut c = vec![0u8; n];
                codes_row(isa, &l, fast_codes.as_ref(), &y, &mut c);
                assert_eq!(c, want_c, "case {case} kind {kind} {isa:?}");
            }
        }
        // Embedding sums.
        let codes: Vec<Vec<i8>> = (0..3)
            .map(|_| (0..n).map(|_| rng.next_u64() as i8).collect())
            .collect();
        let muls: Vec<FixedMul> = (0..3)
            .map(|t| {
                FixedMul::new([1e5, 1e-3, 1e-30, 0.0, 7.0][(case + t) % 5] * rng.uniform()).unwrap()
            })
            .collect();
        let want: Vec<i32> = (0..n)
            .map(|j| sat_i32((0..3).map(|t| muls[t].apply(codes[t][j] as i64)).sum()))
            .collect();
        for isa in Isa::available() {
            let mut got = vec![0i32; n];
            let m = |t: usize| (muls[t].m0, muls[t].shift);
            let c = [&codes[0][..], &codes[1][..], &codes[2][..]];
            assert!(osq_kernels::rowops::emb_row(
                isa,
                c,
                [m(0), m(1), m(2)],
                &mut got
            ));
            assert_eq!(got, want, "case {case} {isa:?}");
        }
    }
}

#[test]
fn gelu_rows_equal_definition() {
    let mut rng = SplitMix64::new(41);
    for (s_h, s_out, z, qmax) in [
        (3.0 / 4194304.0, 0.02, 12, 255),
        (8.0 / 4194304.0, 0.05, 4, 255),
        (1.0 / 4194304.0, 0.004, 40, 255),
        (3.0 / 4194304.0, 0.3, 1, 15),
        (1e-9, 0.01, 20, 63),
    ] {
        let t = GeluTable::new(s_h, s_out, z, qmax).unwrap();
        let n = 1536;
        let l = lin(&mut rng, n, None, 24);
        let fast = rows::gelu_lut(&t, &l.bias);
        assert!(fast.is_some());
        for kind in 0..8u64 {
            let y: Vec<i32> = match kind {
                6 => (0..n)
                    .map(|j| (t.h_star - l.bias[j] + (rng.next_u64() % 8192) as i64 - 4096) as i32)
                    .collect(),
                7 => (0..n)
                    .map(|j| {
                        let edge = [rows::GELU_LO, rows::GELU_HI][j % 2];
                        (edge - l.bias[j] + (j as i64 % 7) - 3) as i32
                    })
                    .collect(),
                _ => extreme_i32(&mut rng, n, kind),
            };
            let want: Vec<u8> = (0..n).map(|j| t.code(sat_i32(l.fixed(y[j], j)))).collect();
            for isa in Isa::available() {
                let mut got = vec![0u8; n];
                gelu_row(isa, &t, &l, fast.as_ref(), &y, &mut got);
                assert_eq!(got, want, "kind {kind} {isa:?}");
            }
        }
        // Dense sweep of h with zero bias.
        let zero = LinDerived {
            bias: vec![0; 4096],
            ..lin(&mut rng, 4096, None, 1)
        };
        let fast = rows::gelu_lut(&t, &zero.bias);
        for start in (rows::GELU_LO - 8192..rows::GELU_HI + 8192).step_by(4096 * 37) {
            let y: Vec<i32> = (0..4096).map(|j| (start + j) as i32).collect();
            let want: Vec<u8> = y.iter().map(|&h| t.code(h)).collect();
            let mut got = vec![0u8; 4096];
            for isa in Isa::available() {
                gelu_row(isa, &t, &zero, fast.as_ref(), &y, &mut got);
                assert_eq!(got, want, "{isa:?}");
            }
        }
    }
    let _ = CODE_FRAC_BITS;
}
