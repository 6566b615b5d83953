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
//!
//! [`MISSING_PID`]: testkit::tracing_multi::MISSING_PID

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use programs::tracing_multi::TracingMultiSkelBuilder;
use rstest::rstest;
use testkit::observe::volatile;
use testkit::tracing_multi::{
    self, Calls, FENTRY_MULTI, FEXIT_MULTI, FSESSION_MULTI, GETPGID, GETSID, Runs,
};
use testkit::{Case, attach_type};

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
        let calls = Calls::prepare(case)?;
        let functions: Vec<&str> = calls.functions.iter().map(String::as_str).collect();
        let ids = tracing_multi::func_ids(&functions)?;

        let prog = match kind.attach_type {
            FENTRY_MULTI => &skel.progs.on_entry,
            FEXIT_MULTI => &skel.progs.on_exit,
            _ => &skel.progs.on_session,
        };
        let _link = attach_type::errno(
            kind.floor,
            "BPF_LINK_CREATE of a tracing_multi link",
            || tracing_multi::link(prog.as_fd(), kind.attach_type, &ids, &[GETPGID, GETSID]),
        )?;

        let returned = calls.make();
        assert_eq!(
            returned[2..],
            [-i64::from(libc::ESRCH); 2],
            "getpgid and getsid of a pid nobody has"
        );
        let mut made = Runs::made(&returned);
        if !kind.entries {
            made.entries.clear();
        }
        if !kind.exits {
            made.exits.clear();
        }

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let logged = Runs::logged(
            (&bss.entries, &bss.entry_cookie, &bss.entry_pid),
            (&bss.exits, &bss.exit_cookie, &bss.exit_pid),
            &bss.exit_ret,
        );
        logged.check(
            case,
            prog.as_fd(),
            volatile(&bss.no_session),
            &made,
            ["exits", "exit runs (cookie, pid, return value)"],
        )
    });
}
