//! `BPF_MAP_TYPE_LRU_HASH` (`programs/src/bpf/map_lru_hash.bpf.c`): a table that never refuses a
//! new key, driven from user space and from the program's side of the map (`map_op.h`, run with
//! `BPF_PROG_TEST_RUN` on chosen CPUs). What is asserted about eviction is only what the kernel
//! guarantees (`kernel/bpf/bpf_lru_list.c`): an insert into a full map succeeds by evicting, the
//! key just inserted is there, the map never holds more than its elements; which keys go is the
//! LRU's business (lists rotate lazily, free nodes sit in per-CPU caches), except with per-CPU
//! lists, where a CPU's inserts take nodes only from its own list.
//!
//! - `updates`: the update flags answer as for a hash on both sides, each side reads the other's
//!   writes, deletes of absent keys `ENOENT`, `BPF_MAP_GET_NEXT_KEY` from an absent key gives the
//!   first key; `BPF_F_NO_PREALLOC` is refused (`ENOTSUPP`: LRU elements are preallocated);
//! - `full_map_evicts`: three times `max_entries` inserts from user space, then a map's worth
//!   from the program: each succeeds and is found right after, the map never exceeds its size,
//!   and `BPF_MAP_LOOKUP_BATCH` hands back exactly the keys that survived, with their values;
//! - `per_cpu_lists` (`BPF_F_NO_COMMON_LRU`): `max_entries` rounded up to a multiple of the
//!   possible CPUs and shared out evenly; each online CPU floods the map through the program; what
//!   each CPU inserted last is still there after every other CPU's flood (with one online CPU,
//!   only its own), and no CPU holds more than its share.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::{self, BPF_F_NO_PREALLOC, BPF_NOEXIST};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, ProgramType};
use programs::map_lru_hash::MapLruHashSkelBuilder;
use testkit::hash_maps::UPDATES;
use testkit::map_ops::{
    self, OK, Op, as_u32, as_u64, found, outcome, program_op, program_op_on, u32b, u64b,
};
use testkit::{Case, cpus, floors, probe};

/// `common`'s `max_entries` and `percpu_lists`' requested one, as in map_lru_hash.bpf.c.
const COMMON_ENTRIES: u32 = 16;
const PERCPU_LISTS_ENTRIES: u32 = 5;

#[test]
fn updates() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::LruHash, "map_type.lru_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapLruHashSkelBuilder::default().open(&mut object)?)?;
        let (map, op) = (&skel.maps.common, &skel.progs.op_common);
        let expected: Vec<&str> = UPDATES.iter().map(|u| u.2).collect();
        let user: Vec<String> = UPDATES
            .iter()
            .map(|&(k, f, _)| {
                let flags = MapFlags::from_bits_retain(f.into());
                outcome(&map.update(&u32b(k), &u64b(k.into()), flags))
            })
            .collect();
        let program = UPDATES
            .iter()
            .map(|&(k, f, _)| program_op(op, Op::Update, k + 100, u64::from(k) + 100, f.into()))
            .collect::<testkit::CaseResult<Vec<_>>>()?;
        case.detail("updates", [&user, &program]);
        assert_eq!(
            user, expected,
            "user-space updates (key, flags): {UPDATES:?}"
        );
        assert_eq!(program, expected, "the program's updates (keys + 100)");

        assert_eq!(program_op(op, Op::Lookup, 2, 0, 0)?, OK);
        let looked_up = skel.maps.bss_data.as_deref().expect(".bss").looked_up;
        assert_eq!(
            looked_up, 2,
            "the program reads the value user space stored"
        );
        let stored = map.lookup(&u32b(102), MapFlags::ANY)?;
        assert_eq!(
            stored.as_deref().map(as_u64),
            Some(102),
            "user space reads the program's"
        );
        let answers = [
            outcome(&map.delete(&u32b(9))),
            program_op(op, Op::Delete, 9, 0, 0)?,
            outcome(&map.delete(&u32b(2))),
            found(&map.lookup(&u32b(2), MapFlags::ANY)),
        ];
        assert_eq!(
            answers,
            ["ENOENT", "ENOENT", OK, "ENOENT"],
            "delete absent 9 (user, program), present 2, then look 2 up"
        );
        map_ops::assert_next_after_absent_is_first(map, 9);

        let opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: BPF_F_NO_PREALLOC,
            ..Default::default()
        };
        let created = MapHandle::create(MapType::LruHash, None::<&str>, 4, 8, 4, &opts);
        assert_eq!(
            outcome(&created),
            "ENOTSUPP",
            "an LRU hash with BPF_F_NO_PREALLOC"
        );
        Ok(())
    });
}

#[test]
fn full_map_evicts() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::LruHash, "map_type.lru_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapLruHashSkelBuilder::default().open(&mut object)?)?;
        let (map, op) = (&skel.maps.common, &skel.progs.op_common);
        for key in 1..=3 * COMMON_ENTRIES {
            let inserted = outcome(&map.update(&u32b(key), &u64b(key.into()), MapFlags::NO_EXIST));
            assert_eq!(
                inserted, OK,
                "user-space insert of key {key} into a full map"
            );
            assert_eq!(
                found(&map.lookup(&u32b(key), MapFlags::ANY)),
                OK,
                "key {key}"
            );
        }
        let held = map_ops::walk(map).len();
        assert!(
            held <= COMMON_ENTRIES as usize,
            "{held} keys in a map of {COMMON_ENTRIES}"
        );
        for key in 1000..1000 + COMMON_ENTRIES {
            let inserted = program_op(op, Op::Update, key, key.into(), BPF_NOEXIST.into())?;
            assert_eq!(
                inserted, OK,
                "the program's insert of key {key} into a full map"
            );
            assert_eq!(program_op(op, Op::Lookup, key, 0, 0)?, OK, "key {key}");
        }
        let left = map_ops::walk(map);
        case.detail("entries_left", left.len());
        assert!(
            (1..=COMMON_ENTRIES as usize).contains(&left.len()),
            "{} keys in a map of {COMMON_ENTRIES}",
            left.len()
        );
        // A batch lookup hands back exactly the survivors, each with its own value.
        let batch = map_ops::lookup_batch(map, COMMON_ENTRIES, 8, false);
        let answer = batch
            .as_ref()
            .map(|_| OK.to_owned())
            .unwrap_or_else(|e| e.clone());
        if answer == "EINVAL" || answer == "ENOTSUPP" {
            return Err(floors::missing(
                "map_op.batch_hash",
                format!("BPF_MAP_LOOKUP_BATCH of an LRU hash answered {answer}"),
            ));
        }
        let mut batch: Vec<(Vec<u8>, u64)> = map_ops::must(batch, "BPF_MAP_LOOKUP_BATCH")?
            .into_iter()
            .map(|(k, v)| (k, as_u64(&v)))
            .collect();
        batch.sort();
        let mut want: Vec<(Vec<u8>, u64)> = left
            .into_iter()
            .map(|k| {
                let v = as_u32(&k).into();
                (k, v)
            })
            .collect();
        want.sort();
        assert_eq!(
            batch, want,
            "the lookup batch: the keys walked, each holding its number"
        );
        Ok(())
    });
}

#[test]
fn per_cpu_lists() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::LruHash, "map_type.lru_hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapLruHashSkelBuilder::default().open(&mut object)?)?;
        let (map, op) = (&skel.maps.percpu_lists, &skel.progs.op_percpu_lists);
        probe::map_created(
            "map_flag.no_common_lru",
            map_ops::MapAttrs {
                map_type: libbpf_sys::BPF_MAP_TYPE_LRU_HASH,
                key_size: 4,
                value_size: 8,
                max_entries: 4,
                map_flags: libbpf_sys::BPF_F_NO_COMMON_LRU,
                ..Default::default()
            },
        )?;
        let (possible, online) = (cpus::possible()?.len() as u32, cpus::online()?);
        case.detail("cpus", [possible, online.len() as u32]);
        let size = map.info()?.info.max_entries;
        assert_eq!(
            size,
            PERCPU_LISTS_ENTRIES.next_multiple_of(possible),
            "max_entries {PERCPU_LISTS_ENTRIES} over {possible} possible CPUs"
        );
        let share = size / possible;
        // Key cpu * 1000 + i is the i-th insert on CPU cpu.
        for &cpu in &online {
            for i in 0..3 * share {
                let key = cpu * 1000 + i;
                let inserted =
                    program_op_on(op, Some(cpu), Op::Update, key, 0, BPF_NOEXIST.into())?;
                assert_eq!(inserted, OK, "insert of key {key} on CPU {cpu}");
            }
        }
        let mut held: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for key in map_ops::walk(map) {
            let key = as_u32(&key);
            held.entry(key / 1000).or_default().push(key % 1000);
        }
        case.detail("held", &held);
        for &cpu in &online {
            let mine = held.get(&cpu).cloned().unwrap_or_default();
            assert!(
                mine.contains(&(3 * share - 1)),
                "CPU {cpu}'s last insert survived the other CPUs' floods: it holds {mine:?}"
            );
            assert!(
                mine.len() <= share as usize,
                "CPU {cpu} holds {mine:?}, its share is {share}"
            );
        }
        Ok(())
    });
}
