//! Whether BPF LSM programs run here: the hooks call them only where `bpf` is among the active
//! LSMs (`CONFIG_LSM` or `lsm=` on the command line), which securityfs lists (`lsm`). Where
//! securityfs is not mounted (the host, the VMs) it is mounted in a private mount namespace of a
//! short-lived thread, leaving the machine's mounts as they were.

use std::fs;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::floors;
use crate::kernel::Kernel;
use crate::outcome::{CaseError, CaseResult, OrError};

/// Where securityfs is mounted by convention.
const SECURITYFS: &str = "/sys/kernel/security";

/// The active LSMs (`capability,landlock,…,bpf`); `unsupported` through
/// `platform.bpf_lsm_inactive` when `bpf` is not among them.
pub fn bpf_active() -> CaseResult<String> {
    let active = active_lsms()?;
    if floors::has(
        "platform.bpf_lsm_inactive",
        active.split(',').any(|lsm| lsm == "bpf"),
    ) {
        return Ok(active);
    }
    let lsm = Kernel::current().config("CONFIG_LSM").unwrap_or("unknown");
    Err(floors::missing(
        "platform.bpf_lsm_inactive",
        format!("active LSMs: {active} (CONFIG_LSM={lsm})"),
    ))
}

/// The active LSMs, as securityfs lists them.
fn active_lsms() -> CaseResult<String> {
    let list = Path::new(SECURITYFS).join("lsm");
    if list.exists() {
        return read_list(&list);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            // Only this thread moves to the new mount namespace; it goes when the thread ends.
            unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
                .or_error("unsharing a mount namespace to mount securityfs")?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .or_error("making the private mount namespace's mounts private")?;
            mount(
                Some("securityfs"),
                SECURITYFS,
                Some("securityfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .or_error(&format!("mounting securityfs at {SECURITYFS}"))?;
            read_list(&list)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(CaseError::Error(anyhow::anyhow!(
                "reading the active LSMs panicked"
            )))
        })
    })
}

fn read_list(list: &Path) -> CaseResult<String> {
    Ok(fs::read_to_string(list)
        .or_error(&format!("reading {}", list.display()))?
        .trim()
        .to_owned())
}
