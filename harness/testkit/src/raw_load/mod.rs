//! Loading raw instruction lists ([`crate::insn::Asm`], or a loaded object's instructions) with
//! `bpf_prog_load` and a log buffer of the harness's own, at a chosen log level.
//!
//! The kernel answers `ENOSPC` when the verifier's log does not fit the buffer (whatever the
//! verdict); the loader then grows the buffer and tries again, and counts the retries. The result is
//! the same [`LoadOutcome`] that skeleton loads produce, plus the program's fd.
//!
//! [`Case::load_raw`] records the outcome in the case's record and snapshots the **whole** log per
//! kernel ([`snapshot`]). A load by an unprivileged user runs in a forked child without
//! capabilities ([`unprivileged`]).

mod snapshot;
mod unprivileged;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{ProgramAttachType, ProgramType};
use loader::btf::FuncBtf;
use loader::prog::{self, Load};
use nix::errno::Errno;
use regex::Regex;
use serde::Serialize;

use crate::errno;
use crate::insn::Insn;
use crate::kernel::prog_type_name;
use crate::load::{LoadOutcome, LogLevel, ProgramLog, key_line, parse_stats};

pub use loader::prog::info as prog_info;
pub use snapshot::redact_log;

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
    attach: Option<ProgramAttachType>,
    level: LogLevel,
    log_size: usize,
    log_in_snapshot: bool,
    test_input: Option<Vec<u8>>,
    functions: Vec<(u32, String)>,
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
            attach: None,
            level: LogLevel::Verbose,
            log_size: 64 * 1024,
            log_in_snapshot: true,
            test_input: None,
            functions: Vec::new(),
        }
    }

    /// Names the program's functions for the kernel (BTF `func_info`: first slot and name, the
    /// main function at slot 0 first): a program whose callback is an `ld_func` needs it.
    /// Privileged loads only.
    pub fn functions(mut self, functions: &[(u32, &str)]) -> Self {
        self.functions = functions
            .iter()
            .map(|&(slot, name)| (slot, name.to_owned()))
            .collect();
        self
    }

    /// The attach type the program is verified for (`expected_attach_type`): some types check
    /// their context and return value against it.
    pub fn expected_attach_type(mut self, attach: ProgramAttachType) -> Self {
        self.attach = Some(attach);
        self
    }

    /// Runs the accepted program once with `BPF_PROG_TEST_RUN` on `data` as part of the load
    /// ([`RawLoad::ran`]): an unprivileged load's program lives only in its child.
    pub fn test_input(mut self, data: &[u8]) -> Self {
        self.test_input = Some(data.to_owned());
        self
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
    /// needed, 6.4+, or double) and retries until the log fits. An accepted program is test-run
    /// when [`RawProgram::test_input`] was given, and its translated instructions are fetched.
    pub fn load(&self) -> RawLoad {
        let (name, license) = self.c_strings();
        let btf = (!self.functions.is_empty()).then(|| {
            FuncBtf::load(&self.functions).unwrap_or_else(|e| {
                panic!("loading the BTF that names {}'s functions: {e}", self.name)
            })
        });
        let mut req = self.request(&name, &license, &self.insns);
        req.btf = btf.as_ref().map(FuncBtf::for_load);
        let mut size = self.log_size;
        let mut attempts = Vec::new();
        loop {
            let mut buf = vec![0u8; size];
            let loaded = prog::load(&req, &mut buf);
            let errno = loaded.fd.as_ref().err().copied();
            if let Some(larger) = retry(&mut attempts, size, errno, loaded.log_true_size) {
                size = larger;
                continue;
            }
            let errno = errno.map(|e| errno::name(e as i32));
            let fd = loaded.fd.ok();
            let mut load = self.outcome(text_of(&buf), errno, fd.is_some(), fd, attempts);
            if let Some(fd) = &load.fd {
                load.ran = self
                    .test_input
                    .as_deref()
                    .map(|data| test_run(fd.as_fd(), data));
                load.xlated = Some(prog::xlated(fd.as_fd()));
            }
            return load;
        }
    }

    /// What every load of the program asks for (the BTF aside).
    fn request<'a>(
        &self,
        name: &'a CString,
        license: &'a CString,
        insns: &'a [libbpf_sys::bpf_insn],
    ) -> Load<'a> {
        let mut req = Load::new(self.prog_type as u32, license, insns);
        req.name = Some(name);
        req.expected_attach_type = self.attach.clone().map_or(0, |a| a as u32);
        req.log_level = self.level as u32;
        req
    }

    /// The program's name as the kernel takes it, and its license.
    fn c_strings(&self) -> (CString, CString) {
        (
            CString::new(kernel_name(&self.name)).unwrap_or_default(),
            CString::new(self.license.as_str()).unwrap_or_default(),
        )
    }

    fn outcome(
        &self,
        log: String,
        errno: Option<String>,
        loaded: bool,
        fd: Option<OwnedFd>,
        attempts: Vec<Attempt>,
    ) -> RawLoad {
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
                    size: fd
                        .as_ref()
                        .and_then(|fd| crate::load::prog_size(fd.as_fd())),
                },
            )]),
        };
        RawLoad {
            log_in_snapshot: self.log_in_snapshot,
            prog_type: prog_type_name(self.prog_type),
            attach: self.attach.clone().map(|a| attach_type_name(a as u32)),
            unprivileged: false,
            license: self.license.clone(),
            log_level: self.level as u32,
            log_retries: attempts.len() as u32 - 1,
            attempts,
            outcome,
            fd,
            ran: None,
            xlated: None,
        }
    }
}

/// Records a load with a log buffer of `size` bytes that ended in `errno`; when the log did not
/// fit (`ENOSPC`), the size to try next: what the kernel said it needed (6.4+), or double.
fn retry(
    attempts: &mut Vec<Attempt>,
    size: usize,
    errno: Option<Errno>,
    true_size: u32,
) -> Option<usize> {
    attempts.push(Attempt {
        log_size: size,
        errno: errno.map(|e| errno::name(e as i32)),
    });
    // The log's `verification time N usec` changes from run to run: the next attempt gets room
    // for more digits than this one printed, so how many attempts a load takes does not.
    const TIME_DIGITS: usize = 16;
    (errno == Some(Errno::ENOSPC) && size < MAX_LOG_SIZE).then(|| {
        (size * 2)
            .max(true_size as usize + TIME_DIGITS)
            .min(MAX_LOG_SIZE)
    })
}

/// The NUL-terminated text in a log buffer.
fn text_of(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())])
        .into_owned()
}

/// The kernel's name of an attach type (`cgroup_inet_ingress`, …).
fn attach_type_name(attach: u32) -> String {
    features::attach_type_str(attach).unwrap_or_else(|| attach.to_string())
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
    /// The kernel's name of the expected attach type, when one was given.
    pub attach: Option<String>,
    /// Whether an unprivileged user loaded it ([`RawProgram::load_unprivileged`]).
    pub unprivileged: bool,
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
    /// The loaded program, when the kernel accepted it (and a privileged load holds it).
    pub fd: Option<OwnedFd>,
    /// The test run of the accepted program on [`RawProgram::test_input`]: its return value.
    pub ran: Option<io::Result<u32>>,
    /// The accepted program's translated instructions (`xlated_prog_insns`).
    pub xlated: Option<io::Result<Vec<Insn>>>,
}

impl RawLoad {
    /// The verifier log of the last attempt.
    pub fn log(&self) -> &str {
        self.outcome.log(&self.outcome.object)
    }

    /// The loaded program's fd; a `fail` when the kernel refused it (or it was loaded by an
    /// unprivileged child, which kept it).
    pub fn fd(&self) -> crate::CaseResult<BorrowedFd<'_>> {
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

/// Where the first match of the regex `pattern` in `log` ends: for expectations of a log written as
/// regexes (the test crate has no regex engine of its own).
pub fn regex_end(pattern: &str, log: &str) -> Result<Option<usize>, regex::Error> {
    Ok(Regex::new(pattern)?.find(log).map(|m| m.end()))
}

/// Runs the program behind `fd` once with `BPF_PROG_TEST_RUN` on `data` (a packet for the
/// networking types) and returns its return value.
pub fn test_run(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<u32> {
    let run = prog::TestRun {
        data_in: Some(data),
        repeat: 1,
        ..Default::default()
    };
    Ok(prog::test_run(fd, run)?.retval)
}
