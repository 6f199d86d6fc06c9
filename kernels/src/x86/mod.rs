//! x86-64 kernels, one file per ISA.

mod avx2;
mod avx512vnni;

pub(crate) use avx2::gemm_u8_packed_avx2;
pub(crate) use avx512vnni::gemm_u8_packed_avx512vnni;
