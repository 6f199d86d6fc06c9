//! The NEON epilogue shared by both aarch64 kernels: one row × one 16-channel panel of exact
//! accumulators in, the output kind of the job out. Bit-identical to [`Job::write_scalar`]:
//!
//! - `t = acc + col_add[n] + row_add[m]`, wrapping i32 (`add`).
//! - ReQuant: `p = t·m0` exact in i64 (`smull`/`smull2`), `y = (p + 2^(r−1)) >> r` with `srshl` by
//!   `−r` (its rounding constant is added in infinite precision, so it equals the scalar formula for
//!   every `p`), then `sqxtn` to i32. Saturating to i32 first and clamping to `[qmin − z, qmax − z]`
//!   afterwards is the scalar i64 clamp as long as both bounds fit in i32 (checked once per job; the
//!   scalar epilogue runs otherwise). `+ z` then lands in `[qmin, qmax]`, so the i32 add is exact, and
//!   the truncating narrows (`xtn`) are the scalar `as u8`.
//! - `I32Fixed` is the same `y`, saturated (`sqxtn`).
//! - `F32`: `scvtf` (round to nearest even, like `as f32`) then one `fmul`; no fused operations.
//!
//! Column tails (a panel that extends past N) go through `Job::write_scalar`.

use crate::job::{Job, OutKind};
use crate::pack::NR;
use core::arch::aarch64::*;

/// Per-job constants of the epilogue.
pub(super) struct JobEp {
    /// The vector epilogue is exact for this job (see the module docs).
    vector_ok: bool,
    lo: i32,
    hi: i32,
    z_out: i32,
}

impl JobEp {
    pub(super) fn new(job: &Job) -> Self {
        debug_assert!(job.row_add.len() == job.m);
        match (job.kind, job.rq) {
            (OutKind::U8, Some(rq)) => {
                let lo = rq.qmin() as i64 - rq.z_out() as i64;
                let hi = rq.qmax() as i64 - rq.z_out() as i64;
                let fits = |v: i64| i32::try_from(v).is_ok();
                Self {
                    vector_ok: fits(lo) && fits(hi),
                    lo: lo as i32,
                    hi: hi as i32,
                    z_out: rq.z_out(),
                }
            }
            (OutKind::U8 | OutKind::I32Fixed, None) => Self {
                // Unreachable through the driver; the scalar epilogue reports it.
                vector_ok: false,
                lo: 0,
                hi: 0,
                z_out: 0,
            },
            _ => Self {
                vector_ok: true,
                lo: 0,
                hi: 0,
                z_out: 0,
            },
        }
    }
}

/// Per-panel constants of the epilogue, loaded once per panel.
pub(super) struct PanelEp {
    n0: usize,
    /// All 16 channels exist and the vector path is exact.
    vector: bool,
    col_add: [int32x4_t; 4],
    m0: [int32x4_t; 4],
    /// `−shift` per channel, one i64 lane each (`srshl` operand).
    nshift: [int64x2_t; 8],
    scale: [float32x4_t; 4],
    lo: int32x4_t,
    hi: int32x4_t,
    z_out: int32x4_t,
}

/// Four i32x4 loads from a 16-element slice.
#[target_feature(enable = "neon")]
fn load16_s32(s: &[i32]) -> [int32x4_t; 4] {
    let s: &[i32; NR] = s.try_into().expect("16 elements");
    // SAFETY: `s` holds 16 i32, each load reads 4 of them in bounds.
    core::array::from_fn(|c| unsafe { vld1q_s32(s.as_ptr().add(4 * c)) })
}

impl PanelEp {
    #[target_feature(enable = "neon")]
    pub(super) fn new(job: &Job, jep: &JobEp, p: usize) -> Self {
        let n0 = p * NR;
        let zero = vdupq_n_s32(0);
        let col_add = load16_s32(&job.col_add[n0..n0 + NR]);
        let (mut m0, mut nshift) = ([zero; 4], [vdupq_n_s64(0); 8]);
        if let (true, Some(rq), OutKind::U8 | OutKind::I32Fixed) = (jep.vector_ok, job.rq, job.kind)
        {
            m0 = load16_s32(&rq.m0()[n0..n0 + NR]);
            let sh = load16_s32(&rq.shift()[n0..n0 + NR]);
            for c in 0..4 {
                let neg = vnegq_s32(sh[c]);
                nshift[2 * c] = vmovl_s32(vget_low_s32(neg));
                nshift[2 * c + 1] = vmovl_high_s32(neg);
            }
        }
        let mut scale = [vdupq_n_f32(0.0); 4];
        if let OutKind::F32 = job.kind {
            let s: &[f32; NR] = job.scale[n0..n0 + NR].try_into().expect("16 scales");
            for (c, v) in scale.iter_mut().enumerate() {
                // SAFETY: `s` holds 16 f32; the load reads 4 of them in bounds.
                *v = unsafe { vld1q_f32(s.as_ptr().add(4 * c)) };
            }
        }
        Self {
            n0,
            vector: jep.vector_ok && n0 + NR <= job.b.n(),
            col_add,
            m0,
            nshift,
            scale,
            lo: vdupq_n_s32(jep.lo),
            hi: vdupq_n_s32(jep.hi),
            z_out: vdupq_n_s32(jep.z_out),
        }
    }

    /// `y = sat_i32((t·m0 + 2^(r−1)) >> r)` for channels `4c..4c+4` of the panel.
    #[target_feature(enable = "neon")]
    #[inline]
    fn fixed(&self, t: int32x4_t, c: usize) -> int32x4_t {
        let plo = vmull_s32(vget_low_s32(t), vget_low_s32(self.m0[c]));
        let phi = vmull_high_s32(t, self.m0[c]);
        let ylo = vrshlq_s64(plo, self.nshift[2 * c]);
        let yhi = vrshlq_s64(phi, self.nshift[2 * c + 1]);
        vqmovn_high_s64(vqmovn_s64(ylo), yhi)
    }
}

/// Writes row `m` of the panel described by `pe` from the exact accumulators `acc` (channel
/// `n0 + 4c + i` in lane `i` of `acc[c]`).
///
/// # Safety
/// Row `m` and the panel's columns lie inside the job's output and belong to the caller's tile.
#[target_feature(enable = "neon")]
#[inline]
pub(super) unsafe fn store_row(job: &Job, pe: &PanelEp, m: usize, acc: [int32x4_t; 4]) {
    if !pe.vector {
        let mut tmp = [0i32; NR];
        for (c, &v) in acc.iter().enumerate() {
            // SAFETY: `tmp` holds 16 i32; the store writes 4 of them in bounds.
            unsafe { vst1q_s32(tmp.as_mut_ptr().add(4 * c), v) };
        }
        let end = (pe.n0 + NR).min(job.b.n());
        for n in pe.n0..end {
            // SAFETY: (m, n) is inside the output (n < N) and in the caller's tile.
            unsafe { job.write_scalar(m, n, tmp[n - pe.n0]) };
        }
        return;
    }
    let ra = vdupq_n_s32(job.row_add[m]);
    let t: [int32x4_t; 4] =
        core::array::from_fn(|c| vaddq_s32(vaddq_s32(acc[c], pe.col_add[c]), ra));
    let idx = m * job.ldc + pe.n0;
    match job.kind {
        OutKind::U8 => {
            let q: [int32x4_t; 4] = core::array::from_fn(|c| {
                let y = vminq_s32(vmaxq_s32(pe.fixed(t[c], c), pe.lo), pe.hi);
                vaddq_s32(y, pe.z_out)
            });
            let h0 = vmovn_high_s32(vmovn_s32(q[0]), q[1]);
            let h1 = vmovn_high_s32(vmovn_s32(q[2]), q[3]);
            let b = vreinterpretq_u8_s8(vmovn_high_s16(vmovn_s16(h0), h1));
            // SAFETY: the 16 bytes from (m, n0) are inside the output row (n0 + 16 <= N) and in
            // the caller's tile.
            unsafe { vst1q_u8(job.out.add(idx), b) };
        }
        OutKind::I32 => {
            let o = job.out as *mut i32;
            for (c, &v) in t.iter().enumerate() {
                // SAFETY: as above, 16 i32 from (m, n0).
                unsafe { vst1q_s32(o.add(idx + 4 * c), v) };
            }
        }
        OutKind::I32Fixed => {
            let o = job.out as *mut i32;
            for (c, &v) in t.iter().enumerate() {
                let y = pe.fixed(v, c);
                // SAFETY: as above, 16 i32 from (m, n0).
                unsafe { vst1q_s32(o.add(idx + 4 * c), y) };
            }
        }
        OutKind::F32 => {
            let o = job.out as *mut f32;
            for (c, &v) in t.iter().enumerate() {
                let f = vmulq_f32(vcvtq_f32_s32(v), pe.scale[c]);
                // SAFETY: as above, 16 f32 from (m, n0).
                unsafe { vst1q_f32(o.add(idx + 4 * c), f) };
            }
        }
    }
}
