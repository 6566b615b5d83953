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

use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::BPF_F_NO_PREALLOC;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapMut, ProgramInput, ProgramMut, ProgramType};
use programs::map_rhash::{MapRhashSkel, MapRhashSkelBuilder};
use testkit::hash_maps::{MAX_ENTRIES, Table};
use testkit::map_ops::{self, MapAttrs, OK, outcome, u32b};
use testkit::{Case, CaseResult, probe, test_run};

/// `BPF_MAP_TYPE_RHASH` (7.2's UAPI; libbpf 1.7 and libbpf-rs do not know it).
const BPF_MAP_TYPE_RHASH: u32 = 35;

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

/// The object's map with its programs, which take their requests as syscall programs.
fn table<'a, 'obj>(skel: &'a MapRhashSkel<'obj>) -> Table<'a, MapMut<'obj>> {
    let (op, count) = (&skel.progs.op, &skel.progs.count);
    Table {
        map: &skel.maps.table,
        op: Box::new(move |o, key, value, flags| run(op, [o as u64, key.into(), value, flags])),
        count: Box::new(move |key| run(count, [0, key.into(), 0, 0])),
        looked_up: Box::new(|| skel.maps.bss_data.as_deref().expect(".bss").looked_up),
    }
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
        let map = &skel.maps.table;
        let empty = memlock(map)?;
        let walked = table(&skel).updates(case)?;

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
        table(&skel).batch(None)
    });
}
