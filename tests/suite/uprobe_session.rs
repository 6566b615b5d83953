//! uprobe_session (`programs/src/bpf/uprobe_session.bpf.c`): one program run at the entry and the
//! return of user-space functions (BPF_TRACE_UPROBE_SESSION, Linux 6.13+), here
//! [`bpfconf_usession_one`] (cookie 1) and [`bpfconf_usession_two`] (cookie 2) of this test
//! binary, under one link for this process.
//!
//! `entry_decides_the_return_run`: the test calls one(5), two(6), one(7). The entry runs must have
//! logged the three calls in order (cookie, argument); the return runs only the two calls of
//! `one` (the entry run of `two` returned 1: no return run), each with the argument its own entry
//! run left in the session cookie and the function's return value — less only runs the kernel
//! reports skipped. Once the link is dropped, calls leave the logs as they were.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ProgramType, UprobeMultiOpts};
use programs::uprobe_session::UprobeSessionSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, OrError, attach_type, runs};

const UPROBE_SESSION: &str = "attach_type.uprobe_session";

/// A probed function: own symbol, never inlined, one integer argument and result in registers.
type Target = extern "C" fn(u64) -> u64;

// SAFETY: no other symbol of the binary has this name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpfconf_usession_one(x: u64) -> u64 {
    x.wrapping_mul(7).wrapping_add(3)
}

// SAFETY: no other symbol of the binary has this name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpfconf_usession_two(x: u64) -> u64 {
    x ^ 0x77
}

/// The linked functions: symbol, function; cookie i + 1 for entry i.
const FUNCTIONS: [(&str, Target); 2] = [
    ("bpfconf_usession_one", bpfconf_usession_one),
    ("bpfconf_usession_two", bpfconf_usession_two),
];
/// Calls by (cookie, argument).
const CALLS: [(u64, u64); 3] = [(1, 5), (2, 6), (1, 7)];

/// Makes `calls` through opaque pointers; their return values.
fn call(calls: &[(u64, u64)]) -> Vec<u64> {
    calls
        .iter()
        .map(|&(cookie, x)| std::hint::black_box(FUNCTIONS[cookie as usize - 1].1)(x))
        .collect()
}

#[test]
fn entry_decides_the_return_run() {
    Case::run(ProgramType::Kprobe, |case| {
        let mut object = MaybeUninit::uninit();
        let open = UprobeSessionSkelBuilder::default().open(&mut object)?;
        let skel = attach_type::load(case, UPROBE_SESSION, open)?;
        let binary = std::env::current_exe().or_error("finding the test binary")?;
        let opts = UprobeMultiOpts {
            syms: FUNCTIONS.iter().map(|(s, _)| s.to_string()).collect(),
            cookies: vec![1, 2],
            session: true,
            ..Default::default()
        };
        let pid = nix::unistd::getpid().as_raw();
        let link = attach_type::libbpf(UPROBE_SESSION, "a uprobe session link", || {
            skel.progs
                .on_call
                .attach_uprobe_multi_with_opts(pid, &binary, "", opts)
        })?;

        let values = call(&CALLS);
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let read = || {
            let n = |count: u32| (count as usize).min(8);
            let (ec, ea) = (volatile(&bss.entry_cookie), volatile(&bss.entry_arg));
            let (rc, ra, rv) = (
                volatile(&bss.return_cookie),
                volatile(&bss.return_arg),
                volatile(&bss.return_value),
            );
            (
                (0..n(volatile(&bss.entries)))
                    .map(|i| (ec[i], ea[i]))
                    .collect::<Vec<_>>(),
                (0..n(volatile(&bss.returns)))
                    .map(|i| (rc[i], ra[i], rv[i]))
                    .collect::<Vec<_>>(),
            )
        };
        let (entries, returns) = read();
        case.detail("entries", &entries);
        case.detail("returns", &returns);
        assert_eq!(
            volatile(&bss.no_session),
            0,
            "runs without the session kfuncs"
        );
        let skipped = runs::misses(skel.progs.on_call.as_fd())?;
        runs::all_recorded("entry runs (cookie, argument)", &CALLS, &entries, skipped)?;
        let made: Vec<(u64, u64, u64)> = CALLS
            .iter()
            .zip(&values)
            .filter(|((cookie, _), _)| *cookie == 1)
            .map(|(&(cookie, x), &v)| (cookie, x, v))
            .collect();
        runs::all_recorded(
            "return runs (cookie, argument from the session cookie, return value)",
            &made,
            &returns,
            skipped,
        )?;

        testkit::link::release(link);
        call(&CALLS);
        assert_eq!(
            read(),
            (entries, returns),
            "the logs after calls made once the link was dropped"
        );
        Ok(())
    });
}
