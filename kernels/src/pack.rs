//! Packing of the B operand (weights, or K/V codes in attention) into the one layout every ISA reads:
//! panels of 16 output channels, K in groups of 4 bytes per channel (one zmm / four q-registers per
//! group). Column sums and the code range are taken here, once, so zero points never enter the inner
//! loop and the AVX2 path can prove when `vpmaddubsw` cannot saturate.

use crate::error::{KernelError, Result};
use crate::mat::MatRef;

/// Output channels per panel.
pub const NR: usize = 16;
/// K values per group (one `vpdpbusd`/`sdot` lane step).
pub const KG: usize = 4;
/// Bytes per packed group block: 16 channels × 4 K values.
pub const BLOCK: usize = NR * KG;

/// Element format of packed B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// One signed byte per code, −128..127.
    S8,
    /// Two signed nibbles per byte, −8..7: group `2h` in the low nibble, `2h + 1` in the high one.
    S4,
}

/// B packed for the GEMM kernels. Logical shape `[N, K]` (one row per output channel).
#[derive(Clone, Debug)]
pub struct PackedB {
    format: WeightFormat,
    n: usize,
    k: usize,
    k_padded: usize,
    panels: usize,
    buf: Vec<u8>,
    offset: usize,
    colsum: Vec<i32>,
    zero_point: i32,
    min_code: i32,
    max_code: i32,
}

impl PackedB {
    /// Packs signed 8-bit weights given as `[N, K]` (PyTorch `Linear.weight` layout).
    pub fn pack_s8(w: MatRef<'_, i8>) -> Result<Self> {
        Self::pack_with(WeightFormat::S8, w.rows(), w.cols(), 0, |n, k| w.get(n, k))
    }

    /// Packs signed 4-bit weights (codes −8..7, one per `i8`) given as `[N, K]`.
    pub fn pack_s4(w: MatRef<'_, i8>) -> Result<Self> {
        for n in 0..w.rows() {
            if let Some(&bad) = w.row(n).iter().find(|&&v| !(-8..=7).contains(&v)) {
                return Err(KernelError::Range(format!(
                    "4-bit weight code {bad} in row {n} is outside -8..7"
                )));
            }
        }
        Self::pack_with(WeightFormat::S4, w.rows(), w.cols(), 0, |n, k| w.get(n, k))
    }

    /// Packs unsigned activation codes used as B with zero point `zero_point`, given as `[N, K]`
    /// (attention keys: `B[n, k] = K[token n, dim k]`). Codes are stored as `code − 128`.
    pub fn pack_u8_nk(b: MatRef<'_, u8>, zero_point: u8) -> Result<Self> {
        let (n, k) = (b.rows(), b.cols());
        let mut p = Self::alloc(WeightFormat::S8, n, k, zero_point as i32 - 128)?;
        let (pb, off) = (p.panel_bytes(), p.offset);
        #[cfg(target_arch = "x86_64")]
        if n > 0 && k.is_multiple_of(KG) && nk_avx512(b.stride(), k) {
            let len = p.panels * pb;
            // SAFETY: `nk_avx512` checked the features; `b` holds n rows of k bytes `stride`
            // apart; `buf[off..off + len]` holds every panel; `colsum` has n entries.
            let (lo, hi) = unsafe {
                crate::x86::pack_u8_nk_avx512(
                    b.data().as_ptr(),
                    n,
                    k,
                    b.stride(),
                    &mut p.buf[off..off + len],
                    pb,
                    &mut p.colsum,
                )
            };
            (p.min_code, p.max_code) = (lo as i32, hi as i32);
            return Ok(p);
        }
        let (mut lo, mut hi) = (i8::MAX, i8::MIN);
        for nn in 0..n {
            let row = &b.row(nn)[..k];
            let base = off + (nn / NR) * pb + (nn % NR) * KG;
            // Whole 4-byte groups as u32 words (the sign flip of 4 codes in one xor), then the
            // K tail byte by byte (the padding stays 0).
            let dst = &mut p.buf[base..];
            let mut groups = row.chunks_exact(KG);
            for (g, q) in groups.by_ref().enumerate() {
                let w = u32::from_le_bytes([q[0], q[1], q[2], q[3]]) ^ 0x8080_8080;
                dst[g * BLOCK..g * BLOCK + KG].copy_from_slice(&w.to_le_bytes());
            }
            let g = k / KG;
            for (i, &v) in groups.remainder().iter().enumerate() {
                dst[g * BLOCK + i] = v ^ 0x80;
            }
            let (s, l, h) = stats(row);
            p.colsum[nn] = s;
            (lo, hi) = (lo.min(l), hi.max(h));
        }
        (p.min_code, p.max_code) = (lo as i32, hi as i32);
        Ok(p)
    }

    /// Packs unsigned activation codes used as B, given as `[K, N]` (attention values:
    /// `B[n, k] = V[token k, dim n]`). Codes are stored as `code − 128`.
    pub fn pack_u8_kn(b: MatRef<'_, u8>, zero_point: u8) -> Result<Self> {
        let (n, k) = (b.cols(), b.rows());
        let mut p = Self::alloc(WeightFormat::S8, n, k, zero_point as i32 - 128)?;
        let (pb, off) = (p.panel_bytes(), p.offset);
        let (mut lo, mut hi) = (i8::MAX, i8::MIN);
        let zero = vec![0x80u8; n]; // stores as 0: the K padding
        let row = |kk: usize| if kk < k { &b.row(kk)[..n] } else { &zero[..] };
        if kn_sse2() {
            #[cfg(target_arch = "x86_64")]
            {
                let len = p.panels * pb;
                // SAFETY: SSE2 is x86-64 baseline; every row has n bytes; the panels lie in `buf`.
                unsafe {
                    crate::x86::pack_u8_kn_groups_sse2(row, n, k, &mut p.buf[off..off + len], pb)
                };
            }
        } else {
            for g in 0..k.div_ceil(KG) {
                let (r0, r1, r2, r3) = (
                    row(g * KG),
                    row(g * KG + 1),
                    row(g * KG + 2),
                    row(g * KG + 3),
                );
                for pi in 0..n.div_ceil(NR) {
                    let dst = off + pi * pb + g * BLOCK;
                    let cols = pi * NR..(pi * NR + NR).min(n);
                    let out = &mut p.buf[dst..dst + cols.len() * KG];
                    let (q0, q1, q2, q3) = (
                        &r0[cols.clone()],
                        &r1[cols.clone()],
                        &r2[cols.clone()],
                        &r3[cols],
                    );
                    // One u32 word per column: its 4 codes of this K group, sign-flipped.
                    for (j, o) in out.chunks_exact_mut(KG).enumerate() {
                        let w = (q0[j] as u32
                            | (q1[j] as u32) << 8
                            | (q2[j] as u32) << 16
                            | (q3[j] as u32) << 24)
                            ^ 0x8080_8080;
                        o.copy_from_slice(&w.to_le_bytes());
                    }
                }
            }
        }
        for kk in 0..k {
            let row = &b.row(kk)[..n];
            for (c, &v) in p.colsum[..n].iter_mut().zip(row) {
                *c += v as i32 - 128;
            }
            let (_, l, h) = stats(row);
            (lo, hi) = (lo.min(l), hi.max(h));
        }
        (p.min_code, p.max_code) = (lo as i32, hi as i32);
        Ok(p)
    }

    /// The zeroed buffer and shape of a packing (codes, sums and range still to be filled).
    fn alloc(format: WeightFormat, n: usize, k: usize, zero_point: i32) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(KernelError::Shape(format!(
                "cannot pack an empty B ({n}x{k})"
            )));
        }
        if k > crate::MAX_K {
            return Err(KernelError::Shape(format!(
                "K = {k} exceeds the supported maximum {}",
                crate::MAX_K
            )));
        }
        let kstep = match format {
            WeightFormat::S8 => KG,
            WeightFormat::S4 => 2 * KG,
        };
        let k_padded = k.div_ceil(kstep) * kstep;
        let panels = n.div_ceil(NR);
        let groups = k_padded / KG;
        let panel_bytes = match format {
            WeightFormat::S8 => groups * BLOCK,
            WeightFormat::S4 => groups / 2 * BLOCK,
        };
        let len = panels * panel_bytes;
        let buf = vec![0u8; len + 64];
        let offset = buf.as_ptr().align_offset(64).min(64);
        Ok(Self {
            format,
            n,
            k,
            k_padded,
            panels,
            buf,
            offset,
            colsum: vec![0; panels * NR],
            zero_point,
            min_code: 0,
            max_code: 0,
        })
    }

    fn pack_with(
        format: WeightFormat,
        n: usize,
        k: usize,
        zero_point: i32,
        get: impl Fn(usize, usize) -> i8,
    ) -> Result<Self> {
        let mut packed = Self::alloc(format, n, k, zero_point)?;
        let (panel_bytes, offset) = (packed.panel_bytes(), packed.offset);
        let len = packed.panels * panel_bytes;
        let (mut lo, mut hi) = (i32::MAX, i32::MIN);
        let data = &mut packed.buf[offset..offset + len];
        for nn in 0..n {
            let (p, j) = (nn / NR, nn % NR);
            let mut sum = 0i32;
            for kk in 0..k {
                let v = get(nn, kk);
                sum += v as i32;
                lo = lo.min(v as i32);
                hi = hi.max(v as i32);
                let (g, i) = (kk / KG, kk % KG);
                match format {
                    WeightFormat::S8 => data[p * panel_bytes + g * BLOCK + j * KG + i] = v as u8,
                    WeightFormat::S4 => {
                        let byte = &mut data[p * panel_bytes + (g / 2) * BLOCK + j * KG + i];
                        let nib = (v as u8) & 0x0F;
                        if g % 2 == 0 {
                            *byte = (*byte & 0xF0) | nib;
                        } else {
                            *byte = (*byte & 0x0F) | (nib << 4);
                        }
                    }
                }
            }
            packed.colsum[nn] = sum;
        }
        packed.min_code = lo;
        packed.max_code = hi;
        Ok(packed)
    }

    pub fn format(&self) -> WeightFormat {
        self.format
    }
    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Reduction length (true, unpadded).
    pub fn k(&self) -> usize {
        self.k
    }
    /// K rounded up to the packing step (4 for S8, 8 for S4); the padding holds zero codes.
    pub fn k_padded(&self) -> usize {
        self.k_padded
    }
    pub fn panels(&self) -> usize {
        self.panels
    }
    /// Bytes of one panel.
    pub fn panel_bytes(&self) -> usize {
        match self.format {
            WeightFormat::S8 => self.k_padded / KG * BLOCK,
            WeightFormat::S4 => self.k_padded / KG / 2 * BLOCK,
        }
    }
    /// The packed bytes, 64-byte aligned, `panels × panel_bytes` long.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.offset..self.offset + self.panels * self.panel_bytes()]
    }
    /// Σ_k B[n, k] of the stored codes, padded with zeros to `panels × 16`.
    pub fn colsum(&self) -> &[i32] {
        &self.colsum
    }
    /// Zero point of the stored codes (0 for weights; `z − 128` for packed u8 activations).
    pub fn zero_point(&self) -> i32 {
        self.zero_point
    }
    /// Largest |code| stored.
    pub fn max_abs_code(&self) -> i32 {
        self.min_code.abs().max(self.max_code.abs())
    }
    /// The code of logical element `(n, k)`, read back from the packed layout.
    pub fn code(&self, n: usize, k: usize) -> i8 {
        let pb = self.panel_bytes();
        let (p, j) = (n / NR, n % NR);
        let (g, i) = (k / KG, k % KG);
        let data = self.data();
        match self.format {
            WeightFormat::S8 => data[p * pb + g * BLOCK + j * KG + i] as i8,
            WeightFormat::S4 => {
                let byte = data[p * pb + (g / 2) * BLOCK + j * KG + i];
                let nib = if g % 2 == 0 { byte << 4 } else { byte & 0xF0 };
                (nib as i8) >> 4
            }
        }
    }
}

/// Whether `pack_u8_nk` takes its AVX-512 form: the active ISA is AVX-512-VNNI (so `OSQ_ISA`
/// forces the scalar packer too) and the gather offsets `15·stride + k` fit an i32.
#[cfg(target_arch = "x86_64")]
fn nk_avx512(stride: usize, k: usize) -> bool {
    matches!(
        crate::dispatch::active_isa(),
        Ok(crate::Isa::Avx512Vnni | crate::Isa::AmxInt8)
    ) && stride
        .checked_mul(NR - 1)
        .and_then(|s| s.checked_add(k))
        .is_some_and(|e| e <= i32::MAX as usize)
}

/// Whether `pack_u8_kn` packs its groups with the SSE2 transpose: on x86-64 unless the active
/// ISA is the scalar one (`OSQ_ISA=scalar` keeps the scalar packer).
fn kn_sse2() -> bool {
    cfg!(target_arch = "x86_64")
        && crate::dispatch::active_isa().is_ok_and(|i| i != crate::Isa::Scalar)
}

/// Sum, min and max of `code − 128` over u8 codes.
fn stats(row: &[u8]) -> (i32, i8, i8) {
    // On the u8 codes (`c = v − 128` is monotone in `v`): plain u8 sums and min/max, which the
    // baseline x86-64 target vectorizes (psadbw, pminub/pmaxub); an empty row gives (0, 127, −128).
    let sum: u32 = row.iter().map(|&v| v as u32).sum();
    let lo = row.iter().fold(u8::MAX, |a, &v| a.min(v));
    let hi = row.iter().fold(u8::MIN, |a, &v| a.max(v));
    (
        sum as i32 - 128 * row.len() as i32,
        (lo ^ 0x80) as i8,
        (hi ^ 0x80) as i8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct u8 packers equal the generic element-wise packing they replace.
    #[test]
    fn u8_packers_equal_generic() {
        let mut s = 12345u64;
        for &(rows, cols, stride, z) in &[
            (128, 32, 384, 7u8),
            (1, 1, 1, 0),
            (17, 13, 20, 255),
            (33, 64, 64, 128),
            (5, 8, 8, 3),
            (16, 4, 4, 9),
            (31, 12, 100, 200),
            // constant codes (then the range must not see the zeroed lanes of a partial panel)
            (3, 8, 8, 0),
            (7, 16, 16, 255),
        ] {
            let data: Vec<u8> = (0..rows * stride)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    match (rows, z) {
                        (3, 0) => 255,
                        (7, 255) => 0,
                        _ => (s >> 56) as u8,
                    }
                })
                .collect();
            let m = MatRef::new(&data, rows, cols, stride).unwrap();
            let zp = z as i32 - 128;
            let nk = PackedB::pack_u8_nk(m, z).unwrap();
            let g = PackedB::pack_with(WeightFormat::S8, rows, cols, zp, |n, k| {
                (m.get(n, k) ^ 0x80) as i8
            })
            .unwrap();
            let kn = PackedB::pack_u8_kn(m, z).unwrap();
            let gk = PackedB::pack_with(WeightFormat::S8, cols, rows, zp, |n, k| {
                (m.get(k, n) ^ 0x80) as i8
            })
            .unwrap();
            for (a, b) in [(&nk, &g), (&kn, &gk)] {
                assert_eq!(a.data(), b.data());
                assert_eq!(a.colsum(), b.colsum());
                assert_eq!(
                    (a.min_code, a.max_code, a.zero_point),
                    (b.min_code, b.max_code, b.zero_point)
                );
                assert_eq!((a.n(), a.k(), a.k_padded()), (b.n(), b.k(), b.k_padded()));
            }
        }
    }
}
