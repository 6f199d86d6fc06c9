//! Every BERT-family architecture through the whole pipeline: calibrate (MinMax, OS, OS+) the
//! tiny transformers-made fixture of `tests/fixtures/families/`, save, load, embed on the integer
//! engine and verify: the integer codes equal the deploy-mode reference on every ISA this CPU
//! has, the paper-mode per-step agreement is ≥ 99.99 % with every difference ±1, and the
//! embeddings stay close to FP32.

mod common;

use std::path::{Path, PathBuf};

use osq::{Bits, CalibOptions, Method, VerifyOptions};
use osq_model::testing::temp_dir;
use osq_model::Family;

fn fixture(f: Family) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/families")
        .join(f.model_type())
}

#[test]
fn every_family_calibrates_and_verifies_bit_exact() {
    let dir = temp_dir("families").unwrap();
    let texts = common::family_sentences();
    let data = dir.join("data.txt");
    std::fs::write(&data, texts.join("\n")).unwrap();
    let mut rows = Vec::new();
    for family in Family::ALL {
        for (method, bits) in [
            (Method::MinMax, Bits::W8A8),
            (Method::Os, Bits::W6A6),
            (Method::OsPlus, Bits::W4A8),
        ] {
            let out = dir.join(format!("{}-{method:?}-{bits:?}", family.model_type()));
            let opts = CalibOptions {
                method,
                bits,
                samples: 64,
                threads: 2,
                ..Default::default()
            };
            osq::calibrate(fixture(family), &data, &opts)
                .and_then(|c| c.save(&out))
                .unwrap_or_else(|e| panic!("{family:?} {method:?} {bits:?}: {e}"));
            let model = osq::Model::load(&out).unwrap();
            let vo = VerifyOptions {
                fp32_model: Some(fixture(family)),
                ..Default::default()
            };
            let r = model.verify(&texts, &vo).unwrap();
            let label = format!("{family:?} {method:?} {bits:?}");
            assert!(r.bit_exact(), "{label}: {}", r.to_text());
            assert!(
                r.isas.len() >= 2,
                "{label}: scalar and at least one SIMD ISA"
            );
            let ps = r.paper_per_step.total();
            assert!(ps.total > 10_000, "{label}: {} codes", ps.total);
            assert!(
                ps.percent_equal() >= 99.99,
                "{label}: per step {}",
                ps.percent_equal()
            );
            assert_eq!(ps.beyond_one, 0, "{label}: a per-step difference beyond ±1");
            let cos = r.fp32_cosines.iter().sum::<f64>() / r.fp32_cosines.len() as f64;
            assert!(cos > 0.8, "{label}: mean cosine to FP32 {cos}");
            let e = model.embed(&texts[..4]).unwrap();
            assert_eq!(e.dim(), 32);
            rows.push(format!(
                "{label:36} codes {:>9} per-step {:>8.4} % cos {cos:.4} ISAs {}",
                ps.total,
                ps.percent_equal(),
                r.isas.len()
            ));
        }
    }
    for r in &rows {
        println!("{r}");
    }
}

#[test]
fn unknown_model_type_names_it_and_the_supported_ones() {
    let dir = temp_dir("family-unknown").unwrap();
    let model = dir.join("m");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(Family::Bert).join(f), model.join(f)).unwrap();
    }
    let cfg = model.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["model_type"] = "deberta-v2".into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    let data = dir.join("d.txt");
    std::fs::write(&data, "a good film\n").unwrap();
    let e = osq::calibrate(&model, &data, &CalibOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("deberta-v2") && e.contains("\"mpnet\"") && e.contains("config.json"),
        "{e}"
    );
}
