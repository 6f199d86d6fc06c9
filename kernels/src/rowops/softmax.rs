//! Integer softmax of one row in u32/u64 lanes (the definition, `SoftmaxInt::row` of osq-model,
//! works in i64/i128). Bounds, for `d = max − t < 2^32`:
//! `z = mul_rndnu(d, c)` with `c_m0 < 2^31` ⇒ `d·c_m0 < 2^63`; `z ≥ z_max` (smallest z with
//! `mul_rndnu(z, log2e) >> 20 ≥ 31`, found here by bisection) ⇒ `e = 0`, and below it `z < 2^32` so
//! `z·l_m0 < 2^63`; table entries `≤ 2^30` ⇒ products `< 2^60` and `e ≤ 2^30`. The maximum gives
//! `e = 2^30` (tables start at 2^30), so `sum ≥ 2^30` and `R = 2^62/sum ≤ 2^32`; `R = 2^32` only
//! when `sum = 2^30` (then `p = 4e`); otherwise `e·R < 2^62`, `p < 2^32`, `p·A < 2^63` (`A < 2^31`).
//! All multiplies are then 32×32→64 (`vpmuludq`).

use super::{RowPath, TableReads};
use crate::dispatch::Isa;

/// Constants of one layer's softmax in the bounded form.
#[derive(Clone, Debug)]
pub struct Softmax {
    pub(super) c_m0: u32,
    pub(super) c_sh: u32,
    pub(super) l_m0: u32,
    pub(super) l_sh: u32,
    pub(super) z_max: u64,
    pub(super) a: u32,
    pub(super) z_out: u32,
    pub(super) qmax: u32,
    pub(super) t_hi: Box<[u32; 1024]>,
    pub(super) t_lo: Box<[u32; 1024]>,
    /// `e(d)` for every `d < d_max` (the smallest `d` with `z(d) ≥ z_max`, so `e(d) = 0` from
    /// there on: `z` is monotone in `d`) and a final 0 that every larger `d` reads, when
    /// `d_max ≤ LUT_MAX`; built with [`Softmax::body`]'s expression, used by the AVX-512 path
    /// (one lookup per element instead of two and the multiplies).
    pub(super) lut: Option<Vec<u32>>,
}

/// Largest `d_max` given a direct table (512 KiB: half the L2 of the machines we bench on; at
/// 2^16 the last layer of all-MiniLM-L6-v2 W8A8, d_max = 74,646, fell back to the two-level
/// path, and OS parameters of fine-tuned models reach d_max ≈ 126,000: measured 10.5 → 8.7–9.6 ms
/// of softmax at b1 s384 t1).
const LUT_MAX: u64 = 1 << 17;

/// `(x·m0 + 2^(sh−1)) >> sh` in u128 (the definition's form for x ≥ 0).
fn mul_rndnu_u128(x: u64, m0: u32, sh: u32) -> u128 {
    (x as u128 * m0 as u128 + (1u128 << (sh - 1))) >> sh
}

impl Softmax {
    /// `c`/`log2e`: `(m0, shift)` of the two multipliers; `a = round(2^16/s_p)`; tables
    /// `T_hi`, `T_lo` of the definition. `None` when a bound above does not hold.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c: (i64, u32),
        log2e: (i64, u32),
        a: i64,
        z_out: i32,
        qmax: i32,
        t_hi: &[i64; 1024],
        t_lo: &[i64; 1024],
    ) -> Option<Softmax> {
        let mul_ok = |(m0, sh): (i64, u32)| (0..1i64 << 31).contains(&m0) && (1..=63).contains(&sh);
        if !(mul_ok(c) && mul_ok(log2e) && (1..1i64 << 31).contains(&a)) {
            return None;
        }
        if !(0 <= z_out && z_out <= qmax && qmax <= 255) {
            return None;
        }
        let tab_ok =
            |t: &[i64; 1024]| t[0] == 1 << 30 && t.iter().all(|&v| (0..=1 << 30).contains(&v));
        if !(tab_ok(t_hi) && tab_ok(t_lo)) {
            return None;
        }
        let (l_m0, l_sh) = (log2e.0 as u32, log2e.1);
        let big = |z: u64| (mul_rndnu_u128(z, l_m0, l_sh) >> 20) >= 31;
        let (mut lo, mut hi) = (0u64, 1u64 << 32);
        if big(lo) || !big(hi) {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if big(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let tab = |t: &[i64; 1024]| {
            let mut b = Box::new([0u32; 1024]);
            for (o, &v) in b.iter_mut().zip(t.iter()) {
                *o = v as u32;
            }
            b
        };
        let mut s = Softmax {
            c_m0: c.0 as u32,
            c_sh: c.1,
            l_m0,
            l_sh,
            z_max: hi,
            a: a as u32,
            z_out: z_out as u32,
            qmax: qmax as u32,
            t_hi: tab(t_hi),
            t_lo: tab(t_lo),
            lut: None,
        };
        // d_max: smallest d < 2^32 with z(d) ≥ z_max (z monotone in d), if any below LUT_MAX.
        let z_of = |d: u64| mul_rndnu_u128(d, s.c_m0, s.c_sh) as u64;
        if z_of(LUT_MAX) >= s.z_max {
            let (mut lo, mut hi) = (0u64, LUT_MAX); // z(lo) < z_max ≤ z(hi)
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if z_of(mid) >= s.z_max {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            // d_max entries and a 0 sentinel that every d ≥ d_max reads.
            s.lut = Some(
                (0..hi)
                    .map(|d| s.exp_of(d))
                    .chain(std::iter::once(0))
                    .collect(),
            );
        }
        Some(s)
    }

    /// The same softmax without the direct `e(d)` table (the AVX-512 path then reads the
    /// definition's two tables): for measuring one path against the other.
    pub fn without_table(mut self) -> Softmax {
        self.lut = None;
        self
    }

    /// Whether the direct `e(d)` table was built (`d_max ≤ 2^17`), and its `d_max` (entries
    /// before the 0 sentinel).
    pub fn table_len(&self) -> Option<usize> {
        self.lut.as_ref().map(|t| t.len() - 1)
    }

    /// `e` of one `d = max − t` (the expression of [`Softmax::body`]).
    #[inline(always)]
    fn exp_of(&self, d: u64) -> u32 {
        let z = (d * self.c_m0 as u64 + (1u64 << (self.c_sh - 1))) >> self.c_sh;
        if z >= self.z_max {
            return 0;
        }
        let w = (z * self.l_m0 as u64 + (1u64 << (self.l_sh - 1))) >> self.l_sh;
        let f = (w & 0xF_FFFF) as usize;
        let p = (self.t_hi[f >> 10] as u64 * self.t_lo[f & 1023] as u64) >> 30;
        (p >> (w >> 20).min(31)) as u32
    }

    /// One row of i32 scores → probability codes; `e` is scratch of the row's length.
    pub fn row(&self, isa: Isa, scores: &[i32], e: &mut [u32], out: &mut [u8]) {
        self.row_reads(isa, TableReads::active(), scores, e, out)
    }

    /// [`Softmax::row`] with the table reads of the AVX-512 path named (same bits either way).
    pub fn row_reads(
        &self,
        isa: Isa,
        reads: TableReads,
        scores: &[i32],
        e: &mut [u32],
        out: &mut [u8],
    ) {
        assert!(e.len() >= scores.len() && out.len() >= scores.len());
        #[cfg(not(target_arch = "x86_64"))]
        let _ = reads;
        match super::path(isa) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx512 only when the CPU has those features.
            RowPath::Avx512 => unsafe { super::avx512::softmax(self, reads, scores, e, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx2 only when the CPU has AVX2.
            RowPath::Avx2 => unsafe { super::x86::softmax_avx2(self, scores, e, out) },
            RowPath::Scalar => self.body(scores, e, out),
        }
    }

    /// The reference body (see the module docs for the bounds).
    #[inline(always)]
    pub(super) fn body(&self, scores: &[i32], e: &mut [u32], out: &mut [u8]) {
        let n = scores.len();
        let (e, out) = (&mut e[..n], &mut out[..n]);
        let max = scores.iter().copied().fold(i32::MIN, i32::max) as i64;
        let (c_m0, c_rnd, c_sh) = (self.c_m0 as u64, 1u64 << (self.c_sh - 1), self.c_sh);
        let (l_m0, l_rnd, l_sh) = (self.l_m0 as u64, 1u64 << (self.l_sh - 1), self.l_sh);
        let z_max = self.z_max;
        let (t_hi, t_lo) = (&*self.t_hi, &*self.t_lo);
        let mut sum = 0u64;
        for j in 0..n {
            let d = (max - scores[j] as i64) as u32 as u64;
            let z = (d * c_m0 + c_rnd) >> c_sh;
            let zc = z.min(z_max) as u32 as u64;
            let w = (zc * l_m0 + l_rnd) >> l_sh;
            let sh = (w >> 20).min(31);
            let f = (w & 0xF_FFFF) as usize;
            let p = (t_hi[f >> 10] as u64 * t_lo[f & 1023] as u64) >> 30;
            let v = if z >= z_max { 0 } else { (p >> sh) as u32 };
            e[j] = v;
            sum += v as u64;
        }
        if n == 0 {
            return;
        }
        let r = (1u64 << 62) / sum;
        if r >= 1 << 32 {
            let (a, z, qmax) = (self.a as u64, self.z_out as u64, self.qmax as u64);
            for j in 0..n {
                let p = (e[j] as u64) << 2;
                let q = (p * a + (1u64 << 47)) >> 48;
                out[j] = (q + z).min(qmax) as u8;
            }
            return;
        }
        for j in 0..n {
            out[j] = self.code_of(e[j], r);
        }
    }

    /// The probability code of one exponential `e` of a row whose `R = ⌊2^62/sum⌋ < 2^32`.
    #[inline(always)]
    pub(super) fn code_of(&self, e: u32, r: u64) -> u8 {
        let r = r as u32 as u64;
        let p = (e as u64 * r) >> 30;
        let q = (p as u32 as u64 * self.a as u64 + (1u64 << 47)) >> 48;
        (q + self.z_out as u64).min(self.qmax as u64) as u8
    }
}
