//! Network namespaces for test topologies: uniquely named, deleted (with every interface in them)
//! when dropped. They are made in-process, as `ip netns add` makes them (a bind mount under
//! /run/netns, so `ip netns` sees them), and so are their interfaces, addresses, routes, rules and
//! clsact qdiscs ([`crate::netlink`]); the calling thread can enter one to open sockets or attach
//! programs there.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::netlink::{Cidr, Route, Rtnl, Rule};
use crate::outcome::{CaseError, CaseResult, OrError};

/// Where `ip netns` keeps its namespaces.
const RUN_DIR: &str = "/run/netns";

/// A network namespace `bpfconf-<pid>-<n>` (so parallel tests never collide).
pub struct NetNs {
    name: String,
    file: File,
    rtnl: Rtnl,
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
        let path = Path::new(RUN_DIR).join(&name);
        let created = std::thread::scope(|s| s.spawn(|| create(&path)).join())
            .map_err(|_| CaseError::Error(anyhow::anyhow!("creating netns {name} panicked")))?;
        let (file, rtnl) = created.map_err(|e| {
            let _ = remove(&path);
            CaseError::Error(anyhow::anyhow!("creating netns {name}: {e}"))
        })?;
        let ns = NetNs { name, file, rtnl };
        ns.link_up("lo")?;
        Ok(ns)
    }

    /// A veth pair: `name` here, `peer` in `peer_ns`.
    pub fn add_veth(&self, name: &str, peer: &str, peer_ns: &NetNs) -> CaseResult {
        let made = self.rtnl.add_veth(name, peer, peer_ns.as_fd());
        self.made(format_args!("making veth pair {name}|{peer}"), made)
    }

    /// A netkit pair (Linux 6.7+): primary `name` here, `peer` in `peer_ns`; L3 mode, both
    /// policies pass. The kernel's answer is the caller's to judge (EOPNOTSUPP: no netkit
    /// device kind).
    pub fn add_netkit(&self, name: &str, peer: &str, peer_ns: &NetNs) -> std::io::Result<()> {
        self.rtnl.add_netkit(name, peer, peer_ns.as_fd())
    }

    /// Sets interface `dev` up.
    pub fn link_up(&self, dev: &str) -> CaseResult {
        self.made(format_args!("setting {dev} up"), self.rtnl.set_up(dev))
    }

    /// Adds `addr` to interface `dev` (an IPv6 address without duplicate address detection:
    /// usable at once).
    pub fn add_address(&self, dev: &str, addr: Cidr) -> CaseResult {
        let made = self.rtnl.add_address(dev, addr);
        self.made(format_args!("adding address {addr} to {dev}"), made)
    }

    pub fn add_route(&self, route: &Route) -> CaseResult {
        self.made(format_args!("adding {route:?}"), self.rtnl.add_route(route))
    }

    pub fn add_rule(&self, rule: &Rule) -> CaseResult {
        self.made(format_args!("adding {rule:?}"), self.rtnl.add_rule(rule))
    }

    /// Adds a clsact qdisc (the hooks of TC filters) to interface `dev`.
    pub fn add_clsact(&self, dev: &str) -> CaseResult {
        self.made(
            format_args!("adding clsact to {dev}"),
            self.rtnl.add_clsact(dev),
        )
    }

    /// A set-up step's result: its failure is an `error` (the topology, not the program, failed).
    fn made(&self, what: std::fmt::Arguments<'_>, result: std::io::Result<()>) -> CaseResult {
        result.map_err(|e| CaseError::Error(anyhow::anyhow!("{what} in netns {}: {e}", self.name)))
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

    /// Writes `value` to the namespace's sysctl `path` (under /proc/sys, e.g.
    /// `net/ipv4/ip_forward`). A missing file is the kernel lacking `feature` where one is named,
    /// else an error.
    pub fn sysctl(&self, feature: Option<&str>, path: &str, value: &str) -> CaseResult {
        // /proc/sys/net is the calling thread's namespace's.
        let _inside = self.enter()?;
        let file = Path::new("/proc/sys").join(path);
        if let Some(id) = feature {
            crate::probe::path(id, &file)?;
        }
        fs::write(&file, value).or_error(&format!("writing {value} to {}", file.display()))
    }

    /// The index of interface `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> CaseResult<u32> {
        self.rtnl
            .ifindex(dev)
            .or_error("looking up an interface in the test netns")
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // As `ip netns del`: the namespace goes when its last reference (the mount, this
        // struct's file and socket, sockets opened inside) does.
        if let Err(e) = remove(&Path::new(RUN_DIR).join(&self.name)) {
            eprintln!("bpfconf: could not delete netns {}: {e}", self.name);
        }
    }
}

/// Makes the namespace file `path` (on a thread of its own: `unshare` moves the calling thread)
/// and opens it and an rtnetlink socket inside.
fn create(path: &Path) -> std::io::Result<(File, Rtnl)> {
    prepare_run_dir()?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path)?;
    unshare(CloneFlags::CLONE_NEWNET)?;
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    Ok((File::open(path)?, Rtnl::open()?))
}

/// Unmounts and removes the namespace file `path` (what exists of it).
fn remove(path: &Path) -> std::io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes /run/netns a shared mount point, as iproute2 does before its first namespace (so mount
/// namespaces made later, e.g. by `ip netns exec`, see namespaces added after them).
fn prepare_run_dir() -> std::io::Result<()> {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return Ok(());
    }
    fs::create_dir_all(RUN_DIR)?;
    let share = || {
        mount(
            None::<&str>,
            RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        // Not a mount point yet: make it one.
        Err(Errno::EINVAL) => {
            mount(
                Some(RUN_DIR),
                RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            share()?;
        }
        shared => shared?,
    }
    *ready = true;
    Ok(())
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

/// Runs a network tool that attaches a program in the calling thread's namespace (`ip route …
/// encap bpf`, `ip route … encap seg6local action End.BPF`, `tc filter … action bpf`); its stderr
/// becomes the error (`fail` outcome: the kernel refused the program's attachment). A tool, not
/// [`crate::netlink`]: netlink-packet-route has no typed attributes for a program in a route's
/// encapsulation (LWT_BPF_*, SEG6_LOCAL_BPF) nor for a bpf action, and the tools also load the
/// pinned program by path.
pub fn attach_tool(program: &str, args: &[&str]) -> CaseResult {
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
        return Ok(());
    }
    Err(CaseError::Fail(anyhow::anyhow!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
