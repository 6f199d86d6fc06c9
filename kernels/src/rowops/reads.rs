//! How the AVX-512 softmax and GELU rows read their tables. The bits never depend on it; the
//! speed depends on the CPU: on Intel parts without the gather-data-sampling microcode one
//! `vpgatherdd zmm` per 16 elements is fastest (b1 s128 t1 on a Xeon: softmax 1.22 → 0.96 ms,
//! GELU 0.87 → 0.52 ms against scalar loads), while on Zen 4 (slow gathers) and on mitigated
//! Intel parts scalar loads win. Chosen once, forced with `OSQ_TABLE_READS=gather|loads`.

use std::sync::OnceLock;

/// The instruction form of the softmax/GELU table reads in the AVX-512 rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableReads {
    /// One 16-lane `vpgatherdd` per 16 elements.
    Gather,
    /// One scalar load per element.
    Loads,
}

impl TableReads {
    /// Both forms (for tests that compare every form with the definition).
    pub const ALL: [TableReads; 2] = [TableReads::Gather, TableReads::Loads];

    /// The form used when a call does not name one: `OSQ_TABLE_READS` if set to `gather` or
    /// `loads`, else [`TableReads::detect`]. Chosen once.
    pub fn active() -> TableReads {
        static A: OnceLock<TableReads> = OnceLock::new();
        *A.get_or_init(|| match std::env::var("OSQ_TABLE_READS").as_deref() {
            Ok("gather") => TableReads::Gather,
            Ok("loads") => TableReads::Loads,
            _ => TableReads::detect(),
        })
    }

    /// Gathers on Intel CPUs whose kernel reports no gather-data-sampling mitigation, scalar
    /// loads everywhere else.
    pub fn detect() -> TableReads {
        if cpu_vendor_is_intel() && !gather_mitigated() {
            TableReads::Gather
        } else {
            TableReads::Loads
        }
    }

    /// `gather` or `loads`.
    pub fn name(self) -> &'static str {
        match self {
            TableReads::Gather => "gather",
            TableReads::Loads => "loads",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_vendor_is_intel() -> bool {
    let r = std::arch::x86_64::__cpuid(0);
    // "GenuineIntel" is spelled across EBX, EDX, ECX.
    (r.ebx, r.edx, r.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e)
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_vendor_is_intel() -> bool {
    false
}

/// Whether Linux reports a mitigation for gather data sampling (it makes gathers slow).
fn gather_mitigated() -> bool {
    std::fs::read_to_string("/sys/devices/system/cpu/vulnerabilities/gather_data_sampling")
        .is_ok_and(|s| s.starts_with("Mitigation"))
}
