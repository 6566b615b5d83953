//! `BPF_MAP_TYPE_PERCPU_HASH` (`programs/src/bpf/map_percpu_hash.bpf.c`): per-CPU counters by key
//! as real programs keep them (a missing key inserted from the program's CPU). The test runs the
//! counting program on each online CPU (`BPF_F_TEST_RUN_ON_CPU`), a different number of times per
//! CPU, and reads values the way the kernel lays them out for user space: one slot per possible
//! CPU, in CPU order, each the 12-byte value rounded up to 16 (`testkit::percpu_slots`).
//!
//! - `slots`: each CPU's runs in its own slot, a possible CPU that never ran zero; values user
//!   space stores per CPU are what the program reads on that CPU; a key the program inserts
//!   (after user space had stored and deleted it) holds the inserting CPU's value and zero in
//!   every other slot; `BPF_NOEXIST`/`BPF_EXIST` answer as for a hash, a full map `E2BIG` from
//!   both sides, `BPF_MAP_GET_NEXT_KEY` from an absent key gives the first key;
//! - `batch`: `BPF_MAP_LOOKUP_BATCH` hands back each value in the same per-CPU layout, and
//!   `_LOOKUP_AND_DELETE_BATCH` empties the map.
//!
//! Expectations derive from the possible and online CPUs (one in the emulated VMs, two on the
//! host).

use std::mem::MaybeUninit;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_percpu_hash::MapPercpuHashSkelBuilder;
use testkit::map_ops::{OK, as_u32, next_key, outcome, u32b};
use testkit::percpu_slots::{self, Slot, tag_of};
use testkit::{Case, cpus, floors, map_ops, probe, test_run};

#[test]
fn slots() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::PercpuHash, "map_type.percpu_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapPercpuHashSkelBuilder::default().open(&mut object)?)?;
        let (map, count) = (&skel.maps.slots, &skel.progs.count);
        let (possible, online) = (cpus::possible()?, cpus::online()?);
        case.detail("cpus", [&possible, &online]);

        // Each online CPU counts in its own slot of key 1, which the first run inserted.
        let want = percpu_slots::count_on_each_cpu(count, 1)?;
        assert_eq!(
            percpu_slots::read(map, 1)?,
            Some(want),
            "key 1 after the runs"
        );

        // What user space stores for each CPU is what the program reads there.
        assert_eq!(percpu_slots::store_tags(map, 2, MapFlags::NO_EXIST)?, OK);
        let want: Vec<(u32, u32)> = online.iter().map(|&cpu| (cpu, tag_of(cpu))).collect();
        let seen = percpu_slots::tags_seen(&skel.progs.tag, 2)?;
        assert_eq!(seen, want, "(CPU, tag the program read on it)");

        // A key inserted by the program holds its CPU's value, zero in every other slot, even
        // where user space had stored tags before deleting it.
        assert_eq!(percpu_slots::store_tags(map, 3, MapFlags::ANY)?, OK);
        assert_eq!(outcome(&map.delete(&u32b(3))), OK);
        let cpu = online[0];
        assert_eq!(test_run::raw_tp(count, &[3], Some(cpu))?, 0);
        let want: Vec<Slot> = possible
            .iter()
            .map(|&c| match c == cpu {
                true => Slot {
                    cpu,
                    runs: 1,
                    tag: 0,
                },
                false => Slot::default(),
            })
            .collect();
        assert_eq!(
            percpu_slots::read(map, 3)?,
            Some(want),
            "key 3 inserted on CPU {cpu}"
        );

        // A hash's answers; the map holds 1, 2, 3 of its 4.
        let answers = [
            percpu_slots::store_tags(map, 2, MapFlags::NO_EXIST)?,
            percpu_slots::store_tags(map, 9, MapFlags::EXIST)?,
            percpu_slots::store_tags(map, 4, MapFlags::ANY)?,
            percpu_slots::store_tags(map, 5, MapFlags::ANY)?,
            map_ops::answer(test_run::raw_tp(count, &[6], None)?),
            percpu_slots::store_tags(map, 4, MapFlags::EXIST)?,
            outcome(&map.delete(&u32b(9))),
        ];
        assert_eq!(
            answers,
            ["EEXIST", "ENOENT", OK, "E2BIG", "E2BIG", OK, "ENOENT"],
            "store key 2 with BPF_NOEXIST, absent 9 with BPF_EXIST, 4 (fills the map), 5; the \
             program inserts 6; store present 4 with BPF_EXIST; delete absent 9"
        );
        map_ops::assert_next_after_absent_is_first(map, 9);
        Ok(())
    });
}

#[test]
fn batch() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::PercpuHash, "map_type.percpu_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapPercpuHashSkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.slots;
        let slot_count = cpus::possible()?.len();
        let value_size = cpus::slot_size(percpu_slots::SIZE) * slot_count;
        let want = percpu_slots::count_on_each_cpu(&skel.progs.count, 1)?;
        assert_eq!(percpu_slots::store_tags(map, 2, MapFlags::ANY)?, OK);
        let layouts = [1, 2].map(|key| map_ops::percpu_value(map, &u32b(key)));
        let batch = match map_ops::lookup_batch(map, 4, value_size, false) {
            Err(e) if e == "EINVAL" || e == "ENOTSUPP" => {
                return Err(floors::missing(
                    "map_op.batch_hash",
                    format!("BPF_MAP_LOOKUP_BATCH of a per-CPU hash answered {e}"),
                ));
            }
            other => map_ops::must(other, "BPF_MAP_LOOKUP_BATCH")?,
        };
        let mut by_key: Vec<(u32, Vec<u8>)> =
            batch.into_iter().map(|(k, v)| (as_u32(&k), v)).collect();
        by_key.sort();
        let [one, two] = layouts;
        assert_eq!(
            by_key,
            [(1, one?.expect("key 1")), (2, two?.expect("key 2"))],
            "batch values: each the per-CPU layout of {slot_count} slots a lookup gives"
        );
        assert_eq!(percpu_slots::read(map, 1)?, Some(want));
        let taken = map_ops::lookup_batch(map, 4, value_size, true).map(|p| p.len());
        assert_eq!(taken, Ok(2), "lookup-and-delete batch");
        assert_eq!(
            next_key(map, None),
            Err("ENOENT".to_owned()),
            "then the map is empty"
        );
        Ok(())
    });
}
