//! `BPF_MAP_TYPE_ARRAY_OF_MAPS` (`programs/src/bpf/map_array_of_maps.bpf.c`): a table of
//! per-tenant maps by slot; the program (`route`, run with `BPF_PROG_TEST_RUN`) finds the inner
//! map of a slot, counts its lookup there and returns the inner map's identity.
//!
//! - `inner_map_replaced`: user space puts tenant A's map in slot 0, the program reaches A; the
//!   slot is switched to B while the program stays loaded, and its next runs reach B (A's count
//!   stops, B's grows); a user-space lookup of the slot gives the inner map's id; an empty or
//!   deleted slot gives the program nothing; a slot past the end is `E2BIG`;
//! - `other_shapes_refused`: an inner map whose type, value size or `max_entries` differs from the
//!   template's is refused with `EINVAL`, and the slot keeps its map.

use std::mem::MaybeUninit;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapFlags, MapType};
use programs::map_array_of_maps::MapArrayOfMapsSkelBuilder;
use testkit::map_in_map::{self, Check, Outer};
use testkit::{Case, CaseResult};

const OUTER: Outer = Outer {
    map_type: MapType::ArrayOfMaps,
    feature: "map_type.array_of_maps",
    load,
    noun: "slot",
    holds: "holds",
    key: 0,
    empty_key: 1,
    shapes_key: 1,
    add: MapFlags::ANY,
    replace: MapFlags::ANY,
    overfill: &[(2, "E2BIG")],
    before: "an empty slot",
    overfill_then_delete: "put A in slot 2 (past the end), delete slot 0",
    deleted: "the program finds slot 0 empty",
};

fn load(case: &mut Case, check: Check<'_>) -> CaseResult {
    let mut object = MaybeUninit::uninit();
    let skel = case.load(MapArrayOfMapsSkelBuilder::default().open(&mut object)?)?;
    check(case, &skel.maps.outer, &skel.progs.route)
}

#[test]
fn inner_map_replaced() {
    map_in_map::inner_map_replaced(&OUTER);
}

#[test]
fn other_shapes_refused() {
    map_in_map::other_shapes_refused(&OUTER);
}
