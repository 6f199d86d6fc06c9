//! The scalar reference kernel: reads the packed layout exactly as the SIMD kernels do and applies the
//! scalar epilogue. Its output is, by definition, the right answer.

use crate::job::Job;
use crate::pack::{WeightFormat, BLOCK, KG, NR};
use std::ops::Range;

/// Exact `Σ_k A[m,k]·B[n,k]` for one row and one panel (16 channels), wrapping i32.
pub(crate) fn dot_panel(job: &Job, m: usize, p: usize) -> [i32; NR] {
    let b = job.b;
    let k = b.k();
    let pb = b.panel_bytes();
    let panel = &b.data()[p * pb..(p + 1) * pb];
    let a = &job.a[m * job.lda..m * job.lda + k];
    let mut acc = [0i32; NR];
    for (kk, &av) in a.iter().enumerate() {
        let (g, i) = (kk / KG, kk % KG);
        for (j, accj) in acc.iter_mut().enumerate() {
            let code = match b.format() {
                WeightFormat::S8 => panel[g * BLOCK + j * KG + i] as i8,
                WeightFormat::S4 => {
                    let byte = panel[(g / 2) * BLOCK + j * KG + i];
                    let nib = if g % 2 == 0 { byte << 4 } else { byte & 0xF0 };
                    (nib as i8) >> 4
                }
            };
            *accj = accj.wrapping_add(av as i32 * code as i32);
        }
    }
    acc
}

/// # Safety
/// `rows`/`panels` lie inside the job and no other task writes this tile.
pub(crate) unsafe fn gemm_u8_packed_scalar(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    for m in rows {
        for p in panels.clone() {
            let acc = dot_panel(job, m, p);
            for (j, &a) in acc.iter().enumerate() {
                let n = p * NR + j;
                if n < job.b.n() {
                    // SAFETY: (m, n) inside the output; tile owned by this task.
                    unsafe { job.write_scalar(m, n, a) };
                }
            }
        }
    }
}
