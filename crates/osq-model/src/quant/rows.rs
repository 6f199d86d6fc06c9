//! The integer executor's per-row steps on `osq_kernels::rowops`, with the definitions of
//! [`super::nonlin`] / [`super::graph`] as fallback. The fast forms are exact only inside bounds
//! (see each rowops module); their constants are built here from the definitions' constants, a
//! constructor that rejects a layer's constants leaves `None` (the definition runs), and a row
//! the fast form cannot take (LayerNorm) or an input outside the GELU table falls back per
//! row / per element. Tests: `rows_tests.rs` (each ISA path vs the definitions).

use osq_kernels::rowops::{self, CodeRequant, GeluLut, LayerNorm, Residual, Softmax};
use osq_kernels::Isa;

use super::graph::{LayerDerived, LinDerived, CODE_FRAC_BITS};
use super::nonlin::{exp2_tables, sat_i32, GeluTable, LayerNormInt, SignedMul, SoftmaxInt};

/// GELU bucket width (log2, fixed-point units) and range `[GELU_LO, GELU_HI)` of the table.
pub const GELU_SHIFT: u32 = 11;
pub const GELU_LO: i64 = -(1 << 23);
pub const GELU_HI: i64 = 1 << 23;

/// The bucket table of one GELU node (see `rowops::gelu`): a bucket on one monotone side of
/// `h_star` holding a constant code or one change point gets an entry (checked against
/// [`GeluTable::code`] at both ends and around the change point); others fall back. `bias`: the
/// FFN1 fixed-point bias added before the table.
pub fn gelu_lut(t: &GeluTable, bias: &[i64]) -> Option<GeluLut> {
    let n = ((GELU_HI - GELU_LO) >> GELU_SHIFT) as usize;
    let w = 1i64 << GELU_SHIFT;
    let code = |h: i64| t.code(h as i32);
    let entries = (0..n)
        .map(|b| {
            let first = GELU_LO + b as i64 * w;
            let last = first + w - 1;
            if !(last < t.h_star || first >= t.h_star) {
                return rowops::gelu_fallback();
            }
            // Monotone on the bucket: the inputs with code(last) form a suffix.
            let (cf, cl) = (code(first), code(last));
            if cf == cl {
                return GeluLut::entry(w as u32, cf, cf);
            }
            let (mut lo, mut hi) = (first, last); // code(lo) != cl, code(hi) == cl
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if code(mid) == cl {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            // Monotone: code(first) = code(hi − 1) means one change point, at hi.
            if code(hi - 1) == cf {
                GeluLut::entry((hi - first) as u32, cf, cl)
            } else {
                rowops::gelu_fallback()
            }
        })
        .collect();
    GeluLut::new(entries, GELU_LO, GELU_SHIFT, bias)
}

/// Fast forms of one layer's row steps (`None`: the definition runs).
pub struct LayerRows {
    pub query: Option<CodeRequant>,
    pub key: Option<CodeRequant>,
    pub value: Option<CodeRequant>,
    pub softmax: Option<Softmax>,
    pub attn_res: Option<Residual>,
    pub attn_ln: Option<LayerNorm>,
    pub gelu: Option<GeluLut>,
    pub ffn_res: Option<Residual>,
    pub ffn_ln: Option<LayerNorm>,
}

fn code_requant(lin: &LinDerived) -> Option<CodeRequant> {
    let q = lin.codes.as_ref()?;
    CodeRequant::new(&lin.bias, CODE_FRAC_BITS, q.zero_point, q.qmin, q.qmax)
}

fn softmax(s: &SoftmaxInt) -> Option<Softmax> {
    let (hi, lo) = exp2_tables();
    Softmax::new(
        (s.c_q20.m0, s.c_q20.shift),
        (s.log2e.m0, s.log2e.shift),
        s.a,
        s.z_out,
        s.qmax,
        hi,
        lo,
    )
}

fn residual(sc: &[SignedMul], lin: &LinDerived) -> Option<Residual> {
    let m0: Vec<i64> = sc.iter().map(|s| s.mul.m0).collect();
    let sh: Vec<u32> = sc.iter().map(|s| s.mul.shift).collect();
    let neg: Vec<bool> = sc.iter().map(|s| s.negative).collect();
    Residual::new(&m0, &sh, &neg, &lin.bias)
}

/// A LayerNorm's fast form (non-scaling, or scaling with `|Γ_j| < 2^31`).
pub fn layer_norm(ln: &LayerNormInt) -> Option<LayerNorm> {
    LayerNorm::new(ln.e, ln.a, &ln.c, ln.gamma.as_deref(), ln.qmin, ln.qmax)
}

impl LayerRows {
    pub fn new(ld: &LayerDerived) -> LayerRows {
        LayerRows {
            query: code_requant(&ld.query),
            key: code_requant(&ld.key),
            value: code_requant(&ld.value),
            softmax: softmax(&ld.softmax),
            attn_res: residual(&ld.attn_shortcut, &ld.attn_out),
            attn_ln: layer_norm(&ld.attn_ln),
            gelu: gelu_lut(&ld.gelu, &ld.ffn1.bias),
            ffn_res: residual(&ld.ffn_shortcut, &ld.ffn2),
            ffn_ln: layer_norm(&ld.ffn_ln),
        }
    }
}

/// `out_j = lin.code(y_j, j)`.
pub fn codes_row(
    isa: Isa,
    lin: &LinDerived,
    fast: Option<&CodeRequant>,
    y: &[i32],
    out: &mut [u8],
) {
    match fast {
        Some(f) => f.row(isa, y, out),
        None => {
            for (j, (o, &v)) in out.iter_mut().zip(y).enumerate() {
                *o = lin.code(v, j);
            }
        }
    }
}

/// `SoftmaxInt::row`; `e` / `e64` scratch of the row's length.
pub fn softmax_row(
    isa: Isa,
    def: &SoftmaxInt,
    fast: Option<&Softmax>,
    scores: &[i32],
    e: &mut [u32],
    e64: &mut [i64],
    out: &mut [u8],
) {
    match fast {
        Some(f) => f.row(isa, scores, e, out),
        None => def.row(scores, &mut e64[..scores.len()], out),
    }
}

/// `r_j = sat_i32(lin.fixed(y_j, j) + sc_j(x_j − z))`.
#[allow(clippy::too_many_arguments)]
pub fn residual_row(
    isa: Isa,
    lin: &LinDerived,
    sc: &[SignedMul],
    fast: Option<&Residual>,
    y: &[i32],
    x: &[u8],
    z: u8,
    r: &mut [i32],
) {
    match fast {
        Some(f) => f.row(isa, y, x, z, r),
        None => {
            for j in 0..r.len() {
                r[j] = sat_i32(lin.fixed(y[j], j) + sc[j].apply(x[j] as i64 - z as i64));
            }
        }
    }
}

/// `LayerNormInt::row`.
pub fn ln_row(isa: Isa, def: &LayerNormInt, fast: Option<&LayerNorm>, r: &[i32], out: &mut [u8]) {
    if !fast.is_some_and(|f| f.row(isa, r, out)) {
        def.row(r, out);
    }
}

/// `out_j = t.code(sat_i32(lin.fixed(y_j, j)))`.
pub fn gelu_row(
    isa: Isa,
    t: &GeluTable,
    lin: &LinDerived,
    fast: Option<&GeluLut>,
    y: &[i32],
    out: &mut [u8],
) {
    match fast.filter(|f| f.n() == y.len()) {
        Some(f) => f.row(isa, y, out, &|h| t.code(h)),
        None => {
            for (j, (o, &v)) in out.iter_mut().zip(y).enumerate() {
                *o = t.code(sat_i32(lin.fixed(v, j)));
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn softmax_for_tests(s: &SoftmaxInt) -> Option<Softmax> {
    softmax(s)
}
#[cfg(test)]
pub(crate) fn residual_for_tests(sc: &[SignedMul], lin: &LinDerived) -> Option<Residual> {
    residual(sc, lin)
}
#[cfg(test)]
pub(crate) fn code_requant_for_tests(lin: &LinDerived) -> Option<CodeRequant> {
    code_requant(lin)
}
