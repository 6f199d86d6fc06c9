//! The mutation corpus (seeded, no network): damaged parameter directories (W8A8 and W4A8) and
//! damaged model directories / tokenizers. Each case must be an error that names the damaged
//! file, or give byte-identical output; never a different answer, a panic or a hang. Digests
//! catch raw damage; "resealed" cases re-record the digests as a forger would, so the schema,
//! bounds and cross-checks behind them are exercised too. Prints the tally table.
//! Set OSQ_MUTATIONS=N to change the per-category count (default 150): raw damage covers at
//! least 500 parameter directories per bit width, forgeries 2N, model directories max(2N, 200).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use osq_model::quant::format::sha256_hex;
use osq_model::rng::SplitMix64;
use osq_model::testing::{write_tiny_bert, SENTENCES};

#[derive(Default, Debug, Clone)]
struct Tally {
    cases: usize,
    errors: usize,
    identical: usize,
    changed: usize,
    /// Changes that come from a damaged FP32 weight file (a different, valid checkpoint).
    changed_weights: usize,
    unnamed: usize,
    panics: usize,
    slow: usize,
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn reseal(dir: &Path) {
    let jp = dir.join("quant.json");
    let Ok(text) = std::fs::read_to_string(&jp) else {
        return;
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else {
        std::fs::write(dir.join("quant.json.sha256"), sha256_hex(text.as_bytes())).unwrap();
        return;
    };
    if v.get("files").map(|f| f.is_object()) == Some(true) {
        for f in ["quant.safetensors", "tokenizer.json", "config.json"] {
            if let Ok(b) = std::fs::read(dir.join(f)) {
                v["files"][f] = sha256_hex(&b).into();
            }
        }
    }
    let text = serde_json::to_string_pretty(&v).unwrap();
    std::fs::write(&jp, &text).unwrap();
    std::fs::write(dir.join("quant.json.sha256"), sha256_hex(text.as_bytes())).unwrap();
}

/// One random damage to one file of `dir`; returns the file's name.
fn damage(dir: &Path, files: &[&str], rng: &mut SplitMix64) -> String {
    let f = files[(rng.next_u64() % files.len() as u64) as usize];
    let p = dir.join(f);
    let mut b = std::fs::read(&p).unwrap();
    match rng.next_u64() % 8 {
        0 | 1 => {
            for _ in 0..1 + rng.next_u64() % 3 {
                let i = (rng.next_u64() % b.len() as u64) as usize;
                b[i] ^= 1 << (rng.next_u64() % 8);
            }
        }
        2 => b.truncate((rng.next_u64() % b.len() as u64) as usize),
        3 => {
            // safetensors / JSON header: the first bytes (length prefix, opening fields)
            let i = (rng.next_u64() % b.len().min(64) as u64) as usize;
            b[i] = (rng.next_u64() & 0xff) as u8;
        }
        4 => {
            // a number in a JSON file replaced by an extreme one
            let text = String::from_utf8_lossy(&b).into_owned();
            let nums: Vec<(usize, usize)> = number_spans(&text);
            if let Some(&(s, e)) = nums.get((rng.next_u64() % nums.len().max(1) as u64) as usize) {
                let repl = [
                    "0",
                    "-1",
                    "1e300",
                    "1e-300",
                    "NaN",
                    "\"x\"",
                    "null",
                    "99999999999",
                    "-0.0",
                    "3",
                ];
                let r = repl[(rng.next_u64() % repl.len() as u64) as usize];
                b = format!("{}{}{}", &text[..s], r, &text[e..]).into_bytes();
            } else {
                b.clear();
            }
        }
        5 => b.extend_from_slice(b"\n{\"trailing\": 1}"),
        6 => {
            // a type/shape edit in a safetensors header or a JSON field name
            let text = String::from_utf8_lossy(&b).into_owned();
            let swaps = [
                ("\"F32\"", "\"F16\""),
                ("\"I8\"", "\"U8\""),
                ("shape\":[", "shape\":[2,"),
                ("\"scale\"", "\"scal\""),
                ("\"zero_point\": ", "\"zero_point\": 300"),
                ("\"gelu\"", "\"relu\""),
                ("[CLS]", "[XLS]"),
            ];
            let (a, z) = swaps[(rng.next_u64() % swaps.len() as u64) as usize];
            if text.contains(a) {
                b = text.replacen(a, z, 1).into_bytes();
            } else {
                b.truncate(b.len() / 2);
            }
        }
        _ => {
            // a huge length prefix (safetensors header size)
            if b.len() >= 8 {
                b[..8].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
            }
        }
    }
    std::fs::write(&p, b).unwrap();
    f.to_string()
}

fn number_spans(t: &str) -> Vec<(usize, usize)> {
    let b = t.as_bytes();
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if (b[i] == b'-' || b[i].is_ascii_digit())
            && i > 0
            && matches!(b[i - 1], b' ' | b':' | b'[' | b',')
        {
            let s = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'-' | b'+'))
            {
                i += 1;
            }
            v.push((s, i));
        } else {
            i += 1;
        }
    }
    v
}

fn embed(dir: &Path) -> Result<Vec<f32>, String> {
    let m = osq::Model::load_with(
        dir,
        osq::ModelOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .map_err(|e| osq::error_message(&e))?;
    m.embed(SENTENCES)
        .map(|e| e.into_vec())
        .map_err(|e| osq::error_message(&e))
}

fn judge(
    t: &mut Tally,
    res: std::thread::Result<Result<Vec<f32>, String>>,
    want: &[f32],
    file: &str,
    took: Duration,
    what: &str,
) {
    t.cases += 1;
    if took > Duration::from_secs(20) {
        t.slow += 1;
    }
    match res {
        Err(_) => {
            t.panics += 1;
            eprintln!("{what}: PANIC (damaged {file})");
        }
        Ok(Ok(v)) if v == want => t.identical += 1,
        Ok(Ok(_)) if file == "model.safetensors" => t.changed_weights += 1,
        Ok(Ok(_)) => {
            t.changed += 1;
            eprintln!("{what}: output changed (damaged {file})");
        }
        Ok(Err(msg)) => {
            // the message must name the damaged file, or (a header damage of the tokenizer /
            // config seen through its own parser) the directory's file it came from
            if msg.contains(file) || (file == "quant.json.sha256" && msg.contains("quant.json")) {
                t.errors += 1;
            } else {
                t.unnamed += 1;
                eprintln!("{what}: error does not name {file}: {msg}");
            }
        }
    }
}

fn per_category() -> usize {
    std::env::var("OSQ_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

#[test]
fn mutated_parameter_directories_never_change_answers() {
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    write_tiny_bert(&model, 3).unwrap();
    let data = root.path().join("calib.txt");
    std::fs::write(&data, SENTENCES.join("\n")).unwrap();
    let n = per_category();
    let mut table = Vec::new();
    for bits in [osq::Bits::W8A8, osq::Bits::W4A8] {
        let good = root.path().join(format!("good-{}", bits.name()));
        let o = osq::CalibOptions {
            bits,
            threads: 1,
            ..Default::default()
        };
        osq::calibrate(&model, &data, &o)
            .unwrap()
            .save(&good)
            .unwrap();
        let want = embed(&good).unwrap();
        let files = [
            "quant.json",
            "quant.safetensors",
            "tokenizer.json",
            "config.json",
            "quant.json.sha256",
        ];
        for resealed in [false, true] {
            let mut t = Tally::default();
            let mut rng = SplitMix64::new(0x05_2022 + resealed as u64 + bits.weight_bits() as u64);
            // raw damage: ≥ 500 directories per bit width (≥ 1,000 in all); forgeries: 2n
            let cases = if resealed { n * 2 } else { (n * 2).max(500) };
            for case in 0..cases {
                let d = root
                    .path()
                    .join(format!("m-{}-{resealed}-{case}", bits.name()));
                copy_dir(&good, &d);
                let f = damage(&d, &files, &mut rng);
                if resealed {
                    reseal(&d);
                }
                let t0 = Instant::now();
                let r = std::panic::catch_unwind(|| embed(&d));
                judge(
                    &mut t,
                    r,
                    &want,
                    &f,
                    t0.elapsed(),
                    &format!(
                        "{} {} case {case}",
                        bits.name(),
                        if resealed { "resealed" } else { "raw" }
                    ),
                );
                std::fs::remove_dir_all(&d).ok();
            }
            table.push((
                format!(
                    "params {} {}",
                    bits.name(),
                    if resealed { "resealed" } else { "raw" }
                ),
                t,
            ));
        }
    }
    print_table(&table);
    for (name, t) in &table {
        assert_eq!(t.panics, 0, "{name}: {t:?}");
        assert_eq!(t.slow, 0, "{name}: {t:?}");
        assert_eq!(t.unnamed, 0, "{name}: {t:?}");
        assert_eq!(t.errors + t.identical + t.changed + t.unnamed, t.cases);
        if name.ends_with("raw") {
            assert_eq!(t.changed, 0, "{name}: {t:?}");
        }
    }
    // resealed (forged) directories: a change that validation lets through is a plausible edit
    // of a value with its digest re-recorded; they are reported, and most forgeries are refused
    for (name, t) in &table {
        if name.ends_with("resealed") {
            assert!(t.errors * 2 >= t.cases, "{name}: {t:?}");
        }
    }
}

#[test]
fn mutated_model_directories_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    write_tiny_bert(&model, 4).unwrap();
    let data = root.path().join("calib.txt");
    std::fs::write(&data, SENTENCES.join("\n")).unwrap();
    let o = osq::CalibOptions {
        threads: 1,
        ..Default::default()
    };
    let good = root.path().join("good");
    osq::calibrate(&model, &data, &o)
        .unwrap()
        .save(&good)
        .unwrap();
    let want = std::fs::read(good.join("quant.safetensors")).unwrap();
    let files = ["config.json", "model.safetensors", "tokenizer.json"];
    let mut t = Tally::default();
    let mut rng = SplitMix64::new(0x05_2023);
    let n = per_category().max(100) * 2;
    for case in 0..n {
        let d = root.path().join(format!("model-{case}"));
        copy_dir(&model, &d);
        let f = damage(&d, &files, &mut rng);
        let out: PathBuf = root.path().join(format!("out-{case}"));
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(|| -> Result<Vec<f32>, String> {
            let c = osq::calibrate(&d, &data, &o).map_err(|e| osq::error_message(&e))?;
            c.save(&out).map_err(|e| osq::error_message(&e))?;
            let b = std::fs::read(out.join("quant.safetensors")).unwrap();
            // identical parameters, or a different checkpoint that is still valid (a bit of a
            // finite weight) — compare the parameters' bytes
            Ok(if b == want { vec![0.0] } else { vec![1.0] })
        });
        judge(
            &mut t,
            r,
            &[0.0],
            &f,
            t0.elapsed(),
            &format!("model case {case}"),
        );
        std::fs::remove_dir_all(&d).ok();
        std::fs::remove_dir_all(&out).ok();
    }
    print_table(&[("model dirs (calibrate)".into(), t.clone())]);
    assert_eq!(t.panics, 0, "{t:?}");
    assert_eq!(t.slow, 0, "{t:?}");
    assert_eq!(t.unnamed, 0, "{t:?}");
    // a flipped bit inside a finite weight is a different, valid checkpoint (changed_weights):
    // nothing can tell it from the original; config or tokenizer damage never changes output
    assert_eq!(t.changed, 0, "{t:?}");
}

fn print_table(rows: &[(String, Tally)]) {
    println!("| category | cases | clear errors | identical output | changed | of which FP32 weight bits | errors not naming the file | panics | > 20 s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, t) in rows {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.cases,
            t.errors,
            t.identical,
            t.changed + t.changed_weights,
            t.changed_weights,
            t.unnamed,
            t.panics,
            t.slow
        );
    }
}
