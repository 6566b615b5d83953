//! kprobe_multi (`programs/src/bpf/kprobe_multi.bpf.c`): one link over the entry functions of
//! getpgid, getsid and getppid (resolved from /proc/kallsyms), each with its own cookie. The test
//! thread makes [`CALLS`] of each; the program's count per cookie must be exactly the calls made,
//! less only runs the kernel reports skipped, and nothing may arrive without a cookie.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{KprobeMultiOpts, ProgramType};
use programs::kprobe_multi::KprobeMultiSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, CaseError, floors, ksyscall, probe, runs};

const KPROBE_MULTI: &str = "attach_type.kprobe_multi";
/// A probed syscall's name, a call of it, and how often the test makes that call.
type Calls = (&'static str, fn() -> i64, u64);

/// The syscalls probed; cookie i + 1 is `CALLS[i]`.
const CALLS: [Calls; 3] = [
    ("getpgid", || ksyscall::getpgid(0), 3),
    ("getsid", || ksyscall::getsid(0), 5),
    ("getppid", || i64::from(nix::unistd::getppid().as_raw()), 2),
];

#[test]
fn counts_each_function_by_cookie() {
    Case::run(ProgramType::Kprobe, |case| {
        probe::helper(
            ProgramType::Kprobe,
            libbpf_rs::libbpf_sys::BPF_FUNC_get_attach_cookie,
            "bpf_get_attach_cookie",
        )?;
        let symbols = CALLS
            .iter()
            .map(|(name, _, _)| {
                floors::judge("ksym.syscall_entry", ksyscall::resolve(name)).map(|f| f.symbol)
            })
            .collect::<Result<Vec<_>, _>>()?;
        case.detail("functions", &symbols);
        let mut object = MaybeUninit::uninit();
        let mut open = KprobeMultiSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata is mmapped before load")
            .target_tid = nix::unistd::gettid().as_raw() as u32;
        let skel = case.load(open)?;
        if !floors::has(KPROBE_MULTI, true) {
            return Err(floors::missing(KPROBE_MULTI, "not attached"));
        }
        let opts = KprobeMultiOpts {
            symbols: symbols.clone(),
            cookies: (1..=CALLS.len() as u64).collect(),
            ..Default::default()
        };
        let _link = skel
            .progs
            .count_calls
            .attach_kprobe_multi_with_opts(opts)
            .map_err(|e| {
                floors::missing(KPROBE_MULTI, format!("one link over {symbols:?}: {e:#}"))
            })?;

        for &(_, call, times) in &CALLS {
            for _ in 0..times {
                call();
            }
        }

        let counted = volatile(&skel.maps.bss_data.as_deref().expect(".bss").calls);
        let skipped = runs::misses(skel.progs.count_calls.as_fd())?;
        case.detail("counted", counted);
        case.detail("skipped", skipped);
        let mut lost = 0;
        for (i, &(name, _, made)) in CALLS.iter().enumerate() {
            let got = counted[i + 1];
            if got > made {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "{name}: {got} calls counted under cookie {}, {made} made",
                    i + 1
                )));
            }
            lost += made - got;
        }
        assert_eq!(counted[0], 0, "calls counted without a cookie");
        assert!(
            lost <= skipped,
            "{lost} calls not counted ({counted:?}) but only {skipped} runs skipped by the \
                 kernel"
        );
        Ok(())
    });
}
