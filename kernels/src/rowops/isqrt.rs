//! Exact `⌊√n⌋` for u128 (the fast form of [`super::definitions::isqrt_u128`]): an f64 estimate, one integer Newton step (which lands on ⌊√n⌋ or one
//! above), then a fix-up by comparing squares. Replaces a 64-step bit-by-bit loop per LayerNorm row.

/// `⌊√n⌋`, exactly.
#[inline]
pub fn isqrt_u128(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    // The estimate is within a relative 2^-50 of √n, so ≥ 1 here.
    let x0 = ((n as f64).sqrt() as u128).max(1);
    // Newton from any x > 0 gives x ≥ ⌊√n⌋ (AM-GM) and, from this close, at most ⌊√n⌋ + 1.
    let mut x = (x0 + n / x0) / 2;
    let sq_gt = |x: u128| x.checked_mul(x).is_none_or(|s| s > n);
    while sq_gt(x) {
        x -= 1;
    }
    while !sq_gt(x + 1) {
        x += 1;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::isqrt_u128;

    /// The definition (bit by bit, integer only) that the fast form must equal.
    use crate::rowops::definitions::isqrt_u128 as bitwise;

    #[test]
    fn equals_bitwise_on_edges_and_random() {
        let mut s = 0x9E37_79B9_7F4A_7C15u128;
        let mut vals = vec![0u128, 1, 2, 3, 4, u128::MAX, u128::MAX - 1, 1 << 127];
        for k in 1..128 {
            let p = 1u128 << k;
            vals.extend([p - 1, p, p + 1]);
            let r = bitwise(p);
            vals.extend([r * r, r * r - 1, (r + 1) * (r + 1) - 1]);
        }
        for _ in 0..20000 {
            s = s
                .wrapping_mul(0x2545_F491_4F6C_DD1D_2545_F491_4F6C_DD1D)
                .wrapping_add(1442695040888963407);
            let sh = (s >> 120) as u32 & 127;
            vals.push(s >> sh);
        }
        for n in vals {
            assert_eq!(isqrt_u128(n), bitwise(n), "n = {n}");
        }
    }
}
