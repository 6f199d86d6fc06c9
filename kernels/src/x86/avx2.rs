//! PLACEHOLDER until the avx2 kernel lands: routes to the scalar reference.

use crate::job::Job;
use std::ops::Range;

/// # Safety
/// See [`crate::scalar::gemm_u8_packed_scalar`].
pub(crate) unsafe fn gemm_u8_packed_avx2(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    // SAFETY: same contract as the scalar kernel.
    unsafe { crate::scalar::gemm_u8_packed_scalar(job, rows, panels) }
}
