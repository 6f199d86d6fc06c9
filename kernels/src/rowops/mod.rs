//! Row-wise integer routines of the integer BERT forward that are not GEMMs: softmax, LayerNorm,
//! the residual (shortcut) sum, GELU by bucket table, the Q/K/V code ReQuant and the embedding sum.
//!
//! The exact definitions are [`definitions`] (integer softmax, LayerNorm, GELU thresholds, the
//! fixed-point multiplier); the other modules are faster forms that are exact only inside proven
//! bounds. Every constructor checks those bounds on its
//! constants and returns `None` (the caller keeps the definition), and every per-row routine that
//! depends on the data checks the row and reports when the caller must fall back.
//!
//! Each concern has one file holding its constants and an `#[inline(always)]` body written in
//! plain integer Rust: that body is the scalar reference and defines the bits. The x86 paths
//! (`x86.rs`) compile the same bodies with AVX2 or AVX-512 enabled, so LLVM vectorizes them without
//! changing a bit; softmax and GELU, whose table lookups LLVM does not vectorize well, have
//! hand-written AVX-512 forms (`avx512.rs`) whose table reads take the form [`TableReads`] chose for
//! the CPU. aarch64 runs the scalar path. The path follows the GEMM's ISA choice
//! (`dispatch`): chosen once, forced with `OSQ_ISA` or per call.

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod definitions;
mod emb;
mod gelu;
mod isqrt;
mod layernorm;
mod reads;
mod requant;
mod residual;
mod softmax;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use emb::emb_row;
pub use gelu::{gelu_fallback, GeluLut};
pub use isqrt::isqrt_u128;
pub use layernorm::LayerNorm;
pub use reads::TableReads;
pub use requant::CodeRequant;
pub use residual::Residual;
pub use softmax::Softmax;

use crate::dispatch::Isa;

/// Which compiled form of the row bodies runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowPath {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

#[cfg(target_arch = "x86_64")]
fn avx512_rows() -> bool {
    static A: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *A.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx2")
    })
}

/// The row path of a GEMM ISA: AVX-512 (F/BW/DQ/VL) with AVX-512-VNNI, AVX2 with AVX2, scalar
/// otherwise (and for NEON: the scalar bodies are what aarch64 runs).
pub(crate) fn path(isa: Isa) -> RowPath {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni | Isa::AmxInt8 if avx512_rows() => RowPath::Avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni | Isa::AmxInt8 | Isa::Avx2 if Isa::Avx2.is_available() => RowPath::Avx2,
        _ => RowPath::Scalar,
    }
}

/// The ISA of a call: the forced one if given (it must be available), else the cached active one.
pub fn resolve(isa: Option<Isa>) -> crate::Result<Isa> {
    match isa {
        Some(i) => i.require(),
        None => crate::dispatch::active_isa(),
    }
}
