//! The machine's multiply-accumulate peak, measured: what "% of peak" figures are relative to.
//!
//! The CPU behind a VM varies (a Zen 4 core issues one `vpdpbusd zmm` per cycle, recent Xeons two),
//! so a quoted peak must be measured where the benchmark runs. The probe is a loop of `vpdpbusd zmm`
//! over `CHAINS` independent accumulators (enough to cover the instruction's latency times its
//! throughput on both), on register-resident operands: no memory traffic, the pure issue rate.

/// Independent accumulator chains of the probe (latency 4–5 cycles × up to 2 per cycle, with slack).
pub const CHAINS: usize = 12;

/// Measured u8×s8 MAC/s of one core with `vpdpbusd zmm` (64 MACs per instruction) over about
/// `seconds` (best of 5 slices), or `None` when the CPU lacks AVX-512-VNNI.
pub fn vnni_zmm_macs_per_second(seconds: f64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::time::Instant;
        if crate::Isa::Avx512Vnni.require().is_err() {
            return None;
        }
        let slice = (seconds / 5.0).max(1e-3);
        // Calibrate the iteration count on a short run, then keep the best slice.
        let mut iters = 1u64 << 16;
        loop {
            let t0 = Instant::now();
            // SAFETY: AVX-512-VNNI checked above.
            std::hint::black_box(unsafe { vpdpbusd_zmm_loop(iters) });
            let dt = t0.elapsed().as_secs_f64();
            if dt > slice / 4.0 || iters > 1 << 40 {
                iters = ((iters as f64) * slice / dt.max(1e-9)) as u64 + 1;
                break;
            }
            iters *= 4;
        }
        let mut best = 0.0f64;
        for _ in 0..5 {
            let t0 = Instant::now();
            // SAFETY: as above.
            std::hint::black_box(unsafe { vpdpbusd_zmm_loop(iters) });
            let dt = t0.elapsed().as_secs_f64();
            best = best.max((iters * CHAINS as u64 * 64) as f64 / dt);
        }
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = seconds;
        None
    }
}

/// `iters` rounds of `CHAINS` independent `vpdpbusd zmm`; returns a lane sum so nothing is elided.
///
/// # Safety
/// The CPU must support avx512f and avx512vnni.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn vpdpbusd_zmm_loop(iters: u64) -> i32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_epi32(0x0101_0101);
    let b = _mm512_set1_epi32(0x0102_0301);
    let mut acc = [_mm512_setzero_si512(); CHAINS];
    let [mut c0, mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7, mut c8, mut c9, mut c10, mut c11] =
        acc;
    for _ in 0..iters {
        // Twelve independent chains in registers (inline assembly, so the compiler neither folds
        // the loop nor spills the accumulators).
        // SAFETY: register-only instructions, AVX-512-VNNI enabled on this function.
        unsafe {
            std::arch::asm!(
                "vpdpbusd {c0}, {a}, {b}",
                "vpdpbusd {c1}, {a}, {b}",
                "vpdpbusd {c2}, {a}, {b}",
                "vpdpbusd {c3}, {a}, {b}",
                "vpdpbusd {c4}, {a}, {b}",
                "vpdpbusd {c5}, {a}, {b}",
                "vpdpbusd {c6}, {a}, {b}",
                "vpdpbusd {c7}, {a}, {b}",
                "vpdpbusd {c8}, {a}, {b}",
                "vpdpbusd {c9}, {a}, {b}",
                "vpdpbusd {c10}, {a}, {b}",
                "vpdpbusd {c11}, {a}, {b}",
                c0 = inout(zmm_reg) c0, c1 = inout(zmm_reg) c1, c2 = inout(zmm_reg) c2,
                c3 = inout(zmm_reg) c3, c4 = inout(zmm_reg) c4, c5 = inout(zmm_reg) c5,
                c6 = inout(zmm_reg) c6, c7 = inout(zmm_reg) c7, c8 = inout(zmm_reg) c8,
                c9 = inout(zmm_reg) c9, c10 = inout(zmm_reg) c10, c11 = inout(zmm_reg) c11,
                a = in(zmm_reg) a, b = in(zmm_reg) b,
                options(nomem, nostack),
            );
        }
    }
    acc = [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11];
    let mut s = _mm512_setzero_si512();
    for c in acc {
        s = _mm512_add_epi32(s, c);
    }
    _mm512_reduce_add_epi32(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_reports_a_plausible_rate_or_none() {
        if let Some(r) = super::vnni_zmm_macs_per_second(0.05) {
            // One core: more than 1 GMAC/s, fewer than 10 TMAC/s.
            assert!(r > 1e9 && r < 1e13, "{r}");
        }
    }
}
