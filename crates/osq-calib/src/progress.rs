//! Progress bars (indicatif) on stderr, or nothing (tests, `--quiet`, non-terminal output).

use indicatif::{ProgressBar, ProgressStyle};

/// Factory of progress bars; hidden bars when disabled.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub enabled: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress { enabled }
    }

    pub fn hidden() -> Self {
        Progress { enabled: false }
    }

    /// A bar of `len` steps with a message.
    pub fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(len);
        let style = ProgressStyle::with_template(
            "{spinner} {msg:<34} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_message(msg.to_string());
        pb
    }

    /// A line of information (stderr) when enabled.
    pub fn note(&self, msg: &str) {
        if self.enabled {
            eprintln!("{msg}");
        }
    }
}
