//! SIMD forms of the attention K/V packers of [`crate::pack::PackedB`]. Keys (`pack_u8_nk`,
//! `[N, K]` u8 codes → the packed layout), AVX-512: one panel of 16 keys is a 16 × (K/4) transpose of 4-byte groups, done as one
//! 16-lane dword gather per group (one dword from each key row), the sign flip in a masked xor,
//! the key sums in `vpdpbusd` with all-ones (u8 1 × s8 code, 4 per dword) and the code range in
//! byte min/max. Values (`pack_u8_kn`), SSE2: a 4 × 16 byte transpose per group and panel. The
//! scalar packers in `pack.rs` define the bytes; its unit test compares them.

use std::arch::x86_64::*;

use crate::pack::{BLOCK, KG, NR};

/// Packs `n` rows of `k` codes (`k % 4 == 0`, rows `stride` bytes apart, `15·stride + k` fits
/// an i32) from `src` into `dst` (the zeroed panels, `pb` bytes each), writes each row's sum of
/// `code − 128` to `colsum[..n]` and returns the smallest and largest `code − 128` (127 / −128
/// when there is none).
///
/// # Safety
/// avx512f/bw/vnni available; `src` is valid for `(n − 1)·stride + k` bytes; `dst` holds
/// `ceil(n/16)` panels of `pb ≥ (k/4)·64` bytes; `colsum.len() ≥ n`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn pack_u8_nk_avx512(
    src: *const u8,
    n: usize,
    k: usize,
    stride: usize,
    dst: &mut [u8],
    pb: usize,
    colsum: &mut [i32],
) -> (i8, i8) {
    debug_assert!(k.is_multiple_of(KG) && colsum.len() >= n && dst.len() >= n.div_ceil(NR) * pb);
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let rows = _mm512_mullo_epi32(lane, _mm512_set1_epi32(stride as i32));
    let flip = _mm512_set1_epi32(0x8080_8080u32 as i32);
    let ones = _mm512_set1_epi8(1);
    let (mut vmin, mut vmax) = (_mm512_set1_epi8(i8::MAX), _mm512_set1_epi8(i8::MIN));
    for p in 0..n.div_ceil(NR) {
        let keys = (n - p * NR).min(NR);
        let km: __mmask16 = if keys == NR { !0 } else { (1 << keys) - 1 };
        let kb: __mmask64 = if keys == NR {
            !0
        } else {
            (1u64 << (4 * keys)) - 1
        };
        // SAFETY: row p·16 exists (p < ceil(n/16)).
        let base = unsafe { src.add(p * NR * stride) };
        let mut sum = _mm512_setzero_si512();
        for g in 0..k / KG {
            let idx = _mm512_add_epi32(rows, _mm512_set1_epi32((g * KG) as i32));
            // SAFETY: lane j < keys reads bytes 4g..4g+4 of row p·16 + j, inside `src`; masked
            // lanes read nothing.
            let v = unsafe {
                _mm512_mask_i32gather_epi32::<1>(
                    _mm512_setzero_si512(),
                    km,
                    idx,
                    base as *const i32,
                )
            };
            let v = _mm512_maskz_xor_epi32(km, v, flip);
            sum = _mm512_dpbusd_epi32(sum, ones, v);
            vmin = _mm512_mask_min_epi8(vmin, kb, vmin, v);
            vmax = _mm512_mask_max_epi8(vmax, kb, vmax, v);
            let at = p * pb + g * BLOCK;
            // SAFETY: the 64-byte group block of panel p lies inside `dst` (checked above).
            unsafe { _mm512_storeu_si512(dst[at..at + BLOCK].as_mut_ptr() as *mut _, v) };
        }
        let mut s = [0i32; NR];
        // SAFETY: 16 i32 fit in `s`.
        unsafe { _mm512_storeu_si512(s.as_mut_ptr() as *mut _, sum) };
        colsum[p * NR..p * NR + keys].copy_from_slice(&s[..keys]);
    }
    let (mut lo, mut hi) = ([0i8; 64], [0i8; 64]);
    // SAFETY: 64 bytes fit in each array.
    unsafe {
        _mm512_storeu_si512(lo.as_mut_ptr() as *mut _, vmin);
        _mm512_storeu_si512(hi.as_mut_ptr() as *mut _, vmax);
    }
    (
        lo.into_iter().fold(i8::MAX, i8::min),
        hi.into_iter().fold(i8::MIN, i8::max),
    )
}

/// The packed groups of [`crate::pack::PackedB::pack_u8_kn`] (attention values, `[K, N]` u8
/// codes, `B[n, k] = V[token k, dim n]`): per group of 4 tokens and panel of 16 dims, a 4 × 16
/// byte transpose in two rounds of unpacks (bytes, then words), so dword `j` holds the 4 tokens'
/// codes of dim `j`, sign-flipped. A partial last panel goes through 16-byte copies padded with
/// 0x80 (stored as the zero padding); token rows past K are `pad` (0x80 × n). Sums and range are
/// left to the caller.
///
/// # Safety
/// SSE2 (x86-64 baseline); `row(t)` is valid for `n` bytes for every `t < ceil(k/4)·4` (rows past
/// K return `pad`); `dst` holds `ceil(n/16)` panels of `pb ≥ ceil(k/4)·64` bytes.
#[target_feature(enable = "sse2")]
pub(crate) unsafe fn pack_u8_kn_groups_sse2<'a>(
    row: impl Fn(usize) -> &'a [u8],
    n: usize,
    k: usize,
    dst: &mut [u8],
    pb: usize,
) {
    let flip = _mm_set1_epi8(0x80u8 as i8);
    let full = n / NR;
    for g in 0..k.div_ceil(KG) {
        let r = [
            row(g * KG),
            row(g * KG + 1),
            row(g * KG + 2),
            row(g * KG + 3),
        ];
        let block = |q: [__m128i; 4], dst: &mut [u8], p: usize| {
            let (a, b) = (_mm_unpacklo_epi8(q[0], q[1]), _mm_unpackhi_epi8(q[0], q[1]));
            let (c, d) = (_mm_unpacklo_epi8(q[2], q[3]), _mm_unpackhi_epi8(q[2], q[3]));
            let out = [
                _mm_unpacklo_epi16(a, c),
                _mm_unpackhi_epi16(a, c),
                _mm_unpacklo_epi16(b, d),
                _mm_unpackhi_epi16(b, d),
            ];
            let at = p * pb + g * BLOCK;
            for (i, o) in out.into_iter().enumerate() {
                let o = _mm_xor_si128(o, flip);
                let s = &mut dst[at + 16 * i..at + 16 * i + 16];
                // SAFETY: `s` is 16 bytes.
                unsafe { _mm_storeu_si128(s.as_mut_ptr() as *mut __m128i, o) };
            }
        };
        for p in 0..full {
            // SAFETY: dims p·16..p·16 + 16 < n lie inside each row.
            let q =
                r.map(|t| unsafe { _mm_loadu_si128(t[p * NR..p * NR + NR].as_ptr() as *const _) });
            block(q, dst, p);
        }
        if full * NR < n {
            let q = r.map(|t| {
                let mut tmp = [0x80u8; NR];
                tmp[..n - full * NR].copy_from_slice(&t[full * NR..n]);
                // SAFETY: `tmp` is 16 bytes.
                unsafe { _mm_loadu_si128(tmp.as_ptr() as *const _) }
            });
            block(q, dst, full);
        }
    }
}
