//! `osq train-probe` / `osq eval` end to end on the tiny generated BERT, and their errors.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{osq, s};

use osq_eval::probe::{read_labelled_tsv, Probe};
use osq_model::fp32::{self, ThreadPool};
use osq_model::quant::integer::{IntOptions, IntegerModel};
use osq_model::quant::{format, minmax, BitsConfig, QuantModel, QuantParams};
use osq_model::testing::{
    temp_dir, write_tiny_bert, write_tiny_bert_with, SplitMix64, TinyBertOptions,
};
use osq_model::{BertWeights, Tokenizer};

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "osq failed\nstdout:\n{out}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "osq should have failed\nstdout:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Deterministic sentiment-like sentences over the tiny vocabulary: label 1 sentences contain
/// "good/great/love", label 0 ones "bad/hate/not".
fn synthetic_tsv(n: usize, seed: u64) -> String {
    let pos = ["good", "great", "love"];
    let neg = ["bad", "hate", "not"];
    let filler = [
        "the", "a", "movie", "film", "cat", "dog", "is", "was", "it", "this", "that", "on", "mat",
        "we", "they", "she", "he", "and",
    ];
    let mut r = SplitMix64::new(seed);
    let mut s = String::new();
    for i in 0..n {
        let label = i % 2;
        let mut words: Vec<&str> = Vec::new();
        let k = (r.next_u64() % 3) as usize;
        for _ in 0..k {
            words.push(filler[(r.next_u64() % filler.len() as u64) as usize]);
        }
        let key = if label == 1 { &pos } else { &neg };
        for _ in 0..3 {
            let at = (r.next_u64() % (words.len() as u64 + 1)) as usize;
            words.insert(at, key[(r.next_u64() % key.len() as u64) as usize]);
        }
        s.push_str(&format!("{label}\t{}\n", words.join(" ")));
    }
    s
}

struct Setup {
    dir: osq_model::testing::TestDir,
    model: PathBuf,
    train: PathBuf,
    test: PathBuf,
    probe: PathBuf,
}

fn quantize_to(model: &Path, calib: &[&str], bits: BitsConfig, out: &Path) {
    let w = BertWeights::load_dir(model).unwrap();
    let tok = Tokenizer::from_file(&model.join("tokenizer.json"), 64).unwrap();
    let b = tok.encode_batch(calib, 64).unwrap();
    let ranges = minmax::collect(&w, &[b], &ThreadPool::single(), true).unwrap();
    let p = QuantParams::build(&w, &ranges, bits, "minmax", true).unwrap();
    format::save(&p, out, Some(model)).unwrap();
}

fn setup(tag: &str) -> Setup {
    let dir = temp_dir(tag).unwrap();
    let model = dir.join("model");
    write_tiny_bert(&model, 3).unwrap();
    let train = dir.join("train.tsv");
    let test = dir.join("test.tsv");
    std::fs::write(&train, synthetic_tsv(240, 1)).unwrap();
    std::fs::write(&test, synthetic_tsv(60, 2)).unwrap();
    let probe = dir.join("probe.json");
    Setup {
        dir,
        model,
        train,
        test,
        probe,
    }
}

fn train_probe(st: &Setup) -> String {
    ok(&osq(&[
        "train-probe",
        "--model",
        s(&st.model),
        "--train",
        s(&st.train),
        "-o",
        s(&st.probe),
        "--l2",
        "1e-7",
        "--threads",
        "1",
    ]))
}

fn train_accuracy(out: &str) -> f64 {
    let l = out
        .lines()
        .find(|l| l.starts_with("train accuracy:"))
        .unwrap_or_else(|| panic!("no train accuracy in\n{out}"));
    l.trim_start_matches("train accuracy:")
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn end_to_end_tiny() {
    let st = setup("cli-eval-e2e");
    let out = train_probe(&st);
    let acc = train_accuracy(&out);
    // A random tiny encoder separates the classes only partly (chance is 50 %).
    assert!(acc >= 75.0, "train accuracy {acc}\n{out}");
    // Deterministic: a second run writes the identical file.
    let first = std::fs::read(&st.probe).unwrap();
    train_probe(&st);
    assert_eq!(first, std::fs::read(&st.probe).unwrap());

    let calib: Vec<String> = synthetic_tsv(32, 9)
        .lines()
        .map(|l| l.split_once('\t').unwrap().1.to_string())
        .collect();
    let calib: Vec<&str> = calib.iter().map(|s| s.as_str()).collect();
    let p8 = st.dir.join("p8");
    let p4 = st.dir.join("p4");
    quantize_to(&st.model, &calib, BitsConfig::W8A8, &p8);
    quantize_to(&st.model, &calib, BitsConfig::W4A4, &p4);
    let json = st.dir.join("eval.json");
    let md = st.dir.join("table.md");
    let params = format!("{},{}", s(&p8), s(&p4));
    let out = ok(&osq(&[
        "eval",
        "--model",
        s(&st.model),
        "--params",
        &params,
        "--probe",
        s(&st.probe),
        "--test",
        s(&st.test),
        "--report",
        s(&json),
        "--markdown",
        s(&md),
        "--threads",
        "2",
    ]));
    assert!(out.contains("| FP32 |"), "{out}");
    assert!(
        out.contains("| W8A8 |") && out.contains("| W4A4 |"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&md).unwrap().trim(), out.trim());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["n"], 60);
    assert_eq!(v["executor"], "integer");
    let fp = v["fp32"]["accuracy"].as_f64().unwrap();
    assert!(fp > 0.6, "{v}");
    let rs = v["results"].as_array().unwrap();
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0]["bits"], "w8a8");
    assert_eq!(rs[0]["method"], "minmax");
    assert_eq!(rs[1]["bits"], "w4a4");
    let cos8 = rs[0]["mean_cosine"].as_f64().unwrap();
    let cos4 = rs[1]["mean_cosine"].as_f64().unwrap();
    assert!(cos8 > 0.98 && cos8 <= 1.0 + 1e-9, "{v}");
    assert!(cos4 < cos8, "{v}");
    let agree = |r: &serde_json::Value| r["agreement_with_fp32"].as_f64().unwrap();
    assert!(agree(&rs[0]) > agree(&rs[1]), "{v}");
    // The CLI's numbers equal a direct computation with the library: integer executor
    // embeddings of the test texts, the probe loaded from its file.
    let examples = read_labelled_tsv(&st.test).unwrap();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let probe = Probe::load(&st.probe).unwrap();
    let w = BertWeights::load_dir(&st.model).unwrap();
    let tok = Tokenizer::from_file(&st.model.join("tokenizer.json"), 64).unwrap();
    let batch = tok.encode_batch(&texts, 128).unwrap();
    let acc_of = |e: &[f32]| {
        let ok = probe
            .predict_all(e)
            .iter()
            .zip(&examples)
            .filter(|(p, x)| **p == x.label)
            .count();
        ok as f64 / examples.len() as f64
    };
    let e32 = fp32::sentence_embeddings(&w, &batch, &ThreadPool::single()).unwrap();
    assert!((acc_of(&e32) - fp).abs() <= 1.0 / 60.0 + 1e-12, "{v}");
    for (r, d) in rs.iter().zip([&p8, &p4]) {
        let im = IntegerModel::new(QuantModel::new(format::load(d).unwrap()).unwrap()).unwrap();
        let e = im.embed(&batch, &IntOptions::default()).unwrap();
        assert_eq!(acc_of(&e), r["accuracy"].as_f64().unwrap(), "{v}");
    }
    for r in rs {
        let a = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
        let d = r["delta_points"].as_f64().unwrap();
        assert!((d - 100.0 * (a - fp)).abs() < 1e-9);
        let (g, l) = (
            r["gained_vs_fp32"].as_f64().unwrap(),
            r["lost_vs_fp32"].as_f64().unwrap(),
        );
        assert!((a - fp - (g - l) / 60.0).abs() < 1e-9, "{r}");
    }

    // FP32 accuracy of eval on the training file equals train-probe's train accuracy.
    let out = ok(&osq(&[
        "eval",
        "--model",
        s(&st.model),
        "--probe",
        s(&st.probe),
        "--test",
        s(&st.train),
        "--report",
        s(&json),
        "-q",
    ]));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let fp = v["fp32"]["accuracy"].as_f64().unwrap();
    assert!((100.0 * fp - acc).abs() < 0.006, "{fp} vs {acc}\n{out}");
    assert_eq!(v["results"].as_array().unwrap().len(), 0);
    std::fs::remove_dir_all(&st.dir).ok();
}

#[test]
fn errors_are_clear() {
    let st = setup("cli-eval-err");
    train_probe(&st);
    let eval = |test: &Path, extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--model",
            s(&st.model),
            "--probe",
            s(&st.probe),
            "--test",
            s(test),
            "-q",
        ];
        a.extend_from_slice(extra);
        osq(&a)
    };

    // Malformed TSV: line number named.
    let bad = st.dir.join("bad.tsv");
    std::fs::write(&bad, "1\tgood film\n0\tbad film\nthis line has no label\n").unwrap();
    let e = fails(&eval(&bad, &[]));
    assert!(e.contains("bad.tsv:3") && e.contains("TAB"), "{e}");
    std::fs::write(&bad, "1\tgood film\n5\tbad film\n").unwrap();
    let e = fails(&eval(&bad, &[]));
    assert!(e.contains("bad.tsv:2") && e.contains("0 or 1"), "{e}");
    // Empty file.
    let empty = st.dir.join("empty.tsv");
    std::fs::write(&empty, "").unwrap();
    let e = fails(&eval(&empty, &[]));
    assert!(
        e.contains("empty.tsv") && e.contains("no labelled lines"),
        "{e}"
    );
    // Missing file.
    let e = fails(&eval(&st.dir.join("nope.tsv"), &[]));
    assert!(e.contains("nope.tsv"), "{e}");
    // Training on an empty / one-class file.
    let one = st.dir.join("one.tsv");
    std::fs::write(&one, "1\tgood\n1\tgreat\n").unwrap();
    let e = fails(&osq(&[
        "train-probe",
        "--model",
        s(&st.model),
        "--train",
        s(&one),
        "-o",
        s(&st.dir.join("p.json")),
    ]));
    assert!(e.contains("both classes"), "{e}");

    // Parameters of another model (same architecture, other weights).
    let other = st.dir.join("other");
    write_tiny_bert(&other, 4).unwrap();
    let po = st.dir.join("params-other");
    quantize_to(
        &other,
        &["the good movie", "a bad film"],
        BitsConfig::W8A8,
        &po,
    );
    let e = fails(&eval(&st.test, &["--params", s(&po)]));
    assert!(e.contains("not made from this model"), "{e}");
    // Parameters of another architecture.
    let wide = st.dir.join("wide");
    write_tiny_bert_with(
        &wide,
        &TinyBertOptions {
            seed: 3,
            hidden_size: 48,
            num_attention_heads: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let pw = st.dir.join("params-wide");
    quantize_to(
        &wide,
        &["the good movie", "a bad film"],
        BitsConfig::W8A8,
        &pw,
    );
    let e = fails(&eval(&st.test, &["--params", s(&pw)]));
    assert!(e.contains("hidden_size"), "{e}");
    // Not a parameter directory.
    let e = fails(&eval(&st.test, &["--params", s(&st.dir)]));
    assert!(e.contains("quant.json"), "{e}");
    // Probe of another model: fingerprint, then dimension.
    let e = fails(&osq(&[
        "eval",
        "--model",
        s(&other),
        "--probe",
        s(&st.probe),
        "--test",
        s(&st.test),
    ]));
    assert!(e.contains("another model"), "{e}");
    let e = fails(&osq(&[
        "eval",
        "--model",
        s(&wide),
        "--probe",
        s(&st.probe),
        "--test",
        s(&st.test),
    ]));
    assert!(e.contains("dimension 32") && e.contains("48"), "{e}");
    // Not a probe file.
    let notp = st.dir.join("notprobe.json");
    std::fs::write(&notp, "{\"format\": \"something\"}").unwrap();
    let e = fails(&osq(&[
        "eval",
        "--model",
        s(&st.model),
        "--probe",
        s(&notp),
        "--test",
        s(&st.test),
    ]));
    assert!(e.contains("notprobe.json") && e.contains("format"), "{e}");
    std::fs::remove_dir_all(&st.dir).ok();
}
