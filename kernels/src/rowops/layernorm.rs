//! Integer LayerNorm of one row (non-scaling form, γ migrated) without i128 per element. The
//! definition (`LayerNormInt::row` of osq-model): `S = Σv`, `D = Σ(H·v − S)²/H + E`,
//! `σ = ⌊√(D·2^40)⌋`, `G = ⌊A·2^54/σ⌋`, `out_j = clamp(⌊(⌊d_j·G/2^32⌋ + C_j + 2^31)/2^32⌋)`,
//! `d_j = H·v_j − S`. Here: `Σ(H·v − S)²/H = H·Σv² − S²` (exact identity), with `Σv²` in u64
//! when every `|v| < 2^26` (H ≤ 2048 ⇒ sum < 2^63); and with `G = G1·2^32 + G0`,
//! `d = dh·2^32 + dl` (`G0`, `dl` unsigned 32-bit): `⌊d·G/2^32⌋ = d·G1 + dh·G0 + ⌊dl·G0/2^32⌋`,
//! all in i64 when `|d| ≤ 2^38` and `|G| < 2^53` (terms below 2^59, 2^39, 2^32), plus
//! `|C_j + 2^31| < 2^61`. The scaling form (γ not migrated) then needs `⌊P·Γ_j/2^30⌋` with
//! `P = ⌊d·G/2^32⌋`: with `Γ = Γh·2^15 + Γl` (`0 ≤ Γl < 2^15`, `|Γ| < 2^31`) it is
//! `⌊(P·Γh + ⌊P·Γl/2^15⌋)/2^15⌋`, both products in i64 when `|P| < 2^46` (checked per row from
//! `max|d|·G`). A row outside these bounds returns `false` (caller uses the definition).

use super::RowPath;
use crate::dispatch::Isa;

/// Constants of one non-scaling LayerNorm.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    h: usize,
    e: u128,
    a54: i128,
    /// `C_j + 2^31`.
    kc: Vec<i64>,
    /// Scaling form: `(Γh, Γl)` per channel.
    gamma: Option<(Vec<i64>, Vec<i64>)>,
    qmin: i64,
    qmax: i64,
}

/// Largest |v| of the u64 variance sum.
const V_BOUND: u32 = 1 << 26;
/// Largest |G| of the split product.
const G_BOUND: i128 = 1 << 53;

impl LayerNorm {
    /// `e = E`, `a = round(2^30/s_out)`, `c = C_j`, `gamma = Γ_j` (scaling form) of the
    /// definition. `None` outside the bounds.
    pub fn new(
        e: u128,
        a: i128,
        c: &[i64],
        gamma: Option<&[i64]>,
        qmin: i32,
        qmax: i32,
    ) -> Option<LayerNorm> {
        let h = c.len();
        let gamma = match gamma {
            None => None,
            Some(g) if g.len() == h && g.iter().all(|v| v.unsigned_abs() < 1 << 31) => Some((
                g.iter().map(|v| v >> 15).collect(),
                g.iter().map(|v| v & 0x7FFF).collect(),
            )),
            Some(_) => return None,
        };
        if !(1..=2048).contains(&h) || !(1..1i128 << 70).contains(&a) || e > 1 << 100 {
            return None;
        }
        if !(0 <= qmin && qmin <= qmax && qmax <= 255) {
            return None;
        }
        let kc: Option<Vec<i64>> = c
            .iter()
            .map(|&c| {
                let k = c as i128 + (1 << 31);
                (k.abs() < 1 << 61).then_some(k as i64)
            })
            .collect();
        Some(LayerNorm {
            h,
            e,
            a54: a << 54,
            kc: kc?,
            gamma,
            qmin: qmin as i64,
            qmax: qmax as i64,
        })
    }

    pub fn h(&self) -> usize {
        self.h
    }

    /// Codes of one row of fixed-point sums (`r.len() == h`); `false` (and `out` unspecified)
    /// when the row is outside the bounds.
    pub fn row(&self, isa: Isa, r: &[i32], out: &mut [u8]) -> bool {
        assert!(r.len() == self.h && out.len() >= self.h);
        match super::path(isa) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx512 only when the CPU has those features.
            RowPath::Avx512 => unsafe { super::x86::ln_avx512(self, r, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `path` returns Avx2 only when the CPU has AVX2.
            RowPath::Avx2 => unsafe { super::x86::ln_avx2(self, r, out) },
            RowPath::Scalar => self.body(r, out),
        }
    }

    /// The reference body (see the module docs for the bounds).
    #[inline(always)]
    pub(super) fn body(&self, r: &[i32], out: &mut [u8]) -> bool {
        let h = self.h;
        let (r, out, kc) = (&r[..h], &mut out[..h], &self.kc[..h]);
        let (mut s, mut sq, mut big) = (0i64, 0u64, 0u32);
        for &v in r {
            s += v as i64;
            sq = sq.wrapping_add((v as i64 * v as i64) as u64);
            big |= v.unsigned_abs();
        }
        if big >= V_BOUND {
            return false;
        }
        let dd = h as u128 * sq as u128 - (s as i128 * s as i128) as u128 + self.e;
        let sigma = super::isqrt_u128(dd.saturating_mul(1u128 << 40)).max(1);
        let g = self.a54 / sigma as i128;
        if g >= G_BOUND {
            return false;
        }
        let (g1, g0) = ((g >> 32) as i64, (g as u64) & 0xFFFF_FFFF);
        let hh = h as i64;
        let (lo, hi) = (self.qmin, self.qmax);
        let p32 = |d: i64| {
            let (dh, dl) = (d >> 32, (d as u64) & 0xFFFF_FFFF);
            d * g1 + dh * g0 as i64 + ((dl * g0) >> 32) as i64
        };
        match &self.gamma {
            None => {
                for j in 0..h {
                    let p = p32(hh * r[j] as i64 - s);
                    out[j] = ((p + kc[j]) >> 32).clamp(lo, hi) as u8;
                }
            }
            Some((gh, gl)) => {
                // |d| ≤ H·max|v| + |S| ⇒ |P| ≤ that·G/2^32 + 1.
                let dmax = h as u128 * big as u128 + s.unsigned_abs() as u128;
                if (dmax * g as u128) >> 32 >= (1 << 46) - 1 {
                    return false;
                }
                let (gh, gl) = (&gh[..h], &gl[..h]);
                for j in 0..h {
                    let p = p32(hh * r[j] as i64 - s);
                    let y = (p * gh[j] + ((p * gl[j]) >> 15)) >> 15;
                    out[j] = ((y + kc[j]) >> 32).clamp(lo, hi) as u8;
                }
            }
        }
        true
    }
}
