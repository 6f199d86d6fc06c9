//! The fused epilogue on ymm registers (8 output channels per register, two per panel),
//! bit-exact with [`Job::write_scalar`]. AVX2 lacks what the zmm epilogue uses, so:
//!
//! - the 64-bit arithmetic shift is `((x ^ s) >>> r) ^ s` with `s = x < 0 ? −1 : 0` (a logical
//!   shift of the one's complement: exact for every `r`, and `floor` like `>>` on i64);
//! - the i64 clamp is `vpcmpgtq` + `vpblendvb`;
//! - u8 codes are the low byte of each dword (`vpshufb` + `vpermd`): truncation, as `as u8`;
//! - column tails: `vpmaskmovd` for 32-bit outputs, a byte copy for the u8 tail.
//!
//! Everything else as in [`super::epi512`]: wrapping i32 adds, `vpmuldq` on even and odd lanes,
//! `+ 2^(r−1)`, clamp to `[qmin − z, qmax − z]` (or the i32 range) in i64, `+ z`.

use crate::job::{Job, OutKind};
use crate::pack::NR;
use std::arch::x86_64::*;

/// Half of a panel: 8 channels.
const H: usize = NR / 2;

/// Per-half requant constants.
#[derive(Clone, Copy)]
struct Rq256 {
    m0_even: __m256i,
    m0_odd: __m256i,
    rnd_even: __m256i,
    rnd_odd: __m256i,
    sh_even: __m256i,
    sh_odd: __m256i,
}

/// Clamp bounds and zero point, i64 in every lane.
#[derive(Clone, Copy)]
struct Clamp256 {
    lo: __m256i,
    hi: __m256i,
    z: __m256i,
}

#[target_feature(enable = "avx2")]
unsafe fn rq_params(m0: *const i32, shift: *const i32) -> Rq256 {
    // SAFETY: the caller passes 8 readable i32 at each pointer.
    let (m, s) = unsafe {
        (
            _mm256_loadu_si256(m0 as *const _),
            _mm256_loadu_si256(shift as *const _),
        )
    };
    let sh_even = _mm256_and_si256(s, _mm256_set1_epi64x(0xFFFF_FFFF));
    let sh_odd = _mm256_srli_epi64::<32>(s);
    let one = _mm256_set1_epi64x(1);
    Rq256 {
        m0_even: m,
        m0_odd: _mm256_srli_epi64::<32>(m),
        rnd_even: _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_even, one)),
        rnd_odd: _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_odd, one)),
        sh_even,
        sh_odd,
    }
}

/// Arithmetic shift right of i64 lanes by `sh` (0..63 per lane).
#[target_feature(enable = "avx2")]
fn sra_epi64(x: __m256i, sh: __m256i) -> __m256i {
    let s = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
    _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(x, s), sh), s)
}

/// `min(max(y, lo), hi)` on i64 lanes (`lo ≤ hi`).
#[target_feature(enable = "avx2")]
fn clamp_epi64(y: __m256i, lo: __m256i, hi: __m256i) -> __m256i {
    let y = _mm256_blendv_epi8(y, lo, _mm256_cmpgt_epi64(lo, y));
    _mm256_blendv_epi8(y, hi, _mm256_cmpgt_epi64(y, hi))
}

/// `clamp((t·m0 + 2^(r−1)) >> r, lo, hi) + z` per lane, low 32 bits.
#[target_feature(enable = "avx2")]
fn requant(t: __m256i, q: &Rq256, c: &Clamp256) -> __m256i {
    let pe = _mm256_mul_epi32(t, q.m0_even);
    let po = _mm256_mul_epi32(_mm256_srli_epi64::<32>(t), q.m0_odd);
    let ye = sra_epi64(_mm256_add_epi64(pe, q.rnd_even), q.sh_even);
    let yo = sra_epi64(_mm256_add_epi64(po, q.rnd_odd), q.sh_odd);
    let ye = _mm256_add_epi64(clamp_epi64(ye, c.lo, c.hi), c.z);
    let yo = _mm256_add_epi64(clamp_epi64(yo, c.lo, c.hi), c.z);
    _mm256_blend_epi32::<0b1010_1010>(ye, _mm256_slli_epi64::<32>(yo))
}

/// The low byte of each dword, in order, in the low 8 bytes.
#[target_feature(enable = "avx2")]
fn low_bytes(v: __m256i) -> __m128i {
    let idx = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1,
    );
    let b = _mm256_shuffle_epi8(v, idx);
    let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    _mm256_castsi256_si128(b)
}

/// Stores the first `valid` (1..=8) dwords of `v` at `dst`.
///
/// # Safety
/// `dst..dst + valid` writable; the remaining lanes are never accessed (`vpmaskmovd`).
#[target_feature(enable = "avx2")]
unsafe fn store_i32(dst: *mut i32, v: __m256i, valid: usize) {
    if valid == H {
        // SAFETY: 8 writable i32 by the caller's contract.
        unsafe { _mm256_storeu_si256(dst as *mut _, v) };
    } else {
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(valid as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: masked-off lanes are neither read nor written.
        unsafe { _mm256_maskstore_epi32(dst, mask, v) };
    }
}

/// Writes the epilogue of rows `m0..m0 + R` of panel `p`: `acc[r][h]` holds channels
/// `16p + 8h .. 16p + 8h + 8`.
///
/// # Safety
/// AVX2 available; the rows and the panel lie inside the job and the caller owns them.
#[target_feature(enable = "avx2")]
#[inline]
// The column index drives the pointer arithmetic; `acc` is indexed `[row][column]` under it.
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn epilogue_panel<const R: usize>(
    job: &Job,
    m0: usize,
    p: usize,
    acc: [[__m256i; 2]; R],
) {
    let n = job.b.n();
    let ldc = job.ldc;
    for h in 0..2 {
        let c0 = p * NR + h * H;
        if c0 >= n {
            break;
        }
        debug_assert!(c0 + H <= job.col_add.len());
        let valid = (n - c0).min(H);
        // SAFETY: col_add is padded to panels × 16.
        let col = unsafe { _mm256_loadu_si256(job.col_add.as_ptr().add(c0) as *const _) };
        let t = |r: usize| {
            _mm256_add_epi32(
                _mm256_add_epi32(acc[r][h], col),
                _mm256_set1_epi32(job.row_add[m0 + r]),
            )
        };
        match job.kind {
            OutKind::I32 => {
                for r in 0..R {
                    // SAFETY: (m0 + r, c0..c0 + valid) lies in the caller's tile.
                    unsafe {
                        store_i32((job.out as *mut i32).add((m0 + r) * ldc + c0), t(r), valid)
                    };
                }
            }
            OutKind::F32 => {
                // SAFETY: scale is padded to panels × 16.
                let s = unsafe { _mm256_loadu_ps(job.scale.as_ptr().add(c0)) };
                for r in 0..R {
                    let v = _mm256_mul_ps(_mm256_cvtepi32_ps(t(r)), s);
                    // SAFETY: as for I32.
                    unsafe {
                        store_i32(
                            (job.out as *mut i32).add((m0 + r) * ldc + c0),
                            _mm256_castps_si256(v),
                            valid,
                        )
                    };
                }
            }
            OutKind::U8 | OutKind::I32Fixed => {
                let rq = job.rq.expect("requant output has requant parameters");
                // SAFETY: m0/shift are padded to a multiple of 16 ≥ panels × 16.
                let q = unsafe { rq_params(rq.m0().as_ptr().add(c0), rq.shift().as_ptr().add(c0)) };
                if let OutKind::U8 = job.kind {
                    let z = rq.z_out() as i64;
                    let c = Clamp256 {
                        lo: _mm256_set1_epi64x(rq.qmin() as i64 - z),
                        hi: _mm256_set1_epi64x(rq.qmax() as i64 - z),
                        z: _mm256_set1_epi64x(z),
                    };
                    for r in 0..R {
                        let y = low_bytes(requant(t(r), &q, &c));
                        // SAFETY: (m0 + r, c0..c0 + valid) lies in the caller's tile.
                        unsafe {
                            let dst = job.out.add((m0 + r) * ldc + c0);
                            if valid == H {
                                _mm_storel_epi64(dst as *mut _, y);
                            } else {
                                let bytes = (_mm_cvtsi128_si64(y) as u64).to_le_bytes();
                                std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, valid);
                            }
                        }
                    }
                } else {
                    let c = Clamp256 {
                        lo: _mm256_set1_epi64x(i32::MIN as i64),
                        hi: _mm256_set1_epi64x(i32::MAX as i64),
                        z: _mm256_setzero_si256(),
                    };
                    for r in 0..R {
                        let y = requant(t(r), &q, &c);
                        // SAFETY: as for I32.
                        unsafe {
                            store_i32((job.out as *mut i32).add((m0 + r) * ldc + c0), y, valid)
                        };
                    }
                }
            }
        }
    }
}
