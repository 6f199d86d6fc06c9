//! The one SVG writer of osq's reports (the OS paper's Fig. 1 in osq-calib, the latency chart of
//! osq-serve-bench): a document with a white background, escaped text. The charts draw their
//! own shapes into it.

use std::fmt::Write;

/// An SVG document being written.
pub struct Svg {
    out: String,
}

/// Escapes `&`, `<` and `>` for SVG text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Svg {
    /// A `width` × `height` document (12 px sans-serif) on a white background.
    pub fn new(width: f64, height: f64) -> Svg {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
        );
        out.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        Svg { out }
    }

    /// Text at `(x, y)`; `attrs` are extra attributes (`text-anchor="middle"`, ...); escaped.
    pub fn text(&mut self, x: f64, y: f64, attrs: &str, text: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" {attrs}>{}</text>"#,
            esc(text)
        );
    }

    /// A raw element (shapes, groups), written as given.
    pub fn raw(&mut self, element: &str) {
        self.out.push_str(element);
        if !element.ends_with('\n') {
            self.out.push('\n');
        }
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_and_escaping() {
        let mut s = super::Svg::new(10.0, 20.0);
        s.text(1.0, 2.0, r#"text-anchor="end""#, "a < b & c");
        let d = s.finish();
        assert!(d.starts_with("<svg") && d.ends_with("</svg>\n"));
        assert!(d.contains("a &lt; b &amp; c"));
        assert!(d.contains(r#"width="10" height="20""#));
    }
}
