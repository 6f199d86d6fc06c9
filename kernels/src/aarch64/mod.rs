//! aarch64 kernels, one file per ISA, sharing the NEON epilogue.

mod epilogue;
mod neon;
mod neon_dotprod;

pub(crate) use neon::gemm_u8_packed_neon;
pub(crate) use neon_dotprod::gemm_u8_packed_neon_dotprod;
