//! The integer nonlinearities of docs/quant-graph.md (softmax, LayerNorm, GELU thresholds), the
//! fixed-point multiplier they share, and the own f64 `exp`/`erf` that build their tables.
//!
//! Tables and constants are derived with basic IEEE operations only (+ − × ÷, no libm), so every
//! platform builds the same bits; the per-token work is pure integer. Both the deploy reference
//! and the integer executor call these functions: they ARE the definition of the nonlinear steps.
//! They live here, beside their bounded fast forms (the sibling modules of `rowops`), so that
//! the kernel tests check each fast form against its definition; `osq-model` re-exports this
//! module as `quant::nonlin`.

use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Own f64 elementary functions (basic IEEE operations only).

const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // fdlibm ln2_hi
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // fdlibm ln2_lo
const INV_LN2: f64 = std::f64::consts::LOG2_E;
const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
const INV_SQRT_PI: f64 = 0.564_189_583_547_756_3;

/// `2^k` for an integer `k`, exactly (0 / ∞ outside the normal range).
fn pow2i(k: i64) -> f64 {
    if k < -1022 {
        0.0
    } else if k > 1023 {
        f64::INFINITY
    } else {
        f64::from_bits(((k + 1023) as u64) << 52)
    }
}

/// `e^x` with Cody–Waite range reduction and a Taylor series.
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -745.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let k = (x * INV_LN2).round_ties_even();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // |r| ≤ 0.347: 22 terms are far below one ulp.
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    for n in 1..=22 {
        term = term * r / n as f64;
        sum += term;
    }
    sum * pow2i(k as i64)
}

/// `erf(x)` for `0 ≤ x < 3`: `2/√π·e^{−x²}·Σ (2x²)^n·x/(2n+1)!!` (positive terms, no cancellation).
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0u32;
    while n < 200 {
        n += 1;
        term = term * 2.0 * x2 / (2 * n + 1) as f64;
        sum += term;
        if term < sum * 1e-18 {
            break;
        }
    }
    TWO_OVER_SQRT_PI * exp_f64(-x2) * sum
}

/// `erfc(x)` for `x ≥ 2.5` by its continued fraction, evaluated backwards.
fn erfc_cf(x: f64) -> f64 {
    let mut t = x;
    for k in (1..=200).rev() {
        t = x + (k as f64 * 0.5) / t;
    }
    exp_f64(-x * x) * INV_SQRT_PI / t
}

/// `erf(x)`.
pub fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let v = if a < 2.5 {
        erf_series(a)
    } else if a < 6.5 {
        1.0 - erfc_cf(a)
    } else {
        1.0
    };
    if x < 0.0 {
        -v
    } else {
        v
    }
}

/// `erfc(x)` for `x ≥ 0`.
fn erfc_pos(x: f64) -> f64 {
    if x < 2.5 {
        1.0 - erf_series(x)
    } else if x < 27.0 {
        erfc_cf(x)
    } else {
        0.0
    }
}

/// The exact (erf) GELU in f64: `x·Φ(x)`, via `erfc` on the negative side to avoid cancellation.
pub fn gelu_f64(x: f64) -> f64 {
    let y = x * std::f64::consts::FRAC_1_SQRT_2;
    if x >= 0.0 {
        0.5 * x * (1.0 + erf_f64(y))
    } else {
        0.5 * x * erfc_pos(-y)
    }
}

/// Where GELU attains its minimum (≈ −0.17): it falls before, rises after.
pub const GELU_ARGMIN: f64 = -0.751_791_524_693_564_5;

/// `round_half_even` for f64 (basic operation in IEEE 754-2008).
#[inline]
fn rhe(x: f64) -> f64 {
    x.round_ties_even()
}

// ---------------------------------------------------------------------------------------------
// Fixed-point multiplier.

/// A real multiplier `m ≥ 0` as `m0·2^−shift`, `m0 ∈ [2^30, 2^31)` (or 0), applied with one
/// rounding shift (half toward +∞), exactly as `rounding_mul_shift` of docs/arithmetic.md but
/// on i64 inputs through i128, and with shifts up to 126 so that tiny multipliers stay exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedMul {
    pub m0: i64,
    pub shift: u32,
}

impl FixedMul {
    pub const ZERO: FixedMul = FixedMul { m0: 0, shift: 1 };

    /// Errors for negative, non-finite or too large (≥ 2^30) multipliers; multipliers below
    /// 2^−95 become [`FixedMul::ZERO`] (their products round to 0 for every i32 input).
    pub fn new(m: f64) -> Result<FixedMul, String> {
        if !m.is_finite() || m < 0.0 {
            return Err(format!("fixed-point multiplier {m} must be finite and ≥ 0"));
        }
        if m == 0.0 {
            return Ok(Self::ZERO);
        }
        if m >= (1u64 << 30) as f64 {
            return Err(format!("fixed-point multiplier {m} is ≥ 2^30"));
        }
        // the GEMM epilogue's split (crate::requant), with a wider shift range
        let (m0, shift) = crate::requant::split_multiplier(m)
            .ok_or_else(|| format!("fixed-point multiplier {m} cannot be split"))?;
        if shift > 126 {
            return Ok(Self::ZERO);
        }
        Ok(FixedMul {
            m0,
            shift: shift as u32,
        })
    }

    /// `(x·m0 + 2^(shift−1)) >> shift`, saturated to i64.
    #[inline]
    pub fn apply(&self, x: i64) -> i64 {
        let p = x as i128 * self.m0 as i128;
        let y = (p + (1i128 << (self.shift - 1))) >> self.shift;
        y.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// The real value `m0·2^−shift`.
    pub fn value(&self) -> f64 {
        self.m0 as f64 / 2f64.powi(self.shift as i32)
    }
}

/// Saturating i64 → i32.
#[inline]
pub fn sat_i32(x: i64) -> i32 {
    x.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// A signed per-channel multiplier `sgn·|m|` (shortcut branch with γ): the magnitude is rounded
/// by [`FixedMul`], then the sign applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedMul {
    pub mul: FixedMul,
    pub negative: bool,
}

impl SignedMul {
    pub fn new(m: f64) -> Result<SignedMul, String> {
        Ok(SignedMul {
            mul: FixedMul::new(m.abs())?,
            negative: m < 0.0,
        })
    }
    #[inline]
    pub fn apply(&self, x: i64) -> i64 {
        let y = self.mul.apply(x);
        if self.negative {
            -y
        } else {
            y
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Integer softmax.

/// `T_hi[j] = round(2^(−j/1024)·2^30)`, `T_lo[j] = round(2^(−j/2^20)·2^30)`, j < 1024.
pub fn exp2_tables() -> &'static ([i64; 1024], [i64; 1024]) {
    static T: OnceLock<([i64; 1024], [i64; 1024])> = OnceLock::new();
    T.get_or_init(|| {
        let mut hi = [0i64; 1024];
        let mut lo = [0i64; 1024];
        for j in 0..1024 {
            let t_hi = j as f64 / 1024.0;
            let t_lo = j as f64 / 1048576.0;
            // 2^−t = e^(−t·ln2), with ln2 split so the product stays exact-ish.
            hi[j] = rhe(exp_f64(-(t_hi * LN2_HI) - t_hi * LN2_LO) * 1073741824.0) as i64;
            lo[j] = rhe(exp_f64(-(t_lo * LN2_HI) - t_lo * LN2_LO) * 1073741824.0) as i64;
        }
        (hi, lo)
    })
}

/// Constants of the integer softmax of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxInt {
    /// `c·2^20`, `c = s_q·s_k/sqrt(d_head)`: score units → Q20 natural-log units.
    pub c_q20: FixedMul,
    /// `log2 e`.
    pub log2e: FixedMul,
    /// `A = round(2^16 / s_p)`.
    pub a: i64,
    pub z_out: i32,
    pub qmax: i32,
}

impl SoftmaxInt {
    pub fn new(
        s_q: f64,
        s_k: f64,
        head_dim: usize,
        s_p: f64,
        z_p: i32,
        qmax: i32,
    ) -> Result<Self, String> {
        let c = s_q * s_k / (head_dim as f64).sqrt();
        let a = rhe(65536.0 / s_p);
        if !(a.is_finite() && a >= 1.0 && a < 2f64.powi(60)) {
            return Err(format!(
                "softmax output scale {s_p} gives an unusable A = 2^16/s"
            ));
        }
        Ok(SoftmaxInt {
            c_q20: FixedMul::new(c * 1048576.0).map_err(|e| format!("softmax c·2^20: {e}"))?,
            log2e: FixedMul::new(std::f64::consts::LOG2_E)?,
            a: a as i64,
            z_out: z_p,
            qmax,
        })
    }

    /// One query row: `scores` (i32 Q·Kᵀ sums over the valid keys) → probability codes.
    /// `e` is scratch of the same length.
    pub fn row(&self, scores: &[i32], e: &mut [i64], out: &mut [u8]) {
        let (t_hi, t_lo) = exp2_tables();
        let max = scores.iter().copied().max().unwrap_or(0) as i64;
        let mut sum = 0i64;
        for (ei, &t) in e.iter_mut().zip(scores) {
            let d = max - t as i64;
            let z = self.c_q20.apply(d);
            let w = self.log2e.apply(z);
            let n = w >> 20;
            let f = (w & 0xF_FFFF) as usize;
            *ei = if n >= 31 {
                0
            } else {
                ((t_hi[f >> 10] * t_lo[f & 1023]) >> 30) >> n
            };
            sum += *ei;
        }
        let r = if sum > 0 { (1i64 << 62) / sum } else { 0 };
        let hi = (self.qmax - self.z_out) as i128;
        let lo = -(self.z_out as i128);
        for (o, &ei) in out.iter_mut().zip(e.iter()) {
            let p = (ei as i128 * r as i128) >> 30;
            let q = ((p * self.a as i128 + (1i128 << 47)) >> 48).clamp(lo, hi);
            *o = (q + self.z_out as i128) as u8;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Integer LayerNorm.

/// Exact `⌊sqrt(n)⌋` (bit-by-bit, integer only).
pub fn isqrt_u128(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    let mut x = 0u128;
    let mut rem = n;
    let mut bit = 1u128 << ((127 - n.leading_zeros()) & !1);
    while bit != 0 {
        if rem >= x + bit {
            rem -= x + bit;
            x = (x >> 1) + bit;
        } else {
            x >>= 1;
        }
        bit >>= 2;
    }
    x
}

/// Constants of one integer LayerNorm (nodes 1, 7, 9).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormInt {
    pub h: usize,
    /// `E = round(H²·eps/s_r²)`.
    pub e: u128,
    /// `a = round(2^30/s_out)`.
    pub a: i128,
    /// `C_j` (Q32 output-code units, zero point included).
    pub c: Vec<i64>,
    /// `Γ_j = round(γ_j·2^30)` for a scaling LN (the last one), `None` when γ was migrated.
    pub gamma: Option<Vec<i64>>,
    pub qmin: i32,
    pub qmax: i32,
}

impl LayerNormInt {
    /// `gamma`, `beta` of the FP32 LN; `migrated` selects the non-scaling form.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        s_r: f64,
        s_out: f64,
        z_out: i32,
        qmin: i32,
        qmax: i32,
        migrated: bool,
    ) -> Result<Self, String> {
        let h = gamma.len();
        if h == 0 || beta.len() != h {
            return Err(format!("LayerNorm with {h} γ and {} β", beta.len()));
        }
        let hf = h as f64;
        let e = rhe(hf * hf * eps / (s_r * s_r));
        if !(e.is_finite() && e >= 0.0) {
            return Err(format!("LayerNorm eps term is not finite (s_r = {s_r})"));
        }
        let e = if e > 2f64.powi(100) {
            1u128 << 100
        } else {
            e as u128
        };
        let a = rhe(1073741824.0 / s_out);
        if !(a.is_finite() && a >= 1.0 && a < 2f64.powi(70)) {
            return Err(format!("LayerNorm output scale {s_out} is unusable"));
        }
        let q32 = 4294967296.0f64;
        let mut c = Vec::with_capacity(h);
        for j in 0..h {
            let v = if migrated {
                (beta[j] as f64 / gamma[j] as f64 / s_out + z_out as f64) * q32
            } else {
                (beta[j] as f64 / s_out + z_out as f64) * q32
            };
            let v = rhe(v);
            if !(v.is_finite() && v.abs() < 2f64.powi(62)) {
                return Err(format!(
                    "LayerNorm channel {j}: offset β/(γ·s) is out of range"
                ));
            }
            c.push(v as i64);
        }
        let gamma = if migrated {
            None
        } else {
            Some(
                gamma
                    .iter()
                    .map(|&g| rhe(g as f64 * 1073741824.0) as i64)
                    .collect(),
            )
        };
        Ok(LayerNormInt {
            h,
            e,
            a: a as i128,
            c,
            gamma,
            qmin,
            qmax,
        })
    }

    /// One token: fixed-point residual sums `r` (length H) → codes.
    pub fn row(&self, r: &[i32], out: &mut [u8]) {
        let h = self.h as i64;
        let s: i64 = r.iter().map(|&v| v as i64).sum();
        let mut q: u128 = 0;
        for &v in r {
            let d = h * v as i64 - s;
            q += (d as i128 * d as i128) as u128;
        }
        let dd = q / self.h as u128 + self.e;
        let sigma = isqrt_u128(dd.saturating_mul(1u128 << 40)).max(1);
        let g = (self.a << 54) / sigma as i128;
        let (lo, hi) = (self.qmin as i128, self.qmax as i128);
        for j in 0..self.h {
            let d = (h * r[j] as i64 - s) as i128;
            let mut y = (d * g) >> 32;
            if let Some(gm) = &self.gamma {
                y = (y * gm[j] as i128) >> 30;
            }
            y += self.c[j] as i128;
            out[j] = ((y + (1i128 << 31)) >> 32).clamp(lo, hi) as u8;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GELU by thresholds.

/// Both scales of a threshold table must be positive and finite.
fn check_scales(what: &str, s_h: f64, s_out: f64) -> Result<(), String> {
    if s_h > 0.0 && s_h.is_finite() && s_out > 0.0 && s_out.is_finite() {
        Ok(())
    } else {
        Err(format!(
            "{what} scales s_h = {s_h}, s_out = {s_out} are unusable"
        ))
    }
}

/// Integer bisection: the smallest `h` in `(lo, hi]` with `f(h) ≥ c`, given `f(lo) < c ≤ f(hi)`
/// and `f` non-decreasing there.
fn smallest_at_least(mut lo: i64, mut hi: i64, c: i32, f: impl Fn(i64) -> i32) -> i64 {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if f(mid) >= c {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The GELU node of one layer as two sorted threshold tables over the fixed-point input `h`
/// (scale `s_h`). Built by integer bisection on [`GeluTable::direct`]; the tables define the code.
#[derive(Clone, Debug, PartialEq)]
pub struct GeluTable {
    pub s_h: f64,
    pub s_out: f64,
    pub z_out: i32,
    pub qmax: i32,
    /// `h` nearest GELU's argmin.
    pub h_star: i64,
    /// `f(h_star)`, the lowest code.
    pub base: i32,
    /// Rising branch: `rise[i]` = smallest `h ≥ h_star` with `f(h) ≥ base + 1 + i` (ascending).
    pub rise: Vec<i64>,
    /// Falling branch: `fall[i]` = largest `h < h_star` with `f(h) ≥ base + 1 + i`, stored
    /// ascending in `h` (i.e. highest code first).
    pub fall: Vec<i64>,
}

impl GeluTable {
    pub fn new(s_h: f64, s_out: f64, z_out: i32, qmax: i32) -> Result<Self, String> {
        check_scales("GELU", s_h, s_out)?;
        let mut t = GeluTable {
            s_h,
            s_out,
            z_out,
            qmax,
            h_star: 0,
            base: 0,
            rise: vec![],
            fall: vec![],
        };
        let (imin, imax) = (i32::MIN as i64, i32::MAX as i64);
        t.h_star = rhe(GELU_ARGMIN / s_h).clamp(imin as f64, imax as f64) as i64;
        t.base = t.direct(t.h_star);
        // Rising branch.
        let top = t.direct(imax);
        for c in t.base + 1..=qmax {
            let v = if top < c {
                imax + 1
            } else {
                smallest_at_least(t.h_star, imax, c, |h| t.direct(h))
            };
            let v = v.max(t.rise.last().copied().unwrap_or(i64::MIN));
            t.rise.push(v);
        }
        // Falling branch (codes above base reached for very negative h).
        let bottom = t.direct(imin);
        let mut fall_desc = Vec::new();
        for c in t.base + 1..=qmax {
            if bottom < c {
                break;
            }
            // f(lo) ≥ c > f(hi), lo < hi ≤ h_star.
            let (mut lo, mut hi) = (imin, t.h_star);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if t.direct(mid) >= c {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let v: i64 = lo.min(fall_desc.last().copied().unwrap_or(i64::MAX));
            fall_desc.push(v);
        }
        fall_desc.reverse();
        t.fall = fall_desc;
        Ok(t)
    }

    /// Direct evaluation `clamp(round_half_even(gelu(h·s_h)/s_out) + z, 0, qmax)` in f64.
    pub fn direct(&self, h: i64) -> i32 {
        let g = gelu_f64(h as f64 * self.s_h);
        let q = rhe(g / self.s_out) + self.z_out as f64;
        q.clamp(0.0, self.qmax as f64) as i32
    }

    /// The code of `h` from the tables (the definition used by both executors).
    #[inline]
    pub fn code(&self, h: i32) -> u8 {
        let h = h as i64;
        let n = if h >= self.h_star {
            self.rise.partition_point(|&t| t <= h)
        } else {
            self.fall.len() - self.fall.partition_point(|&t| t < h)
        };
        (self.base + n as i32) as u8
    }
}

// ---------------------------------------------------------------------------------------------
// Monotone activations (task heads: tanh, ReLU) by thresholds.

/// `tanh(x)` from the own `exp`: `sgn(x)·(1 − e^{−2|x|})/(1 + e^{−2|x|})` (±1 beyond |x| = 20).
pub fn tanh_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let t = if a > 20.0 {
        1.0
    } else {
        let e = exp_f64(-2.0 * a);
        (1.0 - e) / (1.0 + e)
    };
    if x < 0.0 {
        -t
    } else {
        t
    }
}

/// A non-decreasing activation of a task head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonotoneFn {
    Tanh,
    Relu,
}

impl MonotoneFn {
    pub fn eval(self, x: f64) -> f64 {
        match self {
            MonotoneFn::Tanh => tanh_f64(x),
            MonotoneFn::Relu => x.max(0.0),
        }
    }
}

/// A non-decreasing activation node over the fixed-point input `h` (scale `s_h`) as one sorted
/// threshold table: `f(h) = clamp(round_half_even(act(h·s_h)/s_out) + z, 0, qmax)`,
/// `thresholds[i]` = smallest `h` with `f(h) ≥ base + 1 + i` (integer bisection), `base =
/// f(−2^31)`. The table defines the code, in both executors.
#[derive(Clone, Debug, PartialEq)]
pub struct MonotoneTable {
    pub act: MonotoneFn,
    pub s_h: f64,
    pub s_out: f64,
    pub z_out: i32,
    pub qmax: i32,
    pub base: i32,
    pub thresholds: Vec<i64>,
}

impl MonotoneTable {
    pub fn new(
        act: MonotoneFn,
        s_h: f64,
        s_out: f64,
        z_out: i32,
        qmax: i32,
    ) -> Result<Self, String> {
        check_scales(&format!("{act:?}"), s_h, s_out)?;
        let mut t = MonotoneTable {
            act,
            s_h,
            s_out,
            z_out,
            qmax,
            base: 0,
            thresholds: vec![],
        };
        let (imin, imax) = (i32::MIN as i64, i32::MAX as i64);
        t.base = t.direct(imin);
        let top = t.direct(imax);
        for c in t.base + 1..=top {
            let h = smallest_at_least(imin, imax, c, |h| t.direct(h));
            t.thresholds.push(h);
        }
        Ok(t)
    }

    /// Direct evaluation in f64.
    pub fn direct(&self, h: i64) -> i32 {
        let y = self.act.eval(h as f64 * self.s_h);
        let q = rhe(y / self.s_out) + self.z_out as f64;
        q.clamp(0.0, self.qmax as f64) as i32
    }

    /// The code of `h` from the table.
    #[inline]
    pub fn code(&self, h: i32) -> u8 {
        let n = self.thresholds.partition_point(|&t| t <= h as i64);
        (self.base + n as i32) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotone_tables_equal_direct_evaluation() {
        for (act, s_h, s_out, z) in [
            (MonotoneFn::Tanh, 3e-7, 2.0 / 255.0, 128),
            (MonotoneFn::Tanh, 1e-6, 1.6 / 63.0, 30),
            (MonotoneFn::Relu, 2e-7, 5.0 / 255.0, 0),
            (MonotoneFn::Relu, 2e-7, 5.0 / 15.0, 3),
        ] {
            let qmax = if s_out > 0.3 {
                15
            } else if s_out > 0.02 {
                63
            } else {
                255
            };
            let t = MonotoneTable::new(act, s_h, s_out, z, qmax).unwrap();
            let mut h = i32::MIN as i64;
            while h <= i32::MAX as i64 {
                assert_eq!(t.code(h as i32) as i32, t.direct(h), "{act:?} h = {h}");
                h += 7919 * 97;
            }
            for &th in &t.thresholds {
                for d in -2..=2i64 {
                    let x = (th + d).clamp(i32::MIN as i64, i32::MAX as i64);
                    assert_eq!(t.code(x as i32) as i32, t.direct(x), "{act:?} near {th}");
                }
            }
        }
        assert!((tanh_f64(0.5) - 0.46211715726000974).abs() < 1e-15);
        assert_eq!(tanh_f64(-30.0), -1.0);
    }

    #[test]
    fn own_exp_and_erf_match_known_values() {
        for &(x, want) in &[
            (0.0, 1.0),
            (1.0, std::f64::consts::E),
            (-1.0, 0.36787944117144233),
            (-10.0, 4.5399929762484854e-05),
            (3.5, 33.11545195869231),
        ] {
            let got = exp_f64(x);
            assert!(
                ((got - want) / want).abs() < 4e-16,
                "exp({x}) = {got}, want {want}"
            );
        }
        for &(x, want) in &[
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (-0.3, -0.328_626_759_459_127_4),
            (3.0, 0.9999779095030014),
        ] {
            let got = erf_f64(x);
            assert!((got - want).abs() < 1e-15, "erf({x}) = {got}, want {want}");
        }
        for &(x, want) in &[
            (3.0, 2.209049699858544e-05),
            (5.0, 1.537_459_794_428_035e-12),
        ] {
            let got = erfc_pos(x);
            assert!(((got - want) / want).abs() < 1e-13, "erfc({x}) = {got}");
        }
        // GELU's argmin.
        let g0 = gelu_f64(GELU_ARGMIN);
        assert!(gelu_f64(GELU_ARGMIN - 1e-4) > g0 && gelu_f64(GELU_ARGMIN + 1e-4) > g0);
        assert!((g0 + 0.16997120747990124).abs() < 1e-12, "{g0}");
    }

    #[test]
    fn fixed_mul_rounds_half_up() {
        let m = FixedMul::new(0.5).unwrap();
        assert_eq!(m.apply(5), 3);
        assert_eq!(m.apply(-5), -2);
        assert_eq!(FixedMul::new(0.0).unwrap().apply(1 << 40), 0);
        let tiny = FixedMul::new(1e-20).unwrap();
        assert_eq!(tiny.apply(1 << 40), 0);
        assert_eq!(tiny.apply(i64::MAX), 0);
        assert_eq!(FixedMul::new(1e-17).unwrap().apply(i64::MAX), 92);
        assert!(FixedMul::new(2e9).is_err());
        let (m0, s) = crate::quantize_multiplier(0.0123).unwrap();
        let f = FixedMul::new(0.0123).unwrap();
        assert_eq!((f.m0, f.shift), (m0 as i64, s as u32));
    }

    #[test]
    fn isqrt_is_exact() {
        for n in [
            0u128,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            1 << 100,
            (1 << 100) - 1,
            u128::MAX,
        ] {
            let x = isqrt_u128(n);
            assert!(x * x <= n, "{n}");
            assert!((x + 1).checked_mul(x + 1).is_none_or(|v| v > n), "{n}");
        }
    }
}
