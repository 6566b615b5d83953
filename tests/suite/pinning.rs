//! Persistence (`programs/src/bpf/pinning.bpf.c`): a raw tracepoint on `sys_enter` counts the
//! getppid() calls of the test thread into the map `syscalls`. The test makes [`SYSCALLS`] of
//! them at a time and expects exactly that many counted, less at most the runs the kernel reports
//! skipped meanwhile (`recursion_misses`: a kernel whose syscall tracepoints are preemptible skips
//! the program for a task while another task it preempted is inside it on the same CPU).
//!
//! - Unpinned, the program goes with its loader: once the skeleton and the link are dropped, the
//!   program id no longer exists and the count (watched through a map fd kept aside) stops.
//! - Pinned in bpffs (link, program and map, in a directory of its own that is removed even when
//!   the case fails), it keeps counting after every handle of the loader is dropped: the test reads
//!   the pinned map, makes syscalls and sees them counted. Removing the pins detaches it: the
//!   program id disappears (the kernel frees it after an RCU grace period, so the test polls) and
//!   from then on the count stands still.

use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapHandle, Program, ProgramType};
use programs::pinning::{PinningSkel, PinningSkelBuilder};
use testkit::observe::poll;
use testkit::pins::PinDir;
use testkit::{Case, CaseResult, OrError, probe, raw_load};

/// getppid() calls the test makes at a time to see them counted.
const SYSCALLS: u64 = 200;

/// Loads the skeleton counting this thread's getppid() calls.
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
) -> CaseResult<PinningSkel<'obj>> {
    probe::prog_type(ProgramType::RawTracepoint)?;
    let skel = case.load(PinningSkelBuilder::default().open(object)?)?;
    // `struct target` of the program: the thread id, then the syscall id.
    let tid = nix::unistd::gettid().as_raw() as u32;
    let mut target = tid.to_ne_bytes().to_vec();
    target.extend_from_slice(&(libc::SYS_getppid as u32).to_ne_bytes());
    skel.maps
        .config
        .update(&0u32.to_ne_bytes(), &target, MapFlags::ANY)?;
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
        testkit::ksyscall::getppid();
    }
    Ok(count(map)? - before)
}

/// The runs of `prog` the kernel skipped because it was already running on that CPU.
fn recursion_misses(prog: BorrowedFd<'_>) -> CaseResult<u64> {
    Ok(raw_load::prog_info(prog)
        .or_error("reading the program's info")?
        .recursion_misses)
}

/// Makes `SYSCALLS` getppid() calls and asserts that `prog` counted each into `map`, less at most
/// the runs the kernel skipped meanwhile; returns the count's growth.
fn assert_counts_each(map: &dyn MapCore, prog: BorrowedFd<'_>, when: &str) -> CaseResult<u64> {
    let misses_before = recursion_misses(prog)?;
    let grew = counted(map)?;
    let misses = recursion_misses(prog)? - misses_before;
    assert!(
        grew <= SYSCALLS && SYSCALLS - grew <= misses,
        "{grew} of {SYSCALLS} getppid() calls counted {when}, {misses} runs skipped as recursion"
    );
    Ok(grew)
}

fn program_exists(id: u32) -> bool {
    Program::fd_from_id(id).is_ok()
}

/// Polls until program `id` is gone (the kernel frees it after an RCU grace period); returns
/// whether it went and how many getppid() calls made after that were counted (none may be).
fn wait_until_gone(map: &dyn MapCore, id: u32) -> libbpf_rs::Result<(bool, u64)> {
    let gone = poll(Duration::from_secs(5), || {
        (!program_exists(id)).then_some(())
    });
    Ok((gone.is_some(), counted(map)?))
}

#[test]
fn unpinned_program_goes_with_its_loader() {
    Case::run(ProgramType::RawTracepoint, |case| {
        let mut object = MaybeUninit::uninit();
        let skel = load(case, &mut object)?;
        let link = skel.progs.count_syscalls.attach()?;
        let id = Program::id_from_fd(skel.progs.count_syscalls.as_fd())?;
        // A map fd of our own, to watch the count once the loader is gone.
        let watch = MapHandle::try_from(&skel.maps.syscalls)?;
        let while_loaded =
            assert_counts_each(&watch, skel.progs.count_syscalls.as_fd(), "while loaded")?;
        case.detail("counted_while_loaded", while_loaded);
        testkit::link::release(link);
        drop(skel);

        let (gone, counted_after) = wait_until_gone(&watch, id)?;
        case.detail("gone_after_drop", gone);
        case.detail("counted_after_gone", counted_after);
        assert!(
            gone,
            "program {id} still exists after its loader dropped every handle"
        );
        assert_eq!(
            counted_after, 0,
            "getppid() calls counted once the program was gone"
        );
        Ok(())
    });
}

#[test]
fn pinned_program_outlives_its_loader() {
    Case::run(ProgramType::RawTracepoint, |case| {
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
        let after_drop = {
            // Only for its info; closed before the pins are removed.
            let prog = Program::fd_from_id(id).map_err(|e| {
                testkit::CaseError::Fail(anyhow::anyhow!(
                    "program {id} vanished although pinned: {e}"
                ))
            })?;
            assert_counts_each(
                &counts,
                prog.as_fd(),
                "after the loader dropped its handles",
            )?
        };
        case.detail("counted_after_loader_dropped", after_drop);

        fs::remove_file(dir.join("link")).or_error("unpinning the link")?;
        fs::remove_file(dir.join("prog")).or_error("unpinning the program")?;
        let (gone, counted_after) = wait_until_gone(&counts, id)?;
        case.detail("gone_after_unpin", gone);
        case.detail("counted_after_gone", counted_after);
        assert!(gone, "program {id} still exists after it was unpinned");
        assert_eq!(
            counted_after, 0,
            "getppid() calls counted once the program was gone"
        );
        Ok(())
    });
}
