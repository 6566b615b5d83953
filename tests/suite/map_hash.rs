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

use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::{BPF_F_NO_PREALLOC, BPF_MAP_TYPE_HASH};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapMut, MapType, ProgramType};
use programs::map_hash::{MapHashSkel, MapHashSkelBuilder};
use rstest::rstest;
use testkit::hash_maps::Table;
use testkit::map_ops::{self, program_op};
use testkit::{Case, probe, test_run};

/// One of the object's maps, `no_prealloc` or `prealloc`, with its `map_op.h` program and counter.
fn table<'a, 'obj>(skel: &'a MapHashSkel<'obj>, no_prealloc: bool) -> Table<'a, MapMut<'obj>> {
    let p = &skel.progs;
    let (map, count, op) = if no_prealloc {
        (
            &skel.maps.no_prealloc,
            &p.count_no_prealloc,
            &p.op_no_prealloc,
        )
    } else {
        (&skel.maps.prealloc, &p.count_prealloc, &p.op_prealloc)
    };
    Table {
        map,
        op: Box::new(move |o, key, value, flags| program_op(op, o, key, value, flags)),
        count: Box::new(move |key| {
            let retval = test_run::raw_tp(count, &[key.into()], None)?;
            Ok(map_ops::answer(retval))
        }),
        looked_up: Box::new(|| skel.maps.bss_data.as_deref().expect(".bss").looked_up),
    }
}

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
        table(&skel, no_prealloc).updates(case)?;
        Ok(())
    });
}

#[test]
fn batch() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::Hash, "map_type.hash")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapHashSkelBuilder::default().open(&mut object)?)?;
        table(&skel, false).batch(Some("map_op.batch_hash"))
    });
}
