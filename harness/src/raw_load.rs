//! Loading raw instruction lists ([`crate::insn::Asm`], or a loaded object's instructions) with
//! `bpf_prog_load` and a log buffer of the harness's own, at a chosen log level.
//!
//! The kernel answers `ENOSPC` when the verifier's log does not fit the buffer (whatever the
//! verdict); the loader then grows the buffer and tries again, and counts the retries. The result is
//! the same [`LoadOutcome`] that skeleton loads produce, plus the program's fd.
//!
//! [`Case::load_raw`] records the outcome in the case's record and snapshots the **whole** log per
//! kernel: these logs do not depend on the compiler, so only what changes run to run (the
//! verification time, map ids) is redacted.

use std::collections::BTreeMap;
use std::ffi::{CString, c_char};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::LazyLock;

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys;
use regex::Regex;
use serde::Serialize;

use crate::case::{Case, prog_type_name};
use crate::load::{LoadOutcome, LogLevel, ProgramLog, VerifierStats, key_line, parse_stats};
use crate::{errno, snapshot};

/// The largest log buffer the kernel accepts (`UINT_MAX >> 2`).
pub const MAX_LOG_SIZE: usize = (u32::MAX >> 2) as usize;
/// The smallest log buffer older kernels accept.
pub const MIN_LOG_SIZE: usize = 128;

/// A program to load from raw instructions.
#[derive(Clone, Debug)]
pub struct RawProgram {
    name: String,
    prog_type: ProgramType,
    insns: Vec<libbpf_sys::bpf_insn>,
    license: String,
    level: LogLevel,
    log_size: usize,
    log_in_snapshot: bool,
}

impl RawProgram {
    /// A program named `name` (the kernel is given its first 15 letters, digits, `_` and `.`) of
    /// type `prog_type`; license "GPL", log level [`LogLevel::Verbose`], a 64 KiB log buffer to start.
    pub fn new(
        name: &str,
        prog_type: ProgramType,
        insns: impl Into<Vec<libbpf_sys::bpf_insn>>,
    ) -> Self {
        RawProgram {
            name: name.to_owned(),
            prog_type,
            insns: insns.into(),
            license: "GPL".to_owned(),
            level: LogLevel::Verbose,
            log_size: 64 * 1024,
            log_in_snapshot: true,
        }
    }

    /// The license string the kernel checks GPL-only helpers against.
    pub fn license(mut self, license: &str) -> Self {
        self.license = license.to_owned();
        self
    }

    /// The verifier log level.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.level = level;
        self
    }

    /// The first log buffer's size in bytes (at least [`MIN_LOG_SIZE`]); grown on `ENOSPC`.
    pub fn log_size(mut self, bytes: usize) -> Self {
        self.log_size = bytes.clamp(MIN_LOG_SIZE, MAX_LOG_SIZE);
        self
    }

    /// Whether [`Case::load_raw`] snapshots the whole log (the default) or only the verifier's
    /// statistics: instructions a compiler produced (a loaded object's) give logs that change with
    /// the compiler, like any C sample's.
    pub fn log_in_snapshot(mut self, whole_log: bool) -> Self {
        self.log_in_snapshot = whole_log;
        self
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads the program; on `ENOSPC` grows the log buffer (to the size the kernel reports it
    /// needed, 6.4+, or double) and retries until the log fits.
    pub fn load(&self) -> RawLoad {
        let name = CString::new(kernel_name(&self.name)).unwrap_or_default();
        let license = CString::new(self.license.as_str()).unwrap_or_default();
        let mut size = self.log_size;
        let mut attempts = Vec::new();
        loop {
            let mut buf = vec![0u8; size];
            let mut opts = libbpf_sys::bpf_prog_load_opts {
                sz: size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
                log_level: self.level as u32,
                log_size: size as u32,
                log_buf: buf.as_mut_ptr().cast::<c_char>(),
                ..Default::default()
            };
            // SAFETY: every pointer outlives the call; insns holds insn_cnt instructions.
            let ret = unsafe {
                libbpf_sys::bpf_prog_load(
                    self.prog_type as u32,
                    name.as_ptr(),
                    license.as_ptr(),
                    self.insns.as_ptr(),
                    self.insns.len() as _,
                    &mut opts,
                )
            };
            let errno = (ret < 0).then(|| errno::name(ret));
            attempts.push(Attempt {
                log_size: size,
                errno: errno.clone(),
            });
            let log = String::from_utf8_lossy(
                &buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())],
            )
            .into_owned();
            if errno.as_deref() == Some("ENOSPC") && size < MAX_LOG_SIZE {
                size = (size * 2)
                    .max(opts.log_true_size as usize + 1)
                    .min(MAX_LOG_SIZE);
                continue;
            }
            // SAFETY: a non-negative return is a new fd that nothing else owns.
            let fd = (ret >= 0).then(|| unsafe { OwnedFd::from_raw_fd(ret) });
            return self.outcome(log, errno, fd, attempts);
        }
    }

    fn outcome(
        &self,
        log: String,
        errno: Option<String>,
        fd: Option<OwnedFd>,
        attempts: Vec<Attempt>,
    ) -> RawLoad {
        let loaded = fd.is_some();
        let message = (!loaded).then(|| {
            key_line(&log).unwrap_or_else(|| {
                format!(
                    "refused with {} and an empty verifier log (the kernel stopped before the verifier \
                     ran: an attribute or instruction it does not know)",
                    errno.as_deref().unwrap_or("an error")
                )
            })
        });
        let outcome = LoadOutcome {
            object: self.name.clone(),
            loaded,
            errno,
            failed_program: (!loaded).then(|| self.name.clone()),
            message,
            programs: BTreeMap::from([(
                self.name.clone(),
                ProgramLog {
                    stats: parse_stats(&log),
                    log,
                },
            )]),
        };
        RawLoad {
            log_in_snapshot: self.log_in_snapshot,
            prog_type: prog_type_name(self.prog_type),
            license: self.license.clone(),
            log_level: self.level as u32,
            log_retries: attempts.len() as u32 - 1,
            attempts,
            outcome,
            fd,
        }
    }
}

/// The name the kernel accepts: up to 15 characters out of letters, digits, `_` and `.`.
fn kernel_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(15)
        .collect()
}

/// One `bpf_prog_load` call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The log buffer's size.
    pub log_size: usize,
    /// The call's errno, symbolic; `None` when it loaded.
    pub errno: Option<String>,
}

/// What a raw load produced.
#[derive(Debug)]
pub struct RawLoad {
    /// Whether the snapshot holds the whole log ([`RawProgram::log_in_snapshot`]).
    pub log_in_snapshot: bool,
    /// The kernel's name of the program type (`socket_filter`, …).
    pub prog_type: String,
    /// The license string.
    pub license: String,
    /// The `log_level` bits asked for.
    pub log_level: u32,
    /// How many times the harness grew the log buffer and retried after `ENOSPC`.
    pub log_retries: u32,
    /// Every call, in order.
    pub attempts: Vec<Attempt>,
    /// Verdict, errno, key line and the whole log.
    pub outcome: LoadOutcome,
    /// The loaded program, when the kernel accepted it.
    pub fd: Option<OwnedFd>,
}

impl RawLoad {
    /// The verifier log of the last attempt.
    pub fn log(&self) -> &str {
        self.outcome.log(&self.outcome.object)
    }

    /// The loaded program's fd; a `fail` when the kernel refused it.
    pub fn fd(&self) -> crate::CaseResult<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(AsFd::as_fd).ok_or_else(|| {
            crate::CaseError::Fail(anyhow::anyhow!(
                "the kernel refused {}: {} ({})",
                self.outcome.object,
                self.outcome.message.clone().unwrap_or_default(),
                self.outcome.errno.clone().unwrap_or_default()
            ))
        })
    }
}

/// The snapshot of a raw load: the verdict and the whole log, redacted (or the statistics only).
#[derive(Serialize)]
struct RawSnapshot<'a> {
    program: &'a str,
    prog_type: &'a str,
    license: &'a str,
    /// `1+stats` (`log_level` 5), `2+stats` (6) or `stats` (4).
    log_level: String,
    loaded: bool,
    errno: Option<&'a str>,
    message: Option<&'a str>,
    attempts: Vec<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<&'a VerifierStats>,
    /// One entry per line, so a difference shows as the lines that changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Vec<String>>,
}

/// `log_level` bits as the kernel documents them: `1+stats`, `2+stats`, `stats`.
fn level_name(bits: u32) -> String {
    let mut parts = Vec::new();
    if bits & 1 != 0 {
        parts.push("1");
    }
    if bits & 2 != 0 {
        parts.push("2");
    }
    if bits & 4 != 0 {
        parts.push("stats");
    }
    parts.join("+")
}

/// The log with what changes from run to run replaced: the verification time, map ids, and kernel
/// addresses (a map's address is printed for `ld_imm64` of a map fd when the loader may see
/// pointers).
pub fn redact_log(log: &str) -> String {
    static TIME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"verification time \d+ usec").expect("valid regex"));
    static MAP_ID: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"map\[id:\d+\]").expect("valid regex"));
    static ADDRESS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"0xffff[0-9a-f]{12}\b").expect("valid regex"));
    let log = TIME.replace_all(log, "verification time [usec] usec");
    let log = MAP_ID.replace_all(&log, "map[id:[id]]");
    ADDRESS.replace_all(&log, "[addr]").into_owned()
}

impl Case {
    /// Loads a raw program, records the outcome in the case's record and snapshots its verdict and
    /// whole (redacted) log for the running kernel. A refusal is returned, not failed: the case
    /// asserts what it expects.
    pub fn load_raw(&mut self, program: &RawProgram) -> RawLoad {
        let load = program.load();
        let view = RawSnapshot {
            program: &load.outcome.object,
            prog_type: &load.prog_type,
            license: &load.license,
            log_level: level_name(load.log_level),
            loaded: load.outcome.loaded,
            errno: load.outcome.errno.as_deref(),
            message: load.outcome.message.as_deref(),
            attempts: load.attempts.iter().map(|a| a.errno.as_deref()).collect(),
            stats: (!load.log_in_snapshot)
                .then(|| load.outcome.programs.values().next())
                .flatten()
                .and_then(|p| p.stats.as_ref()),
            log: load
                .log_in_snapshot
                .then(|| redact_log(load.log()).lines().map(str::to_owned).collect()),
        };
        let name = self.snapshot_name(&load.outcome.object);
        if !snapshot::assert_yaml(&name, &view) {
            self.detail("snapshot", "baseline written for review");
        }
        self.detail(
            &format!("{}.log_retries", load.outcome.object),
            load.log_retries,
        );
        self.push_load(load.outcome.clone());
        load
    }
}

/// The kernel's `bpf_prog_info` of the program behind `fd` (counts of func and line info records,
/// BTF id, GPL compatibility, …; no arrays are fetched).
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<libbpf_sys::bpf_prog_info> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a valid bpf_prog_info of len bytes.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(info)
}

/// Runs the program behind `fd` once with `BPF_PROG_TEST_RUN` on `data` (a packet for the
/// networking types) and returns its return value.
pub fn test_run(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<u32> {
    // SAFETY: a zeroed bpf_test_run_opts is valid; data outlives the call.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts.data_in = data.as_ptr().cast();
    opts.data_size_in = data.len() as u32;
    opts.repeat = 1;
    // SAFETY: fd is a live program fd and opts is initialised.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd.as_raw_fd(), &mut opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(opts.retval)
}

#[cfg(test)]
mod tests {
    use super::redact_log;

    #[test]
    fn redaction_keeps_everything_but_times_and_ids() {
        let log = "0: (18) r1 = map[id:42]\n3: (18) r1 = 0xffff888136b18e00 ; R1=map_ptr\n\
                   verification time 31 usec\nstack depth 8\n";
        assert_eq!(
            redact_log(log),
            "0: (18) r1 = map[id:[id]]\n3: (18) r1 = [addr] ; R1=map_ptr\n\
             verification time [usec] usec\nstack depth 8\n"
        );
    }
}
