//! BPF_MAP_TYPE_CGRP_STORAGE (`programs/src/bpf/map_cgrp_storage.bpf.c`): a raw tracepoint on
//! sys_enter counts getppid(2) calls per cgroup in the cgroup's storage; user space reads and
//! writes the counter by a cgroup directory fd.
//!
//! `one_value_per_cgroup_gone_with_it`: cgroups X, Y and W. A child in X makes 3 calls, one in Y
//! 5: by directory fd X holds 3, Y 5, W nothing (`ENOENT`: no call made its element). User space
//! writes 100 into X's element and a child in X makes one more call: 101, the program counts on
//! from the value user space wrote. Deleted from user space, Y's element is gone. Once X is
//! removed (rmdir), a look-up through a descriptor of X's directory still open is `ENOENT`: the
//! storage of a removed cgroup is out of reach. Calls whose get answered NULL (`missed`, see
//! `testkit::local_storage`) are not counted.

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapFlags, ProgramType};
use programs::map_cgrp_storage::MapCgrpStorageSkelBuilder;
use testkit::local_storage::{counter, value};
use testkit::observe::volatile;
use testkit::{Case, CaseResult, Cgroup, OrError, child, probe};

/// `times` getppid(2) calls from a child in `cg`.
fn getppid_in(cg: &Cgroup, times: usize) -> CaseResult {
    child::in_cgroup(cg).run(|| {
        for _ in 0..times {
            testkit::ksyscall::getppid();
        }
    })
}

#[test]
fn one_value_per_cgroup_gone_with_it() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type_id(
            libbpf_sys::BPF_MAP_TYPE_CGRP_STORAGE,
            "map_type.cgrp_storage",
        )?;
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_sys::BPF_FUNC_cgrp_storage_get,
            "bpf_cgrp_storage_get",
        )?;
        let (x, y, w) = (Cgroup::new()?, Cgroup::new()?, Cgroup::new()?);
        let (x_id, y_id) = (x.id()?, y.id()?);
        let mut object = MaybeUninit::uninit();
        let mut skel =
            case.open_load(MapCgrpStorageSkelBuilder::default(), &mut object, |open| {
                let bss = open.maps.bss_data.as_deref_mut().expect(".bss");
                bss.x_id = x_id;
                bss.y_id = y_id;
            })?;
        skel.attach()?;
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        let missed = || volatile(&bss.missed);
        getppid_in(&x, 3)?;
        let x_missed = missed();
        getppid_in(&y, 5)?;
        let y_missed = missed() - x_missed;

        let map = &skel.maps.calls;
        let counts = [value(map, &x), value(map, &y), value(map, &w)];
        case.detail("counts", format!("{counts:?}"));
        case.detail("missed", [x_missed, y_missed]);
        assert_eq!(
            counts,
            [
                counter(None, 3, x_missed)?,
                counter(None, 5, y_missed)?,
                Err(libc::ENOENT)
            ],
            "X, Y, W"
        );
        let key = |cg: &Cgroup| cg.as_fd().as_raw_fd().to_ne_bytes();
        map.update(&key(&x), &100u64.to_ne_bytes(), MapFlags::EXIST)?;
        let before = missed();
        getppid_in(&x, 1)?;
        assert_eq!(
            value(map, &x),
            counter(Some(100), 1, missed() - before)?,
            "the program counts on from user space's value"
        );
        let x_now = value(map, &x);
        map.delete(&key(&y))?;
        assert_eq!(
            [value(map, &x), value(map, &y)],
            [x_now, Err(libc::ENOENT)],
            "Y deleted"
        );

        let x_dir = File::open(x.path()).or_error("opening X's directory")?;
        drop(x);
        assert_eq!(value(map, &x_dir), Err(libc::ENOENT), "X removed");
        Ok(())
    });
}
