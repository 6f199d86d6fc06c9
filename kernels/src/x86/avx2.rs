//! AVX2 kernel on the packed layout: one panel (16 channels) = two ymm halves of 8 channels; a K
//! group of a half is 32 bytes (8 channels × 4 codes), A is broadcast 4 bytes per row per group.
//! Three inner loops, chosen per call:
//!
//! - **madd** (s8, when `a_max·2·max|b| ≤ 32767`): `vpmaddubsw` (u8 × s8, pairs summed with i16
//!   saturation, which the bound rules out) then `vpmaddwd` by ones into i32. 4 rows × 1 panel =
//!   8 accumulators.
//! - **wide** (s8 otherwise, e.g. 8-bit activations against 8-bit weights): exact widening, A
//!   zero-extended and B sign-extended to i16 (`vpmovsxbw`), `vpmaddwd` into i32 pair sums; each
//!   accumulator holds 4 channels × 2 partial sums, folded with `vphaddd` + `vpermq` at the end.
//!   2 rows × 1 panel = 8 accumulators.
//! - **s4**: nibbles sign-extended with a `vpshufb` table (codes −8..7, so `vpmaddubsw` can never
//!   saturate: 2·255·8 = 4080), and the two groups of one packed block (low and high nibbles)
//!   added in i16 before the single `vpmaddwd` (|sum| ≤ 4·255·8 = 8160). 4 rows × 1 panel.
//!
//! K tails: the last partial group (block for s4) of a row goes through a zeroed temporary, so A
//! is never read past the row end. Loop order: panels outside, row blocks inside.

use super::epi256::epilogue_panel;
use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK, KG};
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows per microtile of the madd and s4 loops.
const MR: usize = 4;
/// Rows per microtile of the widening loop.
const MR_WIDE: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Madd,
    Wide,
    S4,
}

/// Whether `vpmaddubsw` provably cannot saturate for this job (pairs of products).
pub(super) fn maddubs_exact(job: &Job) -> bool {
    job.a_max as i32 * 2 * job.b.max_abs_code() <= i16::MAX as i32
}

/// # Safety
/// The CPU must support AVX2 (the driver only selects this kernel after `Isa::Avx2.require()`);
/// `rows`/`panels` lie inside the job and no other task writes this tile (the contract of
/// [`crate::scalar::gemm_u8_packed_scalar`]).
pub(crate) unsafe fn gemm_u8_packed_avx2(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    debug_assert!(rows.end <= job.m && panels.end <= job.b.panels());
    let path = match job.b.format() {
        WeightFormat::S4 => Path::S4,
        WeightFormat::S8 if maddubs_exact(job) => Path::Madd,
        WeightFormat::S8 => Path::Wide,
    };
    for p in panels {
        // SAFETY: AVX2 checked by the driver; panel p lies inside the caller's tile.
        unsafe {
            match path {
                Path::Madd => row_blocks::<{ MR }, 0>(job, rows.clone(), p),
                Path::Wide => row_blocks::<{ MR_WIDE }, 1>(job, rows.clone(), p),
                Path::S4 => row_blocks::<{ MR }, 2>(job, rows.clone(), p),
            }
        }
    }
}

/// All rows of `rows` against panel `p` with loop `L` (0 madd, 1 wide, 2 s4) and `B` rows per
/// block.
#[target_feature(enable = "avx2")]
unsafe fn row_blocks<const B: usize, const L: u8>(job: &Job, rows: Range<usize>, p: usize) {
    let mut m = rows.start;
    while m + B <= rows.end {
        // SAFETY: rows m..m+B and panel p lie inside the caller's tile.
        unsafe { tile::<B, L>(job, m, p) };
        m += B;
    }
    // SAFETY: the remaining rows m..rows.end, as above.
    unsafe {
        match rows.end - m {
            0 => {}
            1 => tile::<1, L>(job, m, p),
            2 => tile::<2, L>(job, m, p),
            3 => tile::<3, L>(job, m, p),
            _ => unreachable!(),
        }
    }
}

/// # Safety
/// AVX2 available; rows `m0..m0 + R` and panel `p` lie inside the job and belong to the caller.
#[target_feature(enable = "avx2")]
unsafe fn tile<const R: usize, const L: u8>(job: &Job, m0: usize, p: usize) {
    let k = job.b.k();
    let pb = job.b.panel_bytes();
    let lda = job.lda;
    let data = job.b.data();
    debug_assert!((p + 1) * pb <= data.len());
    debug_assert!(job.a.len() >= (m0 + R - 1) * lda + k);
    // SAFETY: panel p exists, so the offset stays inside `data`.
    let b = unsafe { data.as_ptr().add(p * pb) };
    // SAFETY: rows m0..m0+R start at multiples of lda inside `job.a`.
    let a = unsafe { job.a.as_ptr().add(m0 * lda) };
    // SAFETY: forwarded: every read stays inside panel p and rows m0..m0+R.
    let acc = unsafe {
        match L {
            0 => dot_madd::<R>(a, lda, b, k),
            1 => dot_wide::<R>(a, lda, b, k),
            _ => dot_s4::<R>(a, lda, b, k),
        }
    };
    // SAFETY: same tile contract.
    unsafe { epilogue_panel::<R>(job, m0, p, acc) };
}

/// Reads `len < 8` bytes at `src` into the low bytes of a zeroed u64.
///
/// # Safety
/// `src..src + len` readable.
#[inline]
unsafe fn read_partial(src: *const u8, len: usize) -> u64 {
    let mut tmp = [0u8; 8];
    // SAFETY: len < 8 bytes readable by the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src, tmp.as_mut_ptr(), len) };
    u64::from_le_bytes(tmp)
}

/// `vpmaddubsw` + `vpmaddwd`: caller guarantees `a_max·2·max|b| ≤ 32767`.
///
/// # Safety
/// `a` holds R rows of `k` bytes at stride `lda`; `b` one s8 panel of `k_padded/4` blocks.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_madd<const R: usize>(
    a: *const u8,
    lda: usize,
    b: *const u8,
    k: usize,
) -> [[__m256i; 2]; R] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    let groups = k / KG;
    let step = |acc: &mut [[__m256i; 2]; R], g: usize, av: &[i32; R]| {
        // SAFETY: group g < k_padded/4 of the panel.
        let (b0, b1) = unsafe {
            let p = b.add(g * BLOCK);
            (
                _mm256_loadu_si256(p as *const _),
                _mm256_loadu_si256(p.add(32) as *const _),
            )
        };
        for (accr, &ar) in acc.iter_mut().zip(av) {
            let av = _mm256_set1_epi32(ar);
            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
            accr[0] = _mm256_add_epi32(accr[0], p0);
            accr[1] = _mm256_add_epi32(accr[1], p1);
        }
    };
    for g in 0..groups {
        let mut av = [0i32; R];
        for (r, v) in av.iter_mut().enumerate() {
            // SAFETY: 4g + 4 ≤ k: inside row r.
            *v = unsafe { (a.add(r * lda + g * KG) as *const i32).read_unaligned() };
        }
        step(&mut acc, g, &av);
    }
    let rem = k % KG;
    if rem != 0 {
        let mut av = [0i32; R];
        for (r, v) in av.iter_mut().enumerate() {
            // SAFETY: bytes 4·groups..k of row r.
            *v = unsafe { read_partial(a.add(r * lda + groups * KG), rem) } as i32;
        }
        step(&mut acc, groups, &av);
    }
    acc
}

/// Exact widening: i16 × i16 → i32 pair sums, then folded to one sum per channel.
///
/// # Safety
/// As [`dot_madd`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_wide<const R: usize>(
    a: *const u8,
    lda: usize,
    b: *const u8,
    k: usize,
) -> [[__m256i; 2]; R] {
    let zero = _mm256_setzero_si256();
    // acc[r][q]: channels 4q..4q+4, two partial sums each.
    let mut acc = [[_mm256_setzero_si256(); 4]; R];
    let groups = k / KG;
    let step = |acc: &mut [[__m256i; 4]; R], g: usize, av: &[i32; R]| {
        let mut w = [zero; 4];
        for (q, wq) in w.iter_mut().enumerate() {
            // SAFETY: group g < k_padded/4 of the panel: 16 bytes per quarter.
            *wq = _mm256_cvtepi8_epi16(unsafe {
                _mm_loadu_si128(b.add(g * BLOCK + 16 * q) as *const _)
            });
        }
        for (accr, &ar) in acc.iter_mut().zip(av) {
            // i16 [a0 a1 a2 a3 a0 a1 a2 a3] in each 128-bit lane.
            let av = _mm256_unpacklo_epi8(_mm256_set1_epi32(ar), zero);
            for q in 0..4 {
                accr[q] = _mm256_add_epi32(accr[q], _mm256_madd_epi16(av, w[q]));
            }
        }
    };
    for g in 0..groups {
        let mut av = [0i32; R];
        for (r, v) in av.iter_mut().enumerate() {
            // SAFETY: 4g + 4 ≤ k: inside row r.
            *v = unsafe { (a.add(r * lda + g * KG) as *const i32).read_unaligned() };
        }
        step(&mut acc, g, &av);
    }
    let rem = k % KG;
    if rem != 0 {
        let mut av = [0i32; R];
        for (r, v) in av.iter_mut().enumerate() {
            // SAFETY: bytes 4·groups..k of row r.
            *v = unsafe { read_partial(a.add(r * lda + groups * KG), rem) } as i32;
        }
        step(&mut acc, groups, &av);
    }
    let mut out = [[zero; 2]; R];
    for (o, q) in out.iter_mut().zip(&acc) {
        // hadd → [c0 c1 c4 c5 | c2 c3 c6 c7]; vpermq 0,2,1,3 → c0..c7.
        o[0] = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(q[0], q[1]));
        o[1] = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(q[2], q[3]));
    }
    out
}

/// s4: table sign extension of the nibbles, both groups of a block summed in i16.
///
/// # Safety
/// As [`dot_madd`], `b` one s4 panel of `k_padded/8` blocks.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_s4<const R: usize>(
    a: *const u8,
    lda: usize,
    b: *const u8,
    k: usize,
) -> [[__m256i; 2]; R] {
    let ones = _mm256_set1_epi16(1);
    let low4 = _mm256_set1_epi8(0x0F);
    let lut = _mm256_setr_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6,
        -5, -4, -3, -2, -1,
    );
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    let blocks = k / (2 * KG);
    let step = |acc: &mut [[__m256i; 2]; R], h: usize, av: &[i64; R]| {
        let mut lo = [ones; 2];
        let mut hi = [ones; 2];
        for half in 0..2 {
            // SAFETY: block h < k_padded/8 of the panel.
            let x = unsafe { _mm256_loadu_si256(b.add(h * BLOCK + 32 * half) as *const _) };
            lo[half] = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low4));
            hi[half] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(x), low4));
        }
        for (accr, &ar) in acc.iter_mut().zip(av) {
            let al = _mm256_set1_epi32(ar as i32);
            let ah = _mm256_set1_epi32((ar >> 32) as i32);
            for half in 0..2 {
                let s = _mm256_add_epi16(
                    _mm256_maddubs_epi16(al, lo[half]),
                    _mm256_maddubs_epi16(ah, hi[half]),
                );
                accr[half] = _mm256_add_epi32(accr[half], _mm256_madd_epi16(s, ones));
            }
        }
    };
    for h in 0..blocks {
        let mut av = [0i64; R];
        for (r, v) in av.iter_mut().enumerate() {
            // SAFETY: 8h + 8 ≤ k: inside row r.
            *v = unsafe { (a.add(r * lda + h * 2 * KG) as *const i64).read_unaligned() };
        }
        step(&mut acc, h, &av);
    }
    let rem = k % (2 * KG);
    if rem != 0 {
        let mut av = [0i64; R];
        for (r, v) in av.iter_mut().enumerate() {
            // SAFETY: bytes 8·blocks..k of row r.
            *v = unsafe { read_partial(a.add(r * lda + blocks * 2 * KG), rem) } as i64;
        }
        step(&mut acc, blocks, &av);
    }
    acc
}
