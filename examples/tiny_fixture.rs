//! (tests) Writes the tiny generated BERT the test suites use into DIR, with `sentences.txt`
//! (texts in its vocabulary) beside it: `cargo run --release --example tiny_fixture -- DIR`.
//! The Python tests build their fixtures with it.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: tiny_fixture DIR")?;
    let dir = std::path::Path::new(&dir);
    osq_model::testing::write_tiny_bert(dir, 1)?;
    let text = osq_model::testing::SENTENCES.join("\n") + "\n";
    std::fs::write(dir.join("sentences.txt"), text)?;
    Ok(())
}
