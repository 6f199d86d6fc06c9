//! aarch64 NEON + dotprod kernel: `sdot` by element.
//!
//! The packed group block (16 channels × 4 K values, 64 bytes) is four q-registers of 4 channels ×
//! 4 bytes, exactly the lanes of `sdot vd.4s, vn.16b, vm.4b[l]`, which broadcasts one 4-byte group of
//! A from lane `l`. One 16-byte load of an A row holds four groups, so a 16-K step of a register block
//! of `MR = 4` rows × 16 channels is 4 A loads, 16 B loads and 64 `sdot` into 16 accumulators
//! (24 live vector registers). `sdot` is signed × signed, so A is fed as `a ^ 0x80 = a − 128` and the
//! accumulator is corrected by `128·colsum[n]` (the column sum of the stored codes): exact, and all of
//! it is wrapping i32 arithmetic like the scalar reference. 4-bit B is unpacked in registers
//! (`shl #4; sshr #4` for the low nibble, `sshr #4` for the high one).
//!
//! Row tails use 3/2/1-row blocks; K tails copy the rest of each A row into a zeroed 16-byte buffer
//! (A is never read past the row end) and run only the packed groups that exist; column tails go
//! through the scalar epilogue. `sdot` is emitted with `asm!` because `vdotq_laneq_s32` is not stable.

use super::epilogue::{store_row, JobEp, PanelEp};
use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK, KG, NR};
use core::arch::aarch64::*;
use core::arch::asm;
use std::ops::Range;

/// Rows per register block.
const MR: usize = 4;

/// `$acc += dot(4-byte groups of $b, group $lane of $a)` per i32 lane.
macro_rules! sdot_lane {
    ($acc:expr, $b:expr, $a:expr, $lane:literal) => {
        // SAFETY: a register-only instruction; every function using this macro enables `dotprod`.
        unsafe {
            asm!(
                concat!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[", $lane, "]"),
                acc = inout(vreg) $acc,
                b = in(vreg) $b,
                a = in(vreg) $a,
                options(pure, nomem, nostack, preserves_flags),
            )
        }
    };
}

/// One group of 4 K values for all rows: `$b` are the 4 registers of the group block, the group's A
/// bytes sit in lane `$lane` of `$a[r]`.
macro_rules! group {
    ($r:ident, $acc:ident, $a:ident, $b:expr, $lane:literal) => {{
        let b: [int8x16_t; 4] = $b;
        for r in 0..$r {
            sdot_lane!($acc[r][0], b[0], $a[r], $lane);
            sdot_lane!($acc[r][1], b[1], $a[r], $lane);
            sdot_lane!($acc[r][2], b[2], $a[r], $lane);
            sdot_lane!($acc[r][3], b[3], $a[r], $lane);
        }
    }};
}

/// The 64-byte block at `p` as four registers.
///
/// # Safety
/// `p` must point to 64 readable bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_block(p: *const i8) -> [int8x16_t; 4] {
    // SAFETY: 64 readable bytes by the contract.
    let x = unsafe { vld1q_s8_x4(p) };
    [x.0, x.1, x.2, x.3]
}

/// Low nibbles (group `2h`) of an s4 block, sign-extended.
#[target_feature(enable = "neon")]
#[inline]
fn s4_low(x: [int8x16_t; 4]) -> [int8x16_t; 4] {
    x.map(|v| vshrq_n_s8::<4>(vshlq_n_s8::<4>(v)))
}

/// High nibbles (group `2h + 1`) of an s4 block, sign-extended.
#[target_feature(enable = "neon")]
#[inline]
fn s4_high(x: [int8x16_t; 4]) -> [int8x16_t; 4] {
    x.map(|v| vshrq_n_s8::<4>(v))
}

/// Exact `Σ_k (A[m + r, k] − 128)·B[n, k]` for `R` rows and the 16 channels of one panel.
///
/// # Safety
/// Rows `m..m + R` exist in A; `panel` points to one packed panel of `job.b`.
#[target_feature(enable = "neon,dotprod")]
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
    let flip = vdupq_n_u8(0x80);
    let mut acc = [[vdupq_n_s32(0); 4]; R];
    let mut bp = panel;
    // Block `i` from `bp` (`i` counts 64-byte blocks: groups for S8, group pairs for S4).
    macro_rules! blk {
        ($i:expr) => {{
            // SAFETY: every use below reads a block that exists: the main loop only runs while
            // k0 + 16 <= K <= K_pad (4 groups = 4 S8 or 2 S4 blocks ahead), the tail only reads the
            // `(K_pad − k0) / 4` groups that remain.
            unsafe { load_block(bp.add($i * BLOCK)) }
        }};
    }
    let mut k0 = 0;
    while k0 + 16 <= k {
        // SAFETY: k0 + 16 <= K, so the 16 bytes lie inside row m + r.
        let a: [int8x16_t; R] = core::array::from_fn(|r| unsafe {
            vreinterpretq_s8_u8(veorq_u8(vld1q_u8(rows[r].add(k0)), flip))
        });
        if S4 {
            let x = blk!(0);
            group!(R, acc, a, s4_low(x), 0);
            group!(R, acc, a, s4_high(x), 1);
            let x = blk!(1);
            group!(R, acc, a, s4_low(x), 2);
            group!(R, acc, a, s4_high(x), 3);
        } else {
            group!(R, acc, a, blk!(0), 0);
            group!(R, acc, a, blk!(1), 1);
            group!(R, acc, a, blk!(2), 2);
            group!(R, acc, a, blk!(3), 3);
        }
        bp = bp.wrapping_add(if S4 { 2 * BLOCK } else { 4 * BLOCK });
        k0 += 16;
    }
    if k0 < k {
        // Rest of the rows in zeroed buffers; the packed groups past K hold zero codes.
        let mut tmp = [[0u8; 16]; R];
        for (r, t) in tmp.iter_mut().enumerate() {
            // SAFETY: bytes k0..K of row m + r are inside A; `t` has room for K − k0 < 16 bytes.
            unsafe { core::ptr::copy_nonoverlapping(rows[r].add(k0), t.as_mut_ptr(), k - k0) };
        }
        // SAFETY: `tmp[r]` is 16 bytes.
        let a: [int8x16_t; R] = core::array::from_fn(|r| unsafe {
            vreinterpretq_s8_u8(veorq_u8(vld1q_u8(tmp[r].as_ptr()), flip))
        });
        // 1..=4 groups remain (S4: 2 or 4, K_pad being a multiple of 8 there).
        let groups = (kp - k0) / KG;
        if S4 {
            let x = blk!(0);
            group!(R, acc, a, s4_low(x), 0);
            group!(R, acc, a, s4_high(x), 1);
            if groups > 2 {
                let x = blk!(1);
                group!(R, acc, a, s4_low(x), 2);
                group!(R, acc, a, s4_high(x), 3);
            }
        } else {
            group!(R, acc, a, blk!(0), 0);
            if groups > 1 {
                group!(R, acc, a, blk!(1), 1);
            }
            if groups > 2 {
                group!(R, acc, a, blk!(2), 2);
            }
            if groups > 3 {
                group!(R, acc, a, blk!(3), 3);
            }
        }
    }
    acc
}

/// Accumulates and writes rows `m..m + R` of one panel.
///
/// # Safety
/// As [`block`], and the rows × panel tile belongs to the caller.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn tile<const R: usize, const S4: bool>(
    job: &Job,
    pe: &PanelEp,
    corr: &[int32x4_t; 4],
    m: usize,
    panel: *const i8,
) {
    // SAFETY: forwarded contract.
    let acc = unsafe { block::<R, S4>(job, m, panel) };
    for (r, row) in acc.iter().enumerate() {
        let exact: [int32x4_t; 4] = core::array::from_fn(|c| vaddq_s32(row[c], corr[c]));
        // SAFETY: row m + r and the panel's columns are in the caller's tile.
        unsafe { store_row(job, pe, m + r, exact) };
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn run<const S4: bool>(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let jep = JobEp::new(job);
    let pb = job.b.panel_bytes();
    let data = job.b.data();
    for p in panels {
        let pe = PanelEp::new(job, &jep, p);
        let cs: &[i32; NR] = job.b.colsum()[p * NR..(p + 1) * NR]
            .try_into()
            .expect("16 column sums");
        // 128·colsum, wrapping like the scalar i32 sums.
        let corr: [int32x4_t; 4] = core::array::from_fn(|c| {
            // SAFETY: `cs` holds 16 i32; each load reads 4 of them.
            vshlq_n_s32::<7>(unsafe { vld1q_s32(cs.as_ptr().add(4 * c)) })
        });
        let panel = data[p * pb..(p + 1) * pb].as_ptr() as *const i8;
        let mut m = rows.start;
        while m + MR <= rows.end {
            // SAFETY: rows m..m + MR and panel p are in the caller's tile, inside the job.
            unsafe { tile::<MR, S4>(job, &pe, &corr, m, panel) };
            m += MR;
        }
        // The remaining rows and panel p are in the caller's tile.
        match rows.end - m {
            // SAFETY: as above.
            3 => unsafe { tile::<3, S4>(job, &pe, &corr, m, panel) },
            // SAFETY: as above.
            2 => unsafe { tile::<2, S4>(job, &pe, &corr, m, panel) },
            // SAFETY: as above.
            1 => unsafe { tile::<1, S4>(job, &pe, &corr, m, panel) },
            _ => {}
        }
    }
}

/// # Safety
/// See [`crate::scalar::gemm_u8_packed_scalar`]; the CPU must support dotprod (the dispatcher
/// selects this path only when `Isa::NeonDotprod` is available).
pub(crate) unsafe fn gemm_u8_packed_neon_dotprod(
    job: &Job,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    match job.b.format() {
        // SAFETY: dotprod is present by the contract; tile contract forwarded.
        WeightFormat::S8 => unsafe { run::<false>(job, rows, panels) },
        // SAFETY: as above.
        WeightFormat::S4 => unsafe { run::<true>(job, rows, panels) },
    }
}
