//! `BPF_MAP_TYPE_LRU_PERCPU_HASH` (`programs/src/bpf/map_lru_percpu_hash.bpf.c`): per-CPU counters
//! by key in a table that never refuses a new key.
//!
//! - `slots`: the counting program run on each online CPU (`BPF_F_TEST_RUN_ON_CPU`), a different
//!   number of times per CPU, leaves each CPU's runs in its own slot of the value as the kernel
//!   lays it out for user space (one slot per possible CPU, the 12-byte value rounded up to 16;
//!   `testkit::percpu_slots`); values user space stores per CPU are what the program reads on that
//!   CPU; `BPF_NOEXIST`/`BPF_EXIST` answer as for a hash;
//! - `full_map_evicts`: three times `max_entries` inserts from user space, then a map's worth
//!   from the program: each succeeds and is found right after, the map never exceeds its size
//!   (which keys go is the LRU's business).
//!
//! Expectations derive from the possible and online CPUs (one in the emulated VMs, two on the
//! host).

use std::mem::MaybeUninit;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_lru_percpu_hash::MapLruPercpuHashSkelBuilder;
use testkit::map_ops::{self, OK, found, u32b};
use testkit::percpu_slots::{self, tag_of};
use testkit::{Case, cpus, probe, test_run};

/// The map's `max_entries`, as in map_lru_percpu_hash.bpf.c.
const MAX_ENTRIES: u32 = 8;

#[test]
fn slots() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::LruPercpuHash, "map_type.lru_percpu_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapLruPercpuHashSkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.slots;
        let (possible, online) = (cpus::possible()?, cpus::online()?);
        case.detail("cpus", [&possible, &online]);

        let want = percpu_slots::count_on_each_cpu(&skel.progs.count, 1)?;
        assert_eq!(
            percpu_slots::read(map, 1)?,
            Some(want),
            "key 1 after the runs"
        );

        assert_eq!(percpu_slots::store_tags(map, 2, MapFlags::NO_EXIST)?, OK);
        let want: Vec<(u32, u32)> = online.iter().map(|&cpu| (cpu, tag_of(cpu))).collect();
        let seen = percpu_slots::tags_seen(&skel.progs.tag, 2)?;
        assert_eq!(seen, want, "(CPU, tag the program read on it)");

        let answers = [
            percpu_slots::store_tags(map, 2, MapFlags::NO_EXIST)?,
            percpu_slots::store_tags(map, 9, MapFlags::EXIST)?,
            percpu_slots::store_tags(map, 2, MapFlags::EXIST)?,
        ];
        assert_eq!(
            answers,
            ["EEXIST", "ENOENT", OK],
            "store present 2 with BPF_NOEXIST, absent 9 with BPF_EXIST, 2 with BPF_EXIST"
        );
        Ok(())
    });
}

#[test]
fn full_map_evicts() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::LruPercpuHash, "map_type.lru_percpu_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapLruPercpuHashSkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.slots;
        for key in 1..=3 * MAX_ENTRIES {
            let inserted = percpu_slots::store_tags(map, key, MapFlags::NO_EXIST)?;
            assert_eq!(
                inserted, OK,
                "user-space insert of key {key} into a full map"
            );
            let present = found(&map.lookup_percpu(&u32b(key), MapFlags::ANY));
            assert_eq!(present, OK, "key {key} right after its insert");
        }
        let held = map_ops::walk(map).len();
        assert!(
            held <= MAX_ENTRIES as usize,
            "{held} keys in a map of {MAX_ENTRIES}"
        );
        for key in 1000..1000 + MAX_ENTRIES {
            let ret = test_run::raw_tp(&skel.progs.count, &[key.into()], None)?;
            assert_eq!(map_ops::answer(ret), OK, "the program counts new key {key}");
        }
        let left = map_ops::walk(map).len();
        case.detail("entries_left", left);
        assert!(
            (1..=MAX_ENTRIES as usize).contains(&left),
            "{left} keys in a map of {MAX_ENTRIES}"
        );
        Ok(())
    });
}
