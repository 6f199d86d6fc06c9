//! Every family × task head (single-label, multi-label, regression, token classification) of
//! `tests/fixtures/heads/` through the whole pipeline: calibrate (MinMax W8A8, OS W6A6, OS+
//! W4A8), save, load, verify — the classifier-input codes and the logits of the integer engine
//! equal the deploy reference bit for bit on every ISA this CPU has, the paper-mode per-step
//! agreement stays ≥ 99.99 % with every difference ±1 — and `Model::classify` answers with the
//! checkpoint's labels, mostly FP32's top label.

mod common;

use std::path::{Path, PathBuf};

use osq::{Bits, CalibOptions, Method, VerifyOptions};
use osq_model::testing::temp_dir;
use osq_model::Family;

fn fixture(f: Family, task: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/heads")
        .join(format!("{}-{task}", f.model_type()))
}

#[test]
fn every_family_and_head_verifies_bit_exact_up_to_the_logits() {
    let dir = temp_dir("heads").unwrap();
    let texts = common::family_sentences();
    let data = dir.join("data.txt");
    std::fs::write(&data, texts.join("\n")).unwrap();
    let mut rows = Vec::new();
    for family in Family::ALL {
        for (ti, task) in ["single", "multi", "regression", "token"]
            .iter()
            .enumerate()
        {
            // every method on every task across the families, without 72 calibrations
            let runs = [
                (Method::MinMax, Bits::W8A8),
                [(Method::Os, Bits::W6A6), (Method::OsPlus, Bits::W4A8)][ti % 2],
            ];
            for (method, bits) in runs {
                let label = format!("{family:?} {task} {method:?} {bits:?}");
                let out = dir.join(label.replace(' ', "-"));
                let opts = CalibOptions {
                    method,
                    bits,
                    samples: 64,
                    threads: 2,
                    ..Default::default()
                };
                osq::calibrate(fixture(family, task), &data, &opts)
                    .and_then(|c| c.save(&out))
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let model = osq::Model::load(&out).unwrap();
                let (t, labels) = model.head().unwrap_or_else(|| panic!("{label}: no head"));
                let want_task = match *task {
                    "single" => "single_label_classification",
                    "multi" => "multi_label_classification",
                    "regression" => "regression",
                    _ => "token_classification",
                };
                assert_eq!(t, want_task, "{label}");
                if *task == "single" {
                    assert_eq!(labels, ["negative", "neutral", "positive"], "{label}");
                }
                let vo = VerifyOptions {
                    fp32_model: Some(fixture(family, task)),
                    ..Default::default()
                };
                let r = model.verify(&texts, &vo).unwrap();
                assert!(r.bit_exact(), "{label}: {}", r.to_text());
                assert!(r.isas.len() >= 2, "{label}: scalar and a SIMD ISA");
                for i in &r.isas {
                    assert!(i.logits.total > 0, "{label}: no logits compared");
                    assert_eq!(i.logits.equal, i.logits.total, "{label} {:?}", i.isa);
                }
                let per_seq = *task != "token";
                if per_seq {
                    assert_eq!(
                        r.deploy.head.total,
                        (texts.len() * 32 * r.isas.len()) as u64
                    );
                    assert_eq!(r.deploy.head.equal, r.deploy.head.total, "{label}");
                }
                let ps = r.paper_per_step.total();
                assert!(
                    ps.percent_equal() >= 99.99,
                    "{label}: per step {}",
                    ps.percent_equal()
                );
                assert_eq!(ps.beyond_one, 0, "{label}: a per-step difference beyond ±1");
                let hv = r.head_vs_fp32.clone().expect("FP32 head compared");
                let agree = hv.same_label as f64 / hv.rows as f64;
                if *task != "regression" {
                    assert!(agree >= 0.6, "{label}: same label as FP32 on {agree}");
                }
                let p = model.classify(&texts[..3]).unwrap();
                assert_eq!(p.len(), 3);
                if *task == "token" {
                    assert!(!p[0].tokens.is_empty(), "{label}");
                }
                rows.push(format!(
                    "{label:40} head codes {:>6} logits {:>6} equal; per-step {:>8.4} %; same label {:>5.1} %, max |Δlogit| {:.3}",
                    r.deploy.head.total,
                    r.deploy.logits.total,
                    ps.percent_equal(),
                    100.0 * agree,
                    hv.max_abs_diff
                ));
            }
        }
    }
    for r in &rows {
        println!("{r}");
    }
}

#[test]
fn an_embedding_model_has_no_head_to_classify_with() {
    let model = osq::Model::load(osq_model::testing::doc_params_dir()).unwrap();
    assert!(model.head().is_some(), "the doc model is a classifier");
    let dir = temp_dir("nohead").unwrap();
    let data = dir.join("d.txt");
    std::fs::write(&data, common::family_sentences().join("\n")).unwrap();
    let fam = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families/bert");
    let out = dir.join("p");
    osq::calibrate(&fam, &data, &CalibOptions::default())
        .and_then(|c| c.save(&out))
        .unwrap();
    let m = osq::Model::load(&out).unwrap();
    assert!(m.head().is_none());
    let e = m.classify(&["a film"]).unwrap_err().to_string();
    assert!(e.contains("no task head"), "{e}");
}
