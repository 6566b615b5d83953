//! `BPF_MAP_TYPE_ARRAY` (`programs/src/bpf/map_array.bpf.c`): a program counts events by index
//! the way real programs do and carries out the map's operations on the program side
//! (`map_op.h`), each run with `BPF_PROG_TEST_RUN`; the test makes the same calls from user space:
//!
//! - `updates`: every index exists from creation, so `BPF_NOEXIST` is `EEXIST` and `BPF_EXIST`
//!   succeeds; an index past the end is `E2BIG` whatever the flags; both flags `EINVAL`; a delete
//!   is `EINVAL` (elements cannot go); a lookup past the end finds nothing — the same answers on
//!   both sides, each side reading what the other wrote, and the program's counter;
//!   `BPF_MAP_GET_NEXT_KEY` from an index past the end starts at 0, the last index has none;
//!   `BPF_F_NO_PREALLOC` is refused (`EINVAL`);
//! - `batch`: `BPF_MAP_UPDATE_BATCH` and `_LOOKUP_BATCH` over every index; no delete batches
//!   (`ENOTSUPP`, 524), lookup-and-delete included.

use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::{self, BPF_ANY, BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, ProgramType};
use programs::map_array::MapArraySkelBuilder;
use testkit::map_ops::{OK, Op, as_u32, as_u64, found, next_key, outcome, program_op, u32b, u64b};
use testkit::{Case, floors, map_ops, probe, test_run};

/// The array's `max_entries`, as in map_array.bpf.c.
const MAX_ENTRIES: u32 = 4;

/// The update-flag table: (index, flags) and the answer each must get, on any state of the array.
const UPDATES: [(u32, u32, &str); 7] = [
    (0, BPF_ANY, OK),
    (1, BPF_NOEXIST, "EEXIST"),
    (1, BPF_EXIST, OK),
    (MAX_ENTRIES, BPF_ANY, "E2BIG"),
    (MAX_ENTRIES, BPF_NOEXIST, "E2BIG"),
    (MAX_ENTRIES, BPF_EXIST, "E2BIG"),
    (2, BPF_NOEXIST | BPF_EXIST, "EINVAL"),
];

#[test]
fn updates() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::Array, "map_type.array")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapArraySkelBuilder::default().open(&mut object)?)?;
        let (map, op) = (&skel.maps.counters, &skel.progs.op);
        let looked_up = || skel.maps.bss_data.as_deref().expect(".bss").looked_up;
        let expected: Vec<&str> = UPDATES.iter().map(|u| u.2).collect();

        // The update flags: user space stores 10 + index, then the program 20 + index.
        let user: Vec<String> = UPDATES
            .iter()
            .map(|&(i, f, _)| {
                let flags = MapFlags::from_bits_retain(f.into());
                outcome(&map.update(&u32b(i), &u64b(10 + u64::from(i)), flags))
            })
            .collect();
        assert_eq!(
            map.lookup(&u32b(0), MapFlags::ANY)?.as_deref().map(as_u64),
            Some(10)
        );
        assert_eq!(program_op(op, Op::Lookup, 0, 0, 0)?, OK);
        assert_eq!(
            looked_up(),
            10,
            "the program reads the value user space stored"
        );
        let program = UPDATES
            .iter()
            .map(|&(i, f, _)| program_op(op, Op::Update, i, 20 + u64::from(i), f.into()))
            .collect::<testkit::CaseResult<Vec<_>>>()?;
        case.detail("updates", [&user, &program]);
        assert_eq!(
            user, expected,
            "user-space updates (index, flags): {UPDATES:?}"
        );
        assert_eq!(program, expected, "the program's updates");
        let stored = map.lookup(&u32b(1), MapFlags::ANY)?;
        assert_eq!(
            stored.as_deref().map(as_u64),
            Some(21),
            "user space reads the program's"
        );

        // Deletes, and lookups past the end.
        let answers = [
            outcome(&map.delete(&u32b(0))),
            program_op(op, Op::Delete, 0, 0, 0)?,
            found(&map.lookup(&u32b(MAX_ENTRIES), MapFlags::ANY)),
            program_op(op, Op::Lookup, MAX_ENTRIES, 0, 0)?,
        ];
        assert_eq!(
            answers,
            ["EINVAL", "EINVAL", "ENOENT", "ENOENT"],
            "delete index 0 (user, program), look up index {MAX_ENTRIES} (user, program)"
        );

        // The program's counter: three events on index 3, one past the end.
        for _ in 0..3 {
            assert_eq!(test_run::raw_tp(&skel.progs.count, &[3], None)?, 0);
        }
        let past_end = test_run::raw_tp(&skel.progs.count, &[MAX_ENTRIES.into()], None)?;
        assert_eq!(map_ops::answer(past_end), "ENOENT");
        let hits = map.lookup(&u32b(3), MapFlags::ANY)?;
        assert_eq!(
            hits.as_deref().map(as_u64),
            Some(3),
            "events counted on index 3"
        );

        // BPF_MAP_GET_NEXT_KEY walks the indices in order.
        let next = |k: Option<u32>| next_key(map, k.map(u32b).as_ref().map(|k| &k[..]));
        let walk = [None, Some(MAX_ENTRIES), Some(1), Some(MAX_ENTRIES - 1)]
            .map(|k| next(k).map(|key| as_u32(&key)));
        assert_eq!(
            walk,
            [Ok(0), Ok(0), Ok(2), Err("ENOENT".to_owned())],
            "next index after: none, {MAX_ENTRIES} (past the end), 1, {} (the last)",
            MAX_ENTRIES - 1
        );

        // Arrays are allocated whole: BPF_F_NO_PREALLOC is refused.
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: BPF_F_NO_PREALLOC,
            ..Default::default()
        };
        let created = MapHandle::create(MapType::Array, None::<&str>, 4, 8, 1, &opts);
        assert_eq!(
            outcome(&created),
            "EINVAL",
            "an array with BPF_F_NO_PREALLOC"
        );
        Ok(())
    });
}

#[test]
fn batch() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::Array, "map_type.array")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapArraySkelBuilder::default().open(&mut object)?)?;
        let map = &skel.maps.counters;
        let indices: Vec<u8> = (0..MAX_ENTRIES).flat_map(u32b).collect();
        let values: Vec<u8> = (0..MAX_ENTRIES)
            .flat_map(|i| u64b(100 + u64::from(i)))
            .collect();
        let updated =
            map.update_batch(&indices, &values, MAX_ENTRIES, MapFlags::ANY, MapFlags::ANY);
        let answer = outcome(&updated);
        if answer == "EINVAL" || answer == "ENOTSUPP" {
            return Err(floors::missing(
                "map_op.batch_array",
                format!("BPF_MAP_UPDATE_BATCH answered {answer}"),
            ));
        }
        updated?;
        let pairs = map_ops::must(
            map_ops::lookup_batch(map, 3, 8, false),
            "BPF_MAP_LOOKUP_BATCH",
        )?;
        let pairs: Vec<(u32, u64)> = pairs.iter().map(|(k, v)| (as_u32(k), as_u64(v))).collect();
        assert_eq!(
            pairs,
            [(0, 100), (1, 101), (2, 102), (3, 103)],
            "the lookup batch"
        );
        assert_eq!(program_op(&skel.progs.op, Op::Lookup, 2, 0, 0)?, OK);
        let looked_up = skel.maps.bss_data.as_deref().expect(".bss").looked_up;
        assert_eq!(looked_up, 102, "the program reads a batch-written value");
        let deleted = map.delete_batch(&indices[..4], 1, MapFlags::ANY, MapFlags::ANY);
        let taken = map_ops::lookup_batch(map, 4, 8, true);
        assert_eq!(
            (outcome(&deleted), taken.map(|p| p.len())),
            ("ENOTSUPP".to_owned(), Err("ENOTSUPP".to_owned())),
            "delete batch, lookup-and-delete batch"
        );
        Ok(())
    });
}
