//! The tracing_multi links of Linux 7.2 (BPF_TRACE_FENTRY_MULTI, BPF_TRACE_FEXIT_MULTI,
//! BPF_TRACE_FSESSION_MULTI): one BPF_LINK_CREATE puts a tracing program, loaded without an
//! attach target, on many kernel functions named by their BTF ids, each with a cookie.
//!
//! libbpf 1.7 (libbpf-sys 1.7, libbpf-rs 0.27) knows neither the attach types nor the link: it
//! finds no section for `fentry.multi` (the program's type and expected attach type are set
//! here before load) and its `bpf_link_create` passes no ids for an attach type it does not know.
//! So [`link`] makes the bpf(2) call itself, with the kernel's `link_create.tracing_multi`
//! attributes (libbpf 1.8 has `bpf_program__attach_tracing_multi`).
//!
//! It also holds the experiment tracing_multi and kprobe_session (`tests/suite/`) share: programs
//! on the entry functions of getpgid and getsid log their runs for the test thread in `.bss`
//! slots while it makes [`CALLS`]; what they logged must be the [`Runs`] the calls made.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::btf::types::Func;
use libbpf_rs::{AsRawLibbpf, Btf, OpenProgramMut, ProgramType, libbpf_sys};
use nix::errno::Errno;

use crate::observe::volatile;
use crate::outcome::{CaseError, CaseResult, OrError};
use crate::{Case, floors, ksyscall, runs};

/// `enum bpf_attach_type` values of Linux 7.2 (`include/uapi/linux/bpf.h`).
pub const FENTRY_MULTI: u32 = 59;
pub const FEXIT_MULTI: u32 = 60;
pub const FSESSION_MULTI: u32 = 61;

/// The `link_create` part of `union bpf_attr` for a tracing_multi link.
#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    /// `link_create.tracing_multi`: pointers to `cnt` BTF ids and `cnt` cookies.
    ids: u64,
    cookies: u64,
    cnt: u32,
    _pad: u32,
}

/// Makes `prog` a tracing program of `attach_type`, before load.
pub fn prepare(prog: &mut OpenProgramMut<'_>, attach_type: u32) -> CaseResult {
    prog.set_prog_type(ProgramType::Tracing);
    // SAFETY: an open (not yet loaded) program; libbpf only records the value.
    let rc = unsafe {
        libbpf_sys::bpf_program__set_expected_attach_type(
            prog.as_libbpf_object().as_ptr(),
            attach_type,
        )
    };
    Errno::result(rc).or_error("setting the expected attach type")?;
    Ok(())
}

/// The BTF ids of the kernel functions `names` (vmlinux BTF).
pub fn func_ids(names: &[&str]) -> CaseResult<Vec<u32>> {
    let btf = Btf::from_vmlinux().or_error("reading the kernel's BTF")?;
    names
        .iter()
        .map(|name| {
            btf.type_by_name::<Func<'_>>(name)
                .map(|f| u32::from(f.type_id()))
                .ok_or_else(|| {
                    CaseError::Error(anyhow::anyhow!("no function {name} in the kernel's BTF"))
                })
        })
        .collect()
}

/// BPF_LINK_CREATE of a tracing_multi link of `prog` over the functions `ids`, function i with
/// `cookies[i]`.
pub fn link(
    prog: BorrowedFd<'_>,
    attach_type: u32,
    ids: &[u32],
    cookies: &[u64],
) -> Result<OwnedFd, Errno> {
    assert_eq!(ids.len(), cookies.len(), "one cookie per function");
    let attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: 0,
        attach_type,
        flags: 0,
        ids: ids.as_ptr() as u64,
        cookies: cookies.as_ptr() as u64,
        cnt: ids.len() as u32,
        _pad: 0,
    };
    // SAFETY: `attr` is the leading part of a union bpf_attr for BPF_LINK_CREATE, of the size
    // passed (the kernel zero-fills the rest); `ids` and `cookies` hold `cnt` entries and outlive
    // the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libbpf_sys::BPF_LINK_CREATE,
            &attr as *const LinkCreate,
            size_of::<LinkCreate>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this link fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Above the kernel's PID_MAX_LIMIT (4,194,304): no process has it.
pub const MISSING_PID: i64 = 4_194_304 + 4242;
/// The cookies of getpgid's and getsid's entry functions.
pub const GETPGID: u64 = 1;
pub const GETSID: u64 = 2;
/// The calls the test thread makes, in order: (the function's cookie, pid).
pub const CALLS: [(u64, i64); 4] = [
    (GETPGID, 0),
    (GETSID, 0),
    (GETPGID, MISSING_PID),
    (GETSID, MISSING_PID),
];
/// The slots a program logs each kind of run in (`SLOTS` in its .bpf.c).
const SLOTS: usize = 8;

/// The test thread's calls of getpgid and getsid ([`CALLS`]), prepared before a program is on
/// their entry functions.
pub struct Calls {
    /// The entry functions of getpgid and getsid, in the cookies' order.
    pub functions: Vec<String>,
    /// Read before attaching: the library may ask getpgid for the process group.
    pgrp: i64,
}

impl Calls {
    /// Resolves the functions (the case's `functions`) and reads the process group.
    pub fn prepare(case: &mut Case) -> CaseResult<Calls> {
        let functions = ["getpgid", "getsid"]
            .iter()
            .map(|name| floors::judge("ksym.syscall_entry", ksyscall::resolve(name)))
            .map(|f| f.map(|f| f.symbol))
            .collect::<CaseResult<Vec<_>>>()?;
        case.detail("functions", &functions);
        let pgrp = i64::from(nix::unistd::getpgrp().as_raw());
        Ok(Calls { functions, pgrp })
    }

    /// Makes [`CALLS`] and returns what each returned; getpgid(0) must answer the process group.
    pub fn make(&self) -> Vec<i64> {
        let returned: Vec<i64> = CALLS
            .iter()
            .map(|&(f, pid)| {
                if f == GETPGID {
                    ksyscall::getpgid(pid)
                } else {
                    ksyscall::getsid(pid)
                }
            })
            .collect();
        assert_eq!(returned[0], self.pgrp, "getpgid(0)");
        returned
    }
}

/// Runs of a program, in order: entries (cookie, pid) and exits (cookie, pid, return value).
#[derive(Debug)]
pub struct Runs {
    pub entries: Vec<(u64, i64)>,
    pub exits: Vec<(u64, i64, i64)>,
}

/// A program's log of one kind of run: how many it logged, and each one's cookie and pid.
type Log<'a> = (&'a u32, &'a [u64; SLOTS], &'a [u64; SLOTS]);

impl Runs {
    /// The runs [`CALLS`] made, an entry and an exit each; `returned`: what [`Calls::make`] returned.
    pub fn made(returned: &[i64]) -> Runs {
        Runs {
            entries: CALLS.to_vec(),
            exits: CALLS
                .iter()
                .zip(returned)
                .map(|(&(f, pid), &ret)| (f, pid, ret))
                .collect(),
        }
    }

    /// The runs a program logged in its `.bss` (the first [`SLOTS`] of each kind): entries, and
    /// exits with their return `values`.
    pub fn logged(entries: Log<'_>, exits: Log<'_>, values: &[i64; SLOTS]) -> Runs {
        let read = |(count, cookies, pids): Log<'_>| {
            let (cookies, pids) = (volatile(cookies), volatile(pids));
            (0..(volatile(count) as usize).min(SLOTS)).map(move |i| (cookies[i], pids[i] as i64))
        };
        let values = volatile(values);
        Runs {
            entries: read(entries).collect(),
            exits: read(exits)
                .zip(values)
                .map(|((cookie, pid), ret)| (cookie, pid, ret))
                .collect(),
        }
    }

    /// Records these runs, which `prog` logged, as the case's `entries` and `exits[0]`, and checks
    /// them against those `made`: in order, less only runs the kernel reports it skipped
    /// (`exits[1]` names the exit runs in a failure). The program must not have run without the
    /// session kfuncs (`no_session` times).
    pub fn check(
        &self,
        case: &mut Case,
        prog: BorrowedFd<'_>,
        no_session: u32,
        made: &Runs,
        exits: [&str; 2],
    ) -> CaseResult {
        case.detail("entries", &self.entries);
        case.detail(exits[0], &self.exits);
        assert_eq!(no_session, 0, "runs without the session kfuncs");
        let skipped = runs::misses(prog)?;
        runs::all_recorded(
            "entry runs (cookie, pid)",
            &made.entries,
            &self.entries,
            skipped,
        )?;
        runs::all_recorded(exits[1], &made.exits, &self.exits, skipped)
    }
}
