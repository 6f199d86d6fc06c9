//! The validated description of one GEMM call that the per-ISA kernels consume. The driver builds it
//! (all checks done, per-column and per-row corrections precomputed and padded), then hands disjoint
//! (rows × panels) tiles to the kernels, possibly on several threads.

use crate::pack::PackedB;
use crate::requant::Requant;

/// Where and how the epilogue writes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OutKind {
    /// Requantized codes, `u8`.
    U8,
    /// `t` itself, `i32`.
    I32,
    /// Requantized fixed point, saturated to `i32`, no zero point or clamp.
    I32Fixed,
    /// `t as f32 · scale[n]`.
    F32,
}

pub(crate) struct Job<'a> {
    pub a: &'a [u8],
    pub lda: usize,
    pub m: usize,
    pub b: &'a PackedB,
    /// Added to column n: `bias[n] − z_a·colsum[n] + K·z_a·z_b`, padded to `panels × 16`.
    pub col_add: Vec<i32>,
    /// Added to row m: `−z_b·rowsum_A[m]` (all zero when B has no zero point), length M.
    pub row_add: Vec<i32>,
    pub rq: Option<&'a Requant>,
    /// F32 output scales, padded to `panels × 16`.
    pub scale: Vec<f32>,
    pub kind: OutKind,
    pub out: *mut u8,
    /// Output row stride in elements.
    pub ldc: usize,
    /// Largest A code (AVX2 uses it to prove `vpmaddubsw` cannot saturate).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub a_max: u8,
}

// SAFETY: `out` is only written through disjoint (rows × panels) tiles, one per task; everything else
// is shared read-only.
unsafe impl Send for Job<'_> {}
// SAFETY: as above.
unsafe impl Sync for Job<'_> {}

impl Job<'_> {
    /// Writes the epilogue of one accumulator: the scalar definition of every output kind.
    ///
    /// # Safety
    /// `(m, n)` must lie inside the output and belong to the caller's tile.
    #[inline]
    pub unsafe fn write_scalar(&self, m: usize, n: usize, acc: i32) {
        let t = acc
            .wrapping_add(self.col_add[n])
            .wrapping_add(self.row_add[m]);
        let idx = m * self.ldc + n;
        match self.kind {
            OutKind::U8 => {
                let rq = self.rq.expect("u8 output has requant");
                // SAFETY: in-bounds by the caller's contract.
                unsafe { *self.out.add(idx) = rq.apply(t, n) as u8 };
            }
            OutKind::I32 => unsafe { *(self.out as *mut i32).add(idx) = t },
            OutKind::I32Fixed => {
                let rq = self.rq.expect("fixed output has requant");
                // SAFETY: in-bounds by the caller's contract.
                unsafe { *(self.out as *mut i32).add(idx) = rq.apply_i32(t, n) };
            }
            OutKind::F32 => unsafe { *(self.out as *mut f32).add(idx) = t as f32 * self.scale[n] },
        }
    }
}
