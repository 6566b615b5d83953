//! One column of a run as the host sees it: the `bpfconf suite` runner (directly for the
//! host's kernel, inside vmtest for the others) watched through its [`Event`] lines and console —
//! boot time, the binary running last, the first crash line, how it ended — and its output kept
//! in the run directory.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use record::Event;

use crate::watched;

/// What one column's run showed.
#[derive(Debug, Default)]
pub struct ColumnRun {
    /// Killed after the timeout.
    pub timed_out: bool,
    /// The runner's (or vmtest's) exit code.
    pub exit: Option<i32>,
    /// From start until the runner's first event (for a VM: boot, 9p root, guest agent).
    pub boot: Option<Duration>,
    /// The whole run.
    pub total: Duration,
    /// The runner's own exit status, when it got to its end.
    pub finished: Option<i32>,
    /// The binaries that ended badly: how, and how many tests left no record.
    pub bad_binaries: Vec<String>,
    /// Cases ended so far, for progress.
    pub cases_done: usize,
    /// The test binary running now (`suite`, `selftests_7_3`).
    pub binary: Option<String>,
    /// The tests of that binary running now (libtest's names).
    pub running: BTreeSet<String>,
    /// The output mentions a kernel panic.
    pub panicked: bool,
    /// Killed at once because the kernel panicked or stalled.
    pub killed_wedged: bool,
    /// The first line of a kernel crash report (oops, BUG, panic) with its timestamp cut.
    pub crash: Option<String>,
    /// The last lines of output.
    pub tail: VecDeque<String>,
}

impl ColumnRun {
    /// Why the column is not whole, or `None` when the runner reached its end with exit 0.
    pub fn problem(&self, timeout: Duration) -> Option<String> {
        let what = if self.timed_out {
            format!("timeout after {} s", timeout.as_secs())
        } else if self.panicked {
            "kernel panic".into()
        } else if self.killed_wedged {
            "the kernel stalled (VM killed)".into()
        } else if self.boot.is_none() {
            "boot failure: the suite never started".into()
        } else if let Some(exit) = self.finished {
            if exit == 0 {
                return None;
            }
            format!("the suite exited {exit}: {}", self.bad_binaries.join("; "))
        } else {
            format!(
                "the suite stopped before its end (exit {})",
                self.exit.unwrap_or(-1)
            )
        };
        Some(self.describe(&what))
    }

    /// `what` went wrong, with the running binary, the crash line and the console tail.
    fn describe(&self, what: &str) -> String {
        let mut text = what.to_owned();
        if self.finished.is_none() {
            let tests: Vec<&str> = self.running.iter().map(String::as_str).collect();
            match (&self.binary, tests.is_empty()) {
                (Some(binary), false) => {
                    let _ = write!(text, " while running {binary} ({})", tests.join(", "));
                }
                (Some(binary), true) => {
                    let _ = write!(text, " while running {binary}");
                }
                (None, false) => {
                    let _ = write!(text, " while running {}", tests.join(", "));
                }
                (None, true) => {}
            }
            if let Some(crash) = &self.crash {
                let _ = write!(text, " ({crash})");
            }
            let tail: Vec<&str> = self.tail.iter().map(String::as_str).collect();
            let _ = write!(text, "; console tail:\n{}", tail.join("\n"));
        }
        text
    }

    fn see(&mut self, line: &str, elapsed: Duration) -> Option<Event> {
        self.panicked |= line.contains("Kernel panic");
        if self.crash.is_none() {
            self.crash = crash_line(line).map(str::to_owned);
        }
        if self.tail.len() == 40 {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
        let event = Event::parse(line)?;
        self.boot.get_or_insert(elapsed);
        match &event {
            Event::CaseStarted { test } => {
                self.running.insert(test.clone());
            }
            Event::CaseEnded { test } => {
                self.running.remove(test);
                self.cases_done += 1;
            }
            Event::Binary { name } => {
                self.binary = Some(name.clone());
                self.running.clear();
            }
            // A killed binary's tests end with it, without their own events.
            Event::BinaryEnded { name, end, missing } => {
                self.binary = None;
                self.running.clear();
                if end != "exited with status 0" || *missing > 0 {
                    self.bad_binaries
                        .push(format!("{name} {end}, {missing} tests without a record"));
                }
            }
            Event::Finished { exit } => self.finished = Some(*exit),
            Event::Started { .. } => {}
        }
        Some(event)
    }
}

/// Runs `cmd` (a runner, directly or in vmtest) with its output in `log`; `on_event` sees each
/// event with the run so far (for progress).
pub fn watch(
    cmd: Command,
    timeout: Duration,
    log: &Path,
    mut on_event: impl FnMut(&ColumnRun),
) -> Result<ColumnRun> {
    let mut out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut run = ColumnRun::default();
    let started = std::time::Instant::now();
    let ended = watched::run(cmd, timeout, |line| {
        let _ = writeln!(out, "{line}");
        if run.see(line, started.elapsed()).is_some() {
            on_event(&run);
        }
        // A panicked or stalled kernel never recovers: stop waiting for the timeout.
        if run.panicked || fatal(line) {
            run.killed_wedged = true;
            watched::Next::Kill
        } else {
            watched::Next::Go
        }
    })?;
    run.timed_out = ended.timed_out;
    run.exit = ended.status.code();
    run.total = ended.elapsed;
    Ok(run)
}

/// A console line after which the kernel will not recover (a stall or lockup report).
fn fatal(line: &str) -> bool {
    [
        "rcu_sched self-detected stall",
        "BUG: soft lockup",
        "Kernel panic",
    ]
    .iter()
    .any(|m| line.contains(m))
}

/// The text of a console line that starts a kernel crash report, without its timestamp.
fn crash_line(line: &str) -> Option<&str> {
    const MARKERS: [&str; 5] = [
        "Oops:",
        "BUG:",
        "Kernel panic",
        "general protection fault",
        "rcu_sched self-detected stall",
    ];
    let text = match line.split_once("] ") {
        Some((stamp, rest)) if stamp.starts_with('[') => rest,
        _ => line,
    };
    MARKERS.iter().any(|m| text.contains(m)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_lines() {
        assert_eq!(
            crash_line("[  105.796276] Oops: int3: 0000 [#1] SMP NOPTI"),
            Some("Oops: int3: 0000 [#1] SMP NOPTI")
        );
        assert_eq!(
            crash_line("[  320.4] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:164]"),
            Some("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:164]")
        );
        assert_eq!(crash_line("test map_value_round_trips ... ok"), None);
    }

    #[test]
    fn events_make_the_column_state() {
        let mut run = ColumnRun::default();
        let t = Duration::from_secs(9);
        let line = |e: Event| format!("bpfconf-event {}", serde_json::to_string(&e).unwrap());
        let started = |test: &str| line(Event::CaseStarted { test: test.into() });
        run.see(&started("xdp::drops"), t);
        run.see(&started("xdp::bounces"), t);
        run.see(
            &line(Event::CaseEnded {
                test: "xdp::drops".into(),
            }),
            t,
        );
        run.see("[ 12.0] Oops: int3", t);
        assert_eq!((run.boot, run.cases_done), (Some(t), 1));
        assert_eq!(run.crash.as_deref(), Some("Oops: int3"));
        assert!(
            run.problem(Duration::from_secs(1)).unwrap().starts_with(
                "the suite stopped before its end (exit -1) while running xdp::bounces"
            )
        );
        run.see(&line(Event::Finished { exit: 0 }), t);
        assert_eq!(run.problem(Duration::from_secs(1)), None);
    }

    #[test]
    fn a_crash_names_the_binary_running_not_a_test_of_one_that_ended() {
        let mut run = ColumnRun::default();
        let t = Duration::from_secs(9);
        let line = |e: Event| format!("bpfconf-event {}", serde_json::to_string(&e).unwrap());
        run.see(
            &line(Event::Binary {
                name: "suite".into(),
            }),
            t,
        );
        run.see(
            &line(Event::CaseStarted {
                test: "verifier::loops::slow".into(),
            }),
            t,
        );
        let problem = run.problem(Duration::from_secs(1)).unwrap();
        assert!(
            problem.contains("while running suite (verifier::loops::slow)"),
            "{problem}"
        );
        // The binary was killed with its case running: no case_ended for it.
        run.see(
            &line(Event::BinaryEnded {
                name: "suite".into(),
                end: "killed: a case ran longer than 300 s".into(),
                missing: 1,
            }),
            t,
        );
        run.see(
            &line(Event::Binary {
                name: "selftests_7_3".into(),
            }),
            t,
        );
        run.see("[ 99.0] BUG: unable to handle page fault", t);
        let problem = run.problem(Duration::from_secs(1)).unwrap();
        let (why, _tail) = problem.split_once("; console tail").unwrap();
        assert_eq!(
            why,
            "the suite stopped before its end (exit -1) while running selftests_7_3 \
             (BUG: unable to handle page fault)"
        );
    }
}
