//! Hand-written AVX-512 (F/BW/DQ/VL) forms of the two table-bound rows, softmax and GELU: LLVM
//! does not vectorize their table lookups well. Same bits as the scalar bodies (`softmax.rs`,
//! `gelu.rs`; the bounds are argued there): each lane runs the scalar expression with 64-bit
//! lanes, `vpmuludq` for the 32×32→64 products; the two-level softmax tables are read with scalar
//! loads (faster than qword gathers on this Zen 4); the direct softmax table and GELU's u32 table
//! with two 8-lane dword gathers ([`gather16`]). Tails use masks; narrowing stores go through a
//! register (the memory forms of vpmov* are microcoded on Zen 4).

use std::arch::x86_64::*;

use super::{GeluLut, Softmax};

/// Lanes of valid elements among the 8 starting at `j` of `n`.
#[inline(always)]
fn mask8(j: usize, n: usize) -> __mmask8 {
    mask16(j, n) as __mmask8
}

/// Lanes of valid elements among the 16 starting at `j` of `n`.
#[inline(always)]
fn mask16(j: usize, n: usize) -> __mmask16 {
    let left = n - j;
    if left >= 16 {
        0xFFFF
    } else {
        ((1u32 << left) - 1) as __mmask16
    }
}

/// `[t[i0], …, t[i7]]` for the eight 64-bit lane indices of `idx`, by scalar loads (volatile, so
/// that LLVM does not fuse them back into a gather instruction).
///
/// # Safety
/// Every lane of `idx` must be an index inside `t`.
#[inline(always)]
unsafe fn lookup8_u32(t: *const u32, idx: __m512i) -> __m512i {
    let mut i = [0u64; 8];
    // SAFETY: `i` is 64 bytes.
    unsafe { _mm512_storeu_si512(i.as_mut_ptr() as *mut __m512i, idx) };
    // SAFETY: the caller guarantees the indices are in bounds.
    unsafe {
        _mm512_set_epi64(
            t.add(i[7] as usize).read_volatile() as i64,
            t.add(i[6] as usize).read_volatile() as i64,
            t.add(i[5] as usize).read_volatile() as i64,
            t.add(i[4] as usize).read_volatile() as i64,
            t.add(i[3] as usize).read_volatile() as i64,
            t.add(i[2] as usize).read_volatile() as i64,
            t.add(i[1] as usize).read_volatile() as i64,
            t.add(i[0] as usize).read_volatile() as i64,
        )
    }
}

/// `[t[i0], …, t[i15]]` for the 16 dword indices of `idx`, as two 8-lane AVX2 gathers: on this
/// Zen 4 two `vpgatherdd ymm` measured ~12 % faster per element than one `vpgatherdd zmm`.
///
/// # Safety
/// Every lane of `idx` must be an index inside `t`.
#[inline(always)]
unsafe fn gather16(t: *const i32, idx: __m512i) -> __m512i {
    // SAFETY: the caller guarantees every index lies inside `t`.
    let (lo, hi) = unsafe {
        (
            _mm256_i32gather_epi32::<4>(t, _mm512_castsi512_si256(idx)),
            _mm256_i32gather_epi32::<4>(t, _mm512_extracti64x4_epi64::<1>(idx)),
        )
    };
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Softmax of one row; see `Softmax::body`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
pub(super) unsafe fn softmax(s: &Softmax, scores: &[i32], e: &mut [u32], out: &mut [u8]) {
    let n = scores.len();
    if n == 0 {
        return;
    }
    let (sp, ep) = (scores.as_ptr(), e.as_mut_ptr());
    // Row maximum (masked lanes read as i32::MIN).
    let mut vmax = _mm512_set1_epi32(i32::MIN);
    let mut j = 0;
    while j < n {
        let k = mask16(j, n);
        // SAFETY: the mask limits the load to scores[j..n].
        let v = unsafe { _mm512_mask_loadu_epi32(vmax, k, sp.add(j)) };
        vmax = _mm512_max_epi32(vmax, v);
        j += 16;
    }
    let max = _mm512_reduce_max_epi32(vmax);
    if let Some(lut) = &s.lut {
        // SAFETY: same features; `lut` holds e(d) for d < lut.len().
        return unsafe { softmax_lut(s, lut, max, scores, e, out) };
    }
    let vmax8 = _mm256_set1_epi32(max);
    let c_m0 = _mm512_set1_epi64(s.c_m0 as i64);
    let c_rnd = _mm512_set1_epi64(1i64 << (s.c_sh - 1));
    let c_sh = _mm512_set1_epi64(s.c_sh as i64);
    let l_m0 = _mm512_set1_epi64(s.l_m0 as i64);
    let l_rnd = _mm512_set1_epi64(1i64 << (s.l_sh - 1));
    let l_sh = _mm512_set1_epi64(s.l_sh as i64);
    let z_max = _mm512_set1_epi64(s.z_max as i64);
    let m20 = _mm512_set1_epi64(0xF_FFFF);
    let m10 = _mm512_set1_epi64(1023);
    let n31 = _mm512_set1_epi64(31);
    let (thi, tlo) = (s.t_hi.as_ptr(), s.t_lo.as_ptr());
    let mut vsum = _mm512_setzero_si512();
    let mut j = 0;
    while j < n {
        let k = mask8(j, n);
        // SAFETY: the mask limits the load to scores[j..n].
        let t = unsafe { _mm256_maskz_loadu_epi32(k, sp.add(j)) };
        let d = _mm512_cvtepu32_epi64(_mm256_sub_epi32(vmax8, t)); // max − t < 2^32, as u32
        let z = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(d, c_m0), c_rnd), c_sh);
        let zc = _mm512_min_epu64(z, z_max);
        let w = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(zc, l_m0), l_rnd), l_sh);
        let sh = _mm512_min_epu64(_mm512_srli_epi64::<20>(w), n31);
        let f = _mm512_and_si512(w, m20);
        let (ih, il) = (_mm512_srli_epi64::<10>(f), _mm512_and_si512(f, m10));
        // SAFETY: indices are below 1024, the tables' length.
        let (gh, gl) = unsafe { (lookup8_u32(thi, ih), lookup8_u32(tlo, il)) };
        let p = _mm512_mul_epu32(gh, gl);
        let v = _mm512_srlv_epi64(_mm512_srli_epi64::<30>(p), sh);
        let keep = k & !_mm512_cmpge_epu64_mask(z, z_max);
        let v = _mm512_maskz_mov_epi64(keep, v);
        vsum = _mm512_add_epi64(vsum, v);
        // SAFETY: the mask limits the store to e[j..n] (narrowed in a register: module docs).
        unsafe { _mm256_mask_storeu_epi32(ep.add(j) as *mut i32, k, _mm512_cvtepi64_epi32(v)) };
        j += 8;
    }
    let sum = _mm512_reduce_add_epi64(vsum) as u64;
    // SAFETY: same features; e[..n] holds the row's exponentials.
    unsafe { normalize(s, sum, scores, e, out) }
}

/// The row's exponentials from the direct table: `e = d < d_max ? lut[d] : 0`, 16 lanes per
/// step with one masked dword gather (lanes past the table are masked off and stay 0).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
unsafe fn softmax_lut(
    s: &Softmax,
    lut: &[u32],
    max: i32,
    scores: &[i32],
    e: &mut [u32],
    out: &mut [u8],
) {
    let n = scores.len();
    let (tp, sp, ep) = (lut.as_ptr() as *const i32, scores.as_ptr(), e.as_mut_ptr());
    let vmax = _mm512_set1_epi32(max);
    // The table ends with a 0 at index d_max ≤ 2^16 + 1 (it is built only then): every d ≥ d_max
    // (unsigned) and every lane past the row reads that entry.
    let dmax = _mm512_set1_epi32((lut.len() - 1) as i32);
    let mut vsum = _mm512_setzero_si512();
    let mut j = 0;
    while j < n {
        let k = mask16(j, n);
        // SAFETY: the mask limits the load to scores[j..n].
        let t = unsafe { _mm512_maskz_loadu_epi32(k, sp.add(j)) };
        // d = max − t as u32 (max ≥ t), clamped to the sentinel.
        let d = _mm512_mask_min_epu32(dmax, k, _mm512_sub_epi32(vmax, t), dmax);
        // SAFETY: every index is at most d_max = lut.len() − 1.
        let v = unsafe { gather16(tp, d) };
        vsum = _mm512_add_epi64(vsum, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v)));
        vsum = _mm512_add_epi64(
            vsum,
            _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(v)),
        );
        // SAFETY: the mask limits the store to e[j..n].
        unsafe { _mm512_mask_storeu_epi32(ep.add(j) as *mut i32, k, v) };
        j += 16;
    }
    let sum = _mm512_reduce_add_epi64(vsum) as u64;
    // SAFETY: same features; e[..n] holds the row's exponentials.
    unsafe { normalize(s, sum, scores, e, out) }
}

/// Probability codes from the exponentials `e[..n]` and their sum (≥ 2^30, see softmax.rs).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
unsafe fn normalize(s: &Softmax, sum: u64, scores: &[i32], e: &mut [u32], out: &mut [u8]) {
    let n = scores.len();
    let (ep, op) = (e.as_mut_ptr(), out.as_mut_ptr());
    let r = (1u64 << 62) / sum;
    if r >= 1 << 32 {
        return s.body(scores, e, out);
    }
    let vr = _mm512_set1_epi64(r as i64);
    let va = _mm512_set1_epi64(s.a as i64);
    let half = _mm512_set1_epi64(1i64 << 47);
    let vz = _mm512_set1_epi64(s.z_out as i64);
    let vq = _mm512_set1_epi64(s.qmax as i64);
    let mut j = 0;
    while j < n {
        let k = mask8(j, n);
        // SAFETY: the mask limits the load to e[j..n].
        let ev =
            _mm512_cvtepu32_epi64(unsafe { _mm256_maskz_loadu_epi32(k, ep.add(j) as *const i32) });
        let p = _mm512_srli_epi64::<30>(_mm512_mul_epu32(ev, vr));
        let q = _mm512_srli_epi64::<48>(_mm512_add_epi64(_mm512_mul_epu32(p, va), half));
        let q = _mm512_min_epu64(_mm512_add_epi64(q, vz), vq);
        // SAFETY: the mask limits the store to out[j..n] (narrowed in a register: module docs).
        unsafe {
            _mm_mask_storeu_epi8(
                op.add(j) as *mut i8,
                k as __mmask16,
                _mm512_cvtepi64_epi8(q),
            )
        };
        j += 8;
    }
}

/// GELU codes of one row, 16 lanes; see `GeluLut::body`. Elements in marked buckets go to `def`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
pub(super) unsafe fn gelu(g: &GeluLut, y: &[i32], out: &mut [u8], def: &dyn Fn(i32) -> u8) {
    let n = g.bias.len();
    let (yp, bp, op) = (y.as_ptr(), g.bias.as_ptr(), out.as_mut_ptr());
    let last = (g.entries.len() - 1) as i32;
    // `new` guarantees lo and lo + last·2^shift are i32.
    let lo = _mm512_set1_epi32(g.lo as i32);
    let end = _mm512_set1_epi32((g.lo + ((last as i64) << g.shift)) as i32);
    let vlast = _mm512_set1_epi32(last);
    let sh = _mm512_set1_epi32(g.shift as i32);
    let mask = _mm512_set1_epi32((1 << g.shift) - 1);
    let m14 = _mm512_set1_epi32(0x3FFF);
    let fb = _mm512_set1_epi32(super::gelu_fallback() as i32);
    let ent = g.entries.as_ptr() as *const i32;
    let mut j = 0;
    while j < n {
        let k = mask16(j, n);
        let (k0, k1) = (k as u8, (k >> 8) as u8);
        // SAFETY: the masks limit the loads to y[j..n], bias[j..n].
        let (yv, b0, b1) = unsafe {
            (
                _mm512_maskz_loadu_epi32(k, yp.add(j)),
                _mm512_maskz_loadu_epi64(k0, bp.add(j)),
                _mm512_maskz_loadu_epi64(k1, bp.add(j + 8)),
            )
        };
        // |b| < 2^62: the i64 sums cannot overflow; vpmovsqd saturates to i32.
        let h0 = _mm512_cvtsepi64_epi32(_mm512_add_epi64(
            _mm512_cvtepi32_epi64(_mm512_castsi512_si256(yv)),
            b0,
        ));
        let h1 = _mm512_cvtsepi64_epi32(_mm512_add_epi64(
            _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(yv)),
            b1,
        ));
        let h = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(h0), h1);
        let oob = _mm512_cmplt_epi32_mask(h, lo) | _mm512_cmpge_epi32_mask(h, end);
        let d = _mm512_sub_epi32(h, lo);
        let idx = _mm512_mask_mov_epi32(_mm512_srlv_epi32(d, sh), oob, vlast);
        // SAFETY: every index is at most `last` (out-of-range inputs take the sentinel).
        let e = unsafe { gather16(ent, idx) };
        let from = _mm512_cmpge_epu32_mask(_mm512_and_si512(d, mask), _mm512_and_si512(e, m14));
        let code =
            _mm512_mask_blend_epi32(from, _mm512_srli_epi32::<14>(e), _mm512_srli_epi32::<22>(e));
        // SAFETY: the mask limits the store to out[j..n] (narrowed in a register: module docs).
        unsafe { _mm_mask_storeu_epi8(op.add(j) as *mut i8, k, _mm512_cvtepi32_epi8(code)) };
        let mut bad = _mm512_test_epi32_mask(e, fb) & k;
        while bad != 0 {
            let i = j + bad.trailing_zeros() as usize;
            let hh = (y[i] as i64 + g.bias[i]).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            out[i] = def(hh);
            bad &= bad - 1;
        }
        j += 16;
    }
}
