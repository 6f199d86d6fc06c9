//! Parameter directory: write + read round trip, and clear errors for damaged files.

mod quant_support;

use osq_model::quant::{deploy, format, BitsConfig, QuantModel};
use osq_model::testing::temp_dir;
use quant_support::*;
use serde_json::Value;
use std::path::Path;

/// Edits `quant.json` and records its new SHA-256 (as a forger would: the schema checks behind
/// the digest must still catch the edit).
fn edit_json(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("quant.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    let text = serde_json::to_string(&v).unwrap();
    std::fs::write(&p, &text).unwrap();
    std::fs::write(
        dir.join("quant.json.sha256"),
        format::sha256_hex(text.as_bytes()),
    )
    .unwrap();
}

/// Records the current SHA-256 of every file in `quant.json`, as a forger would: the checks
/// behind the digest must still catch the damage.
fn reseal(dir: &Path) {
    edit_json(dir, |v| {
        for f in ["quant.safetensors", "tokenizer.json", "config.json"] {
            let bytes = std::fs::read(dir.join(f)).unwrap();
            v["files"][f] = format::sha256_hex(&bytes).into();
        }
    });
}

fn reseal_without_config(dir: &Path) {
    edit_json(dir, |v| {
        for f in ["quant.safetensors", "tokenizer.json"] {
            let bytes = std::fs::read(dir.join(f)).unwrap();
            v["files"][f] = format::sha256_hex(&bytes).into();
        }
    });
}

fn copy_dir(src: &Path) -> osq_model::testing::TestDir {
    let d = temp_dir("quant-fmt-copy").unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
    }
    d
}

fn load_err(dir: &Path) -> String {
    match format::load(dir) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn round_trip_is_exact() {
    let t = tiny(11);
    for bits in BitsConfig::SUPPORTED {
        let p = quantize(&t, bits);
        let dir = temp_dir("quant-fmt").unwrap();
        format::save(&p, &dir, Some(&t.dir)).unwrap();
        for f in [
            "quant.safetensors",
            "quant.json",
            "tokenizer.json",
            "config.json",
        ] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        let back = format::load(&dir).unwrap();
        assert_eq!(back, p, "{bits}");
        let b = batch(&t, SENTENCES);
        let a = deploy::forward(&QuantModel::new(p).unwrap(), &b).unwrap();
        let c = deploy::forward(&QuantModel::new(back).unwrap(), &b).unwrap();
        assert_eq!(a, c);
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("quant.json")).unwrap())
                .unwrap();
        assert_eq!(v["format"], "osq-quant");
        assert_eq!(v["version"], format::FORMAT_VERSION);
        assert_eq!(
            v["files"]["quant.safetensors"],
            format::sha256_hex(&std::fs::read(dir.join("quant.safetensors")).unwrap())
        );
        assert_eq!(v["bits"], bits.name());
        assert_eq!(v["probs_bits"], bits.probs_bits());
        for l in v["layers"].as_array().unwrap() {
            let qmax = |n: &str| l["nodes"][n]["qmax"].as_i64().unwrap();
            assert_eq!(qmax("probs"), (1 << bits.probs_bits()) - 1, "{bits}");
            assert_eq!(qmax("context"), (1 << bits.act_bits()) - 1, "{bits}");
        }
        assert_eq!(v["method"], "minmax");
        assert!(v["layers"][0]["nodes"]["emb"]["scale"].is_number());
        assert!(v["layers"][1]["nodes"].get("emb").is_none());
    }
}

#[test]
fn damaged_files_give_clear_errors() {
    let t = tiny(12);
    let p = quantize(&t, BitsConfig::W8A8);
    let good = temp_dir("quant-fmt-good").unwrap();
    format::save(&p, &good, Some(&t.dir)).unwrap();

    // Versions.
    let d = copy_dir(&good);
    edit_json(&d, |v| v["version"] = (format::FORMAT_VERSION + 1).into());
    let e = load_err(&d);
    assert!(
        e.contains("quant.json") && e.contains("version") && e.contains("newer"),
        "{e}"
    );
    edit_json(&d, |v| v["version"] = 1.into());
    let e = load_err(&d);
    assert!(e.contains("version") && e.contains("older"), "{e}");

    // Wrong format name, missing / bad fields.
    let d = copy_dir(&good);
    edit_json(&d, |v| v["format"] = "gguf".into());
    assert!(load_err(&d).contains("format"));
    let d = copy_dir(&good);
    edit_json(&d, |v| {
        v["layers"][1]["nodes"]
            .as_object_mut()
            .unwrap()
            .remove("gelu");
    });
    let e = load_err(&d);
    assert!(
        e.contains("layers[1].nodes.gelu") && e.contains("missing"),
        "{e}"
    );
    let d = copy_dir(&good);
    edit_json(&d, |v| v["bits"] = "w3a3".into());
    assert!(load_err(&d).contains("bits"));
    let d = copy_dir(&good);
    edit_json(&d, |v| {
        v["layers"][0]["nodes"]["query"]["zero_point"] = 999.into()
    });
    assert!(load_err(&d).contains("layers[0].nodes.query"));
    let d = copy_dir(&good);
    edit_json(&d, |v| {
        v["model"].as_object_mut().unwrap().remove("hidden_size");
    });
    let e = load_err(&d);
    assert!(e.contains("model.hidden_size"), "{e}");
    let d = copy_dir(&good);
    edit_json(&d, |v| v["layers"][0]["ffn1_absmax"] = (-1.0).into());
    assert!(load_err(&d).contains("layers[0].ffn1_absmax"));
    let d = copy_dir(&good);
    std::fs::write(d.join("quant.json"), "{ not json").unwrap();
    let e = load_err(&d);
    assert!(e.contains("quant.json") && e.contains("SHA-256"), "{e}");
    std::fs::write(
        d.join("quant.json.sha256"),
        format::sha256_hex(b"{ not json"),
    )
    .unwrap();
    assert!(load_err(&d).contains("quant.json"));
    // an unknown field, an f64 that is inf as f32, an eps that flushes to zero in f32
    let d = copy_dir(&good);
    edit_json(&d, |v| v["extra"] = 1.into());
    let e = load_err(&d);
    assert!(e.contains("extra") && e.contains("unknown field"), "{e}");
    edit_json(&d, |v| {
        v.as_object_mut().unwrap().remove("extra");
        v["embeddings"]["sum_absmax"] = 1e300.into();
    });
    let e = load_err(&d);
    assert!(
        e.contains("embeddings.sum_absmax") && e.contains("plausible"),
        "{e}"
    );
    let d = copy_dir(&good);
    for bad in [1e-300, 1e10, 0.0] {
        edit_json(&d, |v| v["eps"] = bad.into());
        let e = load_err(&d);
        assert!(e.contains("eps"), "{bad}: {e}");
    }
    let d = copy_dir(&good);
    edit_json(&d, |v| v["weight_bits"] = 3.into());
    assert!(load_err(&d).contains("weight_bits"));
    let d = copy_dir(&good);
    edit_json(&d, |v| v["model"]["num_attention_heads"] = 8.into());
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("num_attention_heads"),
        "{e}"
    );
    // a quant.json edited without its digest
    let d = copy_dir(&good);
    let t = std::fs::read_to_string(d.join("quant.json")).unwrap();
    std::fs::write(
        d.join("quant.json"),
        t.replacen("\"method\": \"minmax\"", "\"method\": \"os\"", 1),
    )
    .unwrap();
    let e = load_err(&d);
    assert!(e.contains("quant.json") && e.contains("edited"), "{e}");
    let d = copy_dir(&good);
    std::fs::remove_file(d.join("quant.json")).unwrap();
    assert!(load_err(&d).contains("quant.json"));

    // Tensors: missing, mis-shaped, truncated file.
    let d = copy_dir(&good);
    let mut q = p.clone();
    q.config.intermediate_size = 48; // JSON says 48: tensors are [64, 32]
    let mut v = format::to_json(&q);
    v["layers"] = format::to_json(&p)["layers"].clone();
    std::fs::write(d.join("quant.json"), v.to_string()).unwrap();
    reseal(&d);
    // the directory's config.json (the model's) is cross-checked first
    let e = load_err(&d);
    assert!(
        e.contains("config.json")
            && e.contains("intermediate_size")
            && e.contains("different models"),
        "{e}"
    );
    std::fs::remove_file(d.join("config.json")).unwrap();
    edit_json(&d, |v| {
        v["files"].as_object_mut().unwrap().remove("config.json");
    });
    reseal_without_config(&d);
    let e = load_err(&d);
    assert!(
        e.contains("quant.safetensors") && e.contains("layers.0.ffn1.codes") && e.contains("shape"),
        "{e}"
    );
    let d = copy_dir(&good);
    {
        let bytes = std::fs::read(good.join("quant.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let views: Vec<(String, safetensors::tensor::TensorView)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != "layers.1.ffn2.bias")
            .collect();
        std::fs::write(
            d.join("quant.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
    }
    reseal(&d);
    let e = load_err(&d);
    assert!(
        e.contains("layers.1.ffn2.bias") && e.contains("not found"),
        "{e}"
    );
    let d = copy_dir(&good);
    let bytes = std::fs::read(d.join("quant.safetensors")).unwrap();
    std::fs::write(d.join("quant.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("quant.safetensors") && e.contains("SHA-256"),
        "{e}"
    );
    reseal(&d);
    let e = load_err(&d);
    assert!(e.contains("quant.safetensors"), "{e}");

    // Digests: one flipped bit in any file, a missing digest, a swapped tokenizer.
    for f in ["quant.safetensors", "tokenizer.json", "config.json"] {
        let d = copy_dir(&good);
        let mut bytes = std::fs::read(d.join(f)).unwrap();
        let i = bytes.len() / 3;
        bytes[i] ^= 0x10;
        std::fs::write(d.join(f), &bytes).unwrap();
        let e = load_err(&d);
        assert!(
            e.contains(f) && e.contains("SHA-256") && e.contains("corrupt"),
            "{e}"
        );
    }
    let d = copy_dir(&good);
    edit_json(&d, |v| {
        v["files"]
            .as_object_mut()
            .unwrap()
            .remove("quant.safetensors");
    });
    let e = load_err(&d);
    assert!(
        e.contains("files.quant.safetensors") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn probability_bits_are_checked_against_the_configuration() {
    let t = tiny(12);
    let src = temp_dir("quant-fmt-p8").unwrap();
    format::save(&quantize(&t, BitsConfig::W6A6), &src, Some(&t.dir)).unwrap();

    // a directory written before the P8 configurations has no probs_bits: the activation bits
    let d = copy_dir(&src);
    edit_json(&d, |v| {
        v.as_object_mut().unwrap().remove("probs_bits");
    });
    assert_eq!(format::load(&d).unwrap().bits, BitsConfig::W6A6);

    // an 8-bit probability quantizer inside a W6A6 file
    let d = copy_dir(&src);
    edit_json(&d, |v| {
        let n = &mut v["layers"][1]["nodes"]["probs"];
        n["qmax"] = 255.into();
        n["scale"] = (1.0 / 255.0).into();
    });
    let e = load_err(&d);
    assert!(
        e.contains("layers[1].nodes.probs") && e.contains("6-bit activations [0, 63]"),
        "{e}"
    );

    // bits says W6A6P8 but the probabilities were quantized at 6 bits
    let d = copy_dir(&src);
    edit_json(&d, |v| {
        v["bits"] = "w6a6p8".into();
        v["probs_bits"] = 8.into();
    });
    let e = load_err(&d);
    assert!(
        e.contains("layers[0].nodes.probs") && e.contains("8-bit activations [0, 255]"),
        "{e}"
    );

    // probs_bits contradicting bits
    let d = copy_dir(&src);
    edit_json(&d, |v| v["probs_bits"] = 8.into());
    let e = load_err(&d);
    assert!(e.contains("probs_bits 8") && e.contains("\"w6a6\""), "{e}");

    // an unknown configuration lists the supported ones
    let d = copy_dir(&src);
    edit_json(&d, |v| v["bits"] = "w6a6p4".into());
    let e = load_err(&d);
    assert!(
        e.contains("w6a6p4") && e.contains(&BitsConfig::names()),
        "{e}"
    );
}
