//! The kernel filesystems cases need: tracefs, bpffs and the cgroup v2 hierarchy. Found through
//! `/proc/mounts`; tracefs and bpffs are mounted at their usual places when missing (root may).
//! A filesystem the kernel does not know (`/proc/filesystems`) is judged against its floor
//! (`fs.*`); one the harness cannot find or mount is an `error` saying what to do.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::floors;
use crate::outcome::{CaseError, CaseResult};

/// Where tracefs is mounted (`…/trace_pipe` lives there), mounting it at `/sys/kernel/tracing` when
/// it is not.
pub fn tracefs() -> CaseResult<PathBuf> {
    known("tracefs", "fs.tracefs")?;
    if let Some(dir) = find("tracefs", |d| d.join("trace_pipe").exists()) {
        return Ok(dir);
    }
    // debugfs carries tracefs at tracing/ on older setups (vmtest mounts it so).
    if let Some(debugfs) = find("debugfs", |d| d.join("tracing/trace_pipe").exists()) {
        return Ok(debugfs.join("tracing"));
    }
    mount_at("tracefs", Path::new("/sys/kernel/tracing"))
}

/// Where bpffs is mounted, mounting it at `/sys/fs/bpf` when it is not.
pub fn bpffs() -> CaseResult<PathBuf> {
    known("bpf", "fs.bpffs")?;
    if let Some(dir) = find("bpf", |_| true) {
        return Ok(dir);
    }
    mount_at("bpf", Path::new("/sys/fs/bpf"))
}

/// The cgroup v2 root (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`, wherever it is).
pub fn cgroup2() -> CaseResult<PathBuf> {
    known("cgroup2", "fs.cgroup2")?;
    if let Some(dir) = find("cgroup2", |_| true) {
        return Ok(dir);
    }
    Err(CaseError::Error(anyhow::anyhow!(
        "no cgroup v2 hierarchy is mounted (/proc/mounts) although the kernel has cgroup2: mount \
         one (`mount -t cgroup2 none /sys/fs/cgroup/unified` beside v1 controllers) or boot with \
         systemd's unified or hybrid hierarchy"
    )))
}

/// `Ok` when `/proc/filesystems` lists `fstype`; otherwise the floor of `id` decides.
fn known(fstype: &str, id: &str) -> CaseResult {
    let filesystems = fs::read_to_string("/proc/filesystems")
        .map_err(|e| CaseError::Error(anyhow::anyhow!("reading /proc/filesystems: {e}")))?;
    let listed = filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fstype));
    if floors::has(id, listed) {
        Ok(())
    } else {
        Err(floors::missing(
            id,
            format!("/proc/filesystems does not list {fstype}"),
        ))
    }
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

/// Mounts a filesystem the kernel knows at `dir`; any failure is the environment's.
fn mount_at(fstype: &str, dir: &Path) -> CaseResult<PathBuf> {
    // Serialise mounting across threads and processes on the mount point itself.
    let guard = File::open(dir).map_err(|e| {
        CaseError::Error(anyhow::anyhow!(
            "{fstype} is not mounted and {} is missing: {e}; mount it (`mount -t {fstype} nodev \
             <dir>`)",
            dir.display()
        ))
    })?;
    guard.lock().map_err(|e| CaseError::Error(e.into()))?;
    if let Some(found) = find(fstype, |d| d == dir) {
        return Ok(found);
    }
    nix::mount::mount(
        Some("nodev"),
        dir,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        CaseError::Error(anyhow::anyhow!(
            "{fstype} is not mounted and mounting it at {} failed: {e}; mount it (`mount -t \
             {fstype} nodev {}`)",
            dir.display(),
            dir.display()
        ))
    })?;
    Ok(dir.to_owned())
}
