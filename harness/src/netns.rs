//! Network namespaces for test topologies: uniquely named, deleted (with every interface in them)
//! when dropped. Interfaces, addresses, routes and qdiscs are made with iproute2 inside them; the
//! calling thread can enter one to open sockets or attach programs there.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

use crate::outcome::{CaseError, CaseResult, OrError};

/// A network namespace `bpfconf-<pid>-<n>` (so parallel tests never collide).
pub struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    /// Creates the namespace and brings its loopback up.
    pub fn new() -> CaseResult<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bpfconf-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_tool("ip", &["netns", "add", &name])?;
        let file = File::open(format!("/run/netns/{name}")).map_err(|e| {
            let _ = run_tool("ip", &["netns", "del", &name]);
            CaseError::Error(anyhow::anyhow!("opening /run/netns/{name}: {e}"))
        })?;
        let ns = NetNs { name, file };
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>` (args split on whitespace), e.g. `ns.ip("addr add 10.0.0.1/24 dev veth0")`.
    pub fn ip(&self, args: &str) -> CaseResult {
        let mut argv = vec!["-n", &self.name];
        argv.extend(args.split_whitespace());
        run_tool("ip", &argv)
    }

    /// `tc -n <ns> <args>`.
    pub fn tc(&self, args: &str) -> CaseResult {
        let mut argv = vec!["-n", &self.name];
        argv.extend(args.split_whitespace());
        run_tool("tc", &argv)
    }

    /// A command to run inside the namespace (`ip netns exec <ns> <program> <args>`).
    pub fn exec<I, S>(&self, program: &str, args: I) -> duct::Expression
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let mut argv: Vec<std::ffi::OsString> = vec![
            "netns".into(),
            "exec".into(),
            self.name.clone().into(),
            program.into(),
        ];
        argv.extend(args.into_iter().map(Into::into));
        duct::cmd("ip", argv)
    }

    /// Moves the calling thread into the namespace until the guard drops (sockets opened and
    /// interfaces looked up meanwhile are the namespace's).
    pub fn enter(&self) -> CaseResult<Entered> {
        let home =
            File::open("/proc/thread-self/ns/net").or_error("opening this thread's netns")?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).or_error("entering the test netns")?;
        Ok(Entered {
            home,
            _not_send: std::marker::PhantomData,
        })
    }

    /// The index of interface `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> CaseResult<u32> {
        let _inside = self.enter()?;
        nix::net::if_::if_nametoindex(dev).or_error("looking up an interface in the test netns")
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = run_tool("ip", &["netns", "del", &self.name]) {
            eprintln!(
                "bpfconf: could not delete netns {}: {}",
                self.name,
                e.reason()
            );
        }
    }
}

/// The calling thread is inside a test namespace until this drops.
pub struct Entered {
    home: File,
    // setns moved this thread only: the guard must not leave it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET)
            .expect("returning to the original netns");
    }
}

/// Runs a network tool; its stderr becomes the error (`error` outcome: the topology, not the
/// program, is what failed).
pub fn run_tool(program: &str, args: &[&str]) -> CaseResult {
    run(program, args)?.map_err(CaseError::Error)
}

/// Runs a network tool that attaches a program in the calling thread's namespace (`ip route …
/// encap bpf`, `tc filter … action bpf`); its stderr becomes the error (`fail` outcome: the kernel
/// refused the program's attachment).
pub fn attach_tool(program: &str, args: &[&str]) -> CaseResult {
    run(program, args)?.map_err(CaseError::Fail)
}

/// Runs `program`: `Err` when it cannot start, `Ok(Err)` with its stderr when it fails.
fn run(program: &str, args: &[&str]) -> CaseResult<anyhow::Result<()>> {
    let out = duct::cmd(program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| {
            CaseError::Error(anyhow::anyhow!(
                "running {program}: {e} (install iproute2: ci/setup)"
            ))
        })?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    Ok(Err(anyhow::anyhow!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
