//! BPF_MAP_TYPE_PROG_ARRAY's own rules (`programs/src/bpf/map_prog_array.bpf.c`); tail_calls.rs
//! has the jumps themselves (filled slot, empty slot, the limit).
//!
//! `refuses_what_it_cannot_hold`: the array belongs to socket filters once `dispatch` loaded.
//! User space puts `callee` in slot 0 and reads back its program id; a test run of `dispatch`
//! returns the callee's 7. Refused, each with its errno: an XDP program (`EINVAL`: another type
//! than the array's owner), a descriptor that is not a program (`EINVAL`), `BPF_NOEXIST` or
//! `BPF_EXIST` (`EINVAL`: fd arrays take `BPF_ANY` only), slot 4 of 4 (`E2BIG`), deleting an empty
//! slot (`ENOENT`). Slot 0 deleted, `dispatch` falls through again (1).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramInput, ProgramMut, ProgramType};
use programs::map_prog_array::MapProgArraySkelBuilder;
use testkit::{Case, CaseResult, errno, probe, raw_load, test_run};

/// The errno of a refused call.
fn refused(result: libbpf_rs::Result<()>) -> Option<i32> {
    result.err().and_then(|e| errno::of_libbpf(&e))
}

/// A test run of `dispatch`: its return.
fn dispatch(prog: &ProgramMut<'_>) -> CaseResult<u32> {
    let input = ProgramInput {
        data_in: Some(&[0u8; 64]),
        ..Default::default()
    };
    Ok(test_run::run("socket_filter", prog, input)?.return_value)
}

#[test]
fn refuses_what_it_cannot_hold() {
    Case::run(ProgramType::SocketFilter, |case| {
        probe::map_type(MapType::ProgArray, "map_type.prog_array")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapProgArraySkelBuilder::default().open(&mut object)?)?;
        let jumps = &skel.maps.jumps;
        let slot = |i: u32| i.to_ne_bytes();
        let fd = |p: &ProgramMut<'_>| (p.as_fd().as_raw_fd() as u32).to_ne_bytes();

        jumps.update(&slot(0), &fd(&skel.progs.callee), MapFlags::ANY)?;
        let id = jumps
            .lookup(&slot(0), MapFlags::ANY)?
            .map(|v| u32::from_ne_bytes(v[..4].try_into().expect("4")));
        let callee_id = raw_load::prog_info(skel.progs.callee.as_fd())?.id;
        assert_eq!(id, Some(callee_id), "slot 0 reads back the callee's id");
        assert_eq!(dispatch(&skel.progs.dispatch)?, 7, "the tail call");

        let not_a_program = (jumps.as_fd().as_raw_fd() as u32).to_ne_bytes();
        let refusals = [
            (
                "an XDP program",
                refused(jumps.update(&slot(1), &fd(&skel.progs.other_type), MapFlags::ANY)),
            ),
            (
                "a map fd",
                refused(jumps.update(&slot(1), &not_a_program, MapFlags::ANY)),
            ),
            (
                "BPF_NOEXIST",
                refused(jumps.update(&slot(1), &fd(&skel.progs.callee), MapFlags::NO_EXIST)),
            ),
            (
                "BPF_EXIST",
                refused(jumps.update(&slot(0), &fd(&skel.progs.callee), MapFlags::EXIST)),
            ),
            (
                "slot 4 of 4",
                refused(jumps.update(&slot(4), &fd(&skel.progs.callee), MapFlags::ANY)),
            ),
            ("deleting an empty slot", refused(jumps.delete(&slot(2)))),
        ];
        case.detail("refusals", format!("{refusals:?}"));
        let want = [
            libc::EINVAL,
            libc::EINVAL,
            libc::EINVAL,
            libc::EINVAL,
            libc::E2BIG,
            libc::ENOENT,
        ];
        for ((what, got), want) in refusals.iter().zip(want) {
            assert_eq!(*got, Some(want), "{what}");
        }
        jumps.delete(&slot(0))?;
        assert_eq!(
            dispatch(&skel.progs.dispatch)?,
            1,
            "slot 0 emptied: falls through"
        );
        Ok(())
    });
}
