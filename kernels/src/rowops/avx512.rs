//! Hand-written AVX-512 (F/BW/DQ/VL) forms of the two table-bound rows, softmax and GELU: LLVM
//! does not vectorize their table lookups well. Same bits as the scalar bodies (`softmax.rs`,
//! `gelu.rs`; the bounds are argued there): each lane runs the scalar expression with 64-bit
//! lanes, `vpmuludq` for the 32×32→64 products, 16 elements per step (the even and the odd dwords
//! of a zmm through `vpmuludq` separately, then merged back in row order). The direct softmax
//! table and GELU's u32 table are read by one `vpgatherdd zmm` or by scalar loads, as
//! [`TableReads`] chose for this CPU; the two-level softmax tables by two 8-lane gathers
//! ([`gather16`]). Tails use masks; narrowing stores go through a register (the memory forms of
//! vpmov* are microcoded on Zen 4).

use std::arch::x86_64::*;

use super::{GeluLut, Softmax, TableReads};

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

/// `t[idx[i]]` for the 16 dword lanes, by 16 scalar loads through a stack copy of the indices:
/// on Zen 4 (three loads per cycle, slow gathers) this beat two 8-lane `vpgatherdd` (softmax
/// direct table 0.86 → 0.79 ns per element at n = 128); gathers are slow on Intel parts with the
/// gather-data-sampling microcode too. The GELU row's [`TableReads::Loads`] form.
///
/// # Safety
/// Every index must lie inside `t`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load16(t: *const i32, idx: __m512i) -> __m512i {
    let mut ix = [0u32; 16];
    let mut vals = [0i32; 16];
    // SAFETY: `ix` is 64 bytes.
    unsafe { _mm512_storeu_si512(ix.as_mut_ptr() as *mut _, idx) };
    for (v, &x) in vals.iter_mut().zip(&ix) {
        // SAFETY: the caller guarantees every index lies inside `t`.
        *v = unsafe { *t.add(x as usize) };
    }
    // SAFETY: `vals` is 64 bytes.
    unsafe { _mm512_loadu_si512(vals.as_ptr() as *const _) }
}

/// Softmax of one row; see `Softmax::body`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
pub(super) unsafe fn softmax(
    s: &Softmax,
    reads: TableReads,
    scores: &[i32],
    e: &mut [u32],
    out: &mut [u8],
) {
    let n = scores.len();
    if n == 0 {
        return;
    }
    let sp = scores.as_ptr();
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
        return unsafe { softmax_lut(s, reads, lut, max, scores, e, out) };
    }
    // SAFETY: same features.
    unsafe { softmax_two_level(s, max, scores, e, out) }
}

/// The row's exponentials by the definition's two 1024-entry tables (4 KiB each, L1-resident),
/// 16 lanes per step: the 32×32→64 products run on the even and the odd dwords separately
/// (`vpmuludq` reads the low dword of each qword), the table reads are two 16-lane dword gathers.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
unsafe fn softmax_two_level(s: &Softmax, max: i32, scores: &[i32], e: &mut [u32], out: &mut [u8]) {
    let n = scores.len();
    let (sp, ep) = (scores.as_ptr(), e.as_mut_ptr());
    let vmax = _mm512_set1_epi32(max);
    let c_m0 = _mm512_set1_epi64(s.c_m0 as i64);
    let c_rnd = _mm512_set1_epi64(1i64 << (s.c_sh - 1));
    let c_sh = _mm512_set1_epi64(s.c_sh as i64);
    let l_m0 = _mm512_set1_epi64(s.l_m0 as i64);
    let l_rnd = _mm512_set1_epi64(1i64 << (s.l_sh - 1));
    let l_sh = _mm512_set1_epi64(s.l_sh as i64);
    let z_max = _mm512_set1_epi64(s.z_max as i64);
    let m20 = _mm512_set1_epi32(0xF_FFFF);
    let m10 = _mm512_set1_epi32(1023);
    let n31 = _mm512_set1_epi32(31);
    let lo32 = _mm512_set1_epi64(0xFFFF_FFFF);
    let (thi, tlo) = (s.t_hi.as_ptr() as *const i32, s.t_lo.as_ptr() as *const i32);
    let mut vsum = _mm512_setzero_si512();
    let mut j = 0;
    while j < n {
        let k = mask16(j, n);
        // SAFETY: the mask limits the load to scores[j..n].
        let t = unsafe { _mm512_maskz_loadu_epi32(k, sp.add(j)) };
        let d = _mm512_sub_epi32(vmax, t); // max − t < 2^32, as u32
                                           // Even dwords in the low halves of the qwords, odd dwords shifted down.
        let (d_e, d_o) = (d, _mm512_srli_epi64::<32>(d));
        let z_e = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(d_e, c_m0), c_rnd), c_sh);
        let z_o = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(d_o, c_m0), c_rnd), c_sh);
        let (zc_e, zc_o) = (_mm512_min_epu64(z_e, z_max), _mm512_min_epu64(z_o, z_max));
        let w_e = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(zc_e, l_m0), l_rnd), l_sh);
        let w_o = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(zc_o, l_m0), l_rnd), l_sh);
        // Back to 16 dwords in row order. Kept lanes have z < z_max, so w >> 20 < 31 and
        // w < 2^32; a dropped lane's w only has to give in-bounds indices, which the masks do.
        let w = _mm512_or_si512(_mm512_and_si512(w_e, lo32), _mm512_slli_epi64::<32>(w_o));
        let sh = _mm512_min_epu32(_mm512_srli_epi32::<20>(w), n31);
        let f = _mm512_and_si512(w, m20);
        // SAFETY: both indices are below 1024, the tables' length.
        let (gh, gl) = unsafe {
            (
                gather16(thi, _mm512_srli_epi32::<10>(f)),
                gather16(tlo, _mm512_and_si512(f, m10)),
            )
        };
        let p_e = _mm512_srli_epi64::<30>(_mm512_mul_epu32(gh, gl));
        let p_o = _mm512_srli_epi64::<30>(_mm512_mul_epu32(
            _mm512_srli_epi64::<32>(gh),
            _mm512_srli_epi64::<32>(gl),
        ));
        let v_e = _mm512_srlv_epi64(p_e, _mm512_and_si512(sh, lo32));
        let v_o = _mm512_srlv_epi64(p_o, _mm512_srli_epi64::<32>(sh));
        // z ≥ z_max ⇒ e = 0, then lanes past the row (d = max − 0) dropped.
        let v_e = _mm512_maskz_mov_epi64(!_mm512_cmpge_epu64_mask(z_e, z_max), v_e);
        let v_o = _mm512_maskz_mov_epi64(!_mm512_cmpge_epu64_mask(z_o, z_max), v_o);
        let v = _mm512_maskz_mov_epi32(k, _mm512_or_si512(v_e, _mm512_slli_epi64::<32>(v_o)));
        vsum = _mm512_add_epi64(
            vsum,
            _mm512_add_epi64(_mm512_and_si512(v, lo32), _mm512_srli_epi64::<32>(v)),
        );
        // SAFETY: the mask limits the store to e[j..n].
        unsafe { _mm512_mask_storeu_epi32(ep.add(j) as *mut i32, k, v) };
        j += 16;
    }
    let sum = _mm512_reduce_add_epi64(vsum) as u64;
    // SAFETY: same features; e[..n] holds the row's exponentials.
    unsafe { normalize(s, sum, scores, e, out) }
}

/// The row's exponentials from the direct table, `e = lut[min(d, d_max)]` (the entry at `d_max`
/// is 0), by gathers or by scalar loads ([`TableReads`]), then the codes.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
unsafe fn softmax_lut(
    s: &Softmax,
    reads: TableReads,
    lut: &[u32],
    max: i32,
    scores: &[i32],
    e: &mut [u32],
    out: &mut [u8],
) {
    let n = scores.len();
    let sum = match reads {
        // SAFETY: same features; `lut` is non-empty (it ends with the sentinel).
        TableReads::Gather => unsafe { lut_pass_gather(lut, max, &scores[..n], &mut e[..n]) },
        TableReads::Loads => lut_pass_loads(lut, max, &scores[..n], &mut e[..n]),
    };
    // SAFETY: same features; e[..n] holds the row's exponentials.
    unsafe { normalize(s, sum, scores, e, out) }
}

/// `e[j] = lut[min(max − t_j, d_max)]` and their sum, 16 lanes per step with one `vpgatherdd`
/// (lanes past the row read the sentinel and are not stored).
///
/// # Safety
/// `lut` must not be empty (`d_max = lut.len() − 1`); `e` at least as long as `scores`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
unsafe fn lut_pass_gather(lut: &[u32], max: i32, scores: &[i32], e: &mut [u32]) -> u64 {
    let n = scores.len();
    let (lp, sp, ep) = (lut.as_ptr() as *const i32, scores.as_ptr(), e.as_mut_ptr());
    let vmax = _mm512_set1_epi32(max);
    let dmax = _mm512_set1_epi32((lut.len() - 1) as i32);
    let mut vsum = _mm512_setzero_si512();
    let mut j = 0;
    while j < n {
        let k = mask16(j, n);
        // SAFETY: the mask limits the load to scores[j..n].
        let t = unsafe { _mm512_maskz_loadu_epi32(k, sp.add(j)) };
        // d = max − t as u32 (max ≥ t), clamped to the sentinel; lanes past the row read it.
        let d = _mm512_mask_min_epu32(dmax, k, _mm512_sub_epi32(vmax, t), dmax);
        // SAFETY: every index is at most d_max = lut.len() − 1 (the clamp above).
        let v = unsafe { _mm512_i32gather_epi32::<4>(d, lp) };
        vsum = _mm512_add_epi64(vsum, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v)));
        vsum = _mm512_add_epi64(
            vsum,
            _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(v)),
        );
        // SAFETY: the mask limits the store to e[j..n].
        unsafe { _mm512_mask_storeu_epi32(ep.add(j) as *mut i32, k, v) };
        j += 16;
    }
    _mm512_reduce_add_epi64(vsum) as u64
}

/// The same pass one element per step in general-purpose registers: the table reads issue as
/// plain loads, where a vector form without gathers has to move every index out of and every
/// entry into a zmm lane (LLVM compiles [`load16`] here to `vpextrd`/`vpinsrd` chains; on a Xeon
/// this form measured softmax 1.58 → 1.34 ms at b1 s128 t1).
#[inline(never)]
fn lut_pass_loads(lut: &[u32], max: i32, scores: &[i32], e: &mut [u32]) -> u64 {
    let dmax = (lut.len() - 1) as u32;
    let mut sum = 0u64;
    for (ej, &t) in e.iter_mut().zip(scores) {
        let d = (max.wrapping_sub(t) as u32).min(dmax);
        let v = lut[d as usize];
        *ej = v;
        sum += v as u64;
    }
    sum
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
    let vz = _mm512_set1_epi32(s.z_out as i32);
    let vq = _mm512_set1_epi32(s.qmax as i32);
    let lo32 = _mm512_set1_epi64(0xFFFF_FFFF);
    // 16 lanes per step: the even and the odd dwords through `vpmuludq` separately.
    let code = |ev: __m512i| {
        let p = _mm512_srli_epi64::<30>(_mm512_mul_epu32(ev, vr));
        _mm512_srli_epi64::<48>(_mm512_add_epi64(_mm512_mul_epu32(p, va), half))
    };
    let mut j = 0;
    while j < n {
        let k = mask16(j, n);
        // SAFETY: the mask limits the load to e[j..n].
        let ev = unsafe { _mm512_maskz_loadu_epi32(k, ep.add(j) as *const i32) };
        // q < 2^16 in each qword: back to 16 dwords in row order.
        let q = _mm512_or_si512(
            _mm512_and_si512(code(ev), lo32),
            _mm512_slli_epi64::<32>(code(_mm512_srli_epi64::<32>(ev))),
        );
        let q = _mm512_min_epu32(_mm512_add_epi32(q, vz), vq);
        // SAFETY: the mask limits the store to out[j..n] (narrowed in a register: module docs).
        unsafe { _mm_mask_storeu_epi8(op.add(j) as *mut i8, k, _mm512_cvtepi32_epi8(q)) };
        j += 16;
    }
}

/// GELU codes of one row, 16 lanes; see `GeluLut::body`. Elements in marked buckets go to `def`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2")]
pub(super) unsafe fn gelu(
    g: &GeluLut,
    reads: TableReads,
    y: &[i32],
    out: &mut [u8],
    def: &dyn Fn(i32) -> u8,
) {
    let n = g.bias.len();
    let (yp, bp, op) = (y.as_ptr(), g.bias.as_ptr(), out.as_mut_ptr());
    let last = (g.entries.len() - 1) as i32;
    // `new` guarantees lo and lo + last·2^shift are i32.
    let lo = _mm512_set1_epi32(g.lo as i32);
    let vlast = _mm512_set1_epi32(last);
    let sh = _mm512_set1_epi32(g.shift as i32);
    let mask = _mm512_set1_epi32((1 << g.shift) - 1);
    let m14 = _mm512_set1_epi32(0x3FFF);
    let fb = _mm512_set1_epi32(super::gelu_fallback() as i32);
    let ent = g.entries.as_ptr() as *const i32;
    let b32 = g.bias32.as_ref().map(|b| b.as_ptr());
    let mut j = 0;
    while j < n {
        let k = mask16(j, n);
        // SAFETY: the mask limits the load to y[j..n].
        let yv = unsafe { _mm512_maskz_loadu_epi32(k, yp.add(j)) };
        let (h, over) = match b32 {
            Some(b32) => {
                // SAFETY: the mask limits the load to bias32[j..n] (same length as bias).
                let b = unsafe { _mm512_maskz_loadu_epi32(k, b32.add(j)) };
                // The wrapped sum y + b overflowed iff y and b share a sign that the sum lacks:
                // the sign bit of (y ^ s) & (b ^ s), one vpternlogd (truth table 0x42). Such a
                // lane goes to the definition (which saturates in i64) like an input outside
                // the table, so its wrapped value is never used.
                let s = _mm512_add_epi32(yv, b);
                let over = _mm512_movepi32_mask(_mm512_ternarylogic_epi32::<0x42>(yv, b, s));
                (s, over)
            }
            None => {
                let (k0, k1) = (k as u8, (k >> 8) as u8);
                // SAFETY: the masks limit the loads to bias[j..n].
                let (b0, b1) = unsafe {
                    (
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
                (_mm512_inserti64x4::<1>(_mm512_castsi256_si512(h0), h1), 0)
            }
        };
        // d = h − lo as u32: h ∈ [lo, end) ⟺ d < n·2^shift ⟺ d >> shift < n = last, so the
        // unsigned minimum with `last` sends every input outside the table to the sentinel.
        let d = _mm512_sub_epi32(h, lo);
        let idx = _mm512_min_epu32(_mm512_srlv_epi32(d, sh), vlast);
        let idx = _mm512_mask_mov_epi32(idx, over, vlast);
        // SAFETY: every index is at most `last` (out-of-range inputs take the sentinel).
        let e = unsafe {
            match reads {
                TableReads::Gather => _mm512_i32gather_epi32::<4>(idx, ent),
                TableReads::Loads => load16(ent, idx),
            }
        };
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
