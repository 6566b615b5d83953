//! `BPF_MAP_TYPE_RHASH` (7.2+; `programs/src/bpf/map_rhash.bpf.c`): the resizable hash map, whose
//! table grows and shrinks with what it holds. Syscall programs count events per key and carry out
//! the map's operations on the program side, each run with `BPF_PROG_TEST_RUN`; the test makes the
//! same calls from user space and compares:
//!
//! - `updates`: the map needs `BPF_F_NO_PREALLOC` (`EINVAL` without); the update flags' answers on
//!   both sides as for a hash, each side reading what the other wrote, the program's counter, a
//!   full map refusing a new key with `E2BIG` on both sides while its keys stay updatable,
//!   deletes (`ENOENT` for an absent key), `BPF_MAP_GET_NEXT_KEY` from an absent key starting at
//!   the first key and a walk visiting each key once; the memory the map accounts for
//!   (`memlock`) grows with its elements and comes back to the empty map's once they are deleted;
//! - `batch`: `BPF_MAP_UPDATE_BATCH`, `_LOOKUP_BATCH`, `_DELETE_BATCH` (stopping at an absent key
//!   with `ENOENT`) and `_LOOKUP_AND_DELETE_BATCH`, which leaves the map empty for the program.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::{BPF_ANY, BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, ProgramInput, ProgramMut, ProgramType};
use programs::map_rhash::{MapRhashSkel, MapRhashSkelBuilder};
use testkit::map_ops::{self, MapAttrs, OK, as_u32, as_u64, next_key, outcome, u32b, u64b};
use testkit::{Case, CaseResult, probe, test_run};

/// `BPF_MAP_TYPE_RHASH` (7.2's UAPI; libbpf 1.7 and libbpf-rs do not know it).
const BPF_MAP_TYPE_RHASH: u32 = 35;
/// The map's `max_entries` and the program's operations, as in map_rhash.bpf.c.
const MAX_ENTRIES: u32 = 8;
const OP_UPDATE: u64 = 1;
const OP_DELETE: u64 = 2;
const OP_LOOKUP: u64 = 3;

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

/// An rhash map of `u32` keys and `u64` values with `flags`.
fn attrs(flags: u32) -> MapAttrs {
    MapAttrs {
        map_type: BPF_MAP_TYPE_RHASH,
        key_size: 4,
        value_size: 8,
        max_entries: MAX_ENTRIES,
        map_flags: flags,
        ..Default::default()
    }
}

fn probe_rhash() -> CaseResult {
    probe::map_created("map_type.rhash", attrs(BPF_F_NO_PREALLOC))?;
    probe::prog_type(ProgramType::Syscall)
}

/// Runs the syscall program `prog` with the request (op, key, value, flags); its answer by name.
fn run(prog: &ProgramMut<'_>, request: [u64; 4]) -> CaseResult<String> {
    let mut context: Vec<u8> = request.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let input = ProgramInput {
        context_in: Some(&mut context),
        ..Default::default()
    };
    let ret = test_run::run("syscall", prog, input)?.return_value;
    Ok(map_ops::answer(ret))
}

fn looked_up(skel: &MapRhashSkel<'_>) -> u64 {
    skel.maps.bss_data.as_deref().expect(".bss").looked_up
}

/// The map's `memlock` in `/proc/self/fdinfo`.
fn memlock(map: &impl MapCore) -> CaseResult<u64> {
    Ok(map.query_fdinfo()?.memlock.expect("fdinfo has memlock"))
}

#[test]
fn updates() {
    Case::run(ProgramType::Syscall, |case| {
        probe_rhash()?;
        let refused = map_ops::create(attrs(0)).map(drop);
        assert_eq!(
            refused,
            Err("EINVAL".to_owned()),
            "an rhash map without BPF_F_NO_PREALLOC"
        );
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapRhashSkelBuilder::default().open(&mut object)?)?;
        let (map, op, count) = (&skel.maps.table, &skel.progs.op, &skel.progs.count);
        let update = |key: u32, value: u64, flags: u32| {
            outcome(&map.update(
                &u32b(key),
                &u64b(value),
                MapFlags::from_bits_retain(flags.into()),
            ))
        };
        let empty = memlock(map)?;
        let expected: Vec<&str> = UPDATES.iter().map(|u| u.2).collect();
        let user: Vec<String> = UPDATES
            .iter()
            .map(|&(k, f, _)| update(k, k.into(), f))
            .collect();
        let program = UPDATES
            .iter()
            .map(|&(k, f, _)| {
                run(
                    op,
                    [OP_UPDATE, (k + 100).into(), (k + 100).into(), f.into()],
                )
            })
            .collect::<CaseResult<Vec<_>>>()?;
        case.detail("updates", [&user, &program]);
        assert_eq!(
            user, expected,
            "user-space updates (key, flags): {UPDATES:?}"
        );
        assert_eq!(program, expected, "the program's updates (keys + 100)");

        assert_eq!(run(op, [OP_LOOKUP, 2, 0, 0])?, OK);
        assert_eq!(
            looked_up(&skel),
            2,
            "the program reads the value user space stored"
        );
        let stored = map.lookup(&u32b(102), MapFlags::ANY)?;
        assert_eq!(
            stored.as_deref().map(as_u64),
            Some(102),
            "user space reads the program's"
        );
        for _ in 0..3 {
            assert_eq!(run(count, [0, 50, 0, 0])?, OK, "counting key 50");
        }
        let hits = map.lookup(&u32b(50), MapFlags::ANY)?;
        assert_eq!(
            hits.as_deref().map(as_u64),
            Some(3),
            "events counted for key 50"
        );

        // Five keys (1, 2, 101, 102, 50): fill the map.
        for key in [60, 61, 62] {
            assert_eq!(update(key, 0, BPF_NOEXIST), OK, "filling key {key}");
        }
        let full = [
            update(63, 0, BPF_ANY),
            run(op, [OP_UPDATE, 64, 0, BPF_ANY.into()])?,
            run(count, [0, 65, 0, 0])?,
            update(1, 7, BPF_ANY),
            run(op, [OP_UPDATE, 101, 7, BPF_EXIST.into()])?,
        ];
        assert_eq!(
            full,
            ["E2BIG", "E2BIG", "E2BIG", OK, OK],
            "a full map ({MAX_ENTRIES} keys): a new key from user space, from the program's \
             update and from its counter, then present keys from both sides"
        );
        let deletes = [
            outcome(&map.delete(&u32b(63))),
            run(op, [OP_DELETE, 64, 0, 0])?,
            outcome(&map.delete(&u32b(60))),
            run(op, [OP_UPDATE, 64, 64, BPF_NOEXIST.into()])?,
        ];
        assert_eq!(
            deletes,
            ["ENOENT", "ENOENT", OK, OK],
            "deleting absent 63 (user) and 64 (program), present 60, then inserting 64"
        );
        let first = next_key(map, None);
        assert!(first.is_ok(), "a map with keys has a first key: {first:?}");
        assert_eq!(
            next_key(map, Some(&u32b(999))),
            first,
            "next key after an absent key"
        );
        let mut walked: Vec<u32> = map_ops::walk(map).iter().map(|k| as_u32(k)).collect();
        walked.sort_unstable();
        assert_eq!(walked, [1, 2, 50, 61, 62, 64, 101, 102], "keys walked");

        // Elements are allocated as they come and freed as they go.
        let holding = memlock(map)?;
        for key in walked {
            assert_eq!(outcome(&map.delete(&u32b(key))), OK);
        }
        let emptied = memlock(map)?;
        case.detail("memlock", [empty, holding, emptied]);
        assert!(
            holding > empty,
            "memlock with {MAX_ENTRIES} elements ({holding}) > empty ({empty})"
        );
        assert_eq!(emptied, empty, "memlock once every element is deleted");
        Ok(())
    });
}

#[test]
fn batch() {
    Case::run(ProgramType::Syscall, |case| {
        probe_rhash()?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapRhashSkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.table;
        let keys: Vec<u8> = (1..=6u32).flat_map(u32b).collect();
        let values: Vec<u8> = (1..=6u64).flat_map(|k| u64b(k * 10)).collect();
        map.update_batch(&keys, &values, 6, MapFlags::ANY, MapFlags::ANY)?;
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
        assert_eq!(run(&skel.progs.op, [OP_LOOKUP, 4, 0, 0])?, OK);
        assert_eq!(
            looked_up(&skel),
            40,
            "the program reads a batch-written value"
        );
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
            "the second batch stopped at absent 1"
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
            run(&skel.progs.op, [OP_LOOKUP, 5, 0, 0])?,
            "ENOENT",
            "the program finds it empty"
        );
        Ok(())
    });
}
