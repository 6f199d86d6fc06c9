//! The row bodies compiled with AVX-512 (F/BW/DQ/VL) or AVX2 enabled: same source, same bits, LLVM
//! vectorizes them for the enabled features. Callers check the features (`rowops::path`).

use super::{emb::emb_body, CodeRequant, GeluLut, LayerNorm, Residual, Softmax};

macro_rules! compiled {
    ($avx512:ident, $avx2:ident, ($($a:ident: $t:ty),*) -> $r:ty, $body:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,bmi2")]
        pub(super) unsafe fn $avx512($($a: $t),*) -> $r {
            $body
        }
        #[target_feature(enable = "avx2,bmi2")]
        pub(super) unsafe fn $avx2($($a: $t),*) -> $r {
            $body
        }
    };
}

compiled!(_softmax_avx512, softmax_avx2, (s: &Softmax, t: &[i32], e: &mut [u32], o: &mut [u8]) -> (), s.body(t, e, o));
compiled!(ln_avx512, ln_avx2, (l: &LayerNorm, r: &[i32], o: &mut [u8]) -> bool, l.body(r, o));
compiled!(residual_avx512, residual_avx2, (s: &Residual, y: &[i32], x: &[u8], z: u8, o: &mut [i32]) -> (), s.body(y, x, z, o));
compiled!(codes_avx512, codes_avx2, (c: &CodeRequant, y: &[i32], o: &mut [u8]) -> (), c.body(y, o));
compiled!(gelu_avx512, gelu_avx2, (g: &GeluLut, y: &[i32], b: &[i64], o: &mut [u8]) -> u32, g.body(y, b, o));
compiled!(emb_avx512, emb_avx2, (c: [&[i8]; 3], m: [(i64, u32, i64); 3], o: &mut [i32]) -> (), emb_body(c, m, o));
