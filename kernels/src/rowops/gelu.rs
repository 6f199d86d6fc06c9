//! GELU codes by bucket table. The definition (osq-model `GeluTable::code`) is a binary search in
//! two sorted threshold lists; here the fixed-point input `h = sat_i32(y + b)` indexes a bucket of
//! `2^shift` consecutive `h` values over `[lo, lo + n·2^shift)`, whose u32 entry holds the offset
//! of one change point inside the bucket and the codes below / from it (bits 0..14 offset, `2^shift`
//! for none; 14..22 code below; 22..30 code from it on): 4 bytes per bucket, so a 8 Ki-bucket
//! table stays in L1. The caller builds the entries from the definition and marks buckets the
//! entry cannot describe (two change points, the minimum's bucket) and out-of-range `h` with the
//! fallback bit 31: those elements are recomputed with the caller's definition. A branch-free pass
//! over 64 elements, then the fallback pass only for chunks that hit a marked bucket.

use super::{RowPath, TableReads};
use crate::dispatch::Isa;

/// Bit of an entry that sends the element to the caller's definition.
const GELU_FALLBACK: u32 = 1 << 31;

/// An entry that sends its bucket to the caller's definition.
pub fn gelu_fallback() -> u32 {
    GELU_FALLBACK
}

/// One layer's GELU bucket table and the FFN1 bias (`h = sat_i32(y + b)`).
#[derive(Clone, Debug)]
pub struct GeluLut {
    /// `n` bucket entries and a fallback sentinel.
    pub(super) entries: Vec<u32>,
    pub(super) lo: i64,
    pub(super) shift: u32,
    /// `|b| < 2^62`: `y + b` never overflows i64.
    pub(super) bias: Vec<i64>,
    /// The same bias as i32 when every `b` fits (the usual case): the AVX-512 path then forms
    /// `sat_i32(y + b)` in 32-bit lanes, with the overflow test instead of widening to 64 bits.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the AVX-512 path only
    pub(super) bias32: Option<Vec<i32>>,
}

impl GeluLut {
    /// Entry of a bucket: codes `below` for `h` before offset `off` in the bucket, `from` from
    /// there on (`off = 2^shift`: the whole bucket is `below`). `off` above 2^13 is cut to 2^13.
    pub fn entry(off: u32, below: u8, from: u8) -> u32 {
        off.min(1 << 13) | (below as u32) << 14 | (from as u32) << 22
    }

    /// `entries[i]` describes `h ∈ [lo + i·2^shift, lo + (i+1)·2^shift)`; `bias` per channel.
    /// `None` unless `|b| < 2^62`, `shift ≤ 13`, and the range lies inside i32.
    pub fn new(mut entries: Vec<u32>, lo: i64, shift: u32, bias: &[i64]) -> Option<GeluLut> {
        let ok = !entries.is_empty()
            && shift <= 13
            && lo >= i32::MIN as i64
            && lo + ((entries.len() as i64) << shift) <= i32::MAX as i64
            && bias.iter().all(|b| b.unsigned_abs() < 1 << 62);
        if !ok {
            return None;
        }
        entries.push(GELU_FALLBACK);
        let bias32 = bias
            .iter()
            .map(|&b| i32::try_from(b).ok())
            .collect::<Option<Vec<i32>>>();
        Some(GeluLut {
            entries,
            lo,
            shift,
            bias: bias.to_vec(),
            bias32,
        })
    }

    /// Channels (the bias length).
    pub fn n(&self) -> usize {
        self.bias.len()
    }

    fn index(&self, h: i32) -> usize {
        let last = (self.entries.len() - 1) as u64;
        (((h as i64 - self.lo) >> self.shift) as u64).min(last) as usize
    }

    /// Whether `h` is answered by the caller's definition.
    pub fn falls_back(&self, h: i32) -> bool {
        self.entries[self.index(h)] & GELU_FALLBACK != 0
    }

    /// `out_j = code(sat_i32(y_j + b_j))` over the row (`y.len() == n()`), with `def(h)` for
    /// elements in marked buckets.
    pub fn row(&self, isa: Isa, y: &[i32], out: &mut [u8], def: &dyn Fn(i32) -> u8) {
        self.row_reads(isa, TableReads::active(), y, out, def)
    }

    /// [`GeluLut::row`] with the table reads of the AVX-512 path named (same bits either way).
    pub fn row_reads(
        &self,
        isa: Isa,
        reads: TableReads,
        y: &[i32],
        out: &mut [u8],
        def: &dyn Fn(i32) -> u8,
    ) {
        let n = self.n();
        assert!(y.len() == n && out.len() >= n);
        let bias = &self.bias[..];
        #[cfg(target_arch = "x86_64")]
        if super::path(isa) == RowPath::Avx512 {
            // SAFETY: `path` returns Avx512 only when the CPU has those features.
            return unsafe { super::avx512::gelu(self, reads, y, out, def) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = reads;
        for c0 in (0..n).step_by(CHUNK) {
            let c1 = (c0 + CHUNK).min(n);
            let (yc, bc, oc) = (&y[c0..c1], &bias[c0..c1], &mut out[c0..c1]);
            let any = match super::path(isa) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `path` returns Avx512 only when the CPU has those features.
                RowPath::Avx512 => unsafe { super::x86::gelu_avx512(self, yc, bc, oc) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `path` returns Avx2 only when the CPU has AVX2.
                RowPath::Avx2 => unsafe { super::x86::gelu_avx2(self, yc, bc, oc) },
                RowPath::Scalar => self.body(yc, bc, oc),
            };
            if any & GELU_FALLBACK != 0 {
                for ((o, &v), &b) in oc.iter_mut().zip(yc).zip(bc) {
                    let h = sat(v, b);
                    if self.falls_back(h) {
                        *o = def(h);
                    }
                }
            }
        }
    }

    /// The reference body of one chunk; returns the OR of the entries used.
    #[inline(always)]
    pub(super) fn body(&self, y: &[i32], bias: &[i64], out: &mut [u8]) -> u32 {
        let n = y.len();
        let (bias, out) = (&bias[..n], &mut out[..n]);
        let ent = &self.entries[..];
        let last = (ent.len() - 1) as u64;
        let (lo, shift, mask) = (self.lo, self.shift, (1i64 << self.shift) - 1);
        let mut any = 0u32;
        for j in 0..n {
            let d = sat(y[j], bias[j]) as i64 - lo;
            let idx = ((d >> shift) as u64).min(last) as usize;
            let e = ent[idx];
            any |= e;
            out[j] = if (d & mask) as u32 >= e & 0x3FFF {
                (e >> 22) as u8
            } else {
                (e >> 14) as u8
            };
        }
        any
    }
}

const CHUNK: usize = 64;

#[inline(always)]
fn sat(y: i32, b: i64) -> i32 {
    (y as i64)
        .saturating_add(b)
        .clamp(i32::MIN as i64, i32::MAX as i64) as i32
}
