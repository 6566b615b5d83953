//! `BPF_MAP_TYPE_QUEUE` (`programs/src/bpf/map_queue.bpf.c`): a FIFO that a program
//! (`map_queue_stack.h`, run with `BPF_PROG_TEST_RUN`) and user space push to and pop from.
//!
//! - `fifo_order`: values come out in the order they went in, whichever side pushed or pops;
//!   peek shows the next one without taking it; an empty queue answers `ENOENT` to both sides;
//! - `full`: a queue of `max_entries` refuses a push with `E2BIG` from both sides, and a push with
//!   `BPF_EXIST` drops the oldest value to make room; `BPF_NOEXIST`, delete and
//!   `BPF_MAP_GET_NEXT_KEY` are `EINVAL` (a queue has no keys).

use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::{BPF_ANY, BPF_EXIST, BPF_NOEXIST};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramMut, ProgramType};
use programs::map_queue::MapQueueSkelBuilder;
use testkit::map_ops::{self, OK, as_u64, found, outcome, u64b};
use testkit::{Case, CaseResult, probe, test_run};

/// The program's operations and the queue's size, as in map_queue_stack.h.
const PUSH: u64 = 1;
const POP: u64 = 2;
const PEEK: u64 = 3;
const MAX_ENTRIES: u64 = 3;

/// The program's answer to `op` (push `value` with `flags`), by name.
fn program(prog: &ProgramMut<'_>, op: u64, value: u64, flags: u32) -> CaseResult<String> {
    let ret = test_run::raw_tp(prog, &[op, value, flags.into()], None)?;
    Ok(map_ops::answer(ret))
}

#[test]
fn fifo_order() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::Queue, "map_type.queue")?;
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_rs::libbpf_sys::BPF_FUNC_map_push_elem,
            "bpf_map_push_elem",
        )?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapQueueSkelBuilder::default().open(&mut object)?)?;
        let (map, op) = (&skel.maps.items, &skel.progs.op);
        let taken = || skel.maps.bss_data.as_deref().expect(".bss").taken;
        let user_pop = || map.lookup_and_delete(&[]).map(|v| v.as_deref().map(as_u64));

        assert_eq!(outcome(&map.update(&[], &u64b(1), MapFlags::ANY)), OK);
        assert_eq!(program(op, PUSH, 2, BPF_ANY)?, OK);
        assert_eq!(outcome(&map.update(&[], &u64b(3), MapFlags::ANY)), OK);

        assert_eq!(program(op, PEEK, 0, 0)?, OK);
        assert_eq!(taken(), 1, "the program peeks the first value pushed");
        let peeked = map.lookup(&[], MapFlags::ANY)?;
        assert_eq!(
            peeked.as_deref().map(as_u64),
            Some(1),
            "user space peeks it too"
        );
        assert_eq!(program(op, POP, 0, 0)?, OK);
        assert_eq!(taken(), 1, "the program pops it");
        assert_eq!(
            user_pop()?,
            Some(2),
            "user space pops the program's push next"
        );
        assert_eq!(program(op, PUSH, 4, BPF_ANY)?, OK);
        assert_eq!(user_pop()?, Some(3));
        assert_eq!(program(op, POP, 0, 0)?, OK);
        assert_eq!(taken(), 4, "the program pops its own push last");

        let empty = [
            program(op, POP, 0, 0)?,
            program(op, PEEK, 0, 0)?,
            found(&map.lookup_and_delete(&[])),
            found(&map.lookup(&[], MapFlags::ANY)),
        ];
        assert_eq!(
            empty, ["ENOENT"; 4],
            "pop and peek an empty queue (program, user)"
        );
        Ok(())
    });
}

#[test]
fn full() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::Queue, "map_type.queue")?;
        probe::helper(
            ProgramType::RawTracepoint,
            libbpf_rs::libbpf_sys::BPF_FUNC_map_push_elem,
            "bpf_map_push_elem",
        )?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapQueueSkelBuilder::default().open(&mut object)?)?;
        let (map, op) = (&skel.maps.items, &skel.progs.op);
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
            "into a full queue of {MAX_ENTRIES}: push 4 (user, program), push 4 and 5 with \
             BPF_EXIST (user, program), push 6 with BPF_NOEXIST (user, program); delete; \
             next key"
        );
        let mut drained = Vec::new();
        while let Some(v) = map.lookup_and_delete(&[])? {
            drained.push(as_u64(&v));
        }
        assert_eq!(
            drained,
            [3, 4, 5],
            "BPF_EXIST dropped the oldest values, 1 then 2"
        );
        Ok(())
    });
}
