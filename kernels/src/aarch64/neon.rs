//! aarch64 NEON kernel without dotprod: exact widening multiply-accumulate.
//!
//! `ld4` on a packed group block (16 channels × 4 K values, K fastest) de-interleaves it into four
//! registers, one per K value, each holding that K value of all 16 channels. Each is sign-extended
//! to i16 (`sxtl`, `sxtl2`, shared by all rows) and multiplied by one A value taken from a lane
//! (`smlal`/`smlal2` by element) into 4 i32 accumulators per row: i16 × i16 products of u8 and s8
//! codes are exact, so every code (−128 included) is exact. Per group the 4-byte A groups of the
//! block's rows are gathered into one register and widened (`uxtl`, `uxtl2`), so a register block of
//! `MR = 4` rows × 16 channels keeps 16 accumulators, 2 A registers and the B registers live.
//! 4-bit B: one `ld4` yields 8 K values (low nibble: `shl #4; sshr #4`, high nibble: `sshr #4`).
//!
//! Row tails use 3/2/1-row blocks; K tails copy the rest of each A row into a zeroed 8-byte buffer
//! (A is never read past the row end) and read only the packed block that exists; column tails go
//! through the scalar epilogue.

use super::epilogue::{store_row, JobEp, PanelEp};
use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK};
use core::arch::aarch64::*;
use std::ops::Range;

/// Rows per register block.
const MR: usize = 4;

/// `$acc += $lo·A, $hi·A` for one row: `$lo`/`$hi` are channels 0..8 / 8..16 of one K value (i16),
/// A's value for the row is lane `$lane` of `$a`.
macro_rules! row {
    ($acc:expr, $a:expr, $lo:ident, $hi:ident, $lane:expr) => {
        $acc[0] = vmlal_laneq_s16::<{ $lane }>($acc[0], vget_low_s16($lo), $a);
        $acc[1] = vmlal_high_laneq_s16::<{ $lane }>($acc[1], $lo, $a);
        $acc[2] = vmlal_laneq_s16::<{ $lane }>($acc[2], vget_low_s16($hi), $a);
        $acc[3] = vmlal_high_laneq_s16::<{ $lane }>($acc[3], $hi, $a);
    };
}

/// One K value (`$i` of the current group) for all rows: `$b` holds it for the 16 channels (i8);
/// see [`load_a`] for where A's values sit.
macro_rules! kstep {
    ($r:ident, $acc:ident, $a:ident, $b:expr, $i:literal) => {{
        let b: int8x16_t = $b;
        let lo = vmovl_s8(vget_low_s8(b));
        let hi = vmovl_high_s8(b);
        row!($acc[0], $a[0], lo, hi, $i);
        if $r > 1 {
            row!($acc[1], $a[0], lo, hi, 4 + $i);
        }
        if $r > 2 {
            row!($acc[2], $a[1], lo, hi, $i);
        }
        if $r > 3 {
            row!($acc[3], $a[1], lo, hi, 4 + $i);
        }
    }};
}

/// One packed S8 group block (4 K values) at `$p`, A of the group in `$a`.
macro_rules! group_s8 {
    ($r:ident, $acc:ident, $a:ident, $p:expr) => {{
        // SAFETY: the caller of the macro guarantees 64 readable bytes at `$p`.
        let x = unsafe { vld4q_s8($p) };
        kstep!($r, $acc, $a, x.0, 0);
        kstep!($r, $acc, $a, x.1, 1);
        kstep!($r, $acc, $a, x.2, 2);
        kstep!($r, $acc, $a, x.3, 3);
    }};
}

/// One packed S4 block (group `2h` in the low nibbles, `2h + 1` in the high ones) at `$p`, A of
/// the two groups in `$a0` and `$a1`.
macro_rules! block_s4 {
    ($r:ident, $acc:ident, $a0:ident, $a1:ident, $p:expr) => {{
        // SAFETY: the caller of the macro guarantees 64 readable bytes at `$p`.
        let x = unsafe { vld4q_s8($p) };
        let lo = |v: int8x16_t| vshrq_n_s8::<4>(vshlq_n_s8::<4>(v));
        let hi = |v: int8x16_t| vshrq_n_s8::<4>(v);
        kstep!($r, $acc, $a0, lo(x.0), 0);
        kstep!($r, $acc, $a0, lo(x.1), 1);
        kstep!($r, $acc, $a0, lo(x.2), 2);
        kstep!($r, $acc, $a0, lo(x.3), 3);
        kstep!($r, $acc, $a1, hi(x.0), 0);
        kstep!($r, $acc, $a1, hi(x.1), 1);
        kstep!($r, $acc, $a1, hi(x.2), 2);
        kstep!($r, $acc, $a1, hi(x.3), 3);
    }};
}

/// The 4 A bytes at `rows[r] + off` of up to 4 rows, widened to i16: row `r`'s value `i` is lane
/// `4·(r % 2) + i` of register `r / 2`. Two registers for a 4-row block keep the register pressure
/// low (`smlal` by element takes its i16 operand from v0..v15 only).
///
/// # Safety
/// `rows[r] + off .. + 4` must be readable for every `r < R`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_a<const R: usize>(rows: &[*const u8; R], off: usize) -> [int16x8_t; 2] {
    // SAFETY: 4 readable bytes per row by the contract; unaligned reads.
    let w = |r: usize| unsafe { rows[r].add(off).cast::<u32>().read_unaligned() };
    let mut v = vdupq_n_u32(0);
    v = vsetq_lane_u32::<0>(w(0), v);
    if R > 1 {
        v = vsetq_lane_u32::<1>(w(1), v);
    }
    if R > 2 {
        v = vsetq_lane_u32::<2>(w(2), v);
    }
    if R > 3 {
        v = vsetq_lane_u32::<3>(w(3), v);
    }
    let v = vreinterpretq_u8_u32(v);
    [
        vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))),
        vreinterpretq_s16_u16(vmovl_high_u8(v)),
    ]
}

/// Exact `Σ_k A[m + r, k]·B[n, k]` for `R <= 4` rows and the 16 channels of one panel.
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
    let k = job.b.k();
    // SAFETY: row m + r starts inside `job.a` (the driver checked (M−1)·lda + K <= len).
    let rows: [*const u8; R] =
        core::array::from_fn(|r| unsafe { job.a.as_ptr().add((m + r) * job.lda) });
    let mut acc = [[vdupq_n_s32(0); 4]; R];
    let mut bp = panel;
    let mut k0 = 0;
    // Full steps read A only below K; the rest of each row is copied into a zeroed buffer (the packed
    // K padding holds zero codes, and K_pad − k0 is exactly one step there).
    let mut tmp = [[0u8; 8]; R];
    if S4 {
        while k0 + 8 <= k {
            // SAFETY: k0 + 8 <= K: the bytes lie inside each row.
            let (a0, a1) = unsafe { (load_a(&rows, k0), load_a(&rows, k0 + 4)) };
            // K values k0..k0 + 8 are one packed nibble block at `bp`.
            block_s4!(R, acc, a0, a1, bp);
            bp = bp.wrapping_add(BLOCK);
            k0 += 8;
        }
    } else {
        while k0 + 4 <= k {
            // SAFETY: k0 + 4 <= K: the bytes lie inside each row.
            let a = unsafe { load_a(&rows, k0) };
            // K values k0..k0 + 4 are one packed group block at `bp`.
            group_s8!(R, acc, a, bp);
            bp = bp.wrapping_add(BLOCK);
            k0 += 4;
        }
    }
    if k0 < k {
        for (r, t) in tmp.iter_mut().enumerate() {
            // SAFETY: bytes k0..K of row m + r are inside A; `t` has room for K − k0 < 8 bytes.
            unsafe { core::ptr::copy_nonoverlapping(rows[r].add(k0), t.as_mut_ptr(), k - k0) };
        }
        let trows: [*const u8; R] = core::array::from_fn(|r| tmp[r].as_ptr());
        if S4 {
            // SAFETY: `tmp[r]` is 8 bytes.
            let (a0, a1) = unsafe { (load_a(&trows, 0), load_a(&trows, 4)) };
            // One nibble block remains at `bp` (K_pad is a multiple of 8).
            block_s4!(R, acc, a0, a1, bp);
        } else {
            // SAFETY: `tmp[r]` is 8 bytes.
            let a = unsafe { load_a(&trows, 0) };
            // One group block remains at `bp` (K_pad is a multiple of 4).
            group_s8!(R, acc, a, bp);
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
            // SAFETY: the remaining rows and panel p are in the caller's tile.
            3 => unsafe { tile::<3, S4>(job, &pe, m, panel) },
            // SAFETY: as above.
            2 => unsafe { tile::<2, S4>(job, &pe, m, panel) },
            // SAFETY: as above.
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
