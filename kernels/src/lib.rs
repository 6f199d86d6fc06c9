//! osq-kernels: `C = requant(A·Bᵀ)` for u8 activation codes against packed s8/s4 codes, with the zero
//! points, the bias and the ReQuant fused into one epilogue.
//!
//! The scalar reference (`scalar`, `requant`) defines the arithmetic of docs/arithmetic.md; the SIMD
//! kernels (`x86`, `aarch64`) must reproduce its bits exactly. The ISA is chosen once (`dispatch`)
//! and can be forced per call or with `OSQ_ISA`.

pub mod dispatch;
pub mod error;
pub mod gemm;
mod job;
pub mod mat;
pub mod pack;
pub mod peak;
pub mod requant;
pub mod rowops;
mod scalar;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use dispatch::{active_isa, Isa};
pub use error::{KernelError, Result};
pub use gemm::{gemm, row_sum_u8, Epilogue, GemmOptions, Output};
pub use mat::{MatMut, MatRef};
pub use pack::{PackedB, WeightFormat};
pub use requant::{quantize_multiplier, Requant};

/// Largest supported reduction length: keeps every exact sum of u8·s8 products inside i32.
pub const MAX_K: usize = 32768;
