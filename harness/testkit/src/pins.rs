//! A bpffs directory of a case's own, for programs handed to iproute2 by path (`tc ... bpf
//! object-pinned <file>`, `ip route ... encap bpf out pinned <file>`): uniquely named, removed with
//! everything pinned in it when dropped.
//!
//! iproute2 must then run with this process's mounts: `ip netns exec` and `ip -n`/`tc -n` remount
//! /sys in a mount namespace of their own and lose bpffs, and with it the pins. Run the tool from a
//! thread that has [`NetNs::enter`](crate::NetNs::enter)ed the namespace instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::mounts;
use crate::outcome::{CaseResult, OrError};

/// `<bpffs>/bpfconf-<pid>-<label>-<n>`, removed (pins included) when dropped.
pub struct PinDir(PathBuf);

impl PinDir {
    /// Creates the directory (mounting bpffs first when it is not mounted).
    pub fn new(label: &str) -> CaseResult<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = mounts::bpffs()?.join(format!(
            "bpfconf-{}-{label}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).or_error("creating a directory in bpffs")?;
        Ok(PinDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
