//! Helpers shared by the CLI tests: run the `osq` binary, read its output, and a tiny generated
//! BERT with a few sentences in a fresh temporary directory.
// Each test crate uses a subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use osq_model::testing::{temp_dir, write_tiny_bert, TestDir};

/// Runs `osq` with `args`.
pub fn osq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osq"))
        .args(args)
        .output()
        .expect("run osq")
}

/// Stdout followed by stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A path as the `&str` argument of a command line.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub const SENTENCES: &str = "the cat sat on the mat.\nthis movie is very good!\n\ni hate that bad film, and the dog was not great.\nwe love it\nshe runs\nthey loved the movie, it was a great film\nis it good? not very.\n";

/// A tiny BERT (`<dir>/model`) and [`SENTENCES`] (`<dir>/data.txt`) in a fresh directory
/// (removed when the returned guard is dropped).
pub fn setup(tag: &str) -> (TestDir, PathBuf, PathBuf) {
    let dir = temp_dir(tag).unwrap();
    let model = dir.join("model");
    write_tiny_bert(&model, 5).unwrap();
    let data = dir.join("data.txt");
    std::fs::write(&data, SENTENCES).unwrap();
    (dir, model, data)
}

/// A tiny BERT and its MinMax W8A8 parameter directory (`<dir>/params`), through the CLI.
pub fn calibrated(tag: &str) -> (TestDir, PathBuf, PathBuf, PathBuf) {
    let (tmp, model, data) = setup(tag);
    let out = model.parent().unwrap().join("params");
    let o = osq(&model_data_out("calibrate", &model, &data, &out));
    assert!(o.status.success(), "{}", text(&o));
    (tmp, model, data, out)
}

/// `COMMAND --model M --data D -o OUT` as arguments (`osq calibrate`, `quantize`, `report`).
pub fn model_data_out<'a>(
    command: &'a str,
    model: &'a Path,
    data: &'a Path,
    out: &'a Path,
) -> Vec<&'a str> {
    vec![
        command,
        "--model",
        s(model),
        "--data",
        s(data),
        "-o",
        s(out),
    ]
}

/// `osq verify --params <params> --data <data> --isa <isa>`.
pub fn verify(params: &Path, data: &Path, isa: &str) -> Output {
    osq(&[
        "verify",
        "--params",
        s(params),
        "--data",
        s(data),
        "--isa",
        isa,
    ])
}

/// The 160 sentences over the family fixtures' vocabulary (`tests/fixtures/families/`).
pub fn family_sentences() -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families/sentences.txt");
    let t = std::fs::read_to_string(p).expect("tests/fixtures/families/sentences.txt");
    t.lines().map(str::to_owned).collect()
}
