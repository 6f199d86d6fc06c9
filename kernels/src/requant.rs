//! The ReQuant epilogue: one fixed-point multiplier `m0 ∈ [2^30, 2^31)` and one rounding shift per
//! output channel, no float. These scalar functions DEFINE the arithmetic (docs/arithmetic.md); every
//! SIMD epilogue is tested against them, ties included.

use crate::error::{KernelError, Result};
use crate::pack::NR;

/// Per-output-channel requantization parameters, padded to a multiple of 16 channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requant {
    n: usize,
    m0: Vec<i32>,
    shift: Vec<i32>,
    z_out: i32,
    qmin: i32,
    qmax: i32,
}

/// The one multiplier split of osq: `m = m0 · 2^−shift` with `m0 ∈ [2^30, 2^31)`, rounding
/// `m · 2^shift` half to even (`f·2^e`, `f ∈ [0.5, 1)`, by exact power-of-two scaling). `None`
/// for a non-finite or non-positive `m`; the shift is not range-checked (callers decide).
pub fn split_multiplier(m: f64) -> Option<(i64, i32)> {
    if !m.is_finite() || m <= 0.0 {
        return None;
    }
    // halvings and doublings are exact, also for subnormal m (at most ~1075 steps)
    let (mut f, mut e) = (m, 0i32);
    while f >= 1.0 {
        f *= 0.5;
        e += 1;
    }
    while f < 0.5 {
        f *= 2.0;
        e -= 1;
    }
    let mut m0 = (f * 2f64.powi(31)).round_ties_even() as i64;
    let mut shift = 31 - e;
    if m0 == 1 << 31 {
        m0 >>= 1;
        shift -= 1;
    }
    Some((m0, shift))
}

/// [`split_multiplier`] for the GEMM epilogue: `shift ∈ [1, 62]`.
pub fn quantize_multiplier(m: f64) -> Result<(i32, i32)> {
    let Some((m0, shift)) = split_multiplier(m) else {
        return Err(KernelError::Range(format!(
            "requant multiplier {m} must be finite and positive"
        )));
    };
    if !(1..=62).contains(&shift) {
        return Err(KernelError::Range(format!(
            "requant multiplier {m} is outside the representable range [2^-31, 2^30)"
        )));
    }
    Ok((m0 as i32, shift))
}

/// `(t · m0 + 2^(shift−1)) >> shift` in i64: round to nearest, ties up (\"rndnu\", toward +∞).
/// Exact for all i32 `t`.
#[inline]
pub fn rounding_mul_shift(t: i32, m0: i32, shift: i32) -> i64 {
    let p = t as i64 * m0 as i64;
    (p + (1i64 << (shift - 1))) >> shift
}

/// ReQuant of one accumulator to an output code.
#[inline]
pub fn requant_to_code(t: i32, m0: i32, shift: i32, z_out: i32, qmin: i32, qmax: i32) -> i32 {
    let y = rounding_mul_shift(t, m0, shift);
    (y.clamp(qmin as i64 - z_out as i64, qmax as i64 - z_out as i64) + z_out as i64) as i32
}

/// ReQuant of one accumulator to an i32 fixed-point value (saturating): LayerNorm/GELU inputs.
#[inline]
pub fn requant_to_i32(t: i32, m0: i32, shift: i32) -> i32 {
    rounding_mul_shift(t, m0, shift).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

impl Requant {
    /// One real multiplier per output channel; output codes `[qmin, qmax]` with zero point `z_out`.
    pub fn new(multipliers: &[f64], z_out: i32, qmin: i32, qmax: i32) -> Result<Self> {
        if multipliers.is_empty() {
            return Err(KernelError::Shape(
                "requant needs at least one channel".into(),
            ));
        }
        if qmin > qmax || !(-(1 << 16)..=(1 << 16)).contains(&qmin) || qmax > (1 << 16) {
            return Err(KernelError::Range(format!(
                "output range [{qmin}, {qmax}] is empty or too wide"
            )));
        }
        let n = multipliers.len();
        let padded = n.div_ceil(NR) * NR;
        let mut m0 = vec![1 << 30; padded];
        let mut shift = vec![31; padded];
        for (i, &m) in multipliers.iter().enumerate() {
            let (a, s) = quantize_multiplier(m)
                .map_err(|e| KernelError::Range(format!("channel {i}: {e}")))?;
            m0[i] = a;
            shift[i] = s;
        }
        Ok(Self {
            n,
            m0,
            shift,
            z_out,
            qmin,
            qmax,
        })
    }

    /// The same multiplier for all `n` channels.
    pub fn per_tensor(n: usize, multiplier: f64, z_out: i32, qmin: i32, qmax: i32) -> Result<Self> {
        Self::new(&vec![multiplier; n], z_out, qmin, qmax)
    }

    /// Directly from fixed-point parts (tests, and parameter files that store them).
    pub fn from_parts(m0: &[i32], shift: &[i32], z_out: i32, qmin: i32, qmax: i32) -> Result<Self> {
        if m0.len() != shift.len() || m0.is_empty() {
            return Err(KernelError::Shape(format!(
                "requant: {} multipliers but {} shifts",
                m0.len(),
                shift.len()
            )));
        }
        if let Some(i) = (0..m0.len()).find(|&i| m0[i] < (1 << 30) || !(1..=62).contains(&shift[i]))
        {
            return Err(KernelError::Range(format!(
                "requant channel {i}: m0 {} must be in [2^30, 2^31) and shift {} in [1, 62]",
                m0[i], shift[i]
            )));
        }
        if qmin > qmax {
            return Err(KernelError::Range(format!(
                "output range [{qmin}, {qmax}] is empty"
            )));
        }
        let n = m0.len();
        let padded = n.div_ceil(NR) * NR;
        let mut pm = vec![1 << 30; padded];
        let mut ps = vec![31; padded];
        pm[..n].copy_from_slice(m0);
        ps[..n].copy_from_slice(shift);
        Ok(Self {
            n,
            m0: pm,
            shift: ps,
            z_out,
            qmin,
            qmax,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }
    /// Multipliers, padded to a multiple of 16.
    pub fn m0(&self) -> &[i32] {
        &self.m0
    }
    /// Shifts, padded to a multiple of 16.
    pub fn shift(&self) -> &[i32] {
        &self.shift
    }
    pub fn z_out(&self) -> i32 {
        self.z_out
    }
    pub fn qmin(&self) -> i32 {
        self.qmin
    }
    pub fn qmax(&self) -> i32 {
        self.qmax
    }
    /// The scalar definition for channel `n`.
    #[inline]
    pub fn apply(&self, t: i32, n: usize) -> i32 {
        requant_to_code(
            t,
            self.m0[n],
            self.shift[n],
            self.z_out,
            self.qmin,
            self.qmax,
        )
    }
    #[inline]
    pub fn apply_i32(&self, t: i32, n: usize) -> i32 {
        requant_to_i32(t, self.m0[n], self.shift[n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_round_trip() {
        for &m in &[1e-9, 0.000123, 0.25, 0.5, 0.75, 1.0, 3.999, 1234.5] {
            let (m0, s) = quantize_multiplier(m).unwrap();
            assert!((1 << 30..=i32::MAX).contains(&m0), "{m}: m0 {m0}");
            let back = m0 as f64 / 2f64.powi(s);
            assert!(((back - m) / m).abs() < 1e-9, "{m} -> {back}");
        }
        assert!(quantize_multiplier(0.0).is_err());
        assert!(quantize_multiplier(f64::NAN).is_err());
        assert!(quantize_multiplier(1e-12).is_err());
        assert!(quantize_multiplier(2e9).is_err());
    }

    #[test]
    fn split_covers_every_positive_double() {
        for &m in &[
            f64::MIN_POSITIVE / 1e10,
            1e-300,
            2f64.powi(-95),
            1.0,
            2.0,
            1e300,
            f64::MAX,
        ] {
            let (m0, s) = split_multiplier(m).unwrap();
            assert!((1i64 << 30..1i64 << 31).contains(&m0), "{m}: m0 {m0}");
            // m0·2^−s = m to 31 significant bits
            let back = (m0 as f64).ln() - s as f64 * std::f64::consts::LN_2;
            assert!((back - m.ln()).abs() < 1e-8, "{m}: {m0} · 2^-{s}");
        }
        assert_eq!(split_multiplier(0.0), None);
        assert_eq!(split_multiplier(-1.0), None);
        assert_eq!(split_multiplier(f64::INFINITY), None);
    }

    #[test]
    fn ties_round_toward_plus_infinity() {
        // m0·2^-shift = 0.5 exactly: t·0.5 has ties for odd t.
        let (m0, s) = (1 << 30, 31);
        assert_eq!(rounding_mul_shift(5, m0, s), 3); // 2.5 -> 3
        assert_eq!(rounding_mul_shift(-5, m0, s), -2); // -2.5 -> -2
        assert_eq!(rounding_mul_shift(-7, m0, s), -3); // -3.5 -> -3
        assert_eq!(rounding_mul_shift(4, m0, s), 2);
        assert_eq!(requant_to_code(-1000, m0, s, 3, 0, 255), 0);
        assert_eq!(requant_to_code(1000, m0, s, 3, 0, 255), 255);
        assert_eq!(requant_to_code(i32::MIN, i32::MAX, 1, 0, -128, 127), -128);
        assert_eq!(requant_to_i32(i32::MAX, i32::MAX, 1), i32::MAX);
    }
}
