//! tracing_multi (`programs/src/bpf/tracing_multi.bpf.c`): BPF trampoline programs put on many
//! kernel functions by one link (Linux 7.2+): BPF_TRACE_FENTRY_MULTI, BPF_TRACE_FEXIT_MULTI and
//! BPF_TRACE_FSESSION_MULTI, one case each, over the entry functions of getpgid (cookie 1) and
//! getsid (cookie 2) (resolved from /proc/kallsyms, named to the link by their BTF ids). libbpf
//! 1.7 cannot make these links: `testkit::tracing_multi` sets the program's type and attach type
//! before load and calls BPF_LINK_CREATE itself.
//!
//! `one_link_over_two_functions::*`: the test thread calls getpgid(0), getsid(0),
//! getpgid([`MISSING_PID`]), getsid([`MISSING_PID`]); the program (only the case's is loaded) must
//! have logged exactly these calls in order under their functions' cookies: fentry.multi each
//! (cookie, pid); fexit.multi each (cookie, pid, return value: the process group, the session id,
//! then -ESRCH twice); fsession.multi both, its exit runs taking the pid from the session cookie
//! of their own entry run — less only runs the kernel reports skipped.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use programs::tracing_multi::TracingMultiSkelBuilder;
use rstest::rstest;
use testkit::observe::volatile;
use testkit::tracing_multi::{self, FENTRY_MULTI, FEXIT_MULTI, FSESSION_MULTI};
use testkit::{Case, CaseResult, attach_type, floors, ksyscall, runs};

/// Above the kernel's PID_MAX_LIMIT (4,194,304): no process has it.
const MISSING_PID: i64 = 4_194_304 + 4242;
const GETPGID: u64 = 1;
const GETSID: u64 = 2;

/// The case's attach type: its value, floor, program, and whether it logs entries and exits.
#[derive(Clone, Copy, Debug)]
struct Kind {
    attach_type: u32,
    floor: &'static str,
    program: &'static str,
    entries: bool,
    exits: bool,
}

const FENTRY: Kind = Kind {
    attach_type: FENTRY_MULTI,
    floor: "attach_type.fentry_multi",
    program: "on_entry",
    entries: true,
    exits: false,
};
const FEXIT: Kind = Kind {
    attach_type: FEXIT_MULTI,
    floor: "attach_type.fexit_multi",
    program: "on_exit",
    entries: false,
    exits: true,
};
const FSESSION: Kind = Kind {
    attach_type: FSESSION_MULTI,
    floor: "attach_type.fsession_multi",
    program: "on_session",
    entries: true,
    exits: true,
};

#[rstest]
#[case::fentry_multi(FENTRY)]
#[case::fexit_multi(FEXIT)]
#[case::fsession_multi(FSESSION)]
fn one_link_over_two_functions(#[case] kind: Kind) {
    Case::run(ProgramType::Tracing, |case| {
        let mut object = MaybeUninit::uninit();
        let mut open = TracingMultiSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .target_tid = nix::unistd::gettid().as_raw() as u32;
        for mut prog in open.open_object_mut().progs_mut() {
            if prog.name() == kind.program {
                tracing_multi::prepare(&mut prog, kind.attach_type)?;
            } else {
                prog.set_autoload(false);
            }
        }
        let skel = attach_type::load(case, kind.floor, open)?;
        let symbols = ["getpgid", "getsid"]
            .iter()
            .map(|name| floors::judge("ksym.syscall_entry", ksyscall::resolve(name)))
            .map(|f| f.map(|f| f.symbol))
            .collect::<CaseResult<Vec<_>>>()?;
        case.detail("functions", &symbols);
        let ids = tracing_multi::func_ids(&symbols.iter().map(String::as_str).collect::<Vec<_>>())?;

        let prog = match kind.attach_type {
            FENTRY_MULTI => &skel.progs.on_entry,
            FEXIT_MULTI => &skel.progs.on_exit,
            _ => &skel.progs.on_session,
        };
        let pgrp = i64::from(nix::unistd::getpgrp().as_raw());
        let _link = attach_type::errno(
            kind.floor,
            "BPF_LINK_CREATE of a tracing_multi link",
            || tracing_multi::link(prog.as_fd(), kind.attach_type, &ids, &[GETPGID, GETSID]),
        )?;

        let calls: [(u64, i64); 4] = [
            (GETPGID, 0),
            (GETSID, 0),
            (GETPGID, MISSING_PID),
            (GETSID, MISSING_PID),
        ];
        let returned: Vec<i64> = calls
            .iter()
            .map(|&(f, pid)| {
                if f == GETPGID {
                    ksyscall::getpgid(pid)
                } else {
                    ksyscall::getsid(pid)
                }
            })
            .collect();
        assert_eq!(returned[0], pgrp, "getpgid(0)");
        assert_eq!(
            returned[2..],
            [-i64::from(libc::ESRCH); 2],
            "getpgid and getsid of a pid nobody has"
        );

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let n = |count: u32| (count as usize).min(8);
        let (ec, ep) = (volatile(&bss.entry_cookie), volatile(&bss.entry_pid));
        let entries: Vec<(u64, i64)> = (0..n(volatile(&bss.entries)))
            .map(|i| (ec[i], ep[i] as i64))
            .collect();
        let (xc, xp, xr) = (
            volatile(&bss.exit_cookie),
            volatile(&bss.exit_pid),
            volatile(&bss.exit_ret),
        );
        let exits: Vec<(u64, i64, i64)> = (0..n(volatile(&bss.exits)))
            .map(|i| (xc[i], xp[i] as i64, xr[i]))
            .collect();
        case.detail("entries", &entries);
        case.detail("exits", &exits);
        assert_eq!(
            volatile(&bss.no_session),
            0,
            "runs without the session kfuncs"
        );
        let skipped = runs::misses(prog.as_fd())?;
        let made_entries: Vec<(u64, i64)> = if kind.entries { calls.to_vec() } else { vec![] };
        let made_exits: Vec<(u64, i64, i64)> = if kind.exits {
            calls
                .iter()
                .zip(&returned)
                .map(|(&(f, pid), &ret)| (f, pid, ret))
                .collect()
        } else {
            vec![]
        };
        runs::all_recorded("entry runs (cookie, pid)", &made_entries, &entries, skipped)?;
        runs::all_recorded(
            "exit runs (cookie, pid, return value)",
            &made_exits,
            &exits,
            skipped,
        )?;
        Ok(())
    });
}
