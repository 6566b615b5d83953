//! BPF LSM (`programs/src/bpf/lsm.bpf.c`): a program on the socket_create hook refuses this
//! thread's `socket(AF_INET, SOCK_DGRAM)` with `EACCES`. While attached: that call fails with
//! exactly `EACCES`, while a stream socket on the same thread and the same datagram socket on
//! another thread are created; the program saw this thread's two calls and refused one. Once
//! detached the datagram socket is created again. The calls are fmod_ret's (`crate::fmod_ret`),
//! which refuses the same one through security_socket_create's return.
//!
//! The hooks call BPF programs only where `bpf` is among the active LSMs, which securityfs lists
//! (`lsm`); where it is not mounted (the host, the VMs), it is mounted in a private mount
//! namespace of a short-lived thread, leaving the machine's mounts as they were.

use std::fs;
use std::mem::MaybeUninit;
use std::path::Path;

use libbpf_rs::skel::{Skel, SkelBuilder};
use libbpf_rs::{ErrorKind, ProgramType};
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use programs::lsm::LsmSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, CaseResult, LogLevel, OrError, floors, ftrace, probe};

use crate::fmod_ret::refuses_the_target_only;

/// Where securityfs is mounted by convention.
const SECURITYFS: &str = "/sys/kernel/security";

#[test]
fn refuses_one_socket_call() {
    Case::run(ProgramType::Lsm, |case| {
        // security_socket_create is an inline stub without the socket hooks.
        probe::config_builtin("CONFIG_SECURITY_NETWORK")?;
        let active = active_lsms()?;
        case.detail("active_lsms", &active);
        if !floors::has(
            "platform.bpf_lsm_inactive",
            active.split(',').any(|lsm| lsm == "bpf"),
        ) {
            let lsm = testkit::Kernel::current()
                .config("CONFIG_LSM")
                .unwrap_or("unknown");
            return Err(floors::missing(
                "platform.bpf_lsm_inactive",
                format!("active LSMs: {active} (CONFIG_LSM={lsm})"),
            ));
        }
        let mut object = MaybeUninit::uninit();
        let mut open = LsmSkelBuilder::default().open(&mut object)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata is mmapped before load");
        rodata.target_tid = nix::unistd::gettid().as_raw() as u32;
        rodata.target_family = libc::AF_INET;
        rodata.target_type = libc::SOCK_DGRAM;
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel = loaded.map_err(|e| {
            ftrace::refused(
                "prog_type.lsm",
                outcome.errno.as_deref() == Some("EPERM"),
                format!(
                    "loading lsm/socket_create: {} ({e:#})",
                    outcome.message.clone().unwrap_or_default()
                ),
            )
        })?;
        skel.attach().map_err(|e| {
            ftrace::refused(
                "prog_type.lsm",
                e.kind() == ErrorKind::PermissionDenied,
                format!("attaching lsm/socket_create: {e:#}"),
            )
        })?;

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        refuses_the_target_only(
            case,
            Errno::EACCES,
            || (volatile(&bss.seen), volatile(&bss.denied)),
            || skel.links.deny_socket = None,
        )
    });
}

/// The active LSMs, as securityfs lists them (`capability,landlock,…,bpf`).
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
            Err(testkit::CaseError::Error(anyhow::anyhow!(
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
