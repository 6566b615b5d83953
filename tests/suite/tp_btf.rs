//! BTF-enabled raw tracepoints (`programs/src/bpf/tp_btf.bpf.c`) on sys_enter and sys_exit: typed
//! arguments read through BTF pointers. For the test thread the entry program logs each syscall's
//! id and first argument, the exit program the id (from the registers) and the return value. The
//! thread calls getpgid(0), getpgid([`MISSING_PID`]) and getsid(0); among the logged getpgid and
//! getsid calls the entries must be exactly those three (id, argument) and the exits the three
//! (id, return value): the process group, -ESRCH, the session id. Only runs the kernel reports
//! skipped may be missing.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{Skel, SkelBuilder};
use programs::tp_btf::TpBtfSkelBuilder;
use programs::tp_btf::types::call;
use testkit::observe::volatile;
use testkit::{Case, LogLevel, floors, ksyscall, runs};

/// BTF-enabled raw tracepoints.
const TP_BTF: &str = "attach_type.tp_btf";
/// Above the kernel's PID_MAX_LIMIT (4,194,304): no process has it.
const MISSING_PID: i64 = 4_194_304 + 4343;

/// The (id, value) pairs of the first `count` logged calls that are getpgid or getsid.
fn ours(log: &[call], count: u32) -> Vec<(i64, i64)> {
    log[..(count as usize).min(log.len())]
        .iter()
        .filter(|c| c.id == libc::SYS_getpgid || c.id == libc::SYS_getsid)
        .map(|c| (c.id, c.value))
        .collect()
}

#[test]
fn syscall_ids_arguments_and_returns() {
    Case::run(ProgramType::Tracing, |case| {
        if !floors::has(TP_BTF, true) {
            return Err(floors::missing(TP_BTF, "not loaded"));
        }
        let mut object = MaybeUninit::uninit();
        let mut open = TpBtfSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata is mmapped before load")
            .target_tid = nix::unistd::gettid().as_raw() as u32;
        let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
        let mut skel = loaded.map_err(|e| {
            floors::missing(
                TP_BTF,
                format!(
                    "loading tp_btf programs on sys_enter/sys_exit: {} ({e:#})",
                    outcome.message.clone().unwrap_or_default()
                ),
            )
        })?;
        // Before attaching: the library may ask getpgid for the process group.
        let pgrp = i64::from(nix::unistd::getpgrp().as_raw());
        let sid = i64::from(nix::unistd::getsid(None)?.as_raw());
        skel.attach()
            .map_err(|e| floors::missing(TP_BTF, format!("attaching: {e:#}")))?;

        let returns = [
            ksyscall::getpgid(0),
            ksyscall::getpgid(MISSING_PID),
            ksyscall::getsid(0),
        ];
        // Copied before anything else runs on this thread (an allocation may make syscalls).
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let (entered, entries) = (volatile(&bss.entered), volatile(&bss.entries));
        let (exited, exits) = (volatile(&bss.exited), volatile(&bss.exits));
        assert_eq!(
            returns,
            [pgrp, -i64::from(libc::ESRCH), sid],
            "the syscalls' own answers"
        );
        let (seen, returned) = (ours(&entries, entered), ours(&exits, exited));
        case.detail("entries", &seen);
        case.detail("exits", &returned);
        case.detail("logged", (entered, exited));
        let skipped = runs::misses(skel.progs.sys_enter.as_fd())?
            + runs::misses(skel.progs.sys_exit.as_fd())?;
        let (getpgid, getsid) = (libc::SYS_getpgid, libc::SYS_getsid);
        runs::all_recorded(
            "sys_enter (id, first argument)",
            &[(getpgid, 0), (getpgid, MISSING_PID), (getsid, 0)],
            &seen,
            skipped,
        )?;
        runs::all_recorded(
            "sys_exit (id, return value)",
            &[
                (getpgid, pgrp),
                (getpgid, -i64::from(libc::ESRCH)),
                (getsid, sid),
            ],
            &returned,
            skipped,
        )?;
        Ok(())
    });
}
