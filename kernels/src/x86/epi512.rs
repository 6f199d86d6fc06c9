//! The fused epilogue on zmm registers (16 output channels per register), bit-exact with
//! [`Job::write_scalar`]:
//!
//! - `t = acc + col_add[n] + row_add[m]` (wrapping i32 adds, as the scalar),
//! - `I32`: `t`; `F32`: `cvt(t) · scale[n]` (IEEE, round to nearest like `as f32`),
//! - `U8` / `I32Fixed`: the i64 product `t·m0` on even and odd lanes (`vpmuldq`), `+ 2^(r−1)`,
//!   `vpsravq` by `r`, clamp in i64 to `[qmin − z, qmax − z]` (or the i32 range), `+ z`, and the
//!   low dwords of the two halves blended back together; U8 truncates with `vpmovdb` (the scalar
//!   does `as u8` of an i32 inside `[qmin, qmax]`).
//!
//! Column tails (the last panel when N is not a multiple of 16) use masked stores, which never
//! touch the masked-out lanes.

use crate::job::{Job, OutKind};
use crate::pack::NR;
use std::arch::x86_64::*;

/// Accumulators of an `R × P` microtile: `[row][panel]`, 16 channels each.
pub(super) type Acc512<const R: usize, const P: usize> = [[__m512i; P]; R];

/// Per-panel requant constants.
#[derive(Clone, Copy)]
struct Rq512 {
    m0_even: __m512i,
    m0_odd: __m512i,
    rnd_even: __m512i,
    rnd_odd: __m512i,
    sh_even: __m512i,
    sh_odd: __m512i,
}

/// Clamp bounds and zero point, i64 in every lane.
#[derive(Clone, Copy)]
struct Clamp512 {
    lo: __m512i,
    hi: __m512i,
    z: __m512i,
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn rq_params(m0: *const i32, shift: *const i32) -> Rq512 {
    // SAFETY: the caller passes 16 readable i32 at each pointer.
    let (m, s) = unsafe {
        (
            _mm512_loadu_si512(m0 as *const _),
            _mm512_loadu_si512(shift as *const _),
        )
    };
    let low = _mm512_set1_epi64(0xFFFF_FFFF);
    let sh_even = _mm512_and_si512(s, low);
    let sh_odd = _mm512_srli_epi64::<32>(s);
    let one = _mm512_set1_epi64(1);
    Rq512 {
        m0_even: m,
        m0_odd: _mm512_srli_epi64::<32>(m),
        rnd_even: _mm512_sllv_epi64(one, _mm512_sub_epi64(sh_even, one)),
        rnd_odd: _mm512_sllv_epi64(one, _mm512_sub_epi64(sh_odd, one)),
        sh_even,
        sh_odd,
    }
}

/// `clamp((t·m0 + 2^(r−1)) >> r, lo, hi) + z` per lane, low 32 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn requant(t: __m512i, q: &Rq512, c: &Clamp512) -> __m512i {
    let pe = _mm512_mul_epi32(t, q.m0_even);
    let po = _mm512_mul_epi32(_mm512_srli_epi64::<32>(t), q.m0_odd);
    let ye = _mm512_srav_epi64(_mm512_add_epi64(pe, q.rnd_even), q.sh_even);
    let yo = _mm512_srav_epi64(_mm512_add_epi64(po, q.rnd_odd), q.sh_odd);
    let ye = _mm512_add_epi64(_mm512_min_epi64(_mm512_max_epi64(ye, c.lo), c.hi), c.z);
    let yo = _mm512_add_epi64(_mm512_min_epi64(_mm512_max_epi64(yo, c.lo), c.hi), c.z);
    _mm512_mask_blend_epi32(0xAAAA, ye, _mm512_slli_epi64::<32>(yo))
}

/// Writes the epilogue of an `R × P` microtile at rows `m0..m0 + R`, panels `p0..p0 + P`.
///
/// # Safety
/// avx512f/bw/vl available; the rows and panels lie inside the job and the caller owns them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
// The column index drives the pointer arithmetic; `acc` is indexed `[row][column]` under it.
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn epilogue_tile<const R: usize, const P: usize>(
    job: &Job,
    m0: usize,
    p0: usize,
    acc: Acc512<R, P>,
) {
    let n = job.b.n();
    let ldc = job.ldc;
    for p in 0..P {
        let c0 = (p0 + p) * NR;
        debug_assert!(c0 < n && c0 + NR <= job.col_add.len());
        let valid = (n - c0).min(NR);
        let mask: u16 = if valid == NR {
            u16::MAX
        } else {
            (1u16 << valid) - 1
        };
        // SAFETY: col_add is padded to panels × 16.
        let col = unsafe { _mm512_loadu_si512(job.col_add.as_ptr().add(c0) as *const _) };
        let t = |r: usize| {
            _mm512_add_epi32(
                _mm512_add_epi32(acc[r][p], col),
                _mm512_set1_epi32(job.row_add[m0 + r]),
            )
        };
        match job.kind {
            OutKind::I32 => {
                for r in 0..R {
                    // SAFETY: (m0 + r, c0 + j) for the unmasked j lies in the caller's tile;
                    // masked lanes are never accessed.
                    unsafe {
                        let dst = (job.out as *mut i32).add((m0 + r) * ldc + c0);
                        _mm512_mask_storeu_epi32(dst, mask, t(r));
                    }
                }
            }
            OutKind::F32 => {
                // SAFETY: scale is padded to panels × 16.
                let s = unsafe { _mm512_loadu_ps(job.scale.as_ptr().add(c0)) };
                for r in 0..R {
                    let v = _mm512_mul_ps(_mm512_cvtepi32_ps(t(r)), s);
                    // SAFETY: as for I32.
                    unsafe {
                        let dst = (job.out as *mut f32).add((m0 + r) * ldc + c0);
                        _mm512_mask_storeu_ps(dst, mask, v);
                    }
                }
            }
            OutKind::U8 | OutKind::I32Fixed => {
                let rq = job.rq.expect("requant output has requant parameters");
                // SAFETY: m0/shift are padded to a multiple of 16 ≥ panels × 16.
                let q = unsafe { rq_params(rq.m0().as_ptr().add(c0), rq.shift().as_ptr().add(c0)) };
                if let OutKind::U8 = job.kind {
                    let z = rq.z_out() as i64;
                    let c = Clamp512 {
                        lo: _mm512_set1_epi64(rq.qmin() as i64 - z),
                        hi: _mm512_set1_epi64(rq.qmax() as i64 - z),
                        z: _mm512_set1_epi64(z),
                    };
                    for r in 0..R {
                        let y = _mm512_cvtepi32_epi8(requant(t(r), &q, &c));
                        // SAFETY: as for I32, bytes.
                        unsafe {
                            let dst = job.out.add((m0 + r) * ldc + c0);
                            _mm_mask_storeu_epi8(dst as *mut i8, mask, y);
                        }
                    }
                } else {
                    let c = Clamp512 {
                        lo: _mm512_set1_epi64(i32::MIN as i64),
                        hi: _mm512_set1_epi64(i32::MAX as i64),
                        z: _mm512_setzero_si512(),
                    };
                    for r in 0..R {
                        let y = requant(t(r), &q, &c);
                        // SAFETY: as for I32.
                        unsafe {
                            let dst = (job.out as *mut i32).add((m0 + r) * ldc + c0);
                            _mm512_mask_storeu_epi32(dst, mask, y);
                        }
                    }
                }
            }
        }
    }
}
