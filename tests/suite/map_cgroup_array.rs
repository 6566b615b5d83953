//! BPF_MAP_TYPE_CGROUP_ARRAY (`programs/src/bpf/map_cgroup_array.bpf.c`): cgroups by slot for
//! bpf_current_task_under_cgroup and bpf_skb_under_cgroup. Slot 0 holds X, slot 1 its parent P;
//! P also holds Y (X's sibling) and X holds Z.
//!
//! `membership_of_tasks_and_packets`: forked children, one per cgroup, each make getppid(2) and
//! send datagrams over loopback in a fresh namespace (tc egress on its `lo` runs `skb_under`):
//! X's child 3 of each, Z's 1, Y's 2. For the tasks under P, the raw tracepoint finds exactly
//! 4 under X (X's and Z's: a descendant is under) and 2 not (Y's); for the packets, tc finds 4
//! whose socket is under X and 2 whose socket is not, and none without an answer.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType, TC_EGRESS, TcHookBuilder};
use programs::map_cgroup_array::MapCgroupArraySkelBuilder;
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, probe, traffic};

/// From a child in `cg`: `times` getppid(2) and as many datagrams over loopback.
fn act(cg: &Cgroup, ns: &NetNs, times: usize) -> CaseResult {
    child::in_cgroup(cg)
        .netns(ns)
        .run(|| {
            for _ in 0..times {
                testkit::ksyscall::getppid();
            }
            traffic::udp_to_self(times, 10)
        })?
        .map_err(|e| CaseError::Error(anyhow::anyhow!("the child's datagrams: {e}")))
}

#[test]
fn membership_of_tasks_and_packets() {
    Case::run(ProgramType::SchedCls, |case| {
        probe::map_type(MapType::CgroupArray, "map_type.cgroup_array")?;
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_sys::BPF_FUNC_current_task_under_cgroup,
            "bpf_current_task_under_cgroup",
        )?;
        probe::helper(
            ProgramType::SchedCls,
            libbpf_sys::BPF_FUNC_skb_under_cgroup,
            "bpf_skb_under_cgroup",
        )?;
        probe::config_enabled("CONFIG_NET_CLS_BPF")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapCgroupArraySkelBuilder::default().open(&mut object)?)?;
        let p = Cgroup::new()?;
        let (x, y) = (p.nested()?, p.nested()?);
        let z = x.nested()?;
        for (slot, cg) in [(0u32, &x), (1, &p)] {
            let fd = cg.as_fd().as_raw_fd() as u32;
            skel.maps
                .cgroups
                .update(&slot.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)?;
        }
        let ns = NetNs::new()?;
        {
            let _inside = ns.enter()?;
            let mut hook = TcHookBuilder::new(skel.progs.skb_under.as_fd())
                .ifindex(ns.ifindex("lo")? as i32)
                .handle(1)
                .priority(1)
                .hook(TC_EGRESS);
            hook.create().or_error("creating the clsact qdisc on lo")?;
            hook.attach()?;
        }
        let _task_link = skel.progs.task_under.attach_raw_tracepoint("sys_enter")?;
        act(&x, &ns, 3)?;
        act(&z, &ns, 1)?;
        act(&y, &ns, 2)?;

        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        let tasks = [bss.task_in_x, bss.task_not_in_x];
        let skbs = [bss.skb_in_x, bss.skb_not_in_x, bss.skb_other];
        case.detail("tasks", tasks);
        case.detail("skbs", skbs);
        assert_eq!(
            tasks,
            [4, 2],
            "getppid under X, not under X (tasks under P)"
        );
        assert_eq!(skbs, [4, 2, 0], "packets under X, not under X, no answer");
        drop((z, x, y));
        Ok(())
    });
}
