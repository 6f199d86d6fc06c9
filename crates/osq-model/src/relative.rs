//! MPNet's relative position bias: which bucket a key at distance `j − i` falls in.
//!
//! The bucket function is Hugging Face's `MPNetAttention.relative_position_bucket` (T5's
//! bidirectional buckets): exact distances below `buckets/4`, logarithmic bins up to
//! [`MPNET_MAX_DISTANCE`], one bucket half per direction. Its logarithm is evaluated in `f32`
//! as PyTorch does, so boundary distances (16, 32, 64) land in the same bucket.
//! Both the FP32 forward and the integer engine take the bucket from here.

use crate::config::MPNET_MAX_DISTANCE;

/// Bucket of the relative position `rel = key − query` among `num_buckets` (even).
pub fn bucket(rel: i64, num_buckets: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -rel;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        // torch: max_exact + (log(n / max_exact) / log(max_distance / max_exact)
        //        · (half − max_exact)).to(long), in float32, capped at half − 1
        let ratio = n as f32 / max_exact as f32;
        let denom = (MPNET_MAX_DISTANCE as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + ((ratio.ln() / denom) * (half - max_exact) as f32) as i64;
        ret += large.min(half - 1);
    }
    ret as usize
}

/// MPNet's relative position bias, head-major: `per_head` is `[heads, buckets]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelativeBiasTable {
    pub per_head: Vec<f32>,
    pub buckets: usize,
}

impl RelativeBiasTable {
    /// From the checkpoint's `[buckets, heads]` layout.
    pub fn from_bucket_major(b: &[f32], buckets: usize, heads: usize) -> RelativeBiasTable {
        let mut per_head = vec![0.0f32; heads * buckets];
        for k in 0..buckets {
            for h in 0..heads {
                per_head[h * buckets + k] = b[k * heads + h];
            }
        }
        RelativeBiasTable { per_head, buckets }
    }

    /// The bias of head `h`, indexed by bucket.
    pub fn head(&self, h: usize) -> &[f32] {
        &self.per_head[h * self.buckets..(h + 1) * self.buckets]
    }
}

/// Buckets of every relative position of sequences of up to `len` tokens: entry
/// `(j − i) + len − 1` holds the bucket of key `j` for query `i`.
pub fn bucket_table(len: usize, num_buckets: usize) -> Vec<usize> {
    let l = len as i64;
    (-(l - 1).max(0)..l)
        .map(|r| bucket(r, num_buckets))
        .collect()
}

/// Index in a [`bucket_table`] of relative position 0.
fn center<T>(table: &[T]) -> usize {
    table.len() / 2
}

/// Adds the per-head bias of each key to one query row of float scores: `bias` is `[buckets]`
/// for this head, `table` from [`bucket_table`] for at least `scores.len()` tokens.
pub fn add_bias_row_f32(scores: &mut [f32], i: usize, table: &[usize], bias: &[f32]) {
    let c = center(table);
    for (j, s) in scores.iter_mut().enumerate() {
        *s += bias[table[c + j - i]];
    }
}

/// The integer form: one query row of `Q·Kᵀ` sums becomes `(acc << shift) + units[bucket]`,
/// scores at `c/2^shift` (see `LayerDerived::rel_bias`); the caller bounds both terms so the sum
/// stays below 2^30 in magnitude.
pub fn add_bias_row_i32(scores: &mut [i32], i: usize, table: &[usize], units: &[i32], shift: u32) {
    let c = center(table);
    for (j, s) in scores.iter_mut().enumerate() {
        *s = (*s << shift) + units[table[c + j - i]];
    }
}

/// One head's integer bias by relative offset, `units[table[r]]` for every entry of `table`: the
/// fast form of [`add_bias_row_i32`] reads a contiguous slice of it per row (no per-element
/// bucket lookup), so the row loop vectorizes. Same sums.
pub fn units_by_offset(table: &[usize], units: &[i32]) -> Vec<i32> {
    table.iter().map(|&b| units[b]).collect()
}

/// [`add_bias_row_i32`] with the bias already resolved by offset ([`units_by_offset`]).
pub fn add_bias_row_i32_by_offset(scores: &mut [i32], i: usize, by_offset: &[i32], shift: u32) {
    let start = center(by_offset) - i;
    let bias = &by_offset[start..start + scores.len()];
    for (s, &u) in scores.iter_mut().zip(bias) {
        *s = (*s << shift) + u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The by-offset form adds the same bias as the definition on every row of every length.
    #[test]
    fn bias_by_offset_equals_the_definition() {
        let units: Vec<i32> = (0..32).map(|b| b * 37 - 500).collect();
        for l in [1usize, 2, 5, 17, 130] {
            let t = bucket_table(l, 32);
            let by = units_by_offset(&t, &units);
            for i in 0..l {
                let row: Vec<i32> = (0..l as i32).map(|j| j * 1001 - 7000).collect();
                let (mut a, mut b) = (row.clone(), row);
                add_bias_row_i32(&mut a, i, &t, &units, 3);
                add_bias_row_i32_by_offset(&mut b, i, &by, 3);
                assert_eq!(a, b, "l {l} row {i}");
            }
        }
    }

    #[test]
    fn buckets_match_huggingface() {
        // torch's relative_position_bucket(arange(-200, 201)) with 32 buckets, max_distance 128:
        // exact 0..7 for keys before the query, +16 for keys after, log bins 8..15 up to 128.
        assert_eq!(bucket(0, 32), 0);
        assert_eq!(bucket(-1, 32), 1);
        assert_eq!(bucket(-7, 32), 7);
        assert_eq!(bucket(1, 32), 17);
        assert_eq!(bucket(7, 32), 23);
        assert_eq!(bucket(-8, 32), 8);
        assert_eq!(bucket(-16, 32), 10);
        assert_eq!(bucket(-32, 32), 12);
        assert_eq!(bucket(-64, 32), 14);
        assert_eq!(bucket(-127, 32), 15);
        assert_eq!(bucket(-500, 32), 15);
        assert_eq!(bucket(500, 32), 31);
        let t = bucket_table(3, 32);
        assert_eq!(t, vec![bucket(-2, 32), bucket(-1, 32), 0, 17, 18]);
        let mut row = [10i32, 20, 30];
        let bias: Vec<i32> = (0..32).collect();
        add_bias_row_i32(&mut row, 1, &t, &bias, 2);
        assert_eq!(row, [40 + 1, 80, 120 + 17]);
        let mut row = [1.0f32, 2.0, 3.0];
        let bias: Vec<f32> = (0..32).map(|b| b as f32).collect();
        add_bias_row_f32(&mut row, 1, &t, &bias);
        assert_eq!(row, [2.0, 2.0, 20.0]);
        // a table built for longer sequences serves shorter ones
        let long = bucket_table(9, 32);
        let mut row = [1.0f32, 2.0, 3.0];
        add_bias_row_f32(&mut row, 1, &long, &bias);
        assert_eq!(row, [2.0, 2.0, 20.0]);
        let t = RelativeBiasTable::from_bucket_major(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2);
        assert_eq!(t.per_head, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(t.head(1), &[2.0, 4.0, 6.0]);
    }
}
