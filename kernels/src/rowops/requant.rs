//! Codes of a code-output Linear (Q, K, V) from its fixed-point GEMM output:
//! `clamp((y + b + 2^(f−1)) >> f, qmin − z, qmax − z) + z` (`LinDerived::code` in osq-model), in
//! i64 (`|y| < 2^31`, `|b| < 2^62`).

use super::RowPath;
use crate::dispatch::Isa;

/// Per-channel bias and the output quantizer of one code-output Linear.
#[derive(Clone, Debug)]
pub struct CodeRequant {
    bias: Vec<i64>,
    frac: u32,
    lo: i64,
    hi: i64,
    z: i64,
}

impl CodeRequant {
    /// `None` when a bound does not hold (`1 ≤ frac ≤ 62`, `0 ≤ qmin ≤ qmax ≤ 255`).
    pub fn new(bias: &[i64], frac: u32, zero: i32, qmin: i32, qmax: i32) -> Option<CodeRequant> {
        let ok = (1..=62).contains(&frac)
            && 0 <= qmin
            && qmin <= qmax
            && qmax <= 255
            && bias.iter().all(|b| b.unsigned_abs() < 1 << 62);
        ok.then(|| CodeRequant {
            bias: bias.to_vec(),
            frac,
            lo: (qmin - zero) as i64,
            hi: (qmax - zero) as i64,
            z: zero as i64,
        })
    }

    pub fn n(&self) -> usize {
        self.bias.len()
    }

    /// One row: `out_j = code(y_j)`.
    pub fn row(&self, isa: Isa, y: &[i32], out: &mut [u8]) {
        assert!(y.len() >= self.n() && out.len() >= self.n());
        match super::path(isa) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx512 only when the CPU has those features.
            RowPath::Avx512 => unsafe { super::x86::codes_avx512(self, y, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx2 only when the CPU has AVX2.
            RowPath::Avx2 => unsafe { super::x86::codes_avx2(self, y, out) },
            RowPath::Scalar => self.body(y, out),
        }
    }

    /// The reference body.
    #[inline(always)]
    pub(super) fn body(&self, y: &[i32], out: &mut [u8]) {
        let n = self.n();
        let (y, out, bias) = (&y[..n], &mut out[..n], &self.bias[..n]);
        let (half, f, lo, hi, z) = (1i64 << (self.frac - 1), self.frac, self.lo, self.hi, self.z);
        for j in 0..n {
            let v = (y[j] as i64 + bias[j] + half) >> f;
            out[j] = (v.clamp(lo, hi) + z) as u8;
        }
    }
}
