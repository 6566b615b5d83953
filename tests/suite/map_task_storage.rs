//! BPF_MAP_TYPE_TASK_STORAGE (`programs/src/bpf/map_task_storage.bpf.c`): a raw tracepoint on
//! sys_enter keeps a getppid(2) counter in each task's storage; user space reads it by pidfd.
//!
//! `one_value_per_task_created_on_demand_gone_with_it`: three forked children in the test's
//! cgroup, each kept alive after its work: A makes getpid, 3 × getppid, getpid; B 5 × getppid;
//! C one getpid. The program's look-ups without the create flag found no element twice (A's
//! first getpid, C's) and one once (A's last): an element exists only once the create flag made
//! it. By pidfd, A holds 3, B 5 and C nothing (`ENOENT`). Deleted from user space, A's element
//! is gone while B's stays; once B is killed and reaped, a look-up through B's pidfd (still
//! open) is `ENOENT`: the storage went with its task. Calls whose get answered NULL (`missed`,
//! see `testkit::local_storage`) are not counted.

use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapType, ProgramType};
use programs::map_task_storage::MapTaskStorageSkelBuilder;
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use testkit::ksyscall::getpid;
use testkit::local_storage::{counter, value};
use testkit::observe::volatile;
use testkit::{Case, CaseResult, Cgroup, child, probe};

/// `times` getppid(2) calls.
fn getppid(times: usize) {
    for _ in 0..times {
        testkit::ksyscall::getppid();
    }
}

/// A pidfd for the child `pid`.
fn pidfd(pid: nix::unistd::Pid) -> CaseResult<OwnedFd> {
    let pid = Pid::from_raw(pid.as_raw()).expect("a child's pid is positive");
    Ok(pidfd_open(pid, PidfdFlags::empty())?)
}

#[test]
fn one_value_per_task_created_on_demand_gone_with_it() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::TaskStorage, "map_type.task_storage")?;
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_sys::BPF_FUNC_task_storage_get,
            "bpf_task_storage_get",
        )?;
        let cg = Cgroup::new()?;
        let cgroup_id = cg.id()?;
        let mut object = MaybeUninit::uninit();
        let mut skel =
            case.open_load(MapTaskStorageSkelBuilder::default(), &mut object, |open| {
                open.maps.bss_data.as_deref_mut().expect(".bss").cgroup_id = cgroup_id;
            })?;
        skel.attach()?;
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        let missed = || volatile(&bss.missed);

        let (_, a) = child::in_cgroup(&cg).hold(|| {
            getpid();
            getppid(3);
            getpid()
        })?;
        let a_missed = missed();
        let (_, b) = child::in_cgroup(&cg).hold(|| getppid(5))?;
        let b_missed = missed() - a_missed;
        let (_, c) = child::in_cgroup(&cg).hold(getpid)?;
        let (a_fd, b_fd, c_fd) = (pidfd(a.pid())?, pidfd(b.pid())?, pidfd(c.pid())?);
        let map = &skel.maps.counts;
        let (absent, present) = (volatile(&bss.absent), volatile(&bss.present));
        case.detail("absent_present", [absent, present]);
        case.detail("missed", [a_missed, b_missed]);
        assert_eq!(
            (absent, present),
            (2, 1),
            "look-ups without the create flag"
        );
        assert_eq!(
            [value(map, &a_fd), value(map, &b_fd), value(map, &c_fd)],
            [
                counter(None, 3, a_missed)?,
                counter(None, 5, b_missed)?,
                Err(libc::ENOENT)
            ],
            "A, B, C by pidfd"
        );

        map.delete(&a_fd.as_raw_fd().to_ne_bytes())?;
        let b_now = value(map, &b_fd);
        assert_eq!(
            [value(map, &a_fd), value(map, &b_fd)],
            [Err(libc::ENOENT), b_now],
            "A deleted from user space, B untouched"
        );
        b.end()?;
        assert_eq!(value(map, &b_fd), Err(libc::ENOENT), "B reaped");
        drop((a, c));
        Ok(())
    });
}
