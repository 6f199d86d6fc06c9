//! Quantizer parameters exactly as the OS reference code computes them (`observer.py`,
//! `util_quant.py`): f32 arithmetic, range forced to include 0, `torch.round` = round half to
//! even for the zero point and the codes, scale floored at `torch.finfo(float32).eps`.
//! Activations are asymmetric per tensor in `[0, 2^b − 1]`; weights and embedding rows are
//! symmetric per output channel in the OS+ range `[−(2^(b−1) − 1), 2^(b−1) − 1]`.

use serde::{Deserialize, Serialize};

/// `torch.finfo(torch.float32).eps`, the scale floor of the OS observers.
pub const SCALE_EPS: f32 = f32::EPSILON;

/// Weight/activation bit widths of a quantization configuration: the paper's four (W8A8, W6A6,
/// W4A8, W4A4: every activation node at the activation bits), and W6A6P8 / W4A4P8, which keep the
/// attention probabilities (node 5, the softmax output) at 8 bits. At low activation bits a
/// uniform quantizer over `[0, 1]` rounds every probability below `1/(2·(2^b − 1))` to zero
/// (1/126 at 6 bits), so on long sequences (512 tokens: mean probability 1/512) most of the
/// attention mass is lost; the P8 configurations trade one 8-bit operand of the P·V product for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BitsConfig {
    weight: u8,
    act: u8,
    probs: u8,
}

impl BitsConfig {
    pub const W8A8: BitsConfig = BitsConfig::new(8, 8, 8);
    pub const W6A6: BitsConfig = BitsConfig::new(6, 6, 6);
    pub const W4A8: BitsConfig = BitsConfig::new(4, 8, 8);
    pub const W4A4: BitsConfig = BitsConfig::new(4, 4, 4);
    /// W6A6 with 8-bit attention probabilities.
    pub const W6A6P8: BitsConfig = BitsConfig::new(6, 6, 8);
    /// W4A4 with 8-bit attention probabilities.
    pub const W4A4P8: BitsConfig = BitsConfig::new(4, 4, 8);
    /// The paper's four configurations (Table 2/4 columns).
    pub const ALL: [BitsConfig; 4] = [
        BitsConfig::W8A8,
        BitsConfig::W6A6,
        BitsConfig::W4A8,
        BitsConfig::W4A4,
    ];
    /// Every configuration osq accepts: the paper's four, then the 8-bit-probability ones.
    pub const SUPPORTED: [BitsConfig; 6] = [
        BitsConfig::W8A8,
        BitsConfig::W6A6,
        BitsConfig::W4A8,
        BitsConfig::W4A4,
        BitsConfig::W6A6P8,
        BitsConfig::W4A4P8,
    ];
    const fn new(weight: u8, act: u8, probs: u8) -> BitsConfig {
        BitsConfig { weight, act, probs }
    }
    pub fn name(self) -> &'static str {
        match (self.weight, self.act, self.probs) {
            (8, 8, 8) => "w8a8",
            (6, 6, 6) => "w6a6",
            (4, 8, 8) => "w4a8",
            (4, 4, 4) => "w4a4",
            (6, 6, 8) => "w6a6p8",
            (4, 4, 8) => "w4a4p8",
            // Fields are private and every constructor is one of the constants above.
            _ => "unsupported",
        }
    }
    /// `"w8a8, w6a6, w4a8, w4a4, w6a6p8, w4a4p8"`, for error messages.
    pub fn names() -> String {
        Self::SUPPORTED.map(|b| b.name()).join(", ")
    }
    pub fn parse(s: &str) -> Option<BitsConfig> {
        Self::SUPPORTED
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
    }
    pub fn weight_bits(self) -> u32 {
        self.weight as u32
    }
    /// The activation bits of every node except the attention probabilities.
    pub fn act_bits(self) -> u32 {
        self.act as u32
    }
    /// The bits of the attention probabilities (node 5).
    pub fn probs_bits(self) -> u32 {
        self.probs as u32
    }
    /// The bits of activation node `node`.
    pub fn node_bits(self, node: super::Node) -> u32 {
        if node == super::Node::Probs {
            self.probs_bits()
        } else {
            self.act_bits()
        }
    }
    /// Weight code range (OS+ symmetric): `(−(2^(b−1) − 1), 2^(b−1) − 1)`.
    pub fn weight_range(self) -> (i32, i32) {
        let m = (1 << (self.weight_bits() - 1)) - 1;
        (-m, m)
    }
    /// Activation code range: `(0, 2^b − 1)`.
    pub fn act_range(self) -> (i32, i32) {
        act_code_range(self.act_bits())
    }
    /// Code range of activation node `node`: `(0, 2^b − 1)` with its [`Self::node_bits`].
    pub fn node_range(self, node: super::Node) -> (i32, i32) {
        act_code_range(self.node_bits(node))
    }
}

/// Code range of a `bits`-bit activation quantizer: `(0, 2^bits − 1)`.
pub fn act_code_range(bits: u32) -> (i32, i32) {
    (0, (1 << bits) - 1)
}

impl std::fmt::Display for BitsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters of one per-tensor activation quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
    pub qmin: i32,
    pub qmax: i32,
}

/// `torch.round`: round half to even.
#[inline]
pub fn round_half_even_f32(x: f32) -> f32 {
    x.round_ties_even()
}

impl QParams {
    /// Asymmetric quantizer of the OS observers for an observed `[min, max]` (f32 arithmetic).
    pub fn asymmetric(min: f32, max: f32, qmin: i32, qmax: i32) -> QParams {
        let min_neg = min.min(0.0);
        let max_pos = max.max(0.0);
        let scale = ((max_pos - min_neg) / (qmax - qmin) as f32).max(SCALE_EPS);
        let z = qmin as f32 - round_half_even_f32(min_neg / scale);
        let zero_point = (z.clamp(qmin as f32, qmax as f32)) as i32;
        QParams {
            scale,
            zero_point,
            qmin,
            qmax,
        }
    }

    /// Activation quantizer for `bits` from an observed range.
    pub fn activation(min: f32, max: f32, bits: u32) -> QParams {
        let (qmin, qmax) = act_code_range(bits);
        Self::asymmetric(min, max, qmin, qmax)
    }

    /// `clamp(round_half_even(x / s) + z, qmin, qmax)` (the design formula, division).
    #[inline]
    pub fn quantize(&self, x: f32) -> i32 {
        let q = round_half_even_f32(x / self.scale) + self.zero_point as f32;
        q.clamp(self.qmin as f32, self.qmax as f32) as i32
    }

    /// PyTorch's `fake_quantize_per_tensor_affine` CPU kernel: multiplies by `inv_scale = 1/s`
    /// (f32) instead of dividing. Used by the paper-mode executor.
    #[inline]
    pub fn quantize_torch(&self, x: f32) -> i32 {
        let inv = 1.0f32 / self.scale;
        let q = round_half_even_f32(x * inv) + self.zero_point as f32;
        if q.is_nan() {
            return self.qmin.max(self.zero_point.min(self.qmax));
        }
        q.clamp(self.qmin as f32, self.qmax as f32) as i32
    }

    /// `(q − z)·s` in f32.
    #[inline]
    pub fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }

    /// Whether the parameters are usable (finite positive scale, zero point inside the range).
    pub fn is_valid(&self) -> bool {
        self.scale.is_finite()
            && self.scale > 0.0
            && self.qmin < self.qmax
            && (self.qmin..=self.qmax).contains(&self.zero_point)
    }
}

/// Symmetric per-row scale of the OS observer: `max(absmax / ((qmax − qmin)/2), eps)`.
pub fn symmetric_scale(row: &[f32], qmin: i32, qmax: i32) -> f32 {
    let mut lo = 0f32;
    let mut hi = 0f32;
    for &v in row {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let absmax = (-lo).max(hi);
    (absmax / ((qmax - qmin) as f32 / 2.0)).max(SCALE_EPS)
}

/// Symmetric per-row quantization of a `[rows, cols]` matrix: codes and one scale per row.
pub fn quantize_rows_symmetric(
    w: &[f32],
    rows: usize,
    cols: usize,
    qmin: i32,
    qmax: i32,
) -> (Vec<i8>, Vec<f32>) {
    let mut codes = vec![0i8; rows * cols];
    let mut scales = vec![0f32; rows];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let s = symmetric_scale(row, qmin, qmax);
        scales[r] = s;
        for (c, &v) in codes[r * cols..(r + 1) * cols].iter_mut().zip(row) {
            let q = round_half_even_f32(v / s).clamp(qmin as f32, qmax as f32);
            *c = q as i8;
        }
    }
    (codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_matches_the_reference_formulas() {
        // min > 0 is forced to 0: z = 0.
        let q = QParams::activation(0.5, 2.55, 8);
        assert_eq!(q.zero_point, 0);
        assert_eq!(q.scale, 2.55f32 / 255.0);
        // max < 0 forced to 0: z = 255.
        let q = QParams::activation(-3.0, -1.0, 8);
        assert_eq!(q.zero_point, 255);
        // Symmetric-looking range: in f32, −1/s = −127.49999 (not the real −127.5), so z = 127.
        let q = QParams::activation(-1.0, 1.0, 8);
        assert_eq!(q.scale, 2.0f32 / 255.0);
        assert_eq!(q.zero_point, 127);
        // An exact tie: s = 1, min = −2.5 → z = 0 − round_half_even(−2.5) = 2.
        let q = QParams::asymmetric(-2.5, 12.5, 0, 15);
        assert_eq!(q.scale, 1.0);
        assert_eq!(q.zero_point, 2);
        // Zero range: scale floors at eps.
        let q = QParams::activation(0.0, 0.0, 4);
        assert_eq!(q.scale, SCALE_EPS);
        assert_eq!(q.zero_point, 0);
        assert!(q.is_valid());
    }

    #[test]
    fn quantize_rounds_half_to_even_and_clamps() {
        let q = QParams {
            scale: 0.5,
            zero_point: 10,
            qmin: 0,
            qmax: 15,
        };
        assert_eq!(q.quantize(0.25), 10); // 0.5 -> 0
        assert_eq!(q.quantize(0.75), 12); // 1.5 -> 2
        assert_eq!(q.quantize(-0.25), 10); // -0.5 -> -0
        assert_eq!(q.quantize(100.0), 15);
        assert_eq!(q.quantize(-100.0), 0);
        assert_eq!(q.quantize_torch(0.75), 12);
    }

    #[test]
    fn symmetric_rows_use_the_os_plus_range() {
        let w = [1.0f32, -2.0, 0.5, 0.0, 0.0, 0.0];
        let (codes, scales) = quantize_rows_symmetric(&w, 2, 3, -127, 127);
        assert_eq!(scales[0], 2.0 / 127.0);
        assert_eq!(codes[1], -127);
        assert_eq!(scales[1], SCALE_EPS);
        assert_eq!(&codes[3..], &[0, 0, 0]);
        assert_eq!(BitsConfig::W4A8.weight_range(), (-7, 7));
        assert_eq!(BitsConfig::W6A6.act_range(), (0, 63));
    }

    #[test]
    fn p8_configurations_widen_only_the_probabilities() {
        use crate::quant::Node;
        for b in BitsConfig::SUPPORTED {
            assert_eq!(BitsConfig::parse(b.name()), Some(b));
            assert_eq!(BitsConfig::parse(&b.name().to_uppercase()), Some(b));
            for n in Node::ALL {
                let want = if n == Node::Probs {
                    b.probs_bits()
                } else {
                    b.act_bits()
                };
                assert_eq!(b.node_bits(n), want, "{} {}", b, n.name());
            }
        }
        let p8 = BitsConfig::W6A6P8;
        assert_eq!(
            (p8.weight_bits(), p8.act_bits(), p8.probs_bits()),
            (6, 6, 8)
        );
        assert_eq!(p8.node_range(Node::Probs), (0, 255));
        assert_eq!(p8.node_range(Node::Context), (0, 63));
        assert_eq!(BitsConfig::W4A4P8.node_range(Node::Gelu), (0, 15));
        assert_eq!(BitsConfig::W6A6.node_range(Node::Probs), (0, 63));
        assert_eq!(BitsConfig::parse("w5a5"), None);
        assert_eq!(
            BitsConfig::names(),
            "w8a8, w6a6, w4a8, w4a4, w6a6p8, w4a4p8"
        );
    }
}
