//! fentry and fexit (`programs/src/bpf/fentry.bpf.c`): BPF trampolines on the getpgid syscall's
//! entry function, resolved from /proc/kallsyms (`__x64_sys_getpgid`) and set as both programs'
//! attach target before load. The test thread calls getpgid(0), getpgid(its own pid) and
//! getpgid([`MISSING_PID`]): the entry program must have seen exactly these pid arguments in that
//! order, and the exit program each with its return value (the process group twice, then
//! -ESRCH), less only runs the kernel reports skipped.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use programs::fentry::FentrySkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, floors, ftrace, ksyscall, runs};

/// fentry/fexit on kernel functions.
const FENTRY: &str = "attach_type.fentry";
/// Above the kernel's PID_MAX_LIMIT (4,194,304): no process has it.
const MISSING_PID: i64 = 4_194_304 + 4242;

#[test]
fn getpgid_arguments_and_returns() {
    Case::run(ProgramType::Tracing, |case| {
        let getpgid_fn = floors::judge("ksym.syscall_entry", ksyscall::resolve("getpgid"))?;
        case.detail("function", &getpgid_fn.symbol);
        if !floors::has(FENTRY, true) {
            return Err(floors::missing(FENTRY, "not loaded"));
        }
        let mut object = MaybeUninit::uninit();
        let mut open = FentrySkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata is mmapped before load")
            .target_tid = nix::unistd::gettid().as_raw() as u32;
        for mut prog in open.open_object_mut().progs_mut() {
            prog.set_attach_target(0, Some(getpgid_fn.symbol.clone()))?;
        }
        let what = format!("fentry/fexit programs on {}", getpgid_fn.symbol);
        let mut skel = ftrace::load(case, open, FENTRY, what)?;
        // Before attaching: the library may ask getpgid for the process group.
        let me = i64::from(nix::unistd::getpid().as_raw());
        let pgrp = i64::from(nix::unistd::getpgrp().as_raw());
        skel.attach().map_err(|e| {
            ftrace::attach_refused(FENTRY, format!("attaching to {}", getpgid_fn.symbol), e)
        })?;

        let args = [0, me, MISSING_PID];
        let returns: Vec<i64> = args.iter().map(|&pid| ksyscall::getpgid(pid)).collect();
        assert_eq!(
            returns,
            [pgrp, pgrp, -i64::from(libc::ESRCH)],
            "getpgid's own answers"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let (entries, exits) = (volatile(&bss.entries), volatile(&bss.exits));
        let entry_pid = volatile(&bss.entry_pid);
        let (exit_pid, exit_ret) = (volatile(&bss.exit_pid), volatile(&bss.exit_ret));
        let seen: Vec<i64> = entry_pid[..entries.min(8) as usize]
            .iter()
            .map(|&p| p as i64)
            .collect();
        let returned: Vec<(i64, i64)> = (0..exits.min(8) as usize)
            .map(|i| (exit_pid[i] as i64, exit_ret[i]))
            .collect();
        case.detail("entries", &seen);
        case.detail("exits", &returned);
        let skipped = runs::misses(skel.progs.getpgid_entry.as_fd())?
            + runs::misses(skel.progs.getpgid_exit.as_fd())?;
        runs::all_recorded("getpgid entries (pid)", &args, &seen, skipped)?;
        let made: Vec<(i64, i64)> = args.into_iter().zip(returns).collect();
        runs::all_recorded("getpgid exits (pid, return)", &made, &returned, skipped)?;
        Ok(())
    });
}
