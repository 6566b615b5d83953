//! A cgroup v2 child for one test: uniquely named, its processes killed and the directory removed
//! when dropped. The test process itself never moves (other tests share it): a forked child
//! ([`crate::child`]) or a command joins the cgroup instead.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::outcome::{CaseResult, OrError};

/// `<cgroup2 root>/bpfconf-<pid>-<n>`.
pub struct Cgroup {
    path: PathBuf,
    dir: File,
    procs: File,
}

impl Cgroup {
    /// Creates the cgroup under the cgroup v2 root (`unsupported` when there is no v2 hierarchy).
    pub fn new() -> CaseResult<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = crate::mounts::cgroup2()?;
        let path = root.join(format!(
            "bpfconf-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Self::create(path)
    }

    /// A cgroup inside this one, removed when dropped (drop it before its parent).
    pub fn nested(&self) -> CaseResult<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Self::create(
            self.path
                .join(format!("nested-{}", NEXT.fetch_add(1, Ordering::Relaxed))),
        )
    }

    fn create(path: PathBuf) -> CaseResult<Self> {
        fs::create_dir(&path).or_error("creating a test cgroup")?;
        let dir = File::open(&path).or_error("opening the test cgroup")?;
        let procs = OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .or_error("opening cgroup.procs")?;
        Ok(Cgroup { path, dir, procs })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its id (the directory's inode number): what bpf_get_current_cgroup_id returns inside it.
    pub fn id(&self) -> CaseResult<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self
            .dir
            .metadata()
            .or_error("stat of the test cgroup")?
            .ino())
    }

    /// Its `cgroup.procs`, open for writing: a process that writes "0" to it joins the cgroup.
    pub(crate) fn procs(&self) -> BorrowedFd<'_> {
        self.procs.as_fd()
    }
}

impl AsFd for Cgroup {
    /// The directory fd that cgroup attach calls take.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Kill what is left inside, then remove the directory (it is busy until they are gone).
        let _ = fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if let Ok(procs) = fs::read_to_string(self.path.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!("bpfconf: could not remove cgroup {}", self.path.display());
    }
}
