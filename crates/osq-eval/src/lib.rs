//! osq-eval: does the deployed integer model keep the FP32 model's accuracy? A logistic-regression
//! probe trained once on FP32 sentence embeddings ([`probe`]) scores the integer engine's
//! embeddings of each parameter set on held-out labelled data ([`embed`]), tabulated as the
//! OS paper's Table 4 ([`table`]). docs/eval.md has the method and the measured tables.

pub mod embed;
pub mod head;
pub mod probe;
pub mod table;
