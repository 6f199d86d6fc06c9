//! aarch64 NEON kernel without dotprod: exact widening multiply-accumulate.
//!
//! `ld4` on a packed group block (16 channels × 4 K values, K fastest) de-interleaves it into four
//! registers, one per K value, each holding that K value of all 16 channels. Each is sign-extended
//! to i16 (`sxtl`, `sxtl2`) and multiplied by one A value broadcast from a lane (`smlal`/`smlal2` by
//! element) into 4 i32 accumulators per row: i16 × i16 products of u8 and s8 codes are exact, so every
//! code (−128 included) is exact. A is widened once per 8 K values (`uxtl`). A register block of
//! `MR = 4` rows × 16 channels keeps 16 accumulators, 4 A registers and the B registers live.
//! 4-bit B: one `ld4` yields 8 K values (low nibble: `shl #4; sshr #4`, high nibble: `sshr #4`).
//!
//! Row tails use 3/2/1-row blocks; K tails copy the rest of each A row into a zeroed 8-byte buffer
//! (A is never read past the row end) and read only the packed groups that exist; column tails go
//! through the scalar epilogue.

use super::epilogue::{store_row, JobEp, PanelEp};
use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK, KG};
use core::arch::aarch64::*;
use std::ops::Range;

/// Rows per register block.
const MR: usize = 4;

/// One K value for all rows: `$b` holds it for the 16 channels (i8), A's value sits in lane `$lane`
/// of `$a[r]` (i16).
macro_rules! kstep {
    ($r:ident, $acc:ident, $a:ident, $b:expr, $lane:literal) => {{
        let b: int8x16_t = $b;
        let lo = vmovl_s8(vget_low_s8(b));
        let hi = vmovl_high_s8(b);
        for r in 0..$r {
            $acc[r][0] = vmlal_laneq_s16::<$lane>($acc[r][0], vget_low_s16(lo), $a[r]);
            $acc[r][1] = vmlal_high_laneq_s16::<$lane>($acc[r][1], lo, $a[r]);
            $acc[r][2] = vmlal_laneq_s16::<$lane>($acc[r][2], vget_low_s16(hi), $a[r]);
            $acc[r][3] = vmlal_high_laneq_s16::<$lane>($acc[r][3], hi, $a[r]);
        }
    }};
}

/// One packed S8 group (4 K values) whose A values sit in lanes `$l0..$l0 + 4`.
macro_rules! group_s8 {
    ($r:ident, $acc:ident, $a:ident, $p:expr, $l0:literal, $l1:literal, $l2:literal, $l3:literal) => {{
        // SAFETY: the caller of the macro guarantees 64 readable bytes at `$p`.
        let x = unsafe { vld4q_s8($p) };
        kstep!($r, $acc, $a, x.0, $l0);
        kstep!($r, $acc, $a, x.1, $l1);
        kstep!($r, $acc, $a, x.2, $l2);
        kstep!($r, $acc, $a, x.3, $l3);
    }};
}

/// One packed S4 block (8 K values: low nibbles 0..4, high nibbles 4..8).
macro_rules! block_s4 {
    ($r:ident, $acc:ident, $a:ident, $p:expr) => {{
        // SAFETY: the caller of the macro guarantees 64 readable bytes at `$p`.
        let x = unsafe { vld4q_s8($p) };
        let lo = |v: int8x16_t| vshrq_n_s8::<4>(vshlq_n_s8::<4>(v));
        let hi = |v: int8x16_t| vshrq_n_s8::<4>(v);
        kstep!($r, $acc, $a, lo(x.0), 0);
        kstep!($r, $acc, $a, lo(x.1), 1);
        kstep!($r, $acc, $a, lo(x.2), 2);
        kstep!($r, $acc, $a, lo(x.3), 3);
        kstep!($r, $acc, $a, hi(x.0), 4);
        kstep!($r, $acc, $a, hi(x.1), 5);
        kstep!($r, $acc, $a, hi(x.2), 6);
        kstep!($r, $acc, $a, hi(x.3), 7);
    }};
}

/// Exact `Σ_k A[m + r, k]·B[n, k]` for `R` rows and the 16 channels of one panel.
///
/// # Safety
/// Rows `m..m + R` exist in A; `panel` points to one packed panel of `job.b`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn block<const R: usize, const S4: bool>(
    job: &Job,
    m: usize,
    panel: *const i8,
) -> [[int32x4_t; 4]; R] {
    let (k, kp) = (job.b.k(), job.b.k_padded());
    // SAFETY: row m + r starts inside `job.a` (the driver checked (M−1)·lda + K <= len).
    let rows: [*const u8; R] =
        core::array::from_fn(|r| unsafe { job.a.as_ptr().add((m + r) * job.lda) });
    let mut acc = [[vdupq_n_s32(0); 4]; R];
    let mut bp = panel;
    let mut k0 = 0;
    while k0 + 8 <= k {
        // SAFETY: k0 + 8 <= K, so the 8 bytes lie inside row m + r.
        let a: [int16x8_t; R] = core::array::from_fn(|r| unsafe {
            vreinterpretq_s16_u16(vmovl_u8(vld1_u8(rows[r].add(k0))))
        });
        if S4 {
            // K values k0..k0 + 8 are packed: one nibble block at `bp`.
            block_s4!(R, acc, a, bp);
        } else {
            // K values k0..k0 + 8 are packed: two group blocks at `bp`.
            group_s8!(R, acc, a, bp, 0, 1, 2, 3);
            group_s8!(R, acc, a, bp.wrapping_add(BLOCK), 4, 5, 6, 7);
        }
        bp = bp.wrapping_add(if S4 { BLOCK } else { 2 * BLOCK });
        k0 += 8;
    }
    if k0 < k {
        // Rest of the rows in zeroed buffers; the packed groups past K hold zero codes.
        let mut tmp = [[0u8; 8]; R];
        for (r, t) in tmp.iter_mut().enumerate() {
            // SAFETY: bytes k0..K of row m + r are inside A; `t` has room for K − k0 < 8 bytes.
            unsafe { core::ptr::copy_nonoverlapping(rows[r].add(k0), t.as_mut_ptr(), k - k0) };
        }
        // SAFETY: `tmp[r]` is 8 bytes.
        let a: [int16x8_t; R] = core::array::from_fn(|r| unsafe {
            vreinterpretq_s16_u16(vmovl_u8(vld1_u8(tmp[r].as_ptr())))
        });
        if S4 {
            // K_pad is a multiple of 8: one nibble block remains at `bp`.
            block_s4!(R, acc, a, bp);
        } else {
            // (K_pad − k0) / 4 ∈ {1, 2} group blocks remain at `bp`.
            group_s8!(R, acc, a, bp, 0, 1, 2, 3);
            if (kp - k0) / KG > 1 {
                group_s8!(R, acc, a, bp.wrapping_add(BLOCK), 4, 5, 6, 7);
            }
        }
    }
    acc
}

/// Accumulates and writes rows `m..m + R` of one panel.
///
/// # Safety
/// As [`block`], and the rows × panel tile belongs to the caller.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile<const R: usize, const S4: bool>(
    job: &Job,
    pe: &PanelEp,
    m: usize,
    panel: *const i8,
) {
    // SAFETY: forwarded contract.
    let acc = unsafe { block::<R, S4>(job, m, panel) };
    for (r, &row) in acc.iter().enumerate() {
        // SAFETY: row m + r and the panel's columns are in the caller's tile.
        unsafe { store_row(job, pe, m + r, row) };
    }
}

#[target_feature(enable = "neon")]
unsafe fn run<const S4: bool>(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let jep = JobEp::new(job);
    let pb = job.b.panel_bytes();
    let data = job.b.data();
    for p in panels {
        let pe = PanelEp::new(job, &jep, p);
        let panel = data[p * pb..(p + 1) * pb].as_ptr() as *const i8;
        let mut m = rows.start;
        while m + MR <= rows.end {
            // SAFETY: rows m..m + MR and panel p are in the caller's tile, inside the job.
            unsafe { tile::<MR, S4>(job, &pe, m, panel) };
            m += MR;
        }
        match rows.end - m {
            // SAFETY (each arm): the remaining rows and panel p are in the caller's tile.
            3 => unsafe { tile::<3, S4>(job, &pe, m, panel) },
            2 => unsafe { tile::<2, S4>(job, &pe, m, panel) },
            1 => unsafe { tile::<1, S4>(job, &pe, m, panel) },
            _ => {}
        }
    }
}

/// # Safety
/// See [`crate::scalar::gemm_u8_packed_scalar`]; NEON is part of the aarch64 baseline.
pub(crate) unsafe fn gemm_u8_packed_neon(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    match job.b.format() {
        // SAFETY: NEON is present (dispatcher check); tile contract forwarded.
        WeightFormat::S8 => unsafe { run::<false>(job, rows, panels) },
        // SAFETY: as above.
        WeightFormat::S4 => unsafe { run::<true>(job, rows, panels) },
    }
}
