//! The embedding sum of one token: `r_j = sat_i32(Σ_t mul_rndnu(c_t[j], m_t))` over the word, position
//! and token-type rows (i8 codes, one multiplier per table row; `FixedMul::apply` in osq-model).
//! Bounds: `|c| ≤ 128`, `m0 < 2^31` ⇒ products below 2^38 in i64; a shift ≥ 40 gives 0 exactly.

use super::RowPath;
use crate::dispatch::Isa;

/// `out_j = sat_i32(Σ_t mul_rndnu(codes[t][j], muls[t]))`; `muls[t] = (m0, shift)`. Returns `false`
/// (nothing written) when a multiplier is outside `m0 ∈ [0, 2^31)`, `shift ≥ 1`.
pub fn emb_row(isa: Isa, codes: [&[i8]; 3], muls: [(i64, u32); 3], out: &mut [i32]) -> bool {
    let n = out.len();
    assert!(codes.iter().all(|c| c.len() >= n));
    let mut m = [(0i64, 0u32, 0i64); 3];
    for (o, &(m0, sh)) in m.iter_mut().zip(&muls) {
        if !(0..1i64 << 31).contains(&m0) || sh == 0 {
            return false;
        }
        let (m0, sh) = if sh >= 40 { (0, 1) } else { (m0, sh) };
        *o = (m0, sh, 1i64 << (sh - 1));
    }
    match super::path(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returns Avx512 only when the CPU has those features.
        RowPath::Avx512 => unsafe { super::x86::emb_avx512(codes, m, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returns Avx2 only when the CPU has AVX2.
        RowPath::Avx2 => unsafe { super::x86::emb_avx2(codes, m, out) },
        RowPath::Scalar => emb_body(codes, m, out),
    }
    true
}

/// The reference body; `m[t] = (m0, shift, 2^(shift−1))` already bounded.
#[inline(always)]
pub(super) fn emb_body(codes: [&[i8]; 3], m: [(i64, u32, i64); 3], out: &mut [i32]) {
    let n = out.len();
    let (a, b, c) = (&codes[0][..n], &codes[1][..n], &codes[2][..n]);
    for j in 0..n {
        let t = ((a[j] as i64 * m[0].0 + m[0].2) >> m[0].1)
            + ((b[j] as i64 * m[1].0 + m[1].2) >> m[1].1)
            + ((c[j] as i64 * m[2].0 + m[2].2) >> m[2].1);
        out[j] = t.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    }
}
