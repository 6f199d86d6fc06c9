//! AVX2 kernel on the packed layout: one panel (16 channels) = two ymm halves of 8 channels; a K
//! group of a half is 32 bytes (8 channels × 4 codes), A is broadcast 4 bytes per row per group.
//! Three inner loops, chosen per call:
//!
//! - **madd** (s8, when `a_max·2·max|b| ≤ 32767`): `vpmaddubsw` (u8 × s8, pairs summed with i16
//!   saturation, which the bound rules out) then `vpmaddwd` by ones into i32. 4 rows × 1 panel =
//!   8 accumulators. When even `a_max·4·max|b| ≤ 32767` (6-bit activations against 8-bit
//!   weights: 63·4·127 = 32004), **madd2** adds the `vpmaddubsw` results of two groups in i16
//!   first: one `vpmaddwd` + `vpaddd` per two groups.
//! - **wide** (s8 otherwise, e.g. 8-bit activations against 8-bit weights): exact widening, A
//!   zero-extended and B sign-extended to i16 (`vpmovsxbw`), `vpmaddwd` into i32 pair sums; each
//!   accumulator holds 4 channels × 2 partial sums, folded with `vphaddd` + `vpermq` at the end.
//!   2 rows × 1 panel = 8 accumulators. A is widened once per chunk of `MC` rows into a scratch
//!   of u16 (zero-padded to `k_padded`), so each row of a group is one `vpbroadcastq` load.
//! - **s4**: nibbles sign-extended with a `vpshufb` table (codes −8..7, so `vpmaddubsw` can never
//!   saturate: 2·255·8 = 4080), and the two groups of one packed block (low and high nibbles)
//!   added in i16 before the single `vpmaddwd` (|sum| ≤ 4·255·8 = 8160). 4 rows × 1 panel.
//!
//! K tails: the last partial group (block for s4) of a row goes through a zeroed temporary (the
//! same inner step, pointed at the temporary), so A is never read past the row end; the packed B
//! is zero-padded there. Loop order: panels outside, row blocks inside.

use super::epi256::epilogue_panel;
use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK, KG, NR};
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows per microtile of the madd and s4 loops.
const MR: usize = 4;
/// Rows per microtile of the widening loop.
const MR_WIDE: usize = 2;
/// Rows of A widened to u16 at a time for the widening loop (`MC × k_padded × 2` bytes).
const MC: usize = 64;

/// Inner loops of [`tile`].
const MADD: u8 = 0;
const MADD2: u8 = 1;
const S4: u8 = 2;

/// Whether `vpmaddubsw` provably cannot saturate for this job: `products` products of
/// `a_max·max|b|` summed in i16 (2: one `vpmaddubsw`; 4: two of them added with `vpaddw`).
fn i16_sums_exact(job: &Job, products: i32) -> bool {
    job.a_max as i32 * products * job.b.max_abs_code() <= i16::MAX as i32
}

/// # Safety
/// The CPU must support AVX2 (the driver only selects this kernel after `Isa::Avx2.require()`);
/// `rows`/`panels` lie inside the job and no other task writes this tile (the contract of
/// [`crate::scalar::gemm_u8_packed_scalar`]).
pub(crate) unsafe fn gemm_u8_packed_avx2(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    debug_assert!(rows.end <= job.m && panels.end <= job.b.panels());
    // s4 codes are −8..7: 4·255·8 = 8160, so the s4 loop is always exact.
    debug_assert!(job.b.format() == WeightFormat::S8 || i16_sums_exact(job, 4));
    let mode = match job.b.format() {
        WeightFormat::S4 => S4,
        WeightFormat::S8 if i16_sums_exact(job, 4) => MADD2,
        WeightFormat::S8 if i16_sums_exact(job, 2) => MADD,
        WeightFormat::S8 => {
            // SAFETY: AVX2 checked by the driver; same tile.
            unsafe { wide_chunks(job, rows, panels) };
            return;
        }
    };
    for p in panels {
        // SAFETY: AVX2 checked by the driver; panel p lies inside the caller's tile.
        unsafe {
            match mode {
                MADD => row_blocks::<MADD>(job, rows.clone(), p),
                MADD2 => row_blocks::<MADD2>(job, rows.clone(), p),
                _ => row_blocks::<S4>(job, rows.clone(), p),
            }
        }
    }
}

/// All rows of `rows` against panel `p` with inner loop `L`.
#[target_feature(enable = "avx2")]
unsafe fn row_blocks<const L: u8>(job: &Job, rows: Range<usize>, p: usize) {
    let mut m = rows.start;
    while m + MR <= rows.end {
        // SAFETY: rows m..m+MR and panel p lie inside the caller's tile.
        unsafe { tile::<MR, L>(job, m, p) };
        m += MR;
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

/// Rows `m0..m0 + R` against panel `p`: K loop, then the epilogue.
///
/// # Safety
/// AVX2 available; the rows and the panel lie inside the job and belong to the caller.
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
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    // K consumed per step: one group (madd) or two (madd2, and s4's one block).
    let ks = if L == MADD { KG } else { 2 * KG };
    // Packed bytes per step.
    let bs = if L == MADD2 { 2 * BLOCK } else { BLOCK };
    let steps = k / ks;
    for s in 0..steps {
        // SAFETY: step s covers bytes ks·s..ks·(s+1) ≤ k of each row and bytes bs·s..bs·(s+1)
        // of the panel.
        unsafe {
            match L {
                MADD => step_madd::<R>(&mut acc, a.add(s * ks), lda, b.add(s * bs)),
                MADD2 => step_madd2::<R>(&mut acc, a.add(s * ks), lda, b.add(s * bs)),
                _ => step_s4::<R>(&mut acc, a.add(s * ks), lda, b.add(s * bs)),
            }
        }
    }
    let rem = k % ks;
    if rem != 0 {
        // The partial last step, from a zeroed copy (8 bytes per row).
        let mut tmp = [[0u8; 8]; R];
        for (r, t) in tmp.iter_mut().enumerate() {
            // SAFETY: bytes ks·steps..k of row r lie inside the row; t holds 8 ≥ rem.
            unsafe {
                std::ptr::copy_nonoverlapping(a.add(r * lda + steps * ks), t.as_mut_ptr(), rem)
            };
        }
        let t = tmp.as_ptr() as *const u8;
        let b = b.wrapping_add(steps * bs);
        // SAFETY: the temporary holds R rows of 8 bytes at stride 8. The packed K is padded to
        // 4 (s8) or 8 (s4): the blocks of the step exist, except for madd2 with rem ≤ 4, where
        // only the first group does, and one madd step covers it.
        unsafe {
            match L {
                MADD2 if rem > KG => step_madd2::<R>(&mut acc, t, 8, b),
                MADD | MADD2 => step_madd::<R>(&mut acc, t, 8, b),
                _ => step_s4::<R>(&mut acc, t, 8, b),
            }
        }
    }
    // SAFETY: same tile contract.
    unsafe { epilogue_panel::<R>(job, m0, p, acc) };
}

/// One K group: `vpmaddubsw` + `vpmaddwd` by ones; caller guarantees `a_max·2·max|b| ≤ 32767`.
///
/// # Safety
/// 4 readable bytes at `a + r·lda` for each of the R rows; 64 at `b`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn step_madd<const R: usize>(
    acc: &mut [[__m256i; 2]; R],
    a: *const u8,
    lda: usize,
    b: *const u8,
) {
    let ones = _mm256_set1_epi16(1);
    // SAFETY: 64 bytes at b.
    let (b0, b1) = unsafe {
        (
            _mm256_loadu_si256(b as *const _),
            _mm256_loadu_si256(b.add(32) as *const _),
        )
    };
    for (r, accr) in acc.iter_mut().enumerate() {
        // SAFETY: 4 bytes of row r.
        let av = _mm256_set1_epi32(unsafe { (a.add(r * lda) as *const i32).read_unaligned() });
        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
        accr[0] = _mm256_add_epi32(accr[0], p0);
        accr[1] = _mm256_add_epi32(accr[1], p1);
    }
}

/// Two K groups: both `vpmaddubsw` results added in i16 before one `vpmaddwd` by ones; caller
/// guarantees `a_max·4·max|b| ≤ 32767`.
///
/// # Safety
/// 8 readable bytes at `a + r·lda` for each of the R rows; 128 at `b`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn step_madd2<const R: usize>(
    acc: &mut [[__m256i; 2]; R],
    a: *const u8,
    lda: usize,
    b: *const u8,
) {
    let ones = _mm256_set1_epi16(1);
    for half in 0..2 {
        // SAFETY: 128 bytes at b: groups 0 and 1, 32 bytes per half.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_si256(b.add(32 * half) as *const _),
                _mm256_loadu_si256(b.add(BLOCK + 32 * half) as *const _),
            )
        };
        for (r, accr) in acc.iter_mut().enumerate() {
            // SAFETY: 8 bytes of row r.
            let (a0, a1) = unsafe {
                let p = a.add(r * lda) as *const i32;
                (p.read_unaligned(), p.add(1).read_unaligned())
            };
            let s = _mm256_add_epi16(
                _mm256_maddubs_epi16(_mm256_set1_epi32(a0), b0),
                _mm256_maddubs_epi16(_mm256_set1_epi32(a1), b1),
            );
            accr[half] = _mm256_add_epi32(accr[half], _mm256_madd_epi16(s, ones));
        }
    }
}

/// One s4 block (two K groups): table sign extension of the nibbles, both groups summed in i16
/// (|sum| ≤ 4·255·8) before one `vpmaddwd` by ones.
///
/// # Safety
/// 8 readable bytes at `a + r·lda` for each of the R rows; 64 at `b`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn step_s4<const R: usize>(
    acc: &mut [[__m256i; 2]; R],
    a: *const u8,
    lda: usize,
    b: *const u8,
) {
    let ones = _mm256_set1_epi16(1);
    let low4 = _mm256_set1_epi8(0x0F);
    let lut = _mm256_setr_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6,
        -5, -4, -3, -2, -1,
    );
    for half in 0..2 {
        // SAFETY: 32 bytes of the block.
        let x = unsafe { _mm256_loadu_si256(b.add(32 * half) as *const _) };
        let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low4));
        let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(x), low4));
        for (r, accr) in acc.iter_mut().enumerate() {
            // SAFETY: 8 bytes of row r.
            let (al, ah) = unsafe {
                let p = a.add(r * lda) as *const i32;
                (p.read_unaligned(), p.add(1).read_unaligned())
            };
            let s = _mm256_add_epi16(
                _mm256_maddubs_epi16(_mm256_set1_epi32(al), lo),
                _mm256_maddubs_epi16(_mm256_set1_epi32(ah), hi),
            );
            accr[half] = _mm256_add_epi32(accr[half], _mm256_madd_epi16(s, ones));
        }
    }
}

/// The widening loop: chunks of `MC` rows of A widened to u16, then, per panel of the tile, the
/// panel's B widened to i16 once and every row block of the chunk against it.
///
/// # Safety
/// AVX2 available; `rows`/`panels` inside the job and owned by the caller.
#[target_feature(enable = "avx2")]
unsafe fn wide_chunks(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let (k, kp, lda) = (job.b.k(), job.b.k_padded(), job.lda);
    let pb = job.b.panel_bytes();
    let mut wa = vec![0u16; MC.min(rows.len()) * kp];
    let mut wb = vec![0i16; kp * NR];
    let mut m = rows.start;
    while m < rows.end {
        let mc = MC.min(rows.end - m);
        for r in 0..mc {
            let src = &job.a[(m + r) * lda..(m + r) * lda + k];
            widen_row(src, &mut wa[r * kp..(r + 1) * kp]);
        }
        for p in panels.clone() {
            widen_panel(&job.b.data()[p * pb..(p + 1) * pb], &mut wb);
            let mut r = 0;
            // SAFETY: rows m+r.. lie in the caller's tile; `wa` holds mc widened rows of kp,
            // `wb` the widened panel p.
            unsafe {
                while r + MR_WIDE <= mc {
                    tile_wide::<MR_WIDE>(job, wa.as_ptr().add(r * kp), wb.as_ptr(), m + r, p);
                    r += MR_WIDE;
                }
                if r < mc {
                    tile_wide::<1>(job, wa.as_ptr().add(r * kp), wb.as_ptr(), m + r, p);
                }
            }
        }
        m += mc;
    }
}

/// The packed s8 panel sign-extended to i16, same layout (one i16 per byte).
#[target_feature(enable = "avx2")]
fn widen_panel(src: &[u8], dst: &mut [i16]) {
    debug_assert_eq!(src.len(), dst.len());
    for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
        // SAFETY: 16 bytes read from `s`, 16 i16 written to `d`.
        unsafe {
            let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(s.as_ptr() as *const _));
            _mm256_storeu_si256(d.as_mut_ptr() as *mut _, v);
        }
    }
}

/// `dst[i] = src[i]` as u16, zeros after `src.len()`.
#[target_feature(enable = "avx2")]
fn widen_row(src: &[u8], dst: &mut [u16]) {
    let n16 = src.len() / 16 * 16;
    for (s, d) in src[..n16].chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
        // SAFETY: 16 bytes read from `s`, 32 written to `d` (16 u16).
        unsafe {
            let v = _mm256_cvtepu8_epi16(_mm_loadu_si128(s.as_ptr() as *const _));
            _mm256_storeu_si256(d.as_mut_ptr() as *mut _, v);
        }
    }
    for (d, &s) in dst[n16..].iter_mut().zip(&src[n16..]) {
        *d = s as u16;
    }
    dst[src.len()..].fill(0);
}

/// Rows `m0..m0 + R` (widened in `wa`, stride `k_padded`) against panel `p` (widened in `wb`).
///
/// # Safety
/// AVX2 available; `wa` holds R rows of `k_padded` u16, `wb` the `k_padded × 16` i16 of panel
/// `p`; the rows and the panel belong to the caller.
#[target_feature(enable = "avx2")]
unsafe fn tile_wide<const R: usize>(
    job: &Job,
    wa: *const u16,
    wb: *const i16,
    m0: usize,
    p: usize,
) {
    let kp = job.b.k_padded();
    // acc[r][q]: channels 4q..4q+4, two partial sums each.
    let mut acc = [[_mm256_setzero_si256(); 4]; R];
    for g in 0..kp / KG {
        let mut w = [_mm256_setzero_si256(); 4];
        for (q, wq) in w.iter_mut().enumerate() {
            // SAFETY: group g < k_padded/4: 64 i16 per group, 16 per quarter.
            *wq = unsafe { _mm256_loadu_si256(wb.add(g * BLOCK + 16 * q) as *const _) };
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            // SAFETY: 4 u16 of row r, group g < k_padded/4.
            let av = unsafe { (wa.add(r * kp + g * KG) as *const i64).read_unaligned() };
            // i16 [a0 a1 a2 a3] in every 64-bit lane.
            let av = _mm256_set1_epi64x(av);
            for (accq, wq) in accr.iter_mut().zip(&w) {
                *accq = _mm256_add_epi32(*accq, _mm256_madd_epi16(av, *wq));
            }
        }
    }
    let mut out = [[_mm256_setzero_si256(); 2]; R];
    for (o, q) in out.iter_mut().zip(&acc) {
        // hadd → [c0 c1 c4 c5 | c2 c3 c6 c7]; vpermq 0,2,1,3 → c0..c7.
        o[0] = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(q[0], q[1]));
        o[1] = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(q[2], q[3]));
    }
    // SAFETY: same tile contract.
    unsafe { epilogue_panel::<R>(job, m0, p, out) };
}
