//! Sums of the u8 codes of each A row (the `−zb·Σa` term of the GEMM's zero-point correction) by
//! `vpsadbw` against zero: 64 (AVX-512BW) or 32 (AVX2) bytes per instruction into u64 lanes,
//! the row tail byte by byte. For P·V at 384 tokens this pass was ≈ 13 µs of a ≈ 24 µs product
//! with the compiler's widening loop. The definition is the plain sum of `gemm::row_sum_u8`.

use std::arch::x86_64::*;

/// `Σ row` as u32 (exact for rows of up to 2^24 bytes; GEMM rows have at most `MAX_K`).
///
/// # Safety
/// avx512f/bw available.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn row_sum_u8_avx512(row: &[u8]) -> u32 {
    let mut acc = _mm512_setzero_si512();
    let mut chunks = row.chunks_exact(64);
    for c in chunks.by_ref() {
        // SAFETY: `c` is 64 bytes.
        let v = unsafe { _mm512_loadu_si512(c.as_ptr() as *const _) };
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(v, _mm512_setzero_si512()));
    }
    let tail: u32 = chunks.remainder().iter().map(|&v| v as u32).sum();
    _mm512_reduce_add_epi64(acc) as u32 + tail
}

/// As [`row_sum_u8_avx512`], 32 bytes per step.
///
/// # Safety
/// avx2 available.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn row_sum_u8_avx2(row: &[u8]) -> u32 {
    let mut acc = _mm256_setzero_si256();
    let mut chunks = row.chunks_exact(32);
    for c in chunks.by_ref() {
        // SAFETY: `c` is 32 bytes.
        let v = unsafe { _mm256_loadu_si256(c.as_ptr() as *const _) };
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(v, _mm256_setzero_si256()));
    }
    let tail: u32 = chunks.remainder().iter().map(|&v| v as u32).sum();
    let mut l = [0u64; 4];
    // SAFETY: 32 bytes fit in `l`.
    unsafe { _mm256_storeu_si256(l.as_mut_ptr() as *mut _, acc) };
    (l[0] + l[1] + l[2] + l[3]) as u32 + tail
}
