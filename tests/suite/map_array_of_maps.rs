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
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_array_of_maps::MapArrayOfMapsSkelBuilder;
use testkit::inner_maps::{self, NO_INNER};
use testkit::map_ops::{OK, as_u32, found, outcome, u32b};
use testkit::{Case, probe, test_run};

#[test]
fn inner_map_replaced() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::ArrayOfMaps, "map_type.array_of_maps")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapArrayOfMapsSkelBuilder::default().open(&mut object)?)?;
        let (outer, route) = (&skel.maps.outer, &skel.progs.route);
        let run = |slot: u32| test_run::raw_tp(route, &[slot.into()], None);
        let (a, b) = (inner_maps::create(111)?, inner_maps::create(222)?);

        assert_eq!(run(0)?, NO_INNER, "an empty slot");
        outer.update(&u32b(0), &inner_maps::fd_value(&a), MapFlags::ANY)?;
        assert_eq!(
            [run(0)?, run(1)?],
            [111, NO_INNER],
            "slot 0 holds A, slot 1 nothing"
        );
        let held = outer.lookup(&u32b(0), MapFlags::ANY)?;
        assert_eq!(
            held.as_deref().map(as_u32),
            Some(inner_maps::id(&a)?),
            "slot 0's map id"
        );

        outer.update(&u32b(0), &inner_maps::fd_value(&b), MapFlags::ANY)?;
        assert_eq!([run(0)?, run(0)?], [222, 222], "slot 0 switched to B");
        let held = outer.lookup(&u32b(0), MapFlags::ANY)?;
        assert_eq!(
            held.as_deref().map(as_u32),
            Some(inner_maps::id(&b)?),
            "slot 0's map id"
        );
        let hits = [inner_maps::hits(&a)?, inner_maps::hits(&b)?];
        assert_eq!(hits, [1, 2], "lookups counted in A and B");

        let answers = [
            outcome(&outer.update(&u32b(2), &inner_maps::fd_value(&a), MapFlags::ANY)),
            outcome(&outer.delete(&u32b(0))),
        ];
        assert_eq!(
            answers,
            ["E2BIG", OK],
            "put A in slot 2 (past the end), delete slot 0"
        );
        assert_eq!(run(0)?, NO_INNER, "the program finds slot 0 empty");
        let answers = [
            outcome(&outer.delete(&u32b(0))),
            found(&outer.lookup(&u32b(0), MapFlags::ANY)),
        ];
        assert_eq!(
            answers,
            ["ENOENT", "ENOENT"],
            "delete slot 0 again, look it up"
        );
        Ok(())
    });
}

#[test]
fn other_shapes_refused() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::ArrayOfMaps, "map_type.array_of_maps")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapArrayOfMapsSkelBuilder::default().open(&mut object)?)?;
        let outer = &skel.maps.outer;
        let tenant = inner_maps::create(333)?;
        outer.update(&u32b(1), &inner_maps::fd_value(&tenant), MapFlags::ANY)?;
        let shapes = [
            ("a hash", inner_maps::shaped(MapType::Hash, 8, 2)?),
            ("4-byte values", inner_maps::shaped(MapType::Array, 4, 2)?),
            ("3 entries", inner_maps::shaped(MapType::Array, 8, 3)?),
        ];
        let answers: Vec<(&str, String)> = shapes
            .iter()
            .map(|(what, map)| {
                let put = outer.update(&u32b(1), &inner_maps::fd_value(map), MapFlags::ANY);
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
        let run = test_run::raw_tp(&skel.progs.route, &[1], None)?;
        assert_eq!(run, 333, "slot 1 still holds its map");
        Ok(())
    });
}
