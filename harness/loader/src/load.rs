//! Loading programs with the verifier log captured, and the [`LoadOutcome`] that records it.
//!
//! libbpf loads skeletons and grows its own log buffer when the kernel answers `ENOSPC`; it hands
//! each program's log to its print callback. The harness installs one callback for the process and
//! routes messages to the thread that is loading, so parallel tests never mix their logs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{LazyLock, Once};

use libbpf_rs::skel::{OpenSkel, Skel};
use libbpf_rs::{Object, PrintLevel, set_print};
use regex::Regex;

use crate::errno;

pub use bpfconf_record::{LoadOutcome, ProgSize, ProgramLog, VerifierStats};

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
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = size_of_val(&info) as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes with every pointer field zero (no arrays
    // asked for), which BPF_OBJ_GET_INFO_BY_FD fills in.
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&raw mut info).cast(),
            &mut len,
        )
    };
    (ret == 0).then(|| ProgSize {
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

/// Parses the statistics lines the verifier ends its log with.
pub fn parse_stats(log: &str) -> Option<VerifierStats> {
    static PROCESSED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"processed (\d+) insns \(limit \d+\) max_states_per_insn (\d+) total_states (\d+) peak_states (\d+)",
        )
        .expect("valid regex")
    });
    static TIME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"verification time (\d+) usec").expect("valid regex"));
    static STACK: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"stack depth (?:max )?([0-9+]+)").expect("valid regex"));
    let c = PROCESSED.captures(log)?;
    let n = |i: usize| c[i].parse().unwrap_or_default();
    Some(VerifierStats {
        processed_insns: n(1),
        max_states_per_insn: n(2),
        total_states: n(3),
        peak_states: n(4),
        stack_depth: STACK.captures(log).map(|c| c[1].to_owned()),
        verification_time_us: TIME.captures(log).and_then(|c| c[1].parse().ok()),
    })
}

/// The verifier's complaint: the last log line that is not a statistics line, nor one of the
/// state dumps newer kernels print after it (`cur state:`/`old state:` after an infinite loop).
pub fn key_line(log: &str) -> Option<String> {
    // 7.x follows the classic message with a report (`Verification failed: …`, reason, position,
    // suggestion): the key line is the message before it.
    let log = log.split("\nVerification failed:").next().unwrap_or(log);
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !is_trailer(l))
        .map(str::to_owned)
}

/// The statistics and state dumps the verifier prints after its verdict.
fn is_trailer(line: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "processed ",
        "verification time",
        "stack depth",
        "cur state:",
        "old state:",
    ];
    // 7.x adds one statistics line per subprogram.
    PREFIXES.iter().any(|p| line.starts_with(p))
        || (line.starts_with("subprog ") && line.contains(" insns_self "))
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

    const LOG: &str = "func#0 @0\n0: R1=ctx() R10=fp0\nR1 invalid mem access 'scalar'\n\
        verification time 12 usec\nstack depth 16\n\
        processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1\n";

    #[test]
    fn stats_and_key_line_come_from_the_log_tail() {
        let stats = parse_stats(LOG).unwrap();
        assert_eq!(stats.processed_insns, 7);
        assert_eq!(stats.total_states, 1);
        assert_eq!(stats.stack_depth.as_deref(), Some("16"));
        assert_eq!(stats.verification_time_us, Some(12));
        assert_eq!(
            key_line(LOG).as_deref(),
            Some("R1 invalid mem access 'scalar'")
        );
    }

    /// 7.x logs `stack depth max N` and one statistics line per subprogram after the verdict.
    #[test]
    fn key_line_skips_the_7x_statistics() {
        let log = "1: (05) goto pc-1\ninfinite loop detected at insn 1\ncur state: R10=fp0\n\
            verification time 22919 usec\nstack depth max 8\n\
            subprog 0 (<unknown>) main insns_self 9 insns_total 9 stack 0\n\
            processed 9 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0\n";
        assert_eq!(
            key_line(log).as_deref(),
            Some("infinite loop detected at insn 1")
        );
        assert_eq!(parse_stats(log).unwrap().stack_depth.as_deref(), Some("8"));

        let report = "1: (b7) r0 = 1\nlast insn is not an exit or jmp\n\n\
            Verification failed: Program Structure: Subprogram can fall through\n\nSuggestion:\n  \
            End each subprogram with an exit.\n\nverification time 349 usec\n";
        assert_eq!(
            key_line(report).as_deref(),
            Some("last insn is not an exit or jmp")
        );
    }
}
