//! The cases the map-in-map modules share (`tests/suite/map_array_of_maps.rs`,
//! `map_hash_of_maps.rs`): `route` (`programs/src/bpf/map_in_map.h`, run with
//! `BPF_PROG_TEST_RUN`) reaches the [`inner_maps`] user space puts under the keys of an outer map
//! of two entries; the keys, the flags that put a map there and how a full outer map refuses one
//! more are the module's [`Outer`].

use libbpf_rs::{MapCore, MapFlags, MapMut, MapType, ProgramMut, ProgramType};

use crate::inner_maps::{self, NO_INNER};
use crate::map_ops::{OK, as_u32, found, outcome, u32b};
use crate::{Case, CaseResult, probe, test_run};

/// A case's checks on the loaded program: the case, the outer map and `route`.
pub type Check<'a> = &'a mut dyn FnMut(&mut Case, &MapMut<'_>, &ProgramMut<'_>) -> CaseResult;

/// A module's outer map, the keys its cases use and what the messages say of them.
pub struct Outer {
    pub map_type: MapType,
    /// The feature the map type is (`map_type.array_of_maps`).
    pub feature: &'static str,
    /// Loads the module's skeleton into the case and runs the check on it.
    pub load: fn(&mut Case, Check<'_>) -> CaseResult,
    /// A key in the messages (`slot`), and what one with a map does (`holds`).
    pub noun: &'static str,
    pub holds: &'static str,
    /// The key `inner_map_replaced` puts A and then B under, and one it leaves empty.
    pub key: u32,
    pub empty_key: u32,
    /// The key `other_shapes_refused` puts its maps under.
    pub shapes_key: u32,
    /// The flags that put a map under an empty key, and that replace a key's map.
    pub add: MapFlags,
    pub replace: MapFlags,
    /// Puts of A (with `add`) once A is under `key`, each with its answer, up to one the full
    /// outer map refuses.
    pub overfill: &'static [(u32, &'static str)],
    /// The messages of `route` finding nothing under `key` before A, of `overfill` and the
    /// delete of `key` after it, and of `route` finding nothing after the delete.
    pub before: &'static str,
    pub overfill_then_delete: &'static str,
    pub deleted: &'static str,
}

/// The calling test's case: probes the map type, loads, checks.
fn run_loaded(outer: &Outer, check: Check<'_>) {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(outer.map_type, outer.feature)?;
        (outer.load)(case, check)
    });
}

/// User space puts map A under a key and the program reaches A; the key is switched to B while the
/// program stays loaded, and its next runs reach B (A's count stops, B's grows); a user-space
/// lookup gives the inner map's id; a key without a map gives the program nothing; a full outer
/// map refuses one more with `E2BIG`; a deleted key's map is gone (`ENOENT` the second time).
pub fn inner_map_replaced(outer: &Outer) {
    run_loaded(outer, &mut |_, map, route| {
        let run = |key: u32| test_run::raw_tp(route, &[key.into()], None);
        let (k, key) = (outer.key, format!("{} {}", outer.noun, outer.key));
        let (a, b) = (inner_maps::create(111)?, inner_maps::create(222)?);

        assert_eq!(run(k)?, NO_INNER, "{}", outer.before);
        map.update(&u32b(k), &inner_maps::fd_value(&a), outer.add)?;
        assert_eq!(
            [run(k)?, run(outer.empty_key)?],
            [111, NO_INNER],
            "{key} {} A, {} {} nothing",
            outer.holds,
            outer.noun,
            outer.empty_key
        );
        let held = map.lookup(&u32b(k), MapFlags::ANY)?;
        assert_eq!(
            held.as_deref().map(as_u32),
            Some(inner_maps::id(&a)?),
            "{key}'s map id"
        );

        map.update(&u32b(k), &inner_maps::fd_value(&b), outer.replace)?;
        assert_eq!([run(k)?, run(k)?], [222, 222], "{key} switched to B");
        let held = map.lookup(&u32b(k), MapFlags::ANY)?;
        assert_eq!(
            held.as_deref().map(as_u32),
            Some(inner_maps::id(&b)?),
            "{key}'s map id"
        );
        let hits = [inner_maps::hits(&a)?, inner_maps::hits(&b)?];
        assert_eq!(hits, [1, 2], "lookups counted in A and B");

        let put = |k: u32| outcome(&map.update(&u32b(k), &inner_maps::fd_value(&a), outer.add));
        let mut answers: Vec<String> = outer.overfill.iter().map(|&(k, _)| put(k)).collect();
        answers.push(outcome(&map.delete(&u32b(k))));
        let mut expected: Vec<&str> = outer.overfill.iter().map(|&(_, answer)| answer).collect();
        expected.push(OK);
        assert_eq!(answers, expected, "{}", outer.overfill_then_delete);
        assert_eq!(run(k)?, NO_INNER, "{}", outer.deleted);
        let answers = [
            outcome(&map.delete(&u32b(k))),
            found(&map.lookup(&u32b(k), MapFlags::ANY)),
        ];
        assert_eq!(
            answers,
            ["ENOENT", "ENOENT"],
            "delete {key} again, look it up"
        );
        Ok(())
    });
}

/// An inner map whose type, value size or `max_entries` differs from the template's is refused
/// with `EINVAL`, and the key keeps its map.
pub fn other_shapes_refused(outer: &Outer) {
    run_loaded(outer, &mut |case, map, route| {
        let k = outer.shapes_key;
        let tenant = inner_maps::create(333)?;
        map.update(&u32b(k), &inner_maps::fd_value(&tenant), MapFlags::ANY)?;
        let shapes = [
            ("a hash", inner_maps::shaped(MapType::Hash, 8, 2)?),
            ("4-byte values", inner_maps::shaped(MapType::Array, 4, 2)?),
            ("3 entries", inner_maps::shaped(MapType::Array, 8, 3)?),
        ];
        let answers: Vec<(&str, String)> = shapes
            .iter()
            .map(|(what, shaped)| {
                let put = map.update(&u32b(k), &inner_maps::fd_value(shaped), MapFlags::ANY);
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
        let run = test_run::raw_tp(route, &[k.into()], None)?;
        assert_eq!(run, 333, "{} {k} still {} its map", outer.noun, outer.holds);
        Ok(())
    });
}
