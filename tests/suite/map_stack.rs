//! `BPF_MAP_TYPE_STACK` (`programs/src/bpf/map_stack.bpf.c`): a LIFO that a program
//! (`map_queue_stack.h`, run with `BPF_PROG_TEST_RUN`) and user space push to and pop from.
//!
//! - `lifo_order`: the last value in is the first out, whichever side pushed or pops; peek shows
//!   the next one without taking it; an empty stack answers `ENOENT` to both sides;
//! - `full`: a stack of `max_entries` refuses a push with `E2BIG` from both sides, and a push with
//!   `BPF_EXIST` drops the oldest value (the bottom) to make room; `BPF_NOEXIST`, delete and
//!   `BPF_MAP_GET_NEXT_KEY` are `EINVAL` (a stack has no keys).

use std::mem::MaybeUninit;

use libbpf_rs::MapType;
use libbpf_rs::skel::SkelBuilder;
use programs::map_stack::MapStackSkelBuilder;
use testkit::queue_stack::{self, Check, Kind};
use testkit::{Case, CaseResult};

const STACK: Kind = Kind {
    map_type: MapType::Stack,
    feature: "map_type.stack",
    name: "stack",
    load,
    first: (3, "the program peeks the last value pushed"),
    then: (4, "then the program's new push"),
    last: (1, "the first push comes out last"),
    drained: [5, 4, 3],
};

fn load(case: &mut Case, check: Check<'_>) -> CaseResult {
    let mut object = MaybeUninit::uninit();
    let skel = case.load(MapStackSkelBuilder::default().open(&mut object)?)?;
    let taken = || skel.maps.bss_data.as_deref().expect(".bss").taken;
    check(&skel.maps.items, &skel.progs.op, &taken)
}

#[test]
fn lifo_order() {
    queue_stack::order(&STACK);
}

#[test]
fn full() {
    queue_stack::full(&STACK);
}
