//! The residual sum before a LayerNorm: `r_j = sat_i32(y_j + b_j ± mul_rndnu(x_j − z, m_j))` (the GEMM's
//! fixed-point output plus its bias plus the shortcut branch, `SignedMul` in osq-model). Bounds:
//! `|x − z| ≤ 255`, `m0 < 2^31` ⇒ `|(x − z)·m0| < 2^39`, so the product fits i64, and a shift
//! ≥ 40 gives 0 exactly (stored as `m0 = 0`); `|b| < 2^62` keeps the sum in i64.

use super::RowPath;
use crate::dispatch::Isa;

/// Per-channel constants of one residual sum.
#[derive(Clone, Debug)]
pub struct Residual {
    m0: Vec<i32>,
    sh: Vec<u64>,
    rnd: Vec<i64>,
    /// 0 or −1 (negate: `(y ^ s) − s`).
    neg: Vec<i64>,
    bias: Vec<i64>,
}

impl Residual {
    /// `m0`, `shift`, `negative` of each channel's shortcut multiplier and the Linear's bias.
    /// `None` outside the bounds.
    pub fn new(m0: &[i64], shift: &[u32], negative: &[bool], bias: &[i64]) -> Option<Residual> {
        let n = m0.len();
        if shift.len() != n || negative.len() != n || bias.len() != n {
            return None;
        }
        let mut r = Residual {
            m0: Vec::with_capacity(n),
            sh: Vec::with_capacity(n),
            rnd: Vec::with_capacity(n),
            neg: Vec::with_capacity(n),
            bias: Vec::with_capacity(n),
        };
        for j in 0..n {
            if !(0..1i64 << 31).contains(&m0[j])
                || shift[j] == 0
                || bias[j].unsigned_abs() >= 1 << 62
            {
                return None;
            }
            let (m, s) = if shift[j] >= 40 {
                (0, 1)
            } else {
                (m0[j], shift[j])
            };
            r.m0.push(m as i32);
            r.sh.push(s as u64);
            r.rnd.push(1i64 << (s - 1));
            r.neg.push(if negative[j] { -1 } else { 0 });
            r.bias.push(bias[j]);
        }
        Some(r)
    }

    pub fn n(&self) -> usize {
        self.m0.len()
    }

    /// `out_j = sat_i32(y_j + b_j ± mul_rndnu(x_j − z, m_j))` for one row.
    pub fn row(&self, isa: Isa, y: &[i32], x: &[u8], z: u8, out: &mut [i32]) {
        let n = self.n();
        assert!(y.len() >= n && x.len() >= n && out.len() >= n);
        match super::path(isa) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx512 only when the CPU has those features.
            RowPath::Avx512 => unsafe { super::x86::residual_avx512(self, y, x, z, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx2 only when the CPU has AVX2.
            RowPath::Avx2 => unsafe { super::x86::residual_avx2(self, y, x, z, out) },
            RowPath::Scalar => self.body(y, x, z, out),
        }
    }

    /// The reference body.
    #[inline(always)]
    pub(super) fn body(&self, y: &[i32], x: &[u8], z: u8, out: &mut [i32]) {
        let n = self.n();
        let (y, x, out) = (&y[..n], &x[..n], &mut out[..n]);
        let (m0, sh, rnd, neg, bias) = (
            &self.m0[..n],
            &self.sh[..n],
            &self.rnd[..n],
            &self.neg[..n],
            &self.bias[..n],
        );
        let z = z as i32;
        for j in 0..n {
            let v = (x[j] as i32 - z) as i64;
            let p = (v * m0[j] as i64 + rnd[j]) >> sh[j];
            let sc = (p ^ neg[j]) - neg[j];
            let t = y[j] as i64 + bias[j] + sc;
            out[j] = t.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        }
    }
}
