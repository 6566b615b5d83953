//! `BPF_MAP_TYPE_PERCPU_ARRAY` (`programs/src/bpf/map_percpu_array.bpf.c`): per-CPU counters as
//! real programs keep them. The test runs the counting program on each online CPU
//! (`BPF_F_TEST_RUN_ON_CPU`), a different number of times per CPU, and reads the value the way the
//! kernel lays it out for user space: one slot per possible CPU, in CPU order, each the 12-byte
//! value rounded up to 16 — each CPU's runs in its own slot, a possible CPU that never ran zero
//! (`testkit::percpu_slots`). Values user space stores per CPU are what the program reads on that
//! CPU. The array's update answers (`BPF_NOEXIST` `EEXIST`, past the end `E2BIG`, delete
//! `EINVAL`) are the array's. Expectations derive from the possible and online CPUs of the
//! machine (one in the emulated VMs, two on the host).

use std::mem::MaybeUninit;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_percpu_array::MapPercpuArraySkelBuilder;
use testkit::map_ops::{OK, found, outcome, u32b};
use testkit::percpu_slots::{self, Slot, tag_of};
use testkit::{Case, cpus, map_ops, probe, test_run};

/// The array's `max_entries`, as in map_percpu_array.bpf.c.
const MAX_ENTRIES: u32 = 4;

#[test]
fn slots() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::PercpuArray, "map_type.percpu_array")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapPercpuArraySkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.slots;
        let (possible, online) = (cpus::possible()?, cpus::online()?);
        case.detail("cpus", [&possible, &online]);

        // Each online CPU counts in its own slot.
        let want = percpu_slots::count_on_each_cpu(&skel.progs.count, 1)?;
        assert_eq!(
            percpu_slots::read(map, 1)?,
            Some(want),
            "index 1 after the runs"
        );
        let zero = vec![Slot::default(); possible.len()];
        assert_eq!(
            percpu_slots::read(map, 2)?,
            Some(zero),
            "index 2, never written"
        );

        // What user space stores for each CPU is what the program reads there.
        assert_eq!(percpu_slots::store_tags(map, 3, MapFlags::ANY)?, OK);
        let want: Vec<(u32, u32)> = online.iter().map(|&cpu| (cpu, tag_of(cpu))).collect();
        assert_eq!(
            percpu_slots::tags_seen(&skel.progs.tag, 3)?,
            want,
            "(CPU, tag the program read on it)"
        );

        // An array's answers.
        let past_end = test_run::raw_tp(&skel.progs.count, &[MAX_ENTRIES.into()], None)?;
        let answers = [
            percpu_slots::store_tags(map, 0, MapFlags::NO_EXIST)?,
            percpu_slots::store_tags(map, 0, MapFlags::EXIST)?,
            percpu_slots::store_tags(map, MAX_ENTRIES, MapFlags::ANY)?,
            outcome(&map.delete(&u32b(0))),
            found(&map.lookup_percpu(&u32b(MAX_ENTRIES), MapFlags::ANY)),
            map_ops::answer(past_end),
        ];
        assert_eq!(
            answers,
            ["EEXIST", OK, "E2BIG", "EINVAL", "ENOENT", "ENOENT"],
            "update index 0 with BPF_NOEXIST and BPF_EXIST, index {MAX_ENTRIES}; delete index \
             0; look up index {MAX_ENTRIES} (user, program)"
        );
        Ok(())
    });
}
