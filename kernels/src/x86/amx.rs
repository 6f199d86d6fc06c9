//! AMX-INT8 kernel (Sapphire Rapids and later): `tdpbusd` multiplies a 16 × 64 u8 tile of A by a
//! 16 × 64 byte tile of B (16 K groups × 16 channels × 4 codes) into a 16 × 16 i32 tile, 16,384
//! exact multiply-accumulates per instruction. The packed VNNI layout is already a B tile: one
//! panel's K groups `16j..16j + 16` are 1 KiB at stride 64, so the same packed weights serve both
//! kernels. The sums are the same integers as `vpdpbusd`'s (no saturation; `|Σ| < 2^31` for
//! `K ≤ MAX_K`), and the accumulator tiles go through the zmm epilogue of [`super::epi512`], so the
//! bits equal the scalar reference.
//!
//! Blocking: 2 × 2 accumulator tiles (32 rows × 32 channels; tmm0–3), two A tiles (tmm4–5) and two
//! B tiles (tmm6–7) per 64 bytes of K, all configured 16 rows × 64 bytes. Panel pairs outside, row
//! blocks inside, as in the VNNI kernel. What a tile cannot cover runs on the VNNI kernel: K not a
//! multiple of 64 (Q·Kᵀ at head size 32, P·V below 64 tokens), s4 weights, and the last `M mod 16`
//! rows. The tile instructions are written with `asm!` (the AMX intrinsics are unstable).

use super::avx512vnni::gemm_u8_packed_avx512vnni;
use super::epi512::{epilogue_tile, Acc512};
use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK};
use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::OnceLock;

/// Rows of a tile, and bytes of K per tile row.
const TR: usize = 16;
const TK: usize = 64;

/// `ARCH_REQ_XCOMP_PERM` and the tile-data state component of Linux's `arch_prctl`.
const ARCH_REQ_XCOMP_PERM: libc::c_int = 0x1023;
const XFEATURE_XTILEDATA: libc::c_ulong = 18;

/// Whether the CPU has AMX-TILE and AMX-INT8 and the kernel lets this process use them (asked once:
/// Linux enables the tile state per process on request).
pub(crate) fn amx_int8_available() -> bool {
    static A: OnceLock<bool> = OnceLock::new();
    *A.get_or_init(|| {
        let l7 = __cpuid_count(7, 0);
        let (tile, int8) = ((l7.edx >> 24) & 1 == 1, (l7.edx >> 25) & 1 == 1);
        if !(tile && int8) {
            return false;
        }
        // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes which state components this
        // process may use; it reads and writes no memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        r == 0
    })
}

/// The tile configuration: palette 1, tiles 0–7 each 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

fn tile_config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1;
    for t in 0..8 {
        c[16 + 2 * t] = TK as u8;
        c[48 + t] = TR as u8;
    }
    TileConfig(c)
}

/// # Safety
/// AMX-INT8 usable ([`amx_int8_available`]) and AVX-512-VNNI available; `rows`/`panels` lie inside
/// the job and no other task writes this tile (the contract of the other kernels).
pub(crate) unsafe fn gemm_u8_packed_amx(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let k = job.b.k();
    if job.b.format() == WeightFormat::S4 || !k.is_multiple_of(TK) || rows.len() < TR {
        // SAFETY: the caller's contract, and AVX-512-VNNI is available.
        return unsafe { gemm_u8_packed_avx512vnni(job, rows, panels) };
    }
    let full = rows.start + (rows.len() / TR) * TR;
    let cfg = tile_config();
    // SAFETY: AMX is usable (caller); the configuration is valid for palette 1.
    unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
    let mut p = panels.start;
    while p < panels.end {
        let np = (panels.end - p).min(2);
        let mut m = rows.start;
        while m < full {
            let mr = ((full - m) / TR).min(2);
            // SAFETY: rows m..m + 16·mr and panels p..p + np lie in the caller's tile; tiles are
            // configured above.
            unsafe {
                match (mr, np) {
                    (2, 2) => block::<2, 2>(job, m, p),
                    (2, _) => block::<2, 1>(job, m, p),
                    (_, 2) => block::<1, 2>(job, m, p),
                    _ => block::<1, 1>(job, m, p),
                }
            }
            m += mr * TR;
        }
        p += np;
    }
    // SAFETY: releases the tile state configured above.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
    if full < rows.end {
        // SAFETY: the remaining rows of the caller's tile.
        unsafe { gemm_u8_packed_avx512vnni(job, full..rows.end, panels) };
    }
}

/// Loads A tile `i` (tmm4 + i) from `ptr` with row stride `stride`.
macro_rules! tile_load {
    ($t:literal, $ptr:expr, $stride:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $ptr, s = in(reg) $stride,
            options(nostack, readonly))
    };
}

/// `C[i][j] += A[i] · B[j]` on tmm(i·2 + j), tmm(4 + i), tmm(6 + j).
macro_rules! dpbusd {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(
            concat!("tdpbusd tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem)
        )
    };
}

/// Stores accumulator tile `c` to `ptr` (16 rows of 64 bytes).
macro_rules! tile_store {
    ($c:literal, $ptr:expr) => {
        asm!(concat!("tilestored [{p} + {s}*1], tmm", $c), p = in(reg) $ptr, s = in(reg) 64usize,
            options(nostack))
    };
}

/// One block of `MT` row tiles × `NT` panels at rows `m0..`, panels `p0..`: the K loop on tiles,
/// then the zmm epilogue eight rows at a time.
///
/// # Safety
/// Tiles configured by [`gemm_u8_packed_amx`]; rows `m0..m0 + 16·MT` and panels `p0..p0 + NT` lie
/// in the caller's tile; `K` is a multiple of 64.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn block<const MT: usize, const NT: usize>(job: &Job, m0: usize, p0: usize) {
    let (k, lda, pb) = (job.b.k(), job.lda, job.b.panel_bytes());
    let data = job.b.data();
    debug_assert!((p0 + NT) * pb <= data.len() && job.a.len() >= (m0 + TR * MT - 1) * lda + k);
    // SAFETY (whole body): the loads read rows m0..m0 + 16·MT of A, bytes kk..kk + 64 < K of each
    // (inside the row), and 1 KiB of panel p0 + j at group kk/4 (inside the packed panel, whose
    // K groups run to K/4); the stores write the local buffer.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let a = job.a.as_ptr().add(m0 * lda);
        let b = data.as_ptr().add(p0 * pb);
        let mut kk = 0;
        while kk < k {
            let bk = b.add((kk / 4) * BLOCK);
            tile_load!("6", bk, BLOCK);
            if NT == 2 {
                tile_load!("7", bk.add(pb), BLOCK);
            }
            tile_load!("4", a.add(kk), lda);
            dpbusd!("0", "4", "6");
            if NT == 2 {
                dpbusd!("1", "4", "7");
            }
            if MT == 2 {
                tile_load!("5", a.add(TR * lda + kk), lda);
                dpbusd!("2", "5", "6");
                if NT == 2 {
                    dpbusd!("3", "5", "7");
                }
            }
            kk += TK;
        }
        // Accumulators out: [row tile][panel][16 rows × 16 i32].
        let mut c = [[[0i32; TR * 16]; NT]; MT];
        tile_store!("0", c[0][0].as_mut_ptr());
        if NT == 2 {
            tile_store!("1", c[0][NT - 1].as_mut_ptr());
        }
        if MT == 2 {
            tile_store!("2", c[MT - 1][0].as_mut_ptr());
            if NT == 2 {
                tile_store!("3", c[MT - 1][NT - 1].as_mut_ptr());
            }
        }
        for (i, ci) in c.iter().enumerate() {
            for half in 0..2 {
                let mut acc: Acc512<8, NT> = [[_mm512_setzero_si512(); NT]; 8];
                for (r, accr) in acc.iter_mut().enumerate() {
                    for (j, v) in accr.iter_mut().enumerate() {
                        *v =
                            _mm512_loadu_si512(ci[j].as_ptr().add((half * 8 + r) * 16) as *const _);
                    }
                }
                epilogue_tile::<8, NT>(job, m0 + i * TR + half * 8, p0, acc);
            }
        }
    }
}
