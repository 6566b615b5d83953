//! Progress of the columns: spinners with each kernel's stage on a terminal, lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Spinners with each kernel's stage on a terminal; lines otherwise (CI logs): every step of a
/// fetch or build, the cases done at most every [`PLAIN_EVERY`], and each finished stage, each
/// with the time the kernel's stage has taken.
pub struct Progress {
    bars: MultiProgress,
    plain: bool,
    /// When each bar last printed a throttled line (plain mode).
    printed: Mutex<HashMap<String, Instant>>,
}

/// How often a column's case count is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(60);

impl Progress {
    /// No bars yet; plain lines when stderr is not a terminal.
    pub fn new() -> Self {
        Progress {
            bars: MultiProgress::new(),
            plain: !std::io::stderr().is_terminal(),
            printed: Default::default(),
        }
    }

    /// Shows `message` on `bar`; without a terminal, prints it as a line (a `throttled` one at
    /// most every [`PLAIN_EVERY`] per bar).
    pub fn step(&self, bar: &ProgressBar, message: String, throttled: bool) {
        if self.plain {
            let mut printed = self.printed.lock().unwrap_or_else(|e| e.into_inner());
            let last = printed.get(&bar.prefix()).copied();
            if !throttled || last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                eprintln!(
                    "{}: {message} ({} s)",
                    bar.prefix(),
                    bar.elapsed().as_secs()
                );
                printed.insert(bar.prefix(), Instant::now());
            }
        }
        bar.set_message(message);
    }

    pub fn bar(&self, prefix: impl Into<String>) -> ProgressBar {
        let style = ProgressStyle::with_template("{prefix:>9} {spinner} {elapsed:>4} {msg}")
            .expect("valid template");
        let bar = self.bars.add(
            ProgressBar::new_spinner()
                .with_style(style)
                .with_prefix(prefix.into()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    pub fn finish(&self, bar: &ProgressBar, message: String) {
        if self.plain {
            eprintln!("{}: {message}", bar.prefix());
        }
        bar.finish_with_message(message);
    }
}
