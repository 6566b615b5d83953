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
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_hash_of_maps::MapHashOfMapsSkelBuilder;
use testkit::inner_maps::{self, NO_INNER};
use testkit::map_ops::{OK, as_u32, found, outcome, u32b};
use testkit::{Case, probe, test_run};

#[test]
fn inner_map_replaced() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::HashOfMaps, "map_type.hash_of_maps")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapHashOfMapsSkelBuilder::default().open(&mut object)?)?;
        let (outer, route) = (&skel.maps.outer, &skel.progs.route);
        let run = |tenant: u32| test_run::raw_tp(route, &[tenant.into()], None);
        let (a, b) = (inner_maps::create(111)?, inner_maps::create(222)?);

        assert_eq!(run(7)?, NO_INNER, "no tenant 7 yet");
        outer.update(&u32b(7), &inner_maps::fd_value(&a), MapFlags::NO_EXIST)?;
        assert_eq!(
            [run(7)?, run(8)?],
            [111, NO_INNER],
            "tenant 7 has A, tenant 8 nothing"
        );
        let held = outer.lookup(&u32b(7), MapFlags::ANY)?;
        assert_eq!(
            held.as_deref().map(as_u32),
            Some(inner_maps::id(&a)?),
            "tenant 7's map id"
        );

        outer.update(&u32b(7), &inner_maps::fd_value(&b), MapFlags::EXIST)?;
        assert_eq!([run(7)?, run(7)?], [222, 222], "tenant 7 switched to B");
        let held = outer.lookup(&u32b(7), MapFlags::ANY)?;
        assert_eq!(
            held.as_deref().map(as_u32),
            Some(inner_maps::id(&b)?),
            "tenant 7's map id"
        );
        let hits = [inner_maps::hits(&a)?, inner_maps::hits(&b)?];
        assert_eq!(hits, [1, 2], "lookups counted in A and B");

        let answers = [
            outcome(&outer.update(&u32b(8), &inner_maps::fd_value(&a), MapFlags::NO_EXIST)),
            outcome(&outer.update(&u32b(9), &inner_maps::fd_value(&a), MapFlags::NO_EXIST)),
            outcome(&outer.delete(&u32b(7))),
        ];
        assert_eq!(
            answers,
            [OK, "E2BIG", OK],
            "add tenant 8 (fills the map), tenant 9; delete tenant 7"
        );
        assert_eq!(run(7)?, NO_INNER, "the program finds no tenant 7");
        let answers = [
            outcome(&outer.delete(&u32b(7))),
            found(&outer.lookup(&u32b(7), MapFlags::ANY)),
        ];
        assert_eq!(
            answers,
            ["ENOENT", "ENOENT"],
            "delete tenant 7 again, look it up"
        );
        Ok(())
    });
}

#[test]
fn other_shapes_refused() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::HashOfMaps, "map_type.hash_of_maps")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapHashOfMapsSkelBuilder::default().open(&mut object)?)?;
        let outer = &skel.maps.outer;
        let tenant = inner_maps::create(333)?;
        outer.update(&u32b(5), &inner_maps::fd_value(&tenant), MapFlags::ANY)?;
        let shapes = [
            ("a hash", inner_maps::shaped(MapType::Hash, 8, 2)?),
            ("4-byte values", inner_maps::shaped(MapType::Array, 4, 2)?),
            ("3 entries", inner_maps::shaped(MapType::Array, 8, 3)?),
        ];
        let answers: Vec<(&str, String)> = shapes
            .iter()
            .map(|(what, map)| {
                let put = outer.update(&u32b(5), &inner_maps::fd_value(map), MapFlags::ANY);
                (*what, outcome(&put))
            })
            .collect();
        case.detail("refused", &answers);
        assert_eq!(
            answers,
            [
                ("a hash", "EINVAL".into()),
                ("4-byte values", "EINVAL".into()),
                ("3 entries", "EINVAL".into())
            ],
            "inner maps unlike the template (an array of 2 entries of 8 bytes)"
        );
        let run = test_run::raw_tp(&skel.progs.route, &[5], None)?;
        assert_eq!(run, 333, "tenant 5 still has its map");
        Ok(())
    });
}
