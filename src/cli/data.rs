//! Input text files: one sentence per line, UTF-8, blank lines skipped. Errors name the file and
//! the line, never panic on user input.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Up to `limit` non-empty lines of `path` (trimmed).
pub fn read_sentences(path: &Path, limit: usize) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let off = e.utf8_error().valid_up_to();
            let raw = e.as_bytes();
            let line = raw[..off].iter().filter(|&&b| b == b'\n').count() + 1;
            bail!(
                "{}: not valid UTF-8 (line {line}, byte offset {off}); convert it to UTF-8 first",
                path.display()
            );
        }
    };
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(limit)
        .map(str::to_owned)
        .collect();
    if lines.is_empty() {
        bail!(
            "{}: no sentences (the file is empty or has only blank lines)",
            path.display()
        );
    }
    Ok(lines)
}
