//! fsession (`programs/src/bpf/fsession.bpf.c`): one BPF trampoline program run at both the
//! entry and the exit of a kernel function (BPF_TRACE_FSESSION, Linux 7.0+), here the getpgid
//! syscall's entry function (resolved from /proc/kallsyms, set as the attach target before load).
//! (`fentry` covers the separate entry and exit programs.)
//!
//! `entry_and_exit_share_the_cookie`: the test thread calls getpgid(0), getpgid(its own pid) and
//! getpgid([`MISSING_PID`]). The entry runs must have logged exactly these pid arguments in that
//! order; the exit runs each call's pid, taken from the session cookie its own entry run left,
//! with the return value (the process group twice, then -ESRCH) — less only runs the kernel
//! reports skipped.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use programs::fsession::FsessionSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, attach_type, floors, ksyscall, runs};

const FSESSION: &str = "attach_type.fsession";
/// Above the kernel's PID_MAX_LIMIT (4,194,304): no process has it.
const MISSING_PID: i64 = 4_194_304 + 4242;

#[test]
fn entry_and_exit_share_the_cookie() {
    Case::run(ProgramType::Tracing, |case| {
        let getpgid_fn = floors::judge("ksym.syscall_entry", ksyscall::resolve("getpgid"))?;
        case.detail("function", &getpgid_fn.symbol);
        let mut object = MaybeUninit::uninit();
        let mut open = FsessionSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .target_tid = nix::unistd::gettid().as_raw() as u32;
        for mut prog in open.open_object_mut().progs_mut() {
            prog.set_attach_target(0, Some(getpgid_fn.symbol.clone()))?;
        }
        let skel = attach_type::load(case, FSESSION, open)?;
        // Before attaching: the library may ask getpgid for the process group.
        let me = i64::from(nix::unistd::getpid().as_raw());
        let pgrp = i64::from(nix::unistd::getpgrp().as_raw());
        let _link = attach_type::libbpf(FSESSION, "attaching fsession", || {
            skel.progs.getpgid_session.attach_trace()
        })?;

        let args = [0, me, MISSING_PID];
        let returns: Vec<i64> = args.iter().map(|&pid| ksyscall::getpgid(pid)).collect();
        assert_eq!(
            returns,
            [pgrp, pgrp, -i64::from(libc::ESRCH)],
            "getpgid's own answers"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let n = |count: u32| (count as usize).min(8);
        let entry_pid = volatile(&bss.entry_pid);
        let (exit_pid, exit_ret) = (volatile(&bss.exit_pid), volatile(&bss.exit_ret));
        let seen: Vec<i64> = entry_pid[..n(volatile(&bss.entries))]
            .iter()
            .map(|&p| p as i64)
            .collect();
        let returned: Vec<(i64, i64)> = (0..n(volatile(&bss.exits)))
            .map(|i| (exit_pid[i] as i64, exit_ret[i]))
            .collect();
        case.detail("entries", &seen);
        case.detail("exits", &returned);
        assert_eq!(
            volatile(&bss.no_session),
            0,
            "runs without the session kfuncs"
        );
        let skipped = runs::misses(skel.progs.getpgid_session.as_fd())?;
        runs::all_recorded("entry runs (pid)", &args, &seen, skipped)?;
        let made: Vec<(i64, i64)> = args.into_iter().zip(returns).collect();
        runs::all_recorded(
            "exit runs (pid from the session cookie, return value)",
            &made,
            &returned,
            skipped,
        )?;
        Ok(())
    });
}
