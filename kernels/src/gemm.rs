//! The GEMM driver: validates a call, folds zero points and bias into per-column/per-row additions,
//! picks the kernel of the chosen ISA and splits the work into disjoint tiles for rayon when the
//! problem is large enough for threads to pay off.

use crate::dispatch::{active_isa, Isa};
use crate::error::{KernelError, Result};
use crate::job::{Job, OutKind};
use crate::mat::{MatMut, MatRef};
use crate::pack::{PackedB, NR};
use crate::requant::Requant;
use rayon::prelude::*;
use std::ops::Range;

/// Zero point of A and the integer bias, added before the epilogue:
/// `t[m,n] = Σ_k (A[m,k] − a_zero)·(B[n,k] − z_b) + bias[n]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub a_zero: u8,
    pub bias: Option<&'a [i32]>,
}

/// What the epilogue writes.
#[derive(Debug)]
pub enum Output<'a, 'b> {
    /// `clamp(rq(t) + z_out, qmin, qmax)` as u8 codes.
    Codes {
        out: MatMut<'a, u8>,
        requant: &'b Requant,
    },
    /// `t` itself.
    Acc { out: MatMut<'a, i32> },
    /// `rq(t)` saturated to i32 (fixed point for LayerNorm / GELU inputs).
    Fixed {
        out: MatMut<'a, i32>,
        requant: &'b Requant,
    },
    /// `t as f32 · scale[n]` (logits).
    Float {
        out: MatMut<'a, f32>,
        scale: &'b [f32],
    },
}

/// How a call runs.
#[derive(Clone, Copy, Debug)]
pub struct GemmOptions {
    /// `None`: the cached [`active_isa`].
    pub isa: Option<Isa>,
    /// Allow rayon to split large problems.
    pub parallel: bool,
}

impl Default for GemmOptions {
    fn default() -> Self {
        Self {
            isa: None,
            parallel: true,
        }
    }
}

/// Below this many multiply-accumulates a call stays on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 21;

pub(crate) type KernelFn = unsafe fn(&Job, Range<usize>, Range<usize>);

fn kernel_for(isa: Isa) -> KernelFn {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => crate::x86::gemm_u8_packed_avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => crate::x86::gemm_u8_packed_avx512vnni,
        #[cfg(target_arch = "x86_64")]
        Isa::AmxInt8 => crate::x86::gemm_u8_packed_amx,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => crate::aarch64::gemm_u8_packed_neon,
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDotprod => crate::aarch64::gemm_u8_packed_neon_dotprod,
        _ => crate::scalar::gemm_u8_packed_scalar,
    }
}

fn check_len(what: &str, got: usize, n: usize) -> Result<()> {
    if got != n {
        return Err(KernelError::Shape(format!(
            "{what} has {got} entries, B has N = {n}"
        )));
    }
    Ok(())
}

/// `Σ row` (the definition: a plain sum; rows of A have `K ≤ MAX_K` bytes, so u32 is exact), by
/// `vpsadbw` on the x86 paths.
pub fn row_sum_u8(isa: Isa, row: &[u8]) -> u32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Avx512Vnni or AmxInt8 isa was `require`d, which checks avx512f/bw.
        Isa::Avx512Vnni | Isa::AmxInt8 => unsafe { crate::x86::row_sum_u8_avx512(row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Avx2 isa was `require`d, which checks avx2.
        Isa::Avx2 => unsafe { crate::x86::row_sum_u8_avx2(row) },
        _ => row.iter().map(|&v| v as u32).sum(),
    }
}

/// `out = epilogue(A · Bᵀ)` with A `[M, K]` u8 codes and B packed `[N, K]`.
pub fn gemm(
    a: MatRef<'_, u8>,
    b: &PackedB,
    ep: &Epilogue<'_>,
    out: Output<'_, '_>,
    opts: &GemmOptions,
) -> Result<()> {
    let isa = match opts.isa {
        Some(i) => i.require()?,
        None => active_isa()?,
    };
    let (m, k, n) = (a.rows(), a.cols(), b.n());
    if k != b.k() {
        return Err(KernelError::Shape(format!(
            "A has K = {k} columns but B was packed with K = {}",
            b.k()
        )));
    }
    let padded = b.panels() * NR;
    let mut col_add = vec![0i32; padded];
    let za = ep.a_zero as i32;
    let zb = b.zero_point();
    if let Some(bias) = ep.bias {
        check_len("bias", bias.len(), n)?;
    }
    let kz = (k as i32).wrapping_mul(za).wrapping_mul(zb);
    for (i, c) in col_add.iter_mut().enumerate().take(n) {
        let bias = ep.bias.map_or(0, |bv| bv[i]);
        *c = bias
            .wrapping_sub(za.wrapping_mul(b.colsum()[i]))
            .wrapping_add(kz);
    }
    let row_add: Vec<i32> = if zb != 0 {
        (0..m)
            .map(|r| {
                (row_sum_u8(isa, &a.row(r)[..k]) as i32)
                    .wrapping_mul(zb)
                    .wrapping_neg()
            })
            .collect()
    } else {
        vec![0; m]
    };
    let a_max = if isa == Isa::Avx2 {
        (0..m)
            .map(|r| a.row(r).iter().copied().max().unwrap_or(0))
            .max()
            .unwrap_or(0)
    } else {
        255
    };
    let (kind, rq, scale, rows, cols, ldc, ptr): (_, _, Vec<f32>, _, _, _, *mut u8) = match out {
        Output::Codes { mut out, requant } => {
            check_len("requant", requant.n(), n)?;
            (
                OutKind::U8,
                Some(requant),
                vec![],
                out.rows(),
                out.cols(),
                out.stride(),
                out.as_mut_ptr(),
            )
        }
        Output::Acc { mut out } => (
            OutKind::I32,
            None,
            vec![],
            out.rows(),
            out.cols(),
            out.stride(),
            out.as_mut_ptr() as *mut u8,
        ),
        Output::Fixed { mut out, requant } => {
            check_len("requant", requant.n(), n)?;
            (
                OutKind::I32Fixed,
                Some(requant),
                vec![],
                out.rows(),
                out.cols(),
                out.stride(),
                out.as_mut_ptr() as *mut u8,
            )
        }
        Output::Float { mut out, scale } => {
            check_len("scale", scale.len(), n)?;
            let mut s = vec![0f32; padded];
            s[..n].copy_from_slice(scale);
            (
                OutKind::F32,
                None,
                s,
                out.rows(),
                out.cols(),
                out.stride(),
                out.as_mut_ptr() as *mut u8,
            )
        }
    };
    if rows != m || cols != n {
        return Err(KernelError::Shape(format!(
            "output is {rows}x{cols} but A·Bᵀ is {m}x{n}"
        )));
    }
    if m == 0 {
        return Ok(());
    }
    let job = Job {
        a: a.data(),
        lda: a.stride(),
        m,
        b,
        col_add,
        row_add,
        rq,
        scale,
        kind,
        out: ptr,
        ldc,
        a_max,
    };
    let kernel = kernel_for(isa);
    let panels = b.panels();
    let threads = rayon::current_num_threads();
    let macs = m.saturating_mul(n).saturating_mul(k);
    if !opts.parallel || threads <= 1 || macs < PARALLEL_MIN_MACS {
        // SAFETY: the job was validated above; one task owns the whole output.
        unsafe { kernel(&job, 0..m, 0..panels) };
        return Ok(());
    }
    let tiles = split_tiles(m, panels, threads);
    tiles.into_par_iter().for_each(|(r, p)| {
        // SAFETY: the tiles partition rows × panels, so no two tasks write the same element.
        unsafe { kernel(&job, r, p) };
    });
    Ok(())
}

/// Partitions rows × panels into about `2 × threads` tiles, preferring panel splits (each task then
/// streams its own slice of B once) and falling back to row blocks for narrow outputs.
fn split_tiles(m: usize, panels: usize, threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let want = 2 * threads;
    let pc = panels.min(want).max(1);
    let rc = want.div_ceil(pc).min(m.div_ceil(8)).max(1);
    let mut tiles = Vec::with_capacity(pc * rc);
    for pi in 0..pc {
        let p = pi * panels / pc..(pi + 1) * panels / pc;
        for ri in 0..rc {
            let r0 = (ri * m / rc) / 8 * 8;
            let r1 = if ri + 1 == rc {
                m
            } else {
                ((ri + 1) * m / rc) / 8 * 8
            };
            if r1 > r0 && !p.is_empty() {
                tiles.push((r0..r1, p.clone()));
            }
        }
    }
    tiles
}

#[cfg(test)]
mod tests {
    use super::split_tiles;

    #[test]
    fn tiles_partition_the_output() {
        for &(m, p, t) in &[
            (128, 24, 2),
            (1, 1, 2),
            (7, 200, 4),
            (300, 1, 2),
            (64, 3, 8),
        ] {
            let tiles = split_tiles(m, p, t);
            let mut seen = vec![0u8; m * p];
            for (r, pp) in tiles {
                for i in r {
                    for j in pp.clone() {
                        seen[i * p + j] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "m={m} p={p} t={t}");
        }
    }
}
