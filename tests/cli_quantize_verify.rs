//! End-to-end CLI: `osq quantize` → `osq verify` → `osq run` on a tiny generated BERT, and clear
//! errors (non-zero exit, message naming the problem) on bad user input.

mod common;

use common::{model_data_out, osq, s, setup, text};

#[test]
fn quantize_verify_run() {
    let (_tmp, model, data) = setup("cli");
    for bits in ["w8a8", "w4a4"] {
        let out = model.parent().unwrap().join(format!("q-{bits}"));
        let o = osq(&[
            "quantize",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--bits",
            bits,
            "-o",
            s(&out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let report = out.parent().unwrap().join(format!("report-{bits}.json"));
        let o = osq(&[
            "verify",
            "--params",
            s(&out),
            "--data",
            s(&data),
            "--isa",
            "all",
            "--model",
            s(&model),
            "--report",
            s(&report),
        ]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("BIT-EXACT") && !t.contains("MISMATCH"), "{t}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(v["bit_exact"], true);
        assert_eq!(v["sentences"], 7);
        assert!(v["layers"].as_array().unwrap().len() == 2 * 9 - 1);
        let o = osq(&[
            "run",
            "--params",
            s(&out),
            "--embeddings",
            "the dog",
            "a great movie",
        ]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("[0]") && t.contains("[1]") && t.contains("norm 1.0000"),
            "{t}"
        );
        let o = osq(&[
            "run",
            "--params",
            s(&out),
            "--json",
            "--embeddings",
            "the dog",
        ]);
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v[0]["embedding"].as_array().unwrap().len(), 32);
        // the tiny model is a 2-way classifier: without --embeddings, its head answers
        let o = osq(&["run", "--params", s(&out), "--json", "the dog"]);
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v[0]["task"], "single_label_classification");
        let label = v[0]["label"].as_str().unwrap();
        assert!(label == "LABEL_0" || label == "LABEL_1", "{label}");
        let p = v[0]["score"].as_f64().unwrap();
        assert!((0.5..=1.0).contains(&p), "top softmax score {p}");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let (_tmp, model, data) = setup("cli");
    let dir = model.parent().unwrap().to_path_buf();
    let out = dir.join("q");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let o = osq(&[
        "quantize",
        "--model",
        s(&model),
        "--data",
        s(&empty),
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no sentences"), "{}", text(&o));

    let bin = dir.join("latin1.txt");
    std::fs::write(&bin, b"good movie\ncaf\xe9 au lait\n").unwrap();
    let o = osq(&[
        "quantize",
        "--model",
        s(&model),
        "--data",
        s(&bin),
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("UTF-8") && t.contains("line 2"), "{t}");

    let o = osq(&[
        "quantize",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--bits",
        "w3a3",
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("w3a3"));

    let o = osq(&[
        "quantize",
        "--model",
        s(&dir.join("nope")),
        "--data",
        s(&data),
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("config.json"), "{t}");
    // The OS error is named once, not repeated by the error chain.
    assert_eq!(t.matches("os error 2").count(), 1, "{t}");

    let o = osq(&[
        "verify",
        "--params",
        s(&dir.join("nope")),
        "--data",
        s(&data),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("quant.json"), "{}", text(&o));

    let o = osq(&model_data_out("quantize", &model, &data, &out));
    assert!(o.status.success(), "{}", text(&o));
    let o = osq(&[
        "verify",
        "--params",
        s(&out),
        "--data",
        s(&data),
        "--isa",
        "sparc",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("sparc"));
    let o = osq(&["run", "--params", s(&out)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no texts"));
    let o = osq(&[
        "verify",
        "--params",
        s(&out),
        "--data",
        s(&dir.join("missing.txt")),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("missing.txt"));
}
