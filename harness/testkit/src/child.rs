//! Socket work that must happen in another process (inside the test's cgroup, which the test
//! process never joins because other tests share it, or in a network namespace for the whole
//! process): a forked child of the test process, which joins the cgroup and the namespace, runs a
//! closure and hands its typed result back over a pipe. No interpreter and no exec: under
//! emulation every process start costs seconds.
//!
//! ```no_run
//! # use testkit::{Cgroup, NetNs, child};
//! # fn f(cg: &Cgroup, ns: &NetNs) -> testkit::CaseResult {
//! let bound = child::in_cgroup(cg).netns(ns).run(|| {
//!     child::errno(std::net::UdpSocket::bind("127.0.0.1:7000").map(|_| ()))
//! })?;
//! assert_eq!(bound, Ok(()));
//! # Ok(()) }
//! ```
//!
//! The test process has other threads (libtest runs cases on threads), so the child is a copy of
//! one thread in a process whose locks other threads may have held at the fork: the closure makes
//! plain syscalls (std::net, std::fs, libc) on values built before the fork, and neither prints
//! nor takes locks. The child keeps only stdio and the result pipe open: it opens what it uses.
//! Its result is plain data (`Copy`, no pointers into the child's memory): numbers, errnos,
//! fixed arrays.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use crate::cgroup::Cgroup;
use crate::netns::NetNs;
use crate::outcome::{CaseError, CaseResult, OrError};

/// How long a child may run before the case is an `error` (it is killed).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Where a child runs: inside a cgroup, a network namespace, or both.
#[derive(Clone, Copy, Default)]
pub struct Child<'a> {
    cgroup: Option<&'a Cgroup>,
    netns: Option<&'a NetNs>,
}

/// A child inside `cgroup`.
pub fn in_cgroup(cgroup: &Cgroup) -> Child<'_> {
    Child {
        cgroup: Some(cgroup),
        netns: None,
    }
}

/// A child inside `netns`.
pub fn in_netns(netns: &NetNs) -> Child<'_> {
    Child {
        cgroup: None,
        netns: Some(netns),
    }
}

/// The errno of a failed call (`EIO` for an error that carries none), as plain data.
pub use crate::errno::io as errno;

/// Held for reading by a fork until the child closed the descriptors it inherited, for writing
/// by [`crate::link::release`].
pub(crate) static FORKS: RwLock<()> = RwLock::new(());

/// A step of joining the cgroup or namespace that failed in the child.
#[derive(Clone, Copy)]
struct SetupError {
    step: &'static str,
    errno: Errno,
}

impl<'a> Child<'a> {
    /// Also inside `netns`.
    pub fn netns(self, netns: &'a NetNs) -> Self {
        Child {
            netns: Some(netns),
            ..self
        }
    }

    /// Forks, runs `work` in the child (see the module doc for what it may do) and returns its
    /// result. A child that cannot join its cgroup or namespace, dies or outlives [`TIMEOUT`] is
    /// the harness's failure (`error`).
    pub fn run<T: Copy>(self, work: impl FnOnce() -> T) -> CaseResult<T> {
        let (child, read) = self.fork(work, false)?;
        collect(child, read.as_fd())
    }

    /// Like [`Child::run`], but the child stays alive after `work` (blocked in pause(2)) until
    /// the returned [`Held`] ends it: for an owner (a process, its sockets) that must outlive
    /// its work.
    pub fn hold<T: Copy>(self, work: impl FnOnce() -> T) -> CaseResult<(T, Held)> {
        let (child, read) = self.fork(work, true)?;
        let held = Held(Some(child));
        let report = read_report(read.as_fd());
        Ok((finish(child, report, None)?, held))
    }

    /// Forks a child that joins the cgroup and namespace and runs `work` (then waits when
    /// `hold`); the child's pid and the read end of its result pipe.
    fn fork<T: Copy>(self, work: impl FnOnce() -> T, hold: bool) -> CaseResult<(Pid, OwnedFd)> {
        let procs = self.cgroup.map(|cg| cg.procs().as_raw_fd());
        let netns = self.netns.map(|ns| ns.as_fd().as_raw_fd());
        let (read, write) = pipe2(OFlag::O_CLOEXEC).or_error("creating a result pipe")?;
        // Until the child closed its copies of the process's descriptors (see `crate::link`).
        let _forking = FORKS.read().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the child only makes syscalls (see the module doc) and leaves with _exit.
        match unsafe { fork() }.or_error("forking a child")? {
            ForkResult::Child => child_main(procs, netns, write.as_fd(), work, hold),
            ForkResult::Parent { child } => {
                drop(write);
                await_closed(read.as_fd());
                Ok((child, read))
            }
        }
    }
}

/// A child of [`Child::hold`], alive until [`Held::end`] (or drop) kills and reaps it.
pub struct Held(Option<Pid>);

impl Held {
    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.0.expect("a live child")
    }

    /// Kills the child and reaps it: once this returns the process is gone.
    pub fn end(mut self) -> CaseResult {
        self.kill()
    }

    fn kill(&mut self) -> CaseResult {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            waitpid(pid, None).or_error("reaping a held child")?;
        }
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn child_main<T: Copy>(
    procs: Option<RawFd>,
    netns: Option<RawFd>,
    out: BorrowedFd<'_>,
    work: impl FnOnce() -> T,
    hold: bool,
) -> ! {
    close_inherited(&[Some(out.as_raw_fd()), procs, netns]);
    let _ = nix::unistd::write(out, &CLOSED);
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        join(procs, netns).map(|()| {
            close_inherited(&[Some(out.as_raw_fd())]);
            work()
        })
    }));
    // SAFETY: `report` is a live value of the size written; _exit skips the parent's atexit work.
    unsafe {
        if let Ok(report) = &report {
            libc::write(
                out.as_raw_fd(),
                (report as *const Result<T, SetupError>).cast(),
                size_of::<Result<T, SetupError>>(),
            );
            if hold {
                loop {
                    nix::unistd::pause();
                }
            }
        }
        libc::_exit(if report.is_ok() { 0 } else { 101 })
    }
}

/// What the child writes first, once it closed what it inherited.
const CLOSED: [u8; 1] = [0];

/// Waits (within [`TIMEOUT`]) until the child wrote [`CLOSED`], or ended before it: then it holds
/// no copy of the process's descriptors. Any problem shows again when the report is read.
fn await_closed(read: BorrowedFd) {
    let timeout = PollTimeout::try_from(TIMEOUT).unwrap_or(PollTimeout::MAX);
    if let Ok(1..) = poll(&mut [PollFd::new(read, PollFlags::POLLIN)], timeout) {
        let mut byte = [0u8; 1];
        let _ = nix::unistd::read(read, &mut byte);
    }
}

/// Closes every descriptor but stdio and `keep`: what a forked child inherited and does not use
/// (other tests' links and sockets would live on in it). Allocates nothing, as a child of a
/// multi-threaded process must not.
pub fn close_inherited(keep: &[Option<RawFd>]) {
    let close = |first: u32, last: u32| {
        // SAFETY: the caller uses no descriptor in the range (the function's contract).
        unsafe { libc::close_range(first, last, 0) };
    };
    let mut from = 3;
    while let Some(fd) = (keep.iter().flatten().map(|&fd| fd as u32))
        .filter(|&fd| fd >= from)
        .min()
    {
        if fd > from {
            close(from, fd - 1);
        }
        from = fd + 1;
    }
    close(from, u32::MAX);
}

/// Joins the cgroup (a write of "0" to its `cgroup.procs` moves the writer) and the namespace.
fn join(procs: Option<RawFd>, netns: Option<RawFd>) -> Result<(), SetupError> {
    if let Some(procs) = procs {
        // SAFETY: a one-byte write from a static buffer.
        if unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(SetupError {
                step: "joining the test cgroup",
                errno: Errno::last(),
            });
        }
    }
    if let Some(netns) = netns {
        // SAFETY: the namespace's fd stays open in the child until its work starts.
        setns(
            unsafe { BorrowedFd::borrow_raw(netns) },
            CloneFlags::CLONE_NEWNET,
        )
        .map_err(|errno| SetupError {
            step: "entering the test netns",
            errno,
        })?;
    }
    Ok(())
}

/// Reads the child's report within [`TIMEOUT`] (killing it past that) and reaps it.
fn collect<T: Copy>(child: Pid, read: BorrowedFd) -> CaseResult<T> {
    let report = read_report(read);
    if report.is_err() {
        let _ = kill(child, Signal::SIGKILL);
    }
    let status = waitpid(child, None).or_error("reaping a child")?;
    finish(child, report, Some(status))
}

/// The child's whole report from `read` within [`TIMEOUT`], or what went wrong.
fn read_report<T: Copy>(read: BorrowedFd) -> Result<Result<T, SetupError>, String> {
    let mut report = MaybeUninit::<Result<T, SetupError>>::uninit();
    let size = size_of::<Result<T, SetupError>>();
    let deadline = Instant::now() + TIMEOUT;
    let mut got = 0;
    loop {
        if got == size {
            // SAFETY: the child wrote a whole `Result<T, SetupError>` of this same binary.
            return Ok(unsafe { report.assume_init() });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(read, PollFlags::POLLIN)], timeout) {
            Ok(0) => return Err(format!("did not finish within {} s", TIMEOUT.as_secs())),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll on its result pipe: {e}")),
        }
        // SAFETY: reads into the uninitialised tail of `report`, within its size.
        let n = unsafe {
            libc::read(
                read.as_raw_fd(),
                report.as_mut_ptr().cast::<u8>().add(got).cast(),
                size - got,
            )
        };
        match n {
            0 => return Err("exited without a result".to_owned()),
            n if n > 0 => got += n as usize,
            _ if Errno::last() == Errno::EINTR => {}
            _ => return Err(format!("reading its result: {}", Errno::last())),
        }
    }
}

/// The child's result from its report and (for a reaped child) its exit status.
fn finish<T: Copy>(
    child: Pid,
    report: Result<Result<T, SetupError>, String>,
    status: Option<WaitStatus>,
) -> CaseResult<T> {
    let report = report.map_err(|problem| {
        CaseError::Error(anyhow::anyhow!(
            "a forked child {problem} (pid {child}, {status:?})"
        ))
    })?;
    if let Some(status) = status
        && !matches!(status, WaitStatus::Exited(_, 0))
    {
        return Err(CaseError::Error(anyhow::anyhow!(
            "a forked child failed after its result ({status:?})"
        )));
    }
    match report {
        Ok(value) => Ok(value),
        Err(SetupError { step, errno }) => Err(CaseError::Error(anyhow::anyhow!(
            "a forked child failed {step}: {errno}"
        ))),
    }
}

/// How long a child waits for an answer that was sent to it.
pub const ARRIVAL: Duration = Duration::from_secs(5);

/// A child's result: a failed socket call inside the cgroup is the program's failure (`fail`).
pub fn succeeded<T>(what: &str, result: Result<T, Errno>) -> CaseResult<T> {
    result.map_err(|e| CaseError::Fail(anyhow::anyhow!("{what} inside the cgroup: {e}")))
}

/// The first bytes (at most 32) one read got: what a child received, as plain data.
#[derive(Clone, Copy)]
pub struct Text {
    len: usize,
    bytes: [u8; 32],
}

impl Text {
    /// What `read` put in a buffer of 32 bytes; its error as the errno.
    pub fn read(read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>) -> Result<Self, Errno> {
        let mut bytes = [0; 32];
        let len = errno(read(&mut bytes))?;
        Ok(Text { len, bytes })
    }

    /// The bytes read, as text.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..self.len])
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
