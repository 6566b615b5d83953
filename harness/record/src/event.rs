//! The progress lines a column prints on its console (`bpfconf-event <json>`), read by the runner
//! on the host through whatever the VM's console adds around them: the runner's own and, from
//! inside each test, when a case starts and ends (so a crash or hang names the cases it cut short).

use std::io::Write;

use serde::{Deserialize, Serialize};

/// One progress line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The runner started on kernel `release`.
    Started { kernel: String, release: String },
    /// A test binary started.
    Binary { name: String },
    /// A test binary ended: how, and how many of its tests left no record.
    BinaryEnded {
        name: String,
        end: String,
        missing: usize,
    },
    /// A case started in test `test` (libtest's name).
    CaseStarted { test: String },
    /// The case of test `test` wrote its record.
    CaseEnded { test: String },
    /// The runner ended with this exit status.
    Finished { exit: i32 },
}

const PREFIX: &str = "bpfconf-event ";

impl Event {
    /// The event on a console line, if it is one (QEMU's console may prefix the line).
    pub fn parse(line: &str) -> Option<Event> {
        let (_, json) = line.split_once(PREFIX)?;
        serde_json::from_str(json).ok()
    }

    /// Prints the event as one line on stdout, in one write: around libtest's output capture,
    /// which only takes what `print!` writes.
    pub fn emit(&self) {
        let line = format!(
            "{PREFIX}{}\n",
            serde_json::to_string(self).expect("events serialise")
        );
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_console_lines() {
        let e = Event::BinaryEnded {
            name: "suite".into(),
            end: "killed by signal SIGABRT".into(),
            missing: 3,
        };
        let line = format!("[   12.3] {PREFIX}{}", serde_json::to_string(&e).unwrap());
        assert_eq!(Event::parse(&line), Some(e));
        assert_eq!(Event::parse("test xdp::drops ... ok"), None);
    }
}
