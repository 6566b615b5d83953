//! `BPF_MAP_TYPE_HASH` (`programs/src/bpf/map_hash.bpf.c`): a program counts events per key the
//! way real programs do, and carries out the map's operations on the program side (`map_op.h`),
//! each run with `BPF_PROG_TEST_RUN`; the test makes the same calls from user space and compares:
//!
//! - `updates`: the update flags' answers on both sides (`BPF_NOEXIST` on a present key `EEXIST`,
//!   `BPF_EXIST` on an absent one `ENOENT`, both flags `EINVAL`), each side reading what the other
//!   wrote, the program's counter, a full map refusing a new key with `E2BIG` on both sides while
//!   its keys stay updatable, deletes (`ENOENT` for an absent key) making room again, and
//!   `BPF_MAP_GET_NEXT_KEY` from an absent key starting over at the first key, then visiting each
//!   key once; once for the preallocated map and once for one with `BPF_F_NO_PREALLOC`;
//! - `batch`: `BPF_MAP_UPDATE_BATCH`, `_LOOKUP_BATCH`, `_DELETE_BATCH` (stopping at an absent
//!   key with `ENOENT`) and `_LOOKUP_AND_DELETE_BATCH`, which leaves the map empty for the program.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::{
    BPF_ANY, BPF_EXIST, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_HASH, BPF_NOEXIST,
};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_hash::MapHashSkelBuilder;
use rstest::rstest;
use testkit::map_ops::{self, OK, Op, as_u32, as_u64, next_key, outcome, program_op, u32b, u64b};
use testkit::{Case, CaseResult, floors, probe, test_run};

/// The maps' `max_entries`, as in map_hash.bpf.c.
const MAX_ENTRIES: u32 = 8;

/// The update-flag table: (key, flags) from an empty map, and the answer each must get.
const UPDATES: [(u32, u32, &str); 7] = [
    (1, BPF_NOEXIST, OK),
    (1, BPF_NOEXIST, "EEXIST"),
    (2, BPF_EXIST, "ENOENT"),
    (1, BPF_EXIST, OK),
    (1, BPF_ANY, OK),
    (2, BPF_ANY, OK),
    (3, BPF_NOEXIST | BPF_EXIST, "EINVAL"),
];

/// The program side uses keys of its own, this far from the user side's.
const PROGRAM_KEYS: u32 = 100;

#[rstest]
#[case::prealloc(false)]
#[case::no_prealloc(true)]
fn updates(#[case] no_prealloc: bool) {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::Hash, "map_type.hash")?;
        if no_prealloc {
            probe::map_created(
                "map_flag.no_prealloc",
                map_ops::MapAttrs {
                    map_type: BPF_MAP_TYPE_HASH,
                    key_size: 4,
                    value_size: 8,
                    max_entries: 1,
                    map_flags: BPF_F_NO_PREALLOC,
                    ..Default::default()
                },
            )?;
        }
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapHashSkelBuilder::default().open(&mut object)?)?;
        let (map, count, op) = if no_prealloc {
            let p = &skel.progs;
            (
                &skel.maps.no_prealloc,
                &p.count_no_prealloc,
                &p.op_no_prealloc,
            )
        } else {
            let p = &skel.progs;
            (&skel.maps.prealloc, &p.count_prealloc, &p.op_prealloc)
        };
        let looked_up = || skel.maps.bss_data.as_deref().expect(".bss").looked_up;
        let update = |key: u32, value: u64, flags: u32| {
            outcome(&map.update(
                &u32b(key),
                &u64b(value),
                MapFlags::from_bits_retain(flags.into()),
            ))
        };
        let expected: Vec<&str> = UPDATES.iter().map(|u| u.2).collect();

        // The update flags, from both sides.
        let user: Vec<String> = UPDATES
            .iter()
            .map(|&(k, f, _)| update(k, k.into(), f))
            .collect();
        let program = UPDATES
            .iter()
            .map(|&(k, f, _)| {
                let k = k + PROGRAM_KEYS;
                program_op(op, Op::Update, k, k.into(), f.into())
            })
            .collect::<CaseResult<Vec<_>>>()?;
        case.detail("updates", [&user, &program]);
        assert_eq!(
            user, expected,
            "user-space updates (key, flags): {UPDATES:?}"
        );
        assert_eq!(
            program, expected,
            "the program's updates (keys + {PROGRAM_KEYS})"
        );

        // Each side reads what the other wrote.
        assert_eq!(program_op(op, Op::Lookup, 2, 0, 0)?, OK);
        assert_eq!(
            looked_up(),
            2,
            "the program reads the value user space stored"
        );
        let stored = map.lookup(&u32b(2 + PROGRAM_KEYS), MapFlags::ANY)?;
        assert_eq!(
            stored.as_deref().map(as_u64),
            Some(102),
            "user space reads the program's"
        );

        // The program's counter: three events for key 50.
        for _ in 0..3 {
            assert_eq!(test_run::raw_tp(count, &[50], None)?, 0, "counting key 50");
        }
        let hits = map.lookup(&u32b(50), MapFlags::ANY)?;
        assert_eq!(
            hits.as_deref().map(as_u64),
            Some(3),
            "events counted for key 50"
        );

        // Five keys so far (1, 2, 101, 102, 50): fill the map.
        for key in [60, 61, 62] {
            assert_eq!(update(key, 0, BPF_NOEXIST), OK, "filling key {key}");
        }
        let full = [
            update(63, 0, BPF_ANY),
            program_op(op, Op::Update, 64, 0, BPF_ANY.into())?,
            map_ops::answer(test_run::raw_tp(count, &[65], None)?),
            update(1, 7, BPF_ANY),
            program_op(op, Op::Update, 101, 7, BPF_EXIST.into())?,
        ];
        case.detail("full", &full);
        assert_eq!(
            full,
            ["E2BIG", "E2BIG", "E2BIG", OK, OK],
            "a full map ({MAX_ENTRIES} keys): a new key from user space, from the program's \
             update and from its counter, then present keys from both sides"
        );

        // Deletes make room again.
        let deletes = [
            outcome(&map.delete(&u32b(63))),
            program_op(op, Op::Delete, 64, 0, 0)?,
            outcome(&map.delete(&u32b(60))),
            program_op(op, Op::Update, 64, 64, BPF_NOEXIST.into())?,
        ];
        assert_eq!(
            deletes,
            ["ENOENT", "ENOENT", OK, OK],
            "deleting absent 63 (user) and 64 (program), present 60, then inserting 64"
        );

        // BPF_MAP_GET_NEXT_KEY: an absent key starts over at the first; a walk visits each key once.
        let first = next_key(map, None);
        assert!(first.is_ok(), "a map with keys has a first key: {first:?}");
        assert_eq!(
            next_key(map, Some(&u32b(999))),
            first,
            "next key after an absent key"
        );
        let mut walked: Vec<u32> = map_ops::walk(map).iter().map(|k| as_u32(k)).collect();
        case.detail("walk", &walked);
        walked.sort_unstable();
        assert_eq!(walked, [1, 2, 50, 61, 62, 64, 101, 102], "keys walked");
        Ok(())
    });
}

#[test]
fn batch() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::Hash, "map_type.hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapHashSkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.prealloc;
        let keys: Vec<u8> = (1..=6u32).flat_map(u32b).collect();
        let values: Vec<u8> = (1..=6u64).flat_map(|k| u64b(k * 10)).collect();
        let first = map.update_batch(&keys, &values, 6, MapFlags::ANY, MapFlags::ANY);
        let answer = outcome(&first);
        if answer == "EINVAL" || answer == "ENOTSUPP" {
            return Err(floors::missing(
                "map_op.batch_hash",
                format!("BPF_MAP_UPDATE_BATCH answered {answer}"),
            ));
        }
        first?;
        let all = |delete: bool| -> CaseResult<BTreeMap<u32, u64>> {
            let pairs = map_ops::must(
                map_ops::lookup_batch(map, 4, 8, delete),
                "BPF_MAP_LOOKUP_BATCH",
            )?;
            Ok(pairs.iter().map(|(k, v)| (as_u32(k), as_u64(v))).collect())
        };
        let want = |keys: &[u64]| -> BTreeMap<u32, u64> {
            keys.iter().map(|&k| (k as u32, k * 10)).collect()
        };
        assert_eq!(
            all(false)?,
            want(&[1, 2, 3, 4, 5, 6]),
            "after the update batch"
        );
        assert_eq!(
            program_op(&skel.progs.op_prealloc, Op::Lookup, 4, 0, 0)?,
            OK
        );
        let looked_up = skel.maps.bss_data.as_deref().expect(".bss").looked_up;
        assert_eq!(looked_up, 40, "the program reads a batch-written value");

        let delete = |keys: &[u32]| {
            let bytes: Vec<u8> = keys.iter().copied().flat_map(u32b).collect();
            outcome(&map.delete_batch(&bytes, keys.len() as u32, MapFlags::ANY, MapFlags::ANY))
        };
        assert_eq!(delete(&[1, 2]), OK, "deleting keys 1 and 2");
        assert_eq!(
            delete(&[3, 1, 4]),
            "ENOENT",
            "a batch with absent key 1 in it"
        );
        assert_eq!(
            all(false)?,
            want(&[4, 5, 6]),
            "the second delete batch stopped at the absent key: 3 went, 4 stayed"
        );
        assert_eq!(
            all(true)?,
            want(&[4, 5, 6]),
            "what lookup-and-delete handed back"
        );
        assert_eq!(
            next_key(map, None),
            Err("ENOENT".to_owned()),
            "the map is empty"
        );
        assert_eq!(
            program_op(&skel.progs.op_prealloc, Op::Lookup, 5, 0, 0)?,
            "ENOENT",
            "the program finds the map empty"
        );
        Ok(())
    });
}
