//! Loading programs with the verifier log captured, and the [`LoadOutcome`] that records it.
//!
//! libbpf loads skeletons and grows its own log buffer when the kernel answers `ENOSPC`; it hands
//! each program's log to its print callback. The harness installs one callback for the process and
//! routes messages to the thread that is loading, so parallel tests never mix their logs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{LazyLock, Once};

use libbpf_rs::skel::{OpenSkel, Skel};
use libbpf_rs::{Object, PrintLevel, set_print};
use regex::Regex;

use crate::errno;

pub use record::{LoadOutcome, ProgSize, ProgramLog, VerifierStats};

/// The verifier log level a load asks for (the kernel's `log_level` bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Statistics and error messages only (`BPF_LOG_STATS`): small, the default.
    Stats = 4,
    /// Every instruction the verifier walks, plus statistics (`1 | 4`).
    Verbose = 5,
    /// Register state at every instruction, plus statistics (`2 | 4`).
    Full = 6,
}

/// Parses libbpf's messages captured while loading `object`.
fn from_libbpf_messages(
    object: &str,
    messages: &str,
    error: Option<&libbpf_rs::Error>,
) -> LoadOutcome {
    static LOG: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?s)prog '([^']+)': -- BEGIN PROG LOAD LOG --\n(.*?)-- END PROG LOAD LOG --")
            .expect("valid regex")
    });
    static FAILED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"prog '([^']+)': BPF program load failed").expect("valid regex")
    });
    let programs = LOG
        .captures_iter(messages)
        .map(|c| {
            let log = c[2].to_owned();
            (
                c[1].to_owned(),
                ProgramLog {
                    stats: parse_stats(&log),
                    log,
                    size: None,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let failed_program = FAILED.captures(messages).map(|c| c[1].to_owned());
    let message = error.map(|e| {
        failed_program
            .as_ref()
            .and_then(|p| programs.get(p))
            .and_then(|p| key_line(&p.log))
            .or_else(|| last_warning(messages))
            .unwrap_or_else(|| format!("{e:#}"))
    });
    LoadOutcome {
        object: object.to_owned(),
        loaded: error.is_none(),
        errno: error.and_then(errno::of_libbpf).map(errno::name),
        failed_program,
        message,
        programs,
    }
}

/// Loads a skeleton with every program's verifier log captured at `level`.
///
/// Returns the loaded skeleton (or libbpf's error) and the outcome, which is complete either way.
pub fn load_skel<'obj, S: OpenSkel<'obj>>(
    open: S,
    level: LogLevel,
) -> (libbpf_rs::Result<S::Output>, LoadOutcome) {
    let (result, outcome, _) = load_skel_with_messages(open, level);
    (result, outcome)
}

/// [`load_skel`], also returning every message libbpf printed while loading (at debug level: the
/// CO-RE relocations it made, among others).
pub fn load_skel_with_messages<'obj, S: OpenSkel<'obj>>(
    mut open: S,
    level: LogLevel,
) -> (libbpf_rs::Result<S::Output>, LoadOutcome, String) {
    let object = open
        .open_object()
        .name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for mut prog in open.open_object_mut().progs_mut() {
        prog.set_log_level(level as u32);
    }
    let (result, mut outcome, messages) = captured(&object, || open.load());
    if let Ok(skel) = &result {
        add_sizes(&mut outcome, skel.object());
    }
    (result, outcome, messages)
}

/// [`load_skel`] for an object opened from a file (`bpfconf objects`).
pub fn load_object(
    mut open: libbpf_rs::OpenObject,
    level: LogLevel,
) -> (libbpf_rs::Result<libbpf_rs::Object>, LoadOutcome) {
    let object = open
        .name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for mut prog in open.progs_mut() {
        prog.set_log_level(level as u32);
    }
    let (result, mut outcome, _) = captured(&object, || open.load());
    if let Ok(loaded) = &result {
        add_sizes(&mut outcome, loaded);
    }
    (result, outcome)
}

/// Fills in the sizes of every program of `object` that the outcome lists.
fn add_sizes(outcome: &mut LoadOutcome, object: &Object) {
    for prog in object.progs() {
        let name = prog.name().to_string_lossy();
        if let Some(log) = outcome.programs.get_mut(&*name) {
            log.size = prog_size(prog.as_fd());
        }
    }
}

/// The kernel's sizes of the loaded program `fd` (`bpf_prog_info`); `None` when the kernel does
/// not answer.
pub fn prog_size(fd: BorrowedFd<'_>) -> Option<ProgSize> {
    let info = crate::prog::info(fd).ok()?;
    Some(ProgSize {
        xlated_bytes: info.xlated_prog_len,
        jited_bytes: info.jited_prog_len,
        // The kernel zeroes what it does not know: 0 verified instructions means before 5.16.
        verified_insns: (info.verified_insns > 0).then_some(info.verified_insns),
    })
}

/// Runs `load` with libbpf's messages captured, parsed into the outcome and returned whole.
fn captured<T>(
    object: &str,
    load: impl FnOnce() -> libbpf_rs::Result<T>,
) -> (libbpf_rs::Result<T>, LoadOutcome, String) {
    let (result, messages) = with_libbpf_messages(load);
    let outcome = from_libbpf_messages(object, &messages, result.as_ref().err());
    (result, outcome, messages)
}

/// Runs `f` with libbpf's messages captured (for loads that bring their own log buffers, whose
/// logs libbpf does not print); returns them whole.
pub fn with_libbpf_messages<T>(f: impl FnOnce() -> T) -> (T, String) {
    install_print_callback();
    CAPTURE.with(|c| *c.borrow_mut() = Some(String::new()));
    let result = f();
    let messages = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (result, messages)
}

thread_local! {
    /// libbpf's messages while this thread loads an object; `None` when it is not loading.
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_print_callback() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        set_print(Some((PrintLevel::Debug, route_libbpf_message)));
    });
}

/// Captures messages of a thread that is loading; passes other warnings on to stderr.
fn route_libbpf_message(level: PrintLevel, message: String) {
    let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(buffer) => {
            buffer.push_str(&message);
            true
        }
        None => false,
    });
    if !captured && level == PrintLevel::Warn {
        eprint!("libbpf: {message}");
    }
}

/// Parses the statistics the verifier ends its log with, each figure from whichever summary line
/// holds it (the lines change between releases: `stack depth 8+16`, `stack depth max 8`, `stack
/// depth 0 max 0`, `insns processed 9`, one `subprog …` line per subprogram). `None` when the log
/// has no `processed N insns` figure.
pub fn parse_stats(log: &str) -> Option<VerifierStats> {
    static FIGURE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?m)processed (?P<insns>\d+) insns|max_states_per_insn (?P<max>\d+)|total_states (?P<total>\d+)|peak_states (?P<peak>\d+)|verification time (?P<time>\d+) usec|^stack depth (?P<stack>[0-9+]+)?(?: ?max (?P<stack_max>\d+))?",
        )
        .expect("valid regex")
    });
    let stats = stats_block(log).unwrap_or(log);
    let mut found = VerifierStats::default();
    let mut insns = None;
    for c in FIGURE.captures_iter(stats) {
        let n = |name: &str| c.name(name).and_then(|m| m.as_str().parse::<u64>().ok());
        if let Some(v) = n("insns") {
            insns = Some(v);
        }
        found.max_states_per_insn = n("max").unwrap_or(found.max_states_per_insn);
        found.total_states = n("total").unwrap_or(found.total_states);
        found.peak_states = n("peak").unwrap_or(found.peak_states);
        if let Some(t) = n("time") {
            found.verification_time_us = Some(t);
        }
        // The maximum where the kernel prints one, else its per-subprogram figures.
        if let Some(depth) = c.name("stack_max").or(c.name("stack")) {
            found.stack_depth = Some(depth.as_str().to_owned());
        }
    }
    found.processed_insns = insns?;
    Some(found)
}

/// The verifier's complaint: the last line before the statistics block (whatever lines that block
/// holds), skipping the state dumps (`cur state:`/`old state:`) and the report (`Verification
/// failed: …`) newer kernels print after the message.
pub fn key_line(log: &str) -> Option<String> {
    let body = match stats_block(log) {
        Some(stats) => &log[..log.len() - stats.len()],
        None => log,
    };
    let body = body.split("\nVerification failed:").next().unwrap_or(body);
    body.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("cur state:") && !l.starts_with("old state:"))
        .map(str::to_owned)
}

/// The statistics block at the end of a log: from `verification time N usec` (the first line of
/// the block at `BPF_LOG_STATS`, even when the kernel glued it onto the line before), else the last
/// `processed N insns` line (the only statistics line without `BPF_LOG_STATS`).
fn stats_block(log: &str) -> Option<&str> {
    static TIME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"verification time \d+ usec").expect("valid regex"));
    static PROCESSED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?m)^processed \d+ insns").expect("valid regex"));
    let start = TIME
        .find_iter(log)
        .last()
        .or_else(|| PROCESSED.find_iter(log).last())?
        .start();
    Some(&log[start..])
}

fn last_warning(messages: &str) -> Option<String> {
    messages
        .lines()
        .rev()
        .find(|l| l.starts_with("libbpf: ") && !l.contains("-- END PROG LOAD LOG --"))
        .map(|l| l.trim_start_matches("libbpf: ").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real log tails of every pinned kernel (tests/logs/<kernel>-<what>.log): the key line and
    /// the statistics are found whatever summary lines each kernel prints.
    macro_rules! log {
        ($name:literal) => {
            include_str!(concat!("../tests/logs/", $name, ".log"))
        };
    }

    #[test]
    fn every_kernel_s_refusal_gives_its_key_line() {
        let loops = [
            ("5.10", log!("5.10-infinite-loop")),
            ("6.1", log!("6.1-infinite-loop")),
            ("6.12", log!("6.12-infinite-loop")),
            ("6.18", log!("6.18-infinite-loop")),
            ("7.2", log!("7.2-infinite-loop")),
            ("7.3", log!("7.3-infinite-loop")),
            ("src-6.12", log!("src-6.12-infinite-loop")),
            ("host-6.18", log!("host-6.18-infinite-loop")),
        ];
        for (kernel, log) in loops {
            assert_eq!(
                key_line(log).as_deref(),
                Some("infinite loop detected at insn 1"),
                "{kernel}"
            );
            let stats = parse_stats(log).unwrap_or_else(|| panic!("{kernel}: no statistics"));
            assert_eq!(
                (stats.processed_insns, stats.total_states, stats.peak_states),
                (9, 1, 1),
                "{kernel}"
            );
            assert_eq!(stats.stack_depth.as_deref(), Some("0"), "{kernel}");
            assert!(stats.verification_time_us.is_some(), "{kernel}");
        }
    }

    #[test]
    fn every_kernel_s_statistics_read() {
        let accepted = [
            ("5.10", log!("5.10-accepted"), (22, 1, 2, 2)),
            ("6.1", log!("6.1-accepted"), (22, 1, 2, 2)),
            ("6.12", log!("6.12-accepted"), (22, 1, 2, 2)),
            ("6.18", log!("6.18-accepted"), (22, 1, 2, 2)),
            ("7.2", log!("7.2-accepted"), (22, 1, 2, 2)),
            ("7.3", log!("7.3-accepted"), (22, 1, 2, 2)),
            ("src-6.12", log!("src-6.12-accepted"), (22, 1, 2, 2)),
            ("host-6.18", log!("host-6.18-accepted"), (22, 1, 2, 2)),
        ];
        for (kernel, log, (insns, max, total, peak)) in accepted {
            let stats = parse_stats(log).unwrap_or_else(|| panic!("{kernel}: no statistics"));
            assert_eq!(
                (
                    stats.processed_insns,
                    stats.max_states_per_insn,
                    stats.total_states,
                    stats.peak_states
                ),
                (insns, max, total, peak),
                "{kernel}"
            );
            // Whatever an accepted program's last line is (`3: (95) exit`, 6.18's `SCC exit
            // (1)`), it is never a statistics line.
            let key = key_line(log).unwrap_or_default();
            for stats_line in [
                "processed",
                "verification",
                "stack depth",
                "subprog",
                "insns",
            ] {
                assert!(!key.starts_with(stats_line), "{kernel}: {key}");
            }
        }
    }

    /// 7.x follows the classic message with a report (`Verification failed: …`, reason,
    /// position, suggestion): the key line is the message before it.
    #[test]
    fn the_7x_report_is_skipped() {
        assert_eq!(
            key_line(log!("7.3-report")).as_deref(),
            Some("last insn is not an exit or jmp")
        );
        assert_eq!(
            key_line(log!("7.3-gpl-report")).as_deref(),
            Some("cannot call GPL-restricted function from non-GPL compatible program")
        );
        assert_eq!(
            parse_stats(log!("7.3-report"))
                .unwrap()
                .stack_depth
                .as_deref(),
            Some("0")
        );
    }

    /// A message without its newline gets the statistics glued on (`… ptr off:
    /// -16verification time 3826 usec`): the timing is never part of the key line.
    #[test]
    fn a_glued_timing_is_cut_off() {
        let log = log!("src-6.12-glued-time");
        assert_eq!(
            key_line(log).as_deref(),
            Some("spilled ptr in range of var-offset stack write; insn 5, ptr off: -16")
        );
        assert_eq!(parse_stats(log).unwrap().verification_time_us, Some(3826));
    }

    /// Without BPF_LOG_STATS the only statistics line is `processed N insns …`; per-subprogram
    /// depths (`8+16`) stay as the kernel prints them.
    #[test]
    fn logs_without_the_stats_bit_and_with_subprograms() {
        let log = "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\n\
            processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1\n";
        assert_eq!(
            key_line(log).as_deref(),
            Some("R1 invalid mem access 'scalar'")
        );
        assert_eq!(parse_stats(log).unwrap().verification_time_us, None);
        let subprogs = "verification time 5 usec\nstack depth 8+16\n\
            processed 30 insns (limit 1000000) max_states_per_insn 1 total_states 3 peak_states 3 mark_read 1\n";
        assert_eq!(
            parse_stats(subprogs).unwrap().stack_depth.as_deref(),
            Some("8+16")
        );
        assert_eq!(parse_stats("no statistics here"), None);
        assert_eq!(key_line(""), None);
    }
}
