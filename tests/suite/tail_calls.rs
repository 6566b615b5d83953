//! Tail calls (`programs/src/bpf/tail_calls.bpf.c`): socket filters that jump to each other
//! through a `BPF_MAP_TYPE_PROG_ARRAY`, run with `BPF_PROG_TEST_RUN`. Every program counts its
//! runs in an array map, so after one run the test sees from outside which programs ran:
//!
//! - a jump to a filled slot runs the callee, which returns in place of the caller (the caller's
//!   code after the jump never runs);
//! - a jump to an empty slot falls through to the caller's next instruction;
//! - a program that jumps to itself runs until the kernel's tail-call limit refuses the jump; the
//!   test counts the runs, so the limit it reports is the one of the running kernel (documented as
//!   32; kernels since 5.17 allow 33 everywhere, older ones differed between JITs), and snapshots it.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use harness::{Case, CaseResult};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, ProgramInput, ProgramType};
use programs::tail_calls::{TailCallsSkel, TailCallsSkelBuilder};
use serde_json::json;

// Slots of the program array and indices of the counters, as in tail_calls.bpf.c.
const SLOT_CALLEE: u32 = 0;
const SLOT_RECURSE: u32 = 2;
const ENTRY_RAN: u32 = 0;
const ENTRY_FELL_THROUGH: u32 = 1;
const CALLEE_RAN: u32 = 2;
const EMPTY_FELL_THROUGH: u32 = 3;
const RECURSE_RAN: u32 = 4;
const RECURSE_FELL_THROUGH: u32 = 5;

const PACKET: [u8; 64] = [0; 64];

fn counter(skel: &TailCallsSkel<'_>, index: u32) -> libbpf_rs::Result<u64> {
    let value = skel
        .maps
        .counters
        .lookup(&index.to_ne_bytes(), MapFlags::ANY)?
        .expect("an array always holds its indices");
    Ok(u64::from_ne_bytes(value[..8].try_into().expect("8 bytes")))
}

fn fill_slot(skel: &TailCallsSkel<'_>, slot: u32, prog: &impl AsFd) -> libbpf_rs::Result<()> {
    let fd = prog.as_fd().as_raw_fd() as u32;
    skel.maps
        .jump_table
        .update(&slot.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
}

fn run_once(prog: &libbpf_rs::ProgramMut<'_>) -> CaseResult<u32> {
    let input = ProgramInput {
        data_in: Some(&PACKET),
        ..Default::default()
    };
    Ok(harness::test_run::run("socket_filter", prog, input)?.return_value)
}

#[test]
fn jump_to_present_slot_runs_callee() {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = case.load(TailCallsSkelBuilder::default().open(&mut object)?)?;
        fill_slot(&skel, SLOT_CALLEE, &skel.progs.callee)?;
        let returned = run_once(&skel.progs.entry)?;
        let (entry, fell, callee) = (
            counter(&skel, ENTRY_RAN)?,
            counter(&skel, ENTRY_FELL_THROUGH)?,
            counter(&skel, CALLEE_RAN)?,
        );
        case.detail("returned", returned);
        case.detail(
            "runs",
            json!({"entry": entry, "entry_after_jump": fell, "callee": callee}),
        );
        assert_eq!((entry, callee), (1, 1), "entry and callee each run once");
        assert_eq!(fell, 0, "entry went on after a jump to a filled slot");
        assert_eq!(returned, 2, "the run's result is not the callee's");
        harness::test_run::measure(case, &skel.progs.entry, &PACKET, None)?;
        Ok(())
    });
}

#[test]
fn jump_to_empty_slot_falls_through() {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = case.load(TailCallsSkelBuilder::default().open(&mut object)?)?;
        let returned = run_once(&skel.progs.to_empty)?;
        let fell = counter(&skel, EMPTY_FELL_THROUGH)?;
        case.detail("returned", returned);
        case.detail("fell_through", fell);
        assert_eq!(fell, 1, "the code after the failed jump did not run");
        assert_eq!(returned, 3);
        Ok(())
    });
}

#[test]
fn self_recursion_stops_at_limit() {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = case.load(TailCallsSkelBuilder::default().open(&mut object)?)?;
        fill_slot(&skel, SLOT_RECURSE, &skel.progs.recurse)?;
        let returned = run_once(&skel.progs.recurse)?;
        let runs = counter(&skel, RECURSE_RAN)?;
        let fell = counter(&skel, RECURSE_FELL_THROUGH)?;
        // The first run is the test run itself; every further run is one tail call.
        let tail_calls = runs.saturating_sub(1);
        case.detail("runs", runs);
        case.detail("tail_call_limit", tail_calls);
        let measured = json!({
            "runs": runs,
            "tail_calls": tail_calls,
            "fell_through_at_limit": fell,
            "returned": returned,
        });
        let name = case.snapshot_name("limit");
        case.snapshot(&name, &measured);
        assert_eq!(
            fell, 1,
            "only the last run falls through, once the limit refuses"
        );
        assert_eq!(returned, 4);
        assert!(
            (32..=33).contains(&tail_calls),
            "{tail_calls} tail calls before the kernel refused (documented: 32, or 33)"
        );
        harness::test_run::measure(case, &skel.progs.recurse, &PACKET, None)?;
        Ok(())
    });
}
