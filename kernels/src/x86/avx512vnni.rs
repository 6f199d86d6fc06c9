//! AVX-512-VNNI kernel: `vpdpbusd` (u8 × s8, four products summed into each i32 lane, no
//! saturation) on the packed layout, register-blocked `MR` rows × `NP` panels, with the fused
//! epilogue of [`super::epi512`].
//!
//! Microtile: `MR = 8` rows × `NP = 2` panels = 16 zmm accumulators. Per K group (4 bytes of K):
//! two 64-byte B blocks (one zmm each, 16 channels × 4 codes), eight 4-byte A broadcasts (one per
//! row, read in place with stride `lda`), sixteen `vpdpbusd`. Loop order: panel pairs outside, row
//! blocks inside, so the panel pair (2 × K/4 × 64 bytes) stays in L1/L2 while every row block of
//! the tile streams past it; meanwhile the next pair is prefetched into L2 a slice per row block
//! (a model's weights are read once per forward, from L3 or DRAM: this lifted the MiniLM
//! projections from ~175 to ~190–205 GMAC/s in the forward).
//!
//! K tails: the last partial group of a row is copied into a zeroed 4-byte (8 for s4) temporary so
//! A is never read past the row end; the packed B is zero-padded there.
//!
//! s4: one 64-byte block holds groups `2h` (low nibbles) and `2h + 1` (high nibbles). The kernel
//! never sign-extends: `x & 0xF0` is the byte `16·hi` and `(x << 4) & 0xF0` is `16·lo` (exact: the
//! codes are −8..7, so `16·w ∈ [−128, 112]`). The accumulators then hold `16·Σ a·w` with
//! `|16·Σ a·w| ≤ 16·255·8·K ≤ 2^30 − 2^22` for `K ≤ MAX_K = 32768`, so they cannot wrap, and an
//! arithmetic shift right by 4 at the end is exact.

use super::epi512::{epilogue_tile, Acc512};
use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK, KG};
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows per microtile.
const MR: usize = 8;
/// Panels (16 channels each) per microtile.
const NP: usize = 2;

/// # Safety
/// The CPU must support avx512f/bw/vl/vnni (the driver only selects this kernel after
/// `Isa::Avx512Vnni.require()`); `rows`/`panels` lie inside the job and no other task writes this
/// tile (the contract of [`crate::scalar::gemm_u8_packed_scalar`]).
pub(crate) unsafe fn gemm_u8_packed_avx512vnni(
    job: &Job,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    debug_assert!(rows.end <= job.m && panels.end <= job.b.panels());
    let s4 = job.b.format() == WeightFormat::S4;
    let mut p = panels.start;
    while p + NP <= panels.end {
        // SAFETY: features checked by the driver; panels p..p+NP lie inside the caller's tile.
        unsafe {
            if s4 {
                row_blocks::<NP, true>(job, rows.clone(), p)
            } else {
                row_blocks::<NP, false>(job, rows.clone(), p)
            }
        }
        p += NP;
    }
    // SAFETY: as above, the last panel when the count is odd.
    unsafe {
        match (panels.end - p, s4) {
            (0, _) => {}
            (1, false) => row_blocks::<1, false>(job, rows, p),
            (1, true) => row_blocks::<1, true>(job, rows, p),
            _ => unreachable!("fewer than NP = 2 panels remain"),
        }
    }
}

/// All rows of `rows` against panels `p0..p0 + P`: full `MR` blocks, then one shorter block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn row_blocks<const P: usize, const S4: bool>(job: &Job, rows: Range<usize>, p0: usize) {
    // The next P panels are prefetched into L2 a slice per row block, so that when the loop
    // moves on to them they come from L2, not from L3/DRAM (a layer's weights are read once per
    // forward and are cold).
    let data = job.b.data();
    let (next, end) = (
        (p0 + P) * job.b.panel_bytes(),
        (p0 + 2 * P) * job.b.panel_bytes(),
    );
    let end = end.min(data.len());
    let lines = end.saturating_sub(next).div_ceil(64);
    let per_block = lines.div_ceil(rows.len().div_ceil(MR).max(1));
    let mut line = 0;
    let mut prefetch = || {
        let stop = (line + per_block).min(lines);
        while line < stop {
            // SAFETY: next + 64·line < end ≤ data.len(): the address lies inside `data`;
            // a prefetch never faults and changes no state the program can observe.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(data.as_ptr().add(next + 64 * line) as *const i8)
            };
            line += 1;
        }
    };
    let mut m = rows.start;
    while m + MR <= rows.end {
        prefetch();
        // SAFETY: rows m..m+MR and panels p0..p0+P lie inside the caller's tile.
        unsafe { tile::<MR, P, S4>(job, m, p0) };
        m += MR;
    }
    prefetch();
    // SAFETY: the remaining rows m..rows.end, as above.
    unsafe {
        match rows.end - m {
            0 => {}
            1 => tile::<1, P, S4>(job, m, p0),
            2 => tile::<2, P, S4>(job, m, p0),
            3 => tile::<3, P, S4>(job, m, p0),
            4 => tile::<4, P, S4>(job, m, p0),
            5 => tile::<5, P, S4>(job, m, p0),
            6 => tile::<6, P, S4>(job, m, p0),
            7 => tile::<7, P, S4>(job, m, p0),
            _ => unreachable!(),
        }
    }
}

/// One `R × P` microtile at rows `m0..m0 + R`, panels `p0..p0 + P`: the full K loop, then the
/// epilogue.
///
/// # Safety
/// avx512f/bw/vl/vnni available; the rows and panels lie inside the job and belong to the caller.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize, const P: usize, const S4: bool>(job: &Job, m0: usize, p0: usize) {
    let k = job.b.k();
    let pb = job.b.panel_bytes();
    let lda = job.lda;
    let data = job.b.data();
    debug_assert!((p0 + P) * pb <= data.len());
    debug_assert!(job.a.len() >= (m0 + R - 1) * lda + k);
    // SAFETY: panels p0..p0+P exist, so the offset stays inside `data`.
    let b = unsafe { data.as_ptr().add(p0 * pb) };
    // SAFETY: row m0 < job.m exists; rows m0..m0+R start at multiples of lda inside `job.a`.
    let a = unsafe { job.a.as_ptr().add(m0 * lda) };
    let mut acc: Acc512<R, P> = [[_mm512_setzero_si512(); P]; R];

    if !S4 {
        let groups = k / KG;
        for g in 0..groups {
            let mut bv = [_mm512_setzero_si512(); P];
            for (p, v) in bv.iter_mut().enumerate() {
                // SAFETY: group g < k_padded/4 of panel p0+p: 64 bytes inside `data`.
                *v = unsafe { _mm512_loadu_si512(b.add(p * pb + g * BLOCK) as *const _) };
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                // SAFETY: 4·g + 4 ≤ k, so the 4 bytes lie inside row m0 + r.
                let av = unsafe { (a.add(r * lda + g * KG) as *const i32).read_unaligned() };
                let av = _mm512_set1_epi32(av);
                for p in 0..P {
                    accr[p] = _mm512_dpbusd_epi32(accr[p], av, bv[p]);
                }
            }
        }
        let rem = k % KG;
        if rem != 0 {
            let g = groups;
            let mut bv = [_mm512_setzero_si512(); P];
            for (p, v) in bv.iter_mut().enumerate() {
                // SAFETY: the padded group g exists (k_padded = 4·ceil(k/4)).
                *v = unsafe { _mm512_loadu_si512(b.add(p * pb + g * BLOCK) as *const _) };
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let mut tmp = [0u8; 4];
                // SAFETY: bytes 4g..k of row m0 + r lie inside the row; tmp has room for rem < 4.
                unsafe {
                    std::ptr::copy_nonoverlapping(a.add(r * lda + g * KG), tmp.as_mut_ptr(), rem)
                };
                let av = _mm512_set1_epi32(i32::from_le_bytes(tmp));
                for p in 0..P {
                    accr[p] = _mm512_dpbusd_epi32(accr[p], av, bv[p]);
                }
            }
        }
    } else {
        let nib = _mm512_set1_epi8(0xF0u8 as i8);
        let blocks = k / (2 * KG);
        for h in 0..blocks {
            let mut lo = [_mm512_setzero_si512(); P];
            let mut hi = [_mm512_setzero_si512(); P];
            for p in 0..P {
                // SAFETY: block h < k_padded/8 of panel p0+p: 64 bytes inside `data`.
                let x = unsafe { _mm512_loadu_si512(b.add(p * pb + h * BLOCK) as *const _) };
                lo[p] = _mm512_and_si512(_mm512_slli_epi16::<4>(x), nib);
                hi[p] = _mm512_and_si512(x, nib);
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                // SAFETY: 8·h + 8 ≤ k: both 4-byte groups lie inside row m0 + r.
                let (al, ah) = unsafe {
                    let p = a.add(r * lda + h * 2 * KG) as *const i32;
                    (p.read_unaligned(), p.add(1).read_unaligned())
                };
                let (al, ah) = (_mm512_set1_epi32(al), _mm512_set1_epi32(ah));
                for p in 0..P {
                    accr[p] = _mm512_dpbusd_epi32(accr[p], al, lo[p]);
                    accr[p] = _mm512_dpbusd_epi32(accr[p], ah, hi[p]);
                }
            }
        }
        let rem = k % (2 * KG);
        if rem != 0 {
            let h = blocks;
            let mut lo = [_mm512_setzero_si512(); P];
            let mut hi = [_mm512_setzero_si512(); P];
            for p in 0..P {
                // SAFETY: the padded block h exists (k_padded = 8·ceil(k/8)).
                let x = unsafe { _mm512_loadu_si512(b.add(p * pb + h * BLOCK) as *const _) };
                lo[p] = _mm512_and_si512(_mm512_slli_epi16::<4>(x), nib);
                hi[p] = _mm512_and_si512(x, nib);
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let mut tmp = [0u8; 8];
                // SAFETY: bytes 8h..k of row m0 + r lie inside the row; tmp has room for rem < 8.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        a.add(r * lda + h * 2 * KG),
                        tmp.as_mut_ptr(),
                        rem,
                    )
                };
                let v = u64::from_le_bytes(tmp);
                let al = _mm512_set1_epi32(v as u32 as i32);
                let ah = _mm512_set1_epi32((v >> 32) as u32 as i32);
                for p in 0..P {
                    accr[p] = _mm512_dpbusd_epi32(accr[p], al, lo[p]);
                    accr[p] = _mm512_dpbusd_epi32(accr[p], ah, hi[p]);
                }
            }
        }
        for accr in acc.iter_mut() {
            for v in accr.iter_mut() {
                *v = _mm512_srai_epi32::<4>(*v);
            }
        }
    }
    // SAFETY: same tile contract.
    unsafe { epilogue_tile::<R, P>(job, m0, p0, acc) };
}
