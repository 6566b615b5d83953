//! Persistence (`programs/src/bpf/pinning.bpf.c`): a raw tracepoint on `sys_enter` counts the
//! syscalls of the test thread into the map `syscalls`.
//!
//! - Unpinned, the program goes with its loader: once the skeleton and the link are dropped, the
//!   program id no longer exists and the count (watched through a map fd kept aside) stops.
//! - Pinned in bpffs (link, program and map, in a directory of its own that is removed even when
//!   the case fails), it keeps counting after every handle of the loader is dropped: the test reads
//!   the pinned map, makes syscalls and sees them counted. Removing the pins detaches it: the count
//!   stops and the program id disappears (the kernel frees them after an RCU grace period, so the
//!   test polls).

use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Duration;

use harness::observe::poll;
use harness::pins::PinDir;
use harness::{Case, CaseResult, OrError, probe};
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapHandle, Program, ProgramType};
use programs::pinning::{PinningSkel, PinningSkelBuilder};

/// Syscalls the test makes to see them counted.
const SYSCALLS: u64 = 200;

/// Loads the skeleton counting this thread's syscalls.
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<PinningSkel<'obj>> {
    probe::prog_type(ProgramType::RawTracepoint)?;
    let skel = case.load(PinningSkelBuilder::default().open(object)?)?;
    let tid = nix::unistd::gettid().as_raw() as u32;
    skel.maps
        .config
        .update(&0u32.to_ne_bytes(), &tid.to_ne_bytes(), MapFlags::ANY)?;
    Ok(skel)
}

fn count(map: &dyn MapCore) -> libbpf_rs::Result<u64> {
    let value = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
        .expect("an array always holds key 0");
    Ok(u64::from_ne_bytes(value[..8].try_into().expect("8 bytes")))
}

/// Makes `SYSCALLS` getppid() calls on this thread; returns how much the count grew meanwhile.
fn counted(map: &dyn MapCore) -> libbpf_rs::Result<u64> {
    let before = count(map)?;
    for _ in 0..SYSCALLS {
        // SAFETY: getppid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    Ok(count(map)? - before)
}

fn program_exists(id: u32) -> bool {
    Program::fd_from_id(id).is_ok()
}

/// Polls until the program no longer counts and its id is gone; returns whether both happened.
fn wait_until_gone(map: &dyn MapCore, id: u32) -> bool {
    let stopped = poll(Duration::from_secs(5), || {
        (counted(map).ok()? == 0).then_some(())
    });
    let gone = poll(Duration::from_secs(5), || {
        (!program_exists(id)).then_some(())
    });
    stopped.is_some() && gone.is_some()
}

#[test]
fn unpinned_program_goes_with_its_loader() {
    Case::run(
        "pinning::unpinned_program_goes_with_its_loader",
        ProgramType::RawTracepoint,
        |case| {
            let mut object = MaybeUninit::uninit();
            let skel = load(case, &mut object)?;
            let link = skel.progs.count_syscalls.attach()?;
            let id = Program::id_from_fd(skel.progs.count_syscalls.as_fd())?;
            // A map fd of our own, to watch the count once the loader is gone.
            let watch = MapHandle::try_from(&skel.maps.syscalls)?;
            let while_loaded = counted(&watch)?;
            drop(link);
            drop(skel);

            let gone = wait_until_gone(&watch, id);
            case.detail("counted_while_loaded", while_loaded);
            case.detail("detached_after_drop", gone);
            assert!(
                while_loaded >= SYSCALLS,
                "{while_loaded} of {SYSCALLS} syscalls counted while loaded"
            );
            assert!(
                gone,
                "the program still counts or exists after its loader dropped every handle"
            );
            Ok(())
        },
    );
}

#[test]
fn pinned_program_outlives_its_loader() {
    Case::run(
        "pinning::pinned_program_outlives_its_loader",
        ProgramType::RawTracepoint,
        |case| {
            let dir = PinDir::new("outlives")?;
            let id = {
                let mut object = MaybeUninit::uninit();
                let mut skel = load(case, &mut object)?;
                let mut link = skel.progs.count_syscalls.attach()?;
                link.pin(dir.join("link"))?;
                skel.progs.count_syscalls.pin(dir.join("prog"))?;
                skel.maps.syscalls.pin(dir.join("syscalls"))?;
                Program::id_from_fd(skel.progs.count_syscalls.as_fd())?
                // The link, the skeleton and its object are dropped here.
            };

            // Only the pins are left: the program must still exist and count.
            let counts = MapHandle::from_pinned_path(dir.join("syscalls"))?;
            let after_drop = counted(&counts)?;
            let exists_after_drop = program_exists(id);
            case.detail("counted_after_loader_dropped", after_drop);
            assert!(exists_after_drop, "program {id} vanished although pinned");
            assert!(
                after_drop >= SYSCALLS,
                "{after_drop} of {SYSCALLS} syscalls counted after the loader dropped its handles"
            );

            fs::remove_file(dir.join("link")).or_error("unpinning the link")?;
            fs::remove_file(dir.join("prog")).or_error("unpinning the program")?;
            let gone = wait_until_gone(&counts, id);
            case.detail("detached_after_unpin", gone);
            assert!(
                gone,
                "the program still counts or exists after it was unpinned"
            );
            Ok(())
        },
    );
}
