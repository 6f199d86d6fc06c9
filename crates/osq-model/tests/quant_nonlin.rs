//! The integer nonlinearities against their f64 definitions: softmax (codes within ±1, sums),
//! LayerNorm (codes within ±1, nearly all exact), GELU thresholds vs direct evaluation on a dense
//! sweep (exact except f64-noise points, which are listed), and rounding ties.

use osq_model::quant::graph::{LinDerived, CODE_FRAC_BITS};
use osq_model::quant::nonlin::{gelu_f64, GeluTable, LayerNormInt, SoftmaxInt};
use osq_model::quant::QParams;
use osq_model::testing::SplitMix64;

#[test]
fn integer_softmax_matches_f64_softmax() {
    let mut rng = SplitMix64::new(1);
    let (mut total, mut exact, mut max_diff) = (0u64, 0u64, 0i32);
    for case in 0..600 {
        let bits = [8u32, 6, 4][case % 3];
        let qmax = (1 << bits) - 1;
        let len = 1 + (rng.next_u64() % 128) as usize;
        let s_q = 0.01 + 0.05 * rng.uniform();
        let s_k = 0.01 + 0.05 * rng.uniform();
        let dh = [32usize, 64][case % 2];
        // Observed max prob: at least 1/len.
        let pmax = (1.0 / len as f64 + rng.uniform()).min(1.0) as f32;
        let qp = QParams::activation(0.0, pmax, bits);
        let sm = SoftmaxInt::new(s_q, s_k, dh, qp.scale as f64, qp.zero_point, qmax).unwrap();
        let spread = (1 + rng.next_u64() % 60000) as i64;
        let scores: Vec<i32> = (0..len)
            .map(|_| ((rng.next_u64() % (2 * spread as u64)) as i64 - spread) as i32)
            .collect();
        let mut e = vec![0i64; len];
        let mut out = vec![0u8; len];
        sm.row(&scores, &mut e, &mut out);
        let c = s_q * s_k / (dh as f64).sqrt();
        let m = *scores.iter().max().unwrap() as f64;
        let ex: Vec<f64> = scores.iter().map(|&t| ((t as f64 - m) * c).exp()).collect();
        let sum: f64 = ex.iter().sum();
        let mut code_sum = 0f64;
        for (i, &x) in ex.iter().enumerate() {
            let want = ((x / sum) / qp.scale as f64)
                .round_ties_even()
                .clamp(0.0, qmax as f64) as i32;
            let d = (out[i] as i32 - want).abs();
            total += 1;
            exact += (d == 0) as u64;
            max_diff = max_diff.max(d);
            code_sum += out[i] as f64 * qp.scale as f64;
        }
        // Probabilities sum to 1 up to the rounding of each code (clamped ones excepted).
        if qp.scale * (qmax as f32) >= 0.999 {
            assert!(
                (code_sum - 1.0).abs() <= len as f64 * qp.scale as f64 / 2.0 + 1e-6,
                "case {case}: Σp = {code_sum}"
            );
        }
    }
    let pct = 100.0 * exact as f64 / total as f64;
    eprintln!("softmax: {exact}/{total} codes exact ({pct:.4} %), max |diff| {max_diff}");
    assert!(max_diff <= 1);
    assert!(pct > 99.9, "{pct}");
}

#[test]
fn softmax_edge_cases() {
    // s_p = 2^-8: no rounding ties.
    let sm = SoftmaxInt::new(0.05, 0.05, 32, 1.0 / 256.0, 0, 255).unwrap();
    let mut e = vec![0i64; 4];
    let mut out = vec![0u8; 4];
    // One key: probability 1 → 256, clamped to 255.
    sm.row(&[123], &mut e[..1], &mut out[..1]);
    assert_eq!(out[0], 255);
    // Equal scores: uniform 1/4 → 64.
    sm.row(&[7, 7, 7, 7], &mut e, &mut out);
    assert_eq!(out, [64, 64, 64, 64]);
    // Huge gaps: exp underflows to exactly 0; two maxima share 1/2 → 128.
    sm.row(&[2_000_000, -2_000_000, 0, 2_000_000], &mut e, &mut out);
    assert_eq!(out, [128, 0, 0, 128]);
    // An exact tie p/s = 2.5 (s = 1/5): rounds half toward +∞ → 3 (torch.round would give 2;
    // verify reports such ties as paper-mode differences).
    let sm = SoftmaxInt::new(0.05, 0.05, 32, 0.2, 0, 15).unwrap();
    sm.row(&[5, 5], &mut e[..2], &mut out[..2]);
    assert_eq!(&out[..2], &[3, 3]);
}

fn ln_f64(
    r: &[i32],
    s_r: f64,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    migrated: bool,
    q: &QParams,
) -> Vec<i32> {
    let h = r.len() as f64;
    let x: Vec<f64> = r.iter().map(|&v| v as f64 * s_r).collect();
    let mean = x.iter().sum::<f64>() / h;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / h;
    let inv = 1.0 / (var + eps).sqrt();
    x.iter()
        .enumerate()
        .map(|(j, v)| {
            let n = (v - mean) * inv;
            let y = if migrated {
                n + beta[j] as f64 / gamma[j] as f64
            } else {
                n * gamma[j] as f64 + beta[j] as f64
            };
            ((y / q.scale as f64).round_ties_even() + q.zero_point as f64)
                .clamp(q.qmin as f64, q.qmax as f64) as i32
        })
        .collect()
}

#[test]
fn integer_layer_norm_matches_f64_layer_norm() {
    let mut rng = SplitMix64::new(2);
    let (mut total, mut exact, mut max_diff) = (0u64, 0u64, 0i32);
    for case in 0..400 {
        let h = [32usize, 384, 768][case % 3];
        let migrated = case % 2 == 0;
        let bits = [8u32, 6, 4][case % 3];
        let absmax = 1.0 + 200.0 * rng.uniform();
        let s_r = absmax / (1u64 << 22) as f64;
        let gamma: Vec<f32> = (0..h)
            .map(|j| {
                let g = (1.0 + 0.3 * rng.normal()) as f32;
                if j == 5 {
                    g * 8.0
                } else {
                    g
                }
            })
            .collect();
        let beta: Vec<f32> = (0..h).map(|_| (0.2 * rng.normal()) as f32).collect();
        let lo = -4.0f32 - rng.uniform() as f32;
        let hi = 4.0f32 + 3.0 * rng.uniform() as f32;
        let q = QParams::activation(lo, hi, bits);
        let ln = LayerNormInt::new(
            &gamma,
            &beta,
            1e-12,
            s_r,
            q.scale as f64,
            q.zero_point,
            q.qmin,
            q.qmax,
            migrated,
        )
        .unwrap();
        let spread = absmax / 4.0;
        let r: Vec<i32> = (0..h)
            .map(|j| {
                let mut v = rng.normal() * spread;
                if j == 7 {
                    v *= 6.0; // residual outlier channel
                }
                (v.clamp(-absmax, absmax) / s_r).round() as i32
            })
            .collect();
        let mut out = vec![0u8; h];
        ln.row(&r, &mut out);
        let want = ln_f64(&r, s_r, &gamma, &beta, 1e-12, migrated, &q);
        for (o, w) in out.iter().zip(&want) {
            let d = (*o as i32 - w).abs();
            total += 1;
            exact += (d == 0) as u64;
            max_diff = max_diff.max(d);
        }
    }
    let pct = 100.0 * exact as f64 / total as f64;
    eprintln!("layer norm: {exact}/{total} codes exact ({pct:.5} %), max |diff| {max_diff}");
    assert!(max_diff <= 1);
    assert!(pct > 99.99, "{pct}");
}

#[test]
fn layer_norm_of_a_constant_row_is_beta() {
    let h = 16;
    let gamma = vec![2.0f32; h];
    let beta: Vec<f32> = (0..h).map(|j| j as f32 * 0.1 - 0.8).collect();
    let q = QParams::activation(-1.0, 1.0, 8);
    for migrated in [false, true] {
        let ln = LayerNormInt::new(
            &gamma,
            &beta,
            1e-12,
            1e-6,
            q.scale as f64,
            q.zero_point,
            0,
            255,
            migrated,
        )
        .unwrap();
        let mut out = vec![0u8; h];
        ln.row(&[12345; 16], &mut out);
        for j in 0..h {
            let b = if migrated { beta[j] / 2.0 } else { beta[j] };
            assert_eq!(
                out[j] as i32,
                q.quantize(b),
                "channel {j} migrated {migrated}"
            );
        }
    }
}

#[test]
fn gelu_thresholds_equal_direct_evaluation() {
    let mut mismatches = Vec::new();
    let mut checked = 0u64;
    for (case, &(absmax_h, lo, hi, bits)) in [
        (8.0f64, -0.17f32, 6.0f32, 8u32),
        (3.0, -0.17, 3.0, 8),
        (20.0, -0.2, 15.0, 8),
        (8.0, -0.17, 6.0, 6),
        (8.0, -0.17, 6.0, 4),
        (5.0, -0.12, 1.0, 8), // clipped range: saturation at qmax
    ]
    .iter()
    .enumerate()
    {
        let s_h = absmax_h / (1u64 << 22) as f64;
        let q = QParams::activation(lo, hi, bits);
        let t = GeluTable::new(s_h, q.scale as f64, q.zero_point, q.qmax).unwrap();
        assert!(t.rise.windows(2).all(|w| w[0] <= w[1]));
        assert!(t.fall.windows(2).all(|w| w[0] <= w[1]));
        // Dense sweep over ±absmax·1.2 plus every threshold and its neighbours.
        let lim = (absmax_h * 1.2 / s_h) as i64;
        let mut hs: Vec<i64> = (-lim..=lim).step_by(97).collect();
        for &th in t.rise.iter().chain(&t.fall) {
            for d in -3..=3 {
                hs.push(th + d);
            }
        }
        hs.extend([i32::MIN as i64, i32::MAX as i64, 0, -1, 1, t.h_star]);
        for h in hs {
            if h < i32::MIN as i64 || h > i32::MAX as i64 {
                continue;
            }
            checked += 1;
            let (a, b) = (t.code(h as i32) as i32, t.direct(h));
            if a != b {
                let x = h as f64 * s_h;
                mismatches.push((case, h, a, b, gelu_f64(x) / q.scale as f64));
            }
        }
        // GELU(0) = 0 exactly: the zero point.
        assert_eq!(t.code(0) as i32, q.zero_point);
    }
    eprintln!(
        "gelu: {checked} points checked, {} mismatches",
        mismatches.len()
    );
    for m in &mismatches {
        eprintln!(
            "  case {} h {} table {} direct {} (gelu/s = {:.17})",
            m.0, m.1, m.2, m.3, m.4
        );
    }
    // A mismatch can only come from f64 noise making f non-monotone right at a code boundary.
    assert!(mismatches.len() <= 4, "{mismatches:?}");
    for m in &mismatches {
        assert!(
            (m.4 - m.4.floor() - 0.5).abs() < 1e-9,
            "mismatch away from a rounding boundary: {m:?}"
        );
    }
}

#[test]
fn code_outputs_round_half_up_at_fixed_point() {
    let q = QParams {
        scale: 0.1,
        zero_point: 10,
        qmin: 0,
        qmax: 255,
    };
    let d = LinDerived {
        requant: osq_kernels::Requant::new(&[1.0], 0, 0, 0).unwrap(),
        bias: vec![0],
        codes: Some(q),
    };
    let half = 1i32 << (CODE_FRAC_BITS - 1);
    let one = 1i32 << CODE_FRAC_BITS;
    assert_eq!(d.code(half, 0), 11); // +0.5 → +1
    assert_eq!(d.code(-half, 0), 10); // −0.5 → 0 (toward +∞)
    assert_eq!(d.code(-one - half, 0), 9); // −1.5 → −1
    assert_eq!(d.code(i32::MAX, 0), 255);
    assert_eq!(d.code(i32::MIN, 0), 0);
}
