//! The kernel filesystems cases need: tracefs, bpffs and the cgroup v2 hierarchy. Found through
//! `/proc/mounts`; tracefs and bpffs are mounted at their usual places when missing (root may).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};

use crate::outcome::{CaseError, CaseResult};

/// Where tracefs is mounted (`…/trace_pipe` lives there), mounting it at `/sys/kernel/tracing` when
/// it is not; `unsupported` on a kernel built without it.
pub fn tracefs() -> CaseResult<PathBuf> {
    if let Some(dir) = find("tracefs", |d| d.join("trace_pipe").exists()) {
        return Ok(dir);
    }
    // debugfs carries tracefs at tracing/ on older setups (vmtest mounts it so).
    if let Some(debugfs) = find("debugfs", |d| d.join("tracing/trace_pipe").exists()) {
        return Ok(debugfs.join("tracing"));
    }
    mount_at(
        "tracefs",
        Path::new("/sys/kernel/tracing"),
        "CONFIG_TRACING",
    )
}

/// Where bpffs is mounted, mounting it at `/sys/fs/bpf` when it is not.
pub fn bpffs() -> CaseResult<PathBuf> {
    if let Some(dir) = find("bpf", |_| true) {
        return Ok(dir);
    }
    mount_at("bpf", Path::new("/sys/fs/bpf"), "CONFIG_BPF_SYSCALL")
}

/// The cgroup v2 root (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`, wherever it is).
pub fn cgroup2() -> CaseResult<PathBuf> {
    find("cgroup2", |_| true)
        .ok_or_else(|| CaseError::unsupported("no cgroup v2 hierarchy is mounted (/proc/mounts)"))
}

/// The first mount of `fstype` whose directory satisfies `usable`.
fn find(fstype: &str, usable: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let dir = fields.next().and(fields.next())?;
            (fields.next()? == fstype).then(|| PathBuf::from(dir))
        })
        .find(|dir| usable(dir))
}

fn mount_at(fstype: &str, dir: &Path, config: &str) -> CaseResult<PathBuf> {
    // Serialise mounting across threads and processes on the mount point itself.
    let guard = File::open(dir).map_err(|e| {
        CaseError::Error(anyhow::anyhow!(
            "{fstype} is not mounted and {} is missing: {e}",
            dir.display()
        ))
    })?;
    guard.lock().map_err(|e| CaseError::Error(e.into()))?;
    if let Some(found) = find(fstype, |d| d == dir) {
        return Ok(found);
    }
    match mount(
        Some("nodev"),
        dir,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    ) {
        Ok(()) => Ok(dir.to_owned()),
        Err(Errno::ENODEV) => Err(CaseError::unsupported(format!(
            "the kernel has no {fstype} filesystem ({config} not set): mount -t {fstype} gave ENODEV"
        ))),
        Err(e) => Err(CaseError::Error(anyhow::anyhow!(
            "{fstype} is not mounted and mounting it at {} failed: {e}",
            dir.display()
        ))),
    }
}
