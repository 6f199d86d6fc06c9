//! Text input files: one text per line. The one reader of every command, the calibration and the
//! benches, so that all of them split lines the same way: LF, CRLF and a lone CR each end a
//! line (old Mac files would otherwise be one sentence), blank lines are skipped, every line is
//! trimmed, and a line longer than [`MAX_LINE_CHARS`] is cut there before anyone tokenizes it
//! (a 50 MB line would otherwise be tokenized whole for the few hundred tokens that are kept).

use std::path::Path;

use crate::error::{ModelError, Result};

/// Characters kept of one input line: far above what 512 tokens need (WordPiece tokens of
/// real text average 4–5 characters), far below what would make tokenizing expensive.
pub const MAX_LINE_CHARS: usize = 16_384;

/// What [`split_lines`] found besides the lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Lines cut at [`MAX_LINE_CHARS`].
    pub truncated: usize,
    /// Lines ended by a lone CR.
    pub lone_cr: usize,
}

/// Cuts `s` after `max_chars` characters (on a character boundary).
pub fn truncate_chars(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The non-blank lines of `text`, trimmed and cut at [`MAX_LINE_CHARS`].
pub fn split_lines(text: &str) -> (Vec<String>, LineStats) {
    let mut stats = LineStats::default();
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut push = |line: &str, stats: &mut LineStats| {
        let t = line.trim();
        if !t.is_empty() {
            let cut = truncate_chars(t, MAX_LINE_CHARS);
            if cut.len() < t.len() {
                stats.truncated += 1;
            }
            out.push(cut.trim_end().to_string());
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                push(&text[start..i], &mut stats);
                start = i + 1;
            }
            b'\r' => {
                push(&text[start..i], &mut stats);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                } else {
                    stats.lone_cr += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(&text[start..], &mut stats);
    (out, stats)
}

/// The non-blank lines of the UTF-8 file `path` (see the module docs). Errors name the file,
/// and for invalid UTF-8 the line and byte offset; a file without any text is an error.
pub fn read_lines(path: &Path) -> Result<(Vec<String>, LineStats)> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    lines_of_bytes(bytes, &path.display().to_string())
}

/// [`read_lines`] on bytes already read (`name` is the file name for messages, `-` for stdin).
pub fn lines_of_bytes(bytes: Vec<u8>, name: &str) -> Result<(Vec<String>, LineStats)> {
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let off = e.utf8_error().valid_up_to();
            let raw = e.as_bytes();
            let line = raw[..off]
                .iter()
                .filter(|&&b| b == b'\n' || b == b'\r')
                .count()
                + 1;
            return Err(ModelError::Text {
                name: name.into(),
                msg: format!(
                    "not valid UTF-8 (line {line}, byte offset {off}); convert it to UTF-8 first"
                ),
            });
        }
    };
    let (lines, stats) = split_lines(&text);
    if lines.is_empty() {
        return Err(ModelError::Text {
            name: name.into(),
            msg: "no sentences (the file is empty or has only blank lines)".into(),
        });
    }
    Ok((lines, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_ending_ends_a_line() {
        let (l, s) = split_lines("a\nb\r\nc\rd\n\n  \re ");
        assert_eq!(l, ["a", "b", "c", "d", "e"]);
        assert_eq!(s.lone_cr, 2);
        assert_eq!(s.truncated, 0);
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_LINE_CHARS + 10);
        let (l, s) = split_lines(&format!("x\n{long}\ny"));
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].chars().count(), MAX_LINE_CHARS);
        assert_eq!(s.truncated, 1);
        assert_eq!(truncate_chars("abc", 2), "ab");
        assert_eq!(truncate_chars("abc", 5), "abc");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let e = lines_of_bytes(b"ok\n\xff\n".to_vec(), "f.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.txt") && e.contains("line 2"), "{e}");
        let e = lines_of_bytes(b" \n\r\n".to_vec(), "g.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g.txt") && e.contains("no sentences"), "{e}");
        let e = read_lines(Path::new("/nonexistent/x.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.txt"), "{e}");
    }
}
