//! `BPF_MAP_TYPE_HASH_OF_MAPS` (`programs/src/bpf/map_hash_of_maps.bpf.c`): per-tenant maps by
//! tenant id; the program (`route`, run with `BPF_PROG_TEST_RUN`) finds the tenant's inner map,
//! counts its lookup there and returns the inner map's identity.
//!
//! - `inner_map_replaced`: user space adds tenant 7 with map A, the program reaches A; tenant 7 is
//!   switched to B while the program stays loaded, and its next runs reach B (A's count stops,
//!   B's grows); a user-space lookup gives the inner map's id; an absent tenant gives the program
//!   nothing; deleting the tenant takes its map away (`ENOENT` the second time); a full outer map
//!   refuses a new tenant with `E2BIG`;
//! - `other_shapes_refused`: an inner map whose type, value size or `max_entries` differs from the
//!   template's is refused with `EINVAL`, and the tenant keeps its map.

use std::mem::MaybeUninit;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapFlags, MapType};
use programs::map_hash_of_maps::MapHashOfMapsSkelBuilder;
use testkit::map_in_map::{self, Check, Outer};
use testkit::map_ops::OK;
use testkit::{Case, CaseResult};

const OUTER: Outer = Outer {
    map_type: MapType::HashOfMaps,
    feature: "map_type.hash_of_maps",
    load,
    noun: "tenant",
    holds: "has",
    key: 7,
    empty_key: 8,
    shapes_key: 5,
    add: MapFlags::NO_EXIST,
    replace: MapFlags::EXIST,
    overfill: &[(8, OK), (9, "E2BIG")],
    before: "no tenant 7 yet",
    overfill_then_delete: "add tenant 8 (fills the map), tenant 9; delete tenant 7",
    deleted: "the program finds no tenant 7",
};

fn load(case: &mut Case, check: Check<'_>) -> CaseResult {
    let mut object = MaybeUninit::uninit();
    let skel = case.load(MapHashOfMapsSkelBuilder::default().open(&mut object)?)?;
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
