//! Bit-exact faster forms of the two most expensive integer nonlinearities, prototyped here (in
//! the profiler's replica) to measure what they would save in `quant/integer.rs` without
//! touching that file. Both are exact by construction and fall back to the definitions of
//! `osq_model::quant::nonlin` wherever their preconditions do not hold.
//!
//! - [`GeluLut`]: the GELU code of `h` from a bucket table over `[-2^23, 2^23)` (buckets of
//!   `2^11` fixed-point units, 8 Ki `u64` entries = 64 KiB per layer). On one monotone side of
//!   `h_star` a bucket holds a constant code or one change point (`code = h ≥ thr ? after :
//!   before`, verified at build with `GeluTable::code`); buckets with more change points, the
//!   bucket of `h_star` and out-of-range `h` use `GeluTable::code` (binary search).
//! - [`FastSoftmax`]: `SoftmaxInt::row` in `u64` instead of `i128`. Bounds: `d = max − t <
//!   2^32`, `m0 < 2^31` ⇒ `d·m0 < 2^63`; `z ≥ z_max` (smallest `z` whose `log2e` product has
//!   `n ≥ 31`, found with the reference `FixedMul::apply`) ⇒ `e = 0`; `e ≤ 2^30`, `R ≤ 2^32` ⇒
//!   `e·R ≤ 2^62`; `p ≤ 2^32` and `A < 2^31` ⇒ `p·A + 2^47 < 2^64`. A layer whose constants break
//!   a bound uses `SoftmaxInt::row`.
//! - [`FastShortcut`]: the shortcut multiplier `sgn·rms(q − z, m)` in `i64` (|q − z| ≤ 255,
//!   `m0 < 2^31` ⇒ |product| < 2^39; shifts ≥ 63 give 0 exactly), branch-free per channel.
//! - [`FastLn`]: LayerNorm with `Σ(H·v − S)² = H²·Σv² − H·S²` (exact integer identity, `v²` in
//!   `u64`) and, for the non-scaling form, the two output shifts merged by
//!   `⌊(⌊A/2^32⌋ + K)/2^32⌋ = ⌊(A + K·2^32)/2^64⌋`: one 64×64→128 multiply, one add, the high
//!   word, an `i64` clamp. Used when `G` fits `i64` (so nothing overflows `i128`); the scaling
//!   form (last LN) and any other row use `LayerNormInt::row`.

use osq_model::quant::graph::LinDerived;
use osq_model::quant::nonlin::{
    exp2_tables, isqrt_u128, sat_i32, FixedMul, GeluTable, LayerNormInt, SignedMul, SoftmaxInt,
};

/// Bucket width (log2) and range of [`GeluLut`].
pub const GELU_SHIFT: u32 = 11;
pub const GELU_LO: i64 = -(1 << 23);
pub const GELU_HI: i64 = 1 << 23;
const FALLBACK: u64 = 1 << 48;

/// See the module docs. Entry of a bucket: bits 0..32 threshold `thr` (i32), 32..40 code below
/// `thr`, 40..48 code from `thr` on, bit 48 = use `GeluTable::code`. A bucket holds at most one
/// change point (a pure bucket has `thr = i32::MAX`); buckets with two or more change points,
/// the bucket of `h_star` and `h` outside `[GELU_LO, GELU_HI)` fall back.
#[derive(Clone, Debug)]
pub struct GeluLut {
    /// `n + 1` entries, the last one a fallback sentinel for out-of-range `h`.
    entries: Vec<u64>,
}

fn gelu_entry(thr: i32, below: u8, from: u8) -> u64 {
    thr as u32 as u64 | (below as u64) << 32 | (from as u64) << 40
}

impl GeluLut {
    pub fn new(t: &GeluTable) -> GeluLut {
        let n = ((GELU_HI - GELU_LO) >> GELU_SHIFT) as usize;
        let w = 1i64 << GELU_SHIFT;
        let code = |h: i64| t.code(h as i32);
        let mut entries: Vec<u64> = (0..n)
            .map(|b| {
                let first = GELU_LO + b as i64 * w;
                let last = first + w - 1;
                if !(last < t.h_star || first >= t.h_star) {
                    return FALLBACK;
                }
                // Monotone on the bucket: the codes equal to code(last) form a suffix.
                let (cf, cl) = (code(first), code(last));
                if cf == cl {
                    return gelu_entry(i32::MAX, cf, cf);
                }
                let (mut lo, mut hi) = (first, last); // code(lo) != cl, code(hi) == cl
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if code(mid) == cl {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                if code(hi - 1) == cf {
                    gelu_entry(hi as i32, cf, cl)
                } else {
                    FALLBACK
                }
            })
            .collect();
        entries.push(FALLBACK);
        GeluLut { entries }
    }

    /// `t.code(h)`, exactly.
    #[inline]
    pub fn code(&self, t: &GeluTable, h: i32) -> u8 {
        let n = self.entries.len() - 1;
        let idx = (((h as i64 - GELU_LO) >> GELU_SHIFT) as u64).min(n as u64) as usize;
        let e = self.entries[idx];
        if e & FALLBACK != 0 {
            return t.code(h);
        }
        if h >= e as u32 as i32 {
            (e >> 40) as u8
        } else {
            (e >> 32) as u8
        }
    }

    /// One GELU row: `out[j] = t.code(sat_i32(lin.fixed(hrow[j], j)))`, exactly. Branch-free
    /// first pass (vectorized under AVX-512), then a scalar pass only if a fallback bucket was hit.
    pub fn row(&self, t: &GeluTable, lin: &LinDerived, hrow: &[i32], out: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { self.row_avx512(t, lin, hrow, out) };
        }
        self.row_impl(t, lin, hrow, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avx512f,avx512dq,avx512bw,avx512vl")]
    unsafe fn row_avx512(&self, t: &GeluTable, lin: &LinDerived, hrow: &[i32], out: &mut [u8]) {
        self.row_impl(t, lin, hrow, out)
    }

    #[inline(always)]
    fn row_impl(&self, t: &GeluTable, lin: &LinDerived, hrow: &[i32], out: &mut [u8]) {
        let n = hrow.len();
        let (bias, out) = (&lin.bias[..n], &mut out[..n]);
        let last = (self.entries.len() - 1) as u64;
        let ent = &self.entries[..];
        // Chunks of 64: a branch-free pass, then the scalar fallback only for the chunks that
        // hit a fallback bucket (~0.1% of inputs on all-MiniLM-L6-v2).
        const C: usize = 64;
        for c0 in (0..n).step_by(C) {
            let c1 = (c0 + C).min(n);
            let mut any = 0u64;
            for j in c0..c1 {
                let h = sat_i32(hrow[j] as i64 + bias[j]);
                let idx = (((h as i64 - GELU_LO) >> GELU_SHIFT) as u64).min(last) as usize;
                // SAFETY: idx ≤ last = entries.len() − 1.
                let e = unsafe { *ent.get_unchecked(idx) };
                any |= e;
                out[j] = if h >= e as u32 as i32 {
                    (e >> 40) as u8
                } else {
                    (e >> 32) as u8
                };
            }
            if any & FALLBACK != 0 {
                for j in c0..c1 {
                    let h = sat_i32(hrow[j] as i64 + bias[j]);
                    let idx = (((h as i64 - GELU_LO) >> GELU_SHIFT) as u64).min(last) as usize;
                    if ent[idx] & FALLBACK != 0 {
                        out[j] = t.code(h);
                    }
                }
            }
        }
    }

    /// Whether `h` lands in a fallback bucket (or out of range).
    pub fn falls_back(&self, h: i32) -> bool {
        let last = (self.entries.len() - 1) as u64;
        let idx = (((h as i64 - GELU_LO) >> GELU_SHIFT) as u64).min(last) as usize;
        self.entries[idx] & FALLBACK != 0
    }

    /// Fraction of buckets answered without the fallback.
    pub fn pure_fraction(&self) -> f64 {
        self.entries.iter().filter(|&&e| e & FALLBACK == 0).count() as f64
            / self.entries.len() as f64
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct FastSoftmax {
    usable: bool,
    c_m0: u64,
    c_sh: u32,
    l_m0: u64,
    l_sh: u32,
    z_max: u64,
    a: u64,
    z_out: i64,
    qmax: i64,
}

/// AVX-512 F/DQ/BW/VL available (cached by std).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

#[inline(always)]
fn apply_u64(m0: u64, sh: u32, x: u64) -> u64 {
    // Caller guarantees x·m0 + 2^(sh−1) < 2^64 when sh ≤ 63.
    if sh >= 64 {
        0
    } else {
        (x * m0 + (1u64 << (sh - 1))) >> sh
    }
}

impl FastSoftmax {
    pub fn new(s: &SoftmaxInt) -> FastSoftmax {
        let (c, l) = (s.c_q20, s.log2e);
        // Smallest z with (log2e.apply(z) >> 20) ≥ 31 (monotone in z ≥ 0).
        let big = |z: i64| (l.apply(z) >> 20) >= 31;
        let (mut lo, mut hi) = (0i64, 1i64 << 40);
        let mut usable = big(hi) && !big(0);
        if usable {
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if big(mid) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
        }
        let z_max = hi as u64;
        let fits = |m: FixedMul, xmax: u128| -> bool {
            m.m0 >= 0
                && m.shift >= 1
                && (m.shift >= 64 || xmax * m.m0 as u128 + (1u128 << (m.shift - 1)) < (1u128 << 64))
        };
        usable = usable
            && fits(c, (1u128 << 32) - 1)
            && fits(l, z_max as u128)
            && s.a >= 1
            && s.a < (1i64 << 31)
            && s.z_out >= 0
            && s.qmax >= s.z_out;
        FastSoftmax {
            usable,
            c_m0: c.m0.max(0) as u64,
            c_sh: c.shift,
            l_m0: l.m0.max(0) as u64,
            l_sh: l.shift,
            z_max,
            a: s.a.max(0) as u64,
            z_out: s.z_out as i64,
            qmax: s.qmax as i64,
        }
    }

    pub fn usable(&self) -> bool {
        self.usable
    }

    /// `s.row(scores, e, out)`, exactly. On x86-64 with AVX-512 (F, DQ, BW, VL) the same
    /// scalar code is compiled for AVX-512 (`target_feature`), which lets LLVM vectorize it.
    pub fn row(&self, s: &SoftmaxInt, scores: &[i32], e: &mut [i64], out: &mut [u8]) {
        if !self.usable {
            return s.row(scores, e, out);
        }
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { self.row_avx512(scores, e, out) };
        }
        self.row_impl(scores, e, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avx512f,avx512dq,avx512bw,avx512vl")]
    unsafe fn row_avx512(&self, scores: &[i32], e: &mut [i64], out: &mut [u8]) {
        self.row_impl(scores, e, out)
    }

    #[inline(always)]
    fn row_impl(&self, scores: &[i32], e: &mut [i64], out: &mut [u8]) {
        let (t_hi, t_lo) = exp2_tables();
        let max = scores.iter().copied().max().unwrap_or(0) as i64;
        let mut sum = 0i64;
        for (ei, &t) in e.iter_mut().zip(scores) {
            let d = (max - t as i64) as u64;
            let z = apply_u64(self.c_m0, self.c_sh, d);
            *ei = if z >= self.z_max {
                0
            } else {
                let w = apply_u64(self.l_m0, self.l_sh, z);
                let n = w >> 20;
                let f = (w & 0xF_FFFF) as usize;
                ((t_hi[f >> 10] * t_lo[f & 1023]) >> 30) >> n
            };
            sum += *ei;
        }
        let r = if sum > 0 {
            ((1i64 << 62) / sum) as u64
        } else {
            0
        };
        let (lo, hi) = (-self.z_out, self.qmax - self.z_out);
        for (o, &ei) in out.iter_mut().zip(e.iter()) {
            let p = (ei as u64 * r) >> 30;
            let q = ((p * self.a + (1u64 << 47)) >> 48) as i64;
            *o = (q.clamp(lo, hi) + self.z_out) as u8;
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct FastShortcut {
    usable: bool,
    m0: Vec<i64>,
    rnd: Vec<i64>,
    sh: Vec<u32>,
    sign: Vec<i64>,
}

impl FastShortcut {
    pub fn new(sc: &[SignedMul]) -> FastShortcut {
        let mut f = FastShortcut {
            usable: Self::exact_for(sc),
            m0: Vec::with_capacity(sc.len()),
            rnd: Vec::with_capacity(sc.len()),
            sh: Vec::with_capacity(sc.len()),
            sign: Vec::with_capacity(sc.len()),
        };
        for s in sc {
            let m = s.mul;
            // FixedMul::new guarantees m0 ∈ [0, 2^31), shift ≥ 1.
            let (m0, sh) = if m.shift >= 63 || !(0..1i64 << 31).contains(&m.m0) {
                (0, 1) // |product| < 2^39 < 2^(shift−1): rounds to 0 (bad m0: `usable` is false)
            } else {
                (m.m0, m.shift)
            };
            f.m0.push(m0);
            f.sh.push(sh);
            f.rnd.push(1i64 << (sh - 1));
            f.sign.push(if s.negative { -1 } else { 1 });
        }
        f
    }

    /// Whether every channel's multiplier is in the range the i64 form assumes.
    pub fn exact_for(sc: &[SignedMul]) -> bool {
        sc.iter()
            .all(|s| s.mul.shift >= 1 && (0..1i64 << 31).contains(&s.mul.m0))
    }

    /// `d[j] = sat_i32(lin.fixed(d[j], j) + sc[j].apply(x[j] − z))`, exactly (`sc` is the
    /// fallback when a multiplier is outside the assumed range).
    #[inline]
    pub fn apply_row(&self, sc: &[SignedMul], lin: &LinDerived, d: &mut [i32], x: &[u8], z: i64) {
        let n = d.len();
        if !self.usable {
            for j in 0..n {
                d[j] = sat_i32(lin.fixed(d[j], j) + sc[j].apply(x[j] as i64 - z));
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { self.apply_avx512(lin, d, x, z) };
        }
        self.apply_impl(lin, d, x, z)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avx512f,avx512dq,avx512bw,avx512vl")]
    unsafe fn apply_avx512(&self, lin: &LinDerived, d: &mut [i32], x: &[u8], z: i64) {
        self.apply_impl(lin, d, x, z)
    }

    #[inline(always)]
    fn apply_impl(&self, lin: &LinDerived, d: &mut [i32], x: &[u8], z: i64) {
        let n = d.len();
        let (m0, rnd, sh, sign, bias) = (
            &self.m0[..n],
            &self.rnd[..n],
            &self.sh[..n],
            &self.sign[..n],
            &lin.bias[..n],
        );
        let x = &x[..n];
        for j in 0..n {
            let v = x[j] as i64 - z;
            let y = ((v * m0[j] + rnd[j]) >> sh[j]) * sign[j];
            d[j] = sat_i32(d[j] as i64 + bias[j] + y);
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct FastLn {
    /// `(C_j + 2^31)·2^32`, non-scaling form only.
    kc: Option<Vec<i128>>,
}

impl FastLn {
    pub fn new(ln: &LayerNormInt) -> FastLn {
        let kc = (ln.gamma.is_none() && ln.h <= 2048).then(|| {
            ln.c.iter()
                .map(|&c| (c as i128 + (1i128 << 31)) << 32)
                .collect()
        });
        FastLn { kc }
    }

    /// `ln.row(r, out)`, exactly.
    pub fn row(&self, ln: &LayerNormInt, r: &[i32], out: &mut [u8]) {
        let Some(kc) = &self.kc else {
            return ln.row(r, out);
        };
        let h = ln.h;
        let (mut s, mut sq) = (0i64, 0u128);
        for &v in &r[..h] {
            s += v as i64;
            sq += ((v as i64) * (v as i64)) as u64 as u128;
        }
        let hu = h as u128;
        let q = hu * hu * sq - hu * (s as i128 * s as i128) as u128;
        let dd = q / hu + ln.e;
        let sigma = isqrt_u128(dd.saturating_mul(1u128 << 40)).max(1);
        let g = (ln.a << 54) / sigma as i128;
        if g > i64::MAX as i128 || g < i64::MIN as i128 {
            return ln.row(r, out);
        }
        let (lo, hi) = (ln.qmin as i64, ln.qmax as i64);
        let hh = h as i64;
        for ((o, &v), &k) in out[..h].iter_mut().zip(&r[..h]).zip(&kc[..h]) {
            let d = hh * v as i64 - s;
            let t = d as i128 * g + k;
            *o = ((t >> 64) as i64).clamp(lo, hi) as u8;
        }
    }
}

/// `out[j] = lin.code(y[j], j)` for a code-output Linear (Q/K/V), exactly: the same `i64`
/// expression, compiled for AVX-512 when available so that it vectorizes.
pub fn codes_row(lin: &LinDerived, y: &[i32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        return unsafe { codes_row_avx512(lin, y, out) };
    }
    codes_row_impl(lin, y, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512dq,avx512bw,avx512vl")]
unsafe fn codes_row_avx512(lin: &LinDerived, y: &[i32], out: &mut [u8]) {
    codes_row_impl(lin, y, out)
}

#[inline(always)]
fn codes_row_impl(lin: &LinDerived, y: &[i32], out: &mut [u8]) {
    let Some(q) = lin.codes.as_ref() else {
        for (j, (o, &v)) in out.iter_mut().zip(y).enumerate() {
            *o = lin.code(v, j); // panics like the definition does
        }
        return;
    };
    let n = y.len();
    let (bias, out) = (&lin.bias[..n], &mut out[..n]);
    let (lo, hi, z) = (
        (q.qmin - q.zero_point) as i64,
        (q.qmax - q.zero_point) as i64,
        q.zero_point as i64,
    );
    let half = 1i64 << (osq_model::quant::graph::CODE_FRAC_BITS - 1);
    for j in 0..n {
        let v = (y[j] as i64 + bias[j] + half) >> osq_model::quant::graph::CODE_FRAC_BITS;
        out[j] = (v.clamp(lo, hi) + z) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osq_model::testing::SplitMix64;

    #[test]
    fn gelu_lut_equals_table_everywhere_sampled() {
        for (s_h, s_out, z, qmax) in [
            (3.0 / 4194304.0, 0.02, 12, 255),
            (8.0 / 4194304.0, 0.05, 4, 255),
            (1.0 / 4194304.0, 0.004, 40, 255),
            (3.0 / 4194304.0, 0.3, 1, 15),
        ] {
            let t = GeluTable::new(s_h, s_out, z, qmax).unwrap();
            let lut = GeluLut::new(&t);
            assert!(lut.pure_fraction() > 0.9, "{}", lut.pure_fraction());
            let mut rng = SplitMix64::new(9);
            for i in 0..400_000u64 {
                let h = match i % 4 {
                    0 => (rng.next_u64() as i64 % (1 << 24)) as i32,
                    1 => rng.next_u64() as i32,
                    2 => (t.h_star + (rng.next_u64() % 4096) as i64 - 2048) as i32,
                    _ => {
                        (GELU_LO + (i as i64 % 64) - 32
                            + ((i as i64 / 64) % 2) * (GELU_HI - GELU_LO))
                            as i32
                    }
                };
                assert_eq!(lut.code(&t, h), t.code(h), "h = {h}");
            }
            for h in [
                i32::MIN,
                i32::MAX,
                0,
                -1,
                t.h_star as i32,
                GELU_LO as i32,
                GELU_HI as i32,
                (GELU_HI - 1) as i32,
            ] {
                assert_eq!(lut.code(&t, h), t.code(h), "h = {h}");
            }
        }
    }

    #[test]
    fn fast_shortcut_and_ln_equal_reference() {
        let mut rng = SplitMix64::new(17);
        let h = 384;
        for trial in 0..40 {
            let gamma: Vec<f32> = (0..h)
                .map(|j| {
                    let g = 0.2 + (rng.next_u64() % 1000) as f32 / 500.0;
                    if j % 7 == 3 {
                        -g
                    } else if j == 5 {
                        g * 30.0
                    } else {
                        g
                    }
                })
                .collect();
            let beta: Vec<f32> = (0..h)
                .map(|_| (rng.next_u64() % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            let s_r = [1e-6, 3e-7, 2e-5][trial % 3];
            let migrated = trial % 4 != 0;
            let ln =
                LayerNormInt::new(&gamma, &beta, 1e-12, s_r, 0.03, 120, 0, 255, migrated).unwrap();
            let f = FastLn::new(&ln);
            for spread in [1u64 << 10, 1 << 20, 1 << 24, 1 << 31, 1 << 32] {
                let r: Vec<i32> = (0..h)
                    .map(|_| ((rng.next_u64() % spread) as i64 - (spread / 2) as i64) as i32)
                    .collect();
                let (mut o1, mut o2) = (vec![0u8; h], vec![0u8; h]);
                ln.row(&r, &mut o1);
                f.row(&ln, &r, &mut o2);
                assert_eq!(o1, o2, "trial {trial} spread {spread}");
            }
            let r = vec![i32::MAX; h];
            let (mut o1, mut o2) = (vec![0u8; h], vec![0u8; h]);
            ln.row(&r, &mut o1);
            f.row(&ln, &r, &mut o2);
            assert_eq!(o1, o2);
            // Shortcut.
            let sc: Vec<SignedMul> = gamma
                .iter()
                .map(|&g| SignedMul::new(g as f64 * [1e3, 1e-3, 1e-25, 1e7][trial % 4]).unwrap())
                .collect();
            assert!(FastShortcut::exact_for(&sc));
            let fs = FastShortcut::new(&sc);
            let lin = LinDerived {
                requant: osq_kernels::Requant::new(&vec![0.5; h], 0, 0, 0).unwrap(),
                bias: (0..h)
                    .map(|_| (rng.next_u64() % (1 << 40)) as i64 - (1 << 39))
                    .collect(),
                codes: None,
            };
            for z in [0i64, 37, 255] {
                let x: Vec<u8> = (0..h).map(|_| rng.next_u64() as u8).collect();
                let d0: Vec<i32> = (0..h).map(|_| rng.next_u64() as i32).collect();
                let mut want = d0.clone();
                for j in 0..h {
                    want[j] = sat_i32(lin.fixed(want[j], j) + sc[j].apply(x[j] as i64 - z));
                }
                let mut got = d0.clone();
                fs.apply_row(&sc, &lin, &mut got, &x, z);
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn fast_softmax_equals_reference() {
        let mut rng = SplitMix64::new(5);
        for (sq, sk, sp, zp) in [
            (0.05, 0.04, 1.0 / 255.0, 0),
            (0.2, 0.3, 1.0 / 255.0, 0),
            (0.001, 0.002, 1.0 / 200.0, 3),
            (1.5, 2.0, 1.0 / 15.0, 0),
        ] {
            let s = SoftmaxInt::new(sq, sk, 32, sp, zp, 255).unwrap();
            let f = FastSoftmax::new(&s);
            assert!(f.usable());
            for len in [1usize, 2, 7, 128, 384] {
                for spread in [10u64, 1000, 100_000, 1 << 31] {
                    let scores: Vec<i32> = (0..len)
                        .map(|_| (rng.next_u64() % spread) as i64 as i32 - (spread / 2) as i32)
                        .collect();
                    let (mut e1, mut e2) = (vec![0i64; len], vec![0i64; len]);
                    let (mut o1, mut o2) = (vec![0u8; len], vec![0u8; len]);
                    s.row(&scores, &mut e1, &mut o1);
                    f.row(&s, &scores, &mut e2, &mut o2);
                    assert_eq!(o1, o2);
                    assert_eq!(e1, e2);
                }
            }
            // Extremes.
            let scores = vec![i32::MIN, i32::MAX, 0, i32::MAX - 1];
            let (mut e1, mut e2) = (vec![0i64; 4], vec![0i64; 4]);
            let (mut o1, mut o2) = (vec![0u8; 4], vec![0u8; 4]);
            s.row(&scores, &mut e1, &mut o1);
            f.row(&s, &scores, &mut e2, &mut o2);
            assert_eq!(o1, o2);
        }
    }
}
