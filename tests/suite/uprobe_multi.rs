//! uprobe_multi (`programs/src/bpf/uprobe_multi.bpf.c`): one uprobe.multi and one uretprobe.multi
//! link, each over [`FUNCTIONS`] of this test binary (by symbol, one cookie per symbol), for this
//! process's pid. The test calls them from its own thread, from a second thread and from a forked
//! child; then the sentinel. The programs' logs must hold exactly the calls of this process, in
//! order, each under its function's cookie and address with its argument and return value, and
//! none of the child's, which ran before the sentinel. Calls after the links are dropped leave the
//! logs as they were.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::libbpf_sys::{BPF_FUNC_get_attach_cookie, BPF_FUNC_get_func_ip};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ProgramType, UprobeMultiOpts};
use programs::uprobe_multi::UprobeMultiSkelBuilder;
use programs::uprobe_multi::types::hit;
use testkit::child::Child;
use testkit::observe::volatile;
use testkit::{Case, OrError, floors, probe, runs};

const UPROBE_MULTI: &str = "attach_type.uprobe_multi";

/// A probed function: own symbol, never inlined, one integer argument and result in registers.
type Target = extern "C" fn(u64) -> u64;

// SAFETY: no other symbol of the binary has this name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpfconf_umulti_one(x: u64) -> u64 {
    x.wrapping_mul(3).wrapping_add(1)
}

// SAFETY: no other symbol of the binary has this name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpfconf_umulti_two(x: u64) -> u64 {
    x ^ 0x5a5a
}

// SAFETY: no other symbol of the binary has this name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpfconf_umulti_three(x: u64) -> u64 {
    x.rotate_left(8)
}

/// Called by the test after the child is reaped: its run proves the child's calls were past.
// SAFETY: no other symbol of the binary has this name.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bpfconf_umulti_sentinel(x: u64) -> u64 {
    !x
}

/// The linked functions: symbol, function, cookie (distinct from the index and from 0).
const FUNCTIONS: [(&str, Target, u64); 4] = [
    ("bpfconf_umulti_one", bpfconf_umulti_one, 0x101),
    ("bpfconf_umulti_two", bpfconf_umulti_two, 0x202),
    ("bpfconf_umulti_three", bpfconf_umulti_three, 0x303),
    ("bpfconf_umulti_sentinel", bpfconf_umulti_sentinel, 0x404),
];
const ONE: usize = 0;
const TWO: usize = 1;
const THREE: usize = 2;
const SENTINEL: usize = 3;

/// Calls by (function index, argument): from the test's thread, from a second thread, from a
/// forked child (not counted), after the links are gone (not counted).
const MAIN: [(usize, u64); 5] = [(ONE, 1), (TWO, 2), (ONE, 3), (THREE, 4), (TWO, 5)];
const THREAD: [(usize, u64); 2] = [(THREE, 6), (ONE, 7)];
const CHILD: [(usize, u64); 3] = [(ONE, 100), (TWO, 101), (THREE, 102)];
const AFTER: [(usize, u64); 2] = [(ONE, 200), (SENTINEL, 201)];
const SENTINEL_ARG: u64 = 8;

/// What a program logs of one run: (cookie, function address, argument or return value).
type Hit = (u64, u64, u64);

/// Makes `calls` through opaque pointers (the compiler can neither inline nor fold them); returns
/// the entry and return hits each must log.
fn call(calls: &[(usize, u64)]) -> (Vec<Hit>, Vec<Hit>) {
    calls
        .iter()
        .map(|&(f, x)| {
            let (_, target, cookie) = FUNCTIONS[f];
            let target: Target = std::hint::black_box(target);
            let ip = target as usize as u64;
            ((cookie, ip, x), (cookie, ip, target(x)))
        })
        .unzip()
}

/// The first `count` hits of a log (as many as it has slots).
fn logged(count: u32, log: &[hit]) -> Vec<Hit> {
    log[..(count as usize).min(log.len())]
        .iter()
        .map(|h| (h.cookie, h.ip, h.value))
        .collect()
}

#[test]
fn counts_own_process_per_function() {
    Case::run(ProgramType::Kprobe, |case| {
        for (helper, name) in [
            (BPF_FUNC_get_attach_cookie, "bpf_get_attach_cookie"),
            (BPF_FUNC_get_func_ip, "bpf_get_func_ip"),
        ] {
            probe::helper(ProgramType::Kprobe, helper, name)?;
        }
        let mut object = MaybeUninit::uninit();
        let skel = case.load(UprobeMultiSkelBuilder::default().open(&mut object)?)?;
        if !floors::has(UPROBE_MULTI, true) {
            return Err(floors::missing(UPROBE_MULTI, "not attached"));
        }
        let binary = std::env::current_exe().or_error("finding the test binary")?;
        let pid = nix::unistd::getpid().as_raw();
        let attach = |prog: &libbpf_rs::ProgramMut<'_>, retprobe: bool| {
            let opts = UprobeMultiOpts {
                syms: FUNCTIONS.iter().map(|(s, _, _)| s.to_string()).collect(),
                cookies: FUNCTIONS.iter().map(|&(_, _, c)| c).collect(),
                retprobe,
                ..Default::default()
            };
            prog.attach_uprobe_multi_with_opts(pid, &binary, "", opts)
                .map_err(|e| {
                    floors::missing(
                        UPROBE_MULTI,
                        format!("one link over 4 functions of {}: {e:#}", binary.display()),
                    )
                })
        };
        let links = (
            attach(&skel.progs.call_entry, false)?,
            attach(&skel.progs.call_return, true)?,
        );

        let (mut entered, mut returned) = call(&MAIN);
        let (thread_entered, thread_returned) =
            std::thread::scope(|s| s.spawn(|| call(&THREAD)).join()).expect("the second thread");
        entered.extend(thread_entered);
        returned.extend(thread_returned);
        // No allocation in the child (another thread may have held the allocator's lock).
        Child::default().run(|| {
            for &(f, x) in &CHILD {
                std::hint::black_box(FUNCTIONS[f].1)(x);
            }
        })?;
        let (sentinel_entered, sentinel_returned) = call(&[(SENTINEL, SENTINEL_ARG)]);
        entered.extend(sentinel_entered);
        returned.extend(sentinel_returned);

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let read = || {
            (
                logged(volatile(&bss.entries), &volatile(&bss.entry_log)),
                logged(volatile(&bss.returns), &volatile(&bss.return_log)),
            )
        };
        let (entry_log, return_log) = read();
        case.detail("entries", &entry_log);
        case.detail("returns", &return_log);
        let skipped = runs::misses(skel.progs.call_entry.as_fd())?
            + runs::misses(skel.progs.call_return.as_fd())?;
        runs::all_recorded(
            "calls (cookie, ip, argument)",
            &entered,
            &entry_log,
            skipped,
        )?;
        runs::all_recorded(
            "returns (cookie, ip, value)",
            &returned,
            &return_log,
            skipped,
        )?;

        testkit::link::release(links);
        call(&AFTER);
        let after = read();
        assert_eq!(
            after,
            (entry_log, return_log),
            "calls made after the links were dropped were logged"
        );
        Ok(())
    });
}
