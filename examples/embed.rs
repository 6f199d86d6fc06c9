//! Embeds texts with a parameter directory: `cargo run --release --example embed -- DIR "text" ...`
fn main() -> osq::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| osq::Error::Input("usage: embed DIR TEXT...".into()))?;
    let texts: Vec<String> = args.collect();
    let model = osq::Model::load(&dir)?;
    for (text, row) in texts.iter().zip(model.embed(&texts)?.rows()) {
        println!("{text:?}: {:?}…", &row[..4]);
    }
    Ok(())
}
