//! kprobe_session (`programs/src/bpf/kprobe_session.bpf.c`): one program run at the entry and
//! the return of kernel functions (BPF_TRACE_KPROBE_SESSION, Linux 6.10+), here the entry
//! functions of getpgid (cookie 1) and getsid (cookie 2) under one link. libbpf-rs has no session
//! flag for kprobe_multi links, so the link is libbpf's (`bpf_kprobe_multi_opts.session`).
//!
//! `entry_decides_the_return_run`: the test thread calls getpgid(0), getsid(0),
//! getpgid([`MISSING_PID`]), getsid([`MISSING_PID`]). The entry runs must have logged the four
//! calls in order (cookie, pid); the return runs only the two getpgid calls (the entry run of
//! getsid returned 1: no return run), each with the pid its own entry run left in the session
//! cookie and getpgid's return value (the process group, then -ESRCH) — less only runs the kernel
//! reports skipped.
//!
//! [`MISSING_PID`]: testkit::tracing_multi::MISSING_PID

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{AsRawLibbpf, Link, Program, ProgramType, libbpf_sys};
use nix::errno::Errno;
use programs::kprobe_session::KprobeSessionSkelBuilder;
use testkit::observe::volatile;
use testkit::tracing_multi::{Calls, GETPGID, Runs};
use testkit::{Case, CaseResult, attach_type};

const KPROBE_SESSION: &str = "attach_type.kprobe_session";

/// One kprobe session link of `prog` over `symbols`, cookie i + 1 for `symbols[i]`.
fn attach_session(prog: &Program<'_>, symbols: &[String]) -> CaseResult<Result<Link, Errno>> {
    let names = symbols
        .iter()
        .map(|s| CString::new(s.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pointers: Vec<*const libc::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let cookies: Vec<u64> = (1..=symbols.len() as u64).collect();
    let opts = libbpf_sys::bpf_kprobe_multi_opts {
        sz: size_of::<libbpf_sys::bpf_kprobe_multi_opts>() as _,
        syms: pointers.as_mut_ptr(),
        cookies: cookies.as_ptr(),
        cnt: symbols.len() as _,
        session: true,
        ..Default::default()
    };
    // SAFETY: a loaded program; options of their declared size whose arrays (`names`, `pointers`,
    // `cookies`) outlive the call; `adopt` takes what libbpf returned.
    Ok(unsafe {
        testkit::link::adopt(libbpf_sys::bpf_program__attach_kprobe_multi_opts(
            prog.as_libbpf_object().as_ptr(),
            std::ptr::null(),
            &opts,
        ))
    })
}

#[test]
fn entry_decides_the_return_run() {
    Case::run(ProgramType::Kprobe, |case| {
        let mut object = MaybeUninit::uninit();
        let mut open = KprobeSessionSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .target_tid = nix::unistd::gettid().as_raw() as u32;
        let skel = attach_type::load(case, KPROBE_SESSION, open)?;
        let calls = Calls::prepare(case)?;
        let symbols = &calls.functions;
        let attached = attach_session(&skel.progs.on_call, symbols)?;
        let _link = attach_type::errno(
            KPROBE_SESSION,
            &format!("a kprobe session link over {symbols:?}"),
            || attached,
        )?;

        let returned = calls.make();
        assert_eq!(
            returned[2],
            -i64::from(libc::ESRCH),
            "getpgid of a pid nobody has"
        );
        // Only getpgid's entry runs ask for a return run.
        let mut made = Runs::made(&returned);
        made.exits.retain(|&(f, _, _)| f == GETPGID);

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let logged = Runs::logged(
            (&bss.entries, &bss.entry_cookie, &bss.entry_pid),
            (&bss.returns, &bss.return_cookie, &bss.return_pid),
            &bss.return_value,
        );
        logged.check(
            case,
            skel.progs.on_call.as_fd(),
            volatile(&bss.no_session),
            &made,
            [
                "returns",
                "return runs (cookie, pid from the session cookie, return value)",
            ],
        )
    });
}
