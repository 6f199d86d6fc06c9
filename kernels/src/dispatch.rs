//! Which ISA runs: detected once at first use and cached;
//! `OSQ_ISA=scalar|avx2|avx512vnni|amx-int8|neon|neon-dotprod`
//! forces a path for tests and benches (an unavailable one is an error, never a silent fallback).

use crate::error::{KernelError, Result};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The reference that defines the arithmetic.
    Scalar,
    /// x86-64 AVX2 (`vpmaddubsw` when it provably cannot saturate, else widening `vpmaddwd`).
    Avx2,
    /// x86-64 AVX-512BW + VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// x86-64 AMX-INT8 (`tdpbusd` on 16 × 64-byte tiles) for the GEMMs whose K is a multiple of
    /// 64, the AVX-512-VNNI kernel for the rest, AVX-512 row steps.
    AmxInt8,
    /// aarch64 NEON without dotprod (`smull`/`sadalp` family).
    Neon,
    /// aarch64 NEON with the dotprod extension (`sdot`).
    NeonDotprod,
}

impl Isa {
    pub const ALL: [Isa; 6] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx512Vnni,
        Isa::AmxInt8,
        Isa::Neon,
        Isa::NeonDotprod,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::AmxInt8 => "amx-int8",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
        }
    }

    pub fn parse(s: &str) -> Result<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                KernelError::Range(format!(
                    "unknown ISA '{s}'; expected one of scalar, avx2, avx512vnni, amx-int8, neon, neon-dotprod"
                ))
            })
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::AmxInt8 => Isa::Avx512Vnni.is_available() && crate::x86::amx_int8_available(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDotprod => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every path this CPU can run, the reference first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The fastest available path.
    pub fn best() -> Isa {
        [
            Isa::AmxInt8,
            Isa::Avx512Vnni,
            Isa::Avx2,
            Isa::NeonDotprod,
            Isa::Neon,
        ]
        .into_iter()
        .find(|i| i.is_available())
        .unwrap_or(Isa::Scalar)
    }

    /// Errors when the path cannot run here.
    pub fn require(self) -> Result<Isa> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(KernelError::IsaUnavailable(self.name()))
        }
    }
}

static ACTIVE: OnceLock<Result<Isa>> = OnceLock::new();

/// The path used when a call does not name one: `OSQ_ISA` if set, else [`Isa::best`]. Chosen once.
pub fn active_isa() -> Result<Isa> {
    ACTIVE
        .get_or_init(|| match std::env::var("OSQ_ISA") {
            Ok(s) if !s.trim().is_empty() => Isa::parse(&s).and_then(Isa::require),
            _ => Ok(Isa::best()),
        })
        .clone()
}
