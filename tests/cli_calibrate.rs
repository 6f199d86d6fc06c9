//! `osq calibrate` / `osq report` end to end on a tiny generated BERT: every method writes a
//! parameter directory that `osq verify` accepts as bit-exact, and bad user input gives a clear
//! error (exit 2, message naming the file / option / field, no panic).

mod common;

use std::path::Path;
use std::process::Output;

use common::{model_data_out, osq, s, setup, text, verify};

/// The command failed with exit 2 (bad input), an `osq: error:` line and no panic.
fn bad_input(o: &Output) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("error"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    t
}

#[test]
fn calibrate_methods_verify_bit_exact() {
    let (_tmp, model, data) = setup("cli-calib");
    let dir = model.parent().unwrap().to_path_buf();
    let cases: [(&str, &[&str]); 6] = [
        (
            "minmax-w8a8",
            &["--method", "minmax", "--no-gamma", "--bits", "w8a8"],
        ),
        (
            "omse-w6a6",
            &["--method", "omse", "--no-gamma", "--bits", "w6a6"],
        ),
        ("os-w6a6", &["--method", "os", "--bits", "w6a6", "--quiet"]),
        (
            "osplus-w4a8",
            &["--method", "os+", "--bits", "w4a8", "--quiet"],
        ),
        (
            "os-w6a6p8",
            &["--method", "os", "--bits", "w6a6p8", "--quiet"],
        ),
        (
            "omse-w4a4p8",
            &["--method", "omse", "--no-gamma", "--bits", "w4a4p8"],
        ),
    ];
    for (name, extra) in cases {
        let out = dir.join(name);
        let mut args = vec![
            "calibrate",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "-o",
            s(&out),
        ];
        args.extend_from_slice(extra);
        let o = osq(&args);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(text(&o).contains("output MSE"), "{name}: {}", text(&o));
        // calibration.json records what was done
        let rep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("calibration.json")).unwrap())
                .unwrap();
        let mse = rep["output_mse"].as_f64().unwrap();
        let mse_mm = rep["output_mse_minmax"].as_f64().unwrap();
        assert!(mse.is_finite() && mse >= 0.0, "{name}: {mse}");
        if name.starts_with("os") {
            // TWC never ends worse than the α = 1 start of its own search
            let c = &rep["coarse"];
            assert!(
                c["final_loss"].as_f64().unwrap() <= c["loss_alpha_one"].as_f64().unwrap() + 1e-12,
                "{name}: {c}"
            );
        }
        if name.starts_with("minmax") {
            assert_eq!(mse, mse_mm, "{name}");
            assert_eq!(rep["gamma_migration"], false, "{name}");
        }
        if let Some(bits) = name.strip_suffix("p8") {
            // the probabilities at 8 bits, every other node at the activation bits
            let q: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("quant.json")).unwrap())
                    .unwrap();
            let act_max = if bits.ends_with("a6") { 63 } else { 15 };
            assert_eq!(q["probs_bits"], 8, "{name}");
            for l in q["layers"].as_array().unwrap() {
                for (node, qp) in l["nodes"].as_object().unwrap() {
                    let want = if node == "probs" { 255 } else { act_max };
                    assert_eq!(qp["qmax"], want, "{name} {node}");
                }
            }
            let o = verify(&out, &data, "all");
            assert!(o.status.success(), "{name}: verify: {}", text(&o));
            continue;
        }
        let o = verify(&out, &data, "scalar");
        assert!(o.status.success(), "{name}: verify: {}", text(&o));
    }
}

#[test]
fn report_writes_table_and_figure() {
    let (_tmp, model, data) = setup("cli-report");
    let out = model.parent().unwrap().join("report");
    let o = osq(&model_data_out("report", &model, &data, &out));
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("table1.md")).unwrap();
    // a well-formed Markdown table: one row per LayerNorm (embedding LN + 2 per layer), every
    // row with the header's number of cells
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    let cells = rows[0].matches('|').count();
    assert_eq!(cells, 7, "{md}");
    assert!(rows.iter().all(|r| r.matches('|').count() == cells), "{md}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let nl = cfg["num_hidden_layers"].as_u64().unwrap() as usize;
    assert_eq!(rows.len(), 2 + 1 + 2 * nl, "{md}");
    let svg = std::fs::read_to_string(out.join("fig1.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    let o = osq(&[
        "report",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--ln",
        "ffn:99",
        "-o",
        s(&out),
    ]);
    assert!(bad_input(&o).contains("--ln ffn:99"));
}

#[test]
fn calibrate_bad_input_gives_clear_errors() {
    let (_tmp, model, data) = setup("cli-calib-bad");
    let dir = model.parent().unwrap().to_path_buf();
    let out = dir.join("q");
    let calib = |model: &Path, data: &Path, extra: &[&str]| {
        let mut args = vec![
            "calibrate",
            "--model",
            s(model),
            "--data",
            s(data),
            "-o",
            s(&out),
        ];
        args.extend_from_slice(extra);
        osq(&args)
    };

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let t = bad_input(&calib(&model, &empty, &[]));
    assert!(t.contains("empty.txt") && t.contains("no sentences"), "{t}");

    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"good movie\ncaf\xe9 au lait\n").unwrap();
    let t = bad_input(&calib(&model, &latin1, &[]));
    assert!(
        t.contains("latin1.txt") && t.contains("UTF-8") && t.contains("line 2"),
        "{t}"
    );

    let t = bad_input(&calib(&model, &dir.join("missing.txt"), &[]));
    assert!(t.contains("missing.txt"), "{t}");
    assert_eq!(t.matches("os error 2").count(), 1, "{t}");

    let t = bad_input(&calib(&model, &data, &["--bits", "w5a5"]));
    assert!(
        t.contains("w5a5") && t.contains("w8a8, w6a6, w4a8, w4a4, w6a6p8, w4a4p8"),
        "{t}"
    );
    let t = bad_input(&calib(&model, &data, &["--method", "kmeans"]));
    assert!(t.contains("kmeans") && t.contains("os+"), "{t}");
    let t = bad_input(&calib(&model, &data, &["--samples", "0"]));
    assert!(t.contains("--samples"), "{t}");

    // a config.json without a required field, then with a wrongly typed one
    let cfg_path = model.join("config.json");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let mut missing = cfg.clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove("num_attention_heads");
    std::fs::write(&cfg_path, missing.to_string()).unwrap();
    let t = bad_input(&calib(&model, &data, &[]));
    assert!(
        t.contains("config.json") && t.contains("num_attention_heads"),
        "{t}"
    );
    let mut wrong = cfg.clone();
    wrong["hidden_size"] = serde_json::json!("wide");
    std::fs::write(&cfg_path, wrong.to_string()).unwrap();
    let t = bad_input(&calib(&model, &data, &[]));
    assert!(
        t.contains("config.json") && t.contains("hidden_size"),
        "{t}"
    );
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();

    let o = osq(&[
        "report",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--act-bits",
        "40",
        "-o",
        s(&out),
    ]);
    assert!(bad_input(&o).contains("--act-bits 40"));
    assert!(!out.exists(), "nothing written on bad input");
}

/// `--loss logits` (the OS reference's loss for fine-tuned models) calibrates a model with a
/// task head through its logits, records it, stays bit-exact; `auto` picks it for a head model;
/// a model without a head refuses it with a clear error.
#[test]
fn calibrate_logits_loss_on_a_task_head() {
    let (_tmp, model, data) = setup("cli-calib-loss");
    let dir = model.parent().unwrap().to_path_buf();
    let head = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/bert-single");
    for (loss, recorded) in [
        ("logits", "logits"),
        ("auto", "logits"),
        ("hidden", "hidden"),
    ] {
        let out = dir.join(format!("head-{loss}"));
        let o = osq(&[
            "calibrate",
            "--model",
            s(&head),
            "--data",
            s(&data),
            "--method",
            "os",
            "--bits",
            "w6a6",
            "--loss",
            loss,
            "--quiet",
            "-o",
            s(&out),
        ]);
        assert!(o.status.success(), "{loss}: {}", text(&o));
        let rep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("calibration.json")).unwrap())
                .unwrap();
        assert_eq!(rep["loss"], recorded, "{loss}");
        let c = &rep["coarse"];
        assert!(
            c["final_loss"].as_f64().unwrap() <= c["loss_alpha_one"].as_f64().unwrap() + 1e-12,
            "{loss}: {c}"
        );
        let o = verify(&out, &data, "all");
        assert!(o.status.success(), "{loss}: verify: {}", text(&o));
    }
    let headless = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families/bert");
    let o = osq(&[
        "calibrate",
        "--model",
        s(&headless),
        "--data",
        s(&data),
        "--method",
        "os",
        "--loss",
        "logits",
        "-o",
        s(&dir.join("no-head")),
    ]);
    assert!(bad_input(&o).contains("task head"), "{}", text(&o));
    assert!(!dir.join("no-head").exists());
}
