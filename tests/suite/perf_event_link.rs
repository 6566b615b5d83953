//! perf_event_link (`programs/src/bpf/perf_event_link.bpf.c`): a program attached to perf events
//! through BPF links (BPF_LINK_CREATE with BPF_PERF_EVENT, Linux 5.15+) instead of the perf
//! event's `PERF_EVENT_IOC_SET_BPF`, each link carrying a cookie the program reads. (libbpf
//! creates such a link for every kprobe, uprobe, tracepoint and perf event program on kernels
//! that have it; this case makes it the subject.)
//!
//! `each_link_brings_its_cookie`: one tracepoint program, two links: on syscalls/sys_enter_getpgid
//! with cookie 1 and on syscalls/sys_enter_getsid with cookie 2 (libbpf opens the tracepoints'
//! perf events). Both links report the perf-event link type. The test thread calls getpgid
//! [`GETPGIDS`] times and getsid [`GETSIDS`] times: the program's runs per cookie are exactly
//! those, none without a cookie, less only runs the kernel reports skipped. Once the getpgid link
//! is dropped, more getpgid calls leave its count as it was.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{ProgramType, TracepointCategory, TracepointOpts, libbpf_sys};
use programs::perf_event_link::PerfEventLinkSkelBuilder;
use testkit::observe::volatile;
use testkit::{Case, attach_type, ksyscall, probe, runs};

const PERF_LINK: &str = "attach_type.perf_event_link";
const GETPGIDS: u64 = 3;
const GETSIDS: u64 = 5;

#[test]
fn each_link_brings_its_cookie() {
    Case::run(ProgramType::Tracepoint, |case| {
        probe::helper(
            ProgramType::Tracepoint,
            libbpf_sys::BPF_FUNC_get_attach_cookie,
            "bpf_get_attach_cookie",
        )?;
        probe::tracepoint("syscalls", "sys_enter_getpgid")?;
        probe::tracepoint("syscalls", "sys_enter_getsid")?;
        let mut object = MaybeUninit::uninit();
        let mut open = PerfEventLinkSkelBuilder::default().open(&mut object)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata")
            .target_tid = nix::unistd::gettid().as_raw() as u32;
        let skel = case.load(open)?;
        let prog = &skel.progs.count_by_cookie;
        let link = |name: &str, cookie: u64| {
            attach_type::libbpf(
                PERF_LINK,
                &format!("a perf link on {name}, cookie {cookie}"),
                || {
                    prog.attach_tracepoint_with_opts(
                        TracepointCategory::Syscalls,
                        name,
                        TracepointOpts {
                            cookie,
                            ..Default::default()
                        },
                    )
                },
            )
        };
        let getpgid_link = link("sys_enter_getpgid", 1)?;
        let _getsid_link = link("sys_enter_getsid", 2)?;
        let kind = getpgid_link
            .info()
            .map(|i| i.info)
            .map_err(|e| testkit::CaseError::Fail(anyhow::anyhow!("link info: {e:#}")))?;
        case.detail("link_info", format!("{kind:?}"));
        assert!(
            matches!(kind, LinkTypeInfo::PerfEvent(_)),
            "the getpgid link's type: {kind:?}"
        );

        for _ in 0..GETPGIDS {
            ksyscall::getpgid(0);
        }
        for _ in 0..GETSIDS {
            ksyscall::getsid(0);
        }
        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let counted = volatile(&bss.runs);
        case.detail("runs_by_cookie", counted);
        let skipped = runs::misses(prog.as_fd())?;
        case.detail("skipped", skipped);
        assert_eq!(counted[0], 0, "runs without a cookie of ours");
        assert_eq!(counted[3], 0, "runs under cookie 3");
        let lost = (GETPGIDS - counted[1].min(GETPGIDS)) + (GETSIDS - counted[2].min(GETSIDS));
        assert!(
            counted[1] <= GETPGIDS && counted[2] <= GETSIDS && lost <= skipped,
            "runs under cookies 1 and 2: {counted:?} for {GETPGIDS} getpgid and {GETSIDS} getsid \
             calls ({skipped} runs skipped by the kernel)"
        );

        drop(getpgid_link);
        ksyscall::getpgid(0);
        assert_eq!(
            volatile(&bss.runs),
            counted,
            "runs after a getpgid call once its link was dropped"
        );
        Ok(())
    });
}
