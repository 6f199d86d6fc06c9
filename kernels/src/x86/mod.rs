//! x86-64 kernels, one file per ISA, and the zmm / ymm epilogues they fuse.

mod amx;
mod avx2;
mod avx512vnni;
mod epi256;
mod epi512;
mod pack512;
mod rowsum;

pub(crate) use amx::{amx_int8_available, gemm_u8_packed_amx};
pub(crate) use avx2::gemm_u8_packed_avx2;
pub(crate) use avx512vnni::gemm_u8_packed_avx512vnni;
pub(crate) use pack512::{pack_u8_kn_groups_sse2, pack_u8_nk_avx512};
pub(crate) use rowsum::{row_sum_u8_avx2, row_sum_u8_avx512};
