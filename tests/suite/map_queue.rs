//! `BPF_MAP_TYPE_QUEUE` (`programs/src/bpf/map_queue.bpf.c`): a FIFO that a program
//! (`map_queue_stack.h`, run with `BPF_PROG_TEST_RUN`) and user space push to and pop from.
//!
//! - `fifo_order`: values come out in the order they went in, whichever side pushed or pops;
//!   peek shows the next one without taking it; an empty queue answers `ENOENT` to both sides;
//! - `full`: a queue of `max_entries` refuses a push with `E2BIG` from both sides, and a push with
//!   `BPF_EXIST` drops the oldest value to make room; `BPF_NOEXIST`, delete and
//!   `BPF_MAP_GET_NEXT_KEY` are `EINVAL` (a queue has no keys).

use std::mem::MaybeUninit;

use libbpf_rs::MapType;
use libbpf_rs::skel::SkelBuilder;
use programs::map_queue::MapQueueSkelBuilder;
use testkit::queue_stack::{self, Check, Kind};
use testkit::{Case, CaseResult};

const QUEUE: Kind = Kind {
    map_type: MapType::Queue,
    feature: "map_type.queue",
    name: "queue",
    load,
    first: (1, "the program peeks the first value pushed"),
    then: (3, "then user space's 3, ahead of the program's 4"),
    last: (4, "the program pops its own push last"),
    drained: [3, 4, 5],
};

fn load(case: &mut Case, check: Check<'_>) -> CaseResult {
    let mut object = MaybeUninit::uninit();
    let skel = case.load(MapQueueSkelBuilder::default().open(&mut object)?)?;
    let taken = || skel.maps.bss_data.as_deref().expect(".bss").taken;
    check(&skel.maps.items, &skel.progs.op, &taken)
}

#[test]
fn fifo_order() {
    queue_stack::order(&QUEUE);
}

#[test]
fn full() {
    queue_stack::full(&QUEUE);
}
