//! The cases the queue and stack modules share (`tests/suite/map_queue.rs`, `map_stack.rs`): the
//! same program (`programs/src/bpf/map_queue_stack.h`, run with `BPF_PROG_TEST_RUN`) and the same
//! pushes, pops and peeks from it and from user space; what comes out where FIFO and LIFO part is
//! the module's [`Kind`].

use libbpf_rs::libbpf_sys::{BPF_ANY, BPF_EXIST, BPF_FUNC_map_push_elem, BPF_NOEXIST};
use libbpf_rs::{MapCore, MapFlags, MapMut, MapType, ProgramMut, ProgramType};

use crate::map_ops::{self, OK, as_u64, found, outcome, u64b};
use crate::{Case, CaseResult, probe, test_run};

/// The program's operations and the map's size, as in map_queue_stack.h.
const PUSH: u64 = 1;
const POP: u64 = 2;
const PEEK: u64 = 3;
const MAX_ENTRIES: u64 = 3;

/// A case's checks on the loaded program: its map, the program, and the value its last pop or
/// peek took.
pub type Check<'a> =
    &'a mut dyn FnMut(&MapMut<'_>, &ProgramMut<'_>, &dyn Fn() -> u64) -> CaseResult;

/// A module's map, and what comes out of it after user space pushed 1, the program 2 and user
/// space 3, each value with its assertion's message.
pub struct Kind {
    pub map_type: MapType,
    /// The feature the map type is (`map_type.queue`).
    pub feature: &'static str,
    /// The map in the messages (`queue`).
    pub name: &'static str,
    /// Loads the module's skeleton into the case and runs the check on it.
    pub load: fn(&mut Case, Check<'_>) -> CaseResult,
    /// What the program peeks (user space too) and then pops.
    pub first: (u64, &'static str),
    /// What user space pops once it popped 2 and the program pushed 4.
    pub then: (u64, &'static str),
    /// What the program pops last.
    pub last: (u64, &'static str),
    /// A full map of 1, 2 and 3 once 4 and 5 were pushed with `BPF_EXIST`, popped until empty.
    pub drained: [u64; 3],
}

/// The program's answer to `op` (push `value` with `flags`), by name.
fn program(prog: &ProgramMut<'_>, op: u64, value: u64, flags: u32) -> CaseResult<String> {
    let ret = test_run::raw_tp(prog, &[op, value, flags.into()], None)?;
    Ok(map_ops::answer(ret))
}

/// The calling test's case: probes the map type and the push helper, loads, checks.
fn run_loaded(kind: &Kind, check: Check<'_>) {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(kind.map_type, kind.feature)?;
        probe::helper(
            ProgramType::RawTracepoint,
            BPF_FUNC_map_push_elem,
            "bpf_map_push_elem",
        )?;
        (kind.load)(case, check)
    });
}

/// Values come out in the map's order, whichever side pushed or pops; peek shows the next one
/// without taking it; an empty map answers `ENOENT` to both sides.
pub fn order(kind: &Kind) {
    run_loaded(kind, &mut |map, op, taken| {
        let user_pop = || map.lookup_and_delete(&[]).map(|v| v.as_deref().map(as_u64));

        assert_eq!(outcome(&map.update(&[], &u64b(1), MapFlags::ANY)), OK);
        assert_eq!(program(op, PUSH, 2, BPF_ANY)?, OK);
        assert_eq!(outcome(&map.update(&[], &u64b(3), MapFlags::ANY)), OK);

        let (first, why) = kind.first;
        assert_eq!(program(op, PEEK, 0, 0)?, OK);
        assert_eq!(taken(), first, "{why}");
        let peeked = map.lookup(&[], MapFlags::ANY)?;
        assert_eq!(
            peeked.as_deref().map(as_u64),
            Some(first),
            "user space peeks it too"
        );
        assert_eq!(program(op, POP, 0, 0)?, OK);
        assert_eq!(taken(), first, "the program pops it");
        assert_eq!(
            user_pop()?,
            Some(2),
            "user space pops the program's push next"
        );
        assert_eq!(program(op, PUSH, 4, BPF_ANY)?, OK);
        let (then, why) = kind.then;
        assert_eq!(user_pop()?, Some(then), "{why}");
        assert_eq!(program(op, POP, 0, 0)?, OK);
        let (last, why) = kind.last;
        assert_eq!(taken(), last, "{why}");

        let empty = [
            program(op, POP, 0, 0)?,
            program(op, PEEK, 0, 0)?,
            found(&map.lookup_and_delete(&[])),
            found(&map.lookup(&[], MapFlags::ANY)),
        ];
        assert_eq!(
            empty, ["ENOENT"; 4],
            "pop and peek an empty {} (program, user)",
            kind.name
        );
        Ok(())
    });
}

/// A map of `max_entries` refuses a push with `E2BIG` from both sides, and a push with
/// `BPF_EXIST` drops the oldest value to make room; `BPF_NOEXIST`, delete and
/// `BPF_MAP_GET_NEXT_KEY` are `EINVAL` (the map has no keys).
pub fn full(kind: &Kind) {
    run_loaded(kind, &mut |map, op, _| {
        let push = |v: u64, flags: MapFlags| outcome(&map.update(&[], &u64b(v), flags));
        for v in 1..=MAX_ENTRIES {
            assert_eq!(push(v, MapFlags::ANY), OK, "push {v}");
        }
        let answers = [
            push(4, MapFlags::ANY),
            program(op, PUSH, 4, BPF_ANY)?,
            push(4, MapFlags::EXIST),
            program(op, PUSH, 5, BPF_EXIST)?,
            push(6, MapFlags::NO_EXIST),
            program(op, PUSH, 6, BPF_NOEXIST)?,
            map_ops::delete_keyless(map),
            map_ops::next_key(map, None)
                .map(|_| OK.to_owned())
                .unwrap_or_else(|e| e),
        ];
        assert_eq!(
            answers,
            [
                "E2BIG", "E2BIG", OK, OK, "EINVAL", "EINVAL", "EINVAL", "EINVAL"
            ],
            "into a full {} of {MAX_ENTRIES}: push 4 (user, program), push 4 and 5 with \
             BPF_EXIST (user, program), push 6 with BPF_NOEXIST (user, program); delete; \
             next key",
            kind.name
        );
        let mut drained = Vec::new();
        while let Some(v) = map.lookup_and_delete(&[])? {
            drained.push(as_u64(&v));
        }
        assert_eq!(
            drained, kind.drained,
            "BPF_EXIST dropped the oldest values, 1 then 2"
        );
        Ok(())
    });
}
