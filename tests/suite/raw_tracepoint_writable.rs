//! Writable raw tracepoints (`programs/src/bpf/raw_tracepoint_writable.bpf.c`, Linux 5.2+).
//!
//! The kernel has one built in: `bpf_test_finish` (net/bpf/test_run.c, event
//! `bpf_test_run/bpf_test_finish`), through which every BPF_PROG_TEST_RUN of a socket filter, tc or
//! XDP program returns, with its result (`int *err`) as the writable buffer (sizeof(int)). No test
//! module is needed.
//! - `bpf_test_finish_result_rewritten_while_attached`: the program writes -[`ERRNO`] into that
//!   result for the test's own thread. A test run of a socket filter (which returns 7) succeeds
//!   before the attach; while attached it fails with exactly [`ERRNO`] (its retval, copied out
//!   before the tracepoint, is still 7), while the same run from another thread succeeds; after
//!   the detach it succeeds again. The program counted exactly the one write. The link is
//!   released where no forked child holds a copy ([`testkit::link::release`]): a child another
//!   test forks meanwhile would otherwise keep the program attached past the test's close (seen
//!   on 6.12: the run after the detach still failed with EXFULL).
//! - `tracepoint_buffer_bounds_checked` (raw instructions): the verifier does not know the
//!   buffer's size at load; it records the furthest byte a program touches, and the attach
//!   refuses a program past the tracepoint's writable size (EINVAL), while one reading inside it
//!   attaches. A negative offset the verifier refuses itself (EACCES, its key line names R6, the
//!   tracepoint buffer and off=-4).

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::{ProgramType, libbpf_sys};
use nix::errno::Errno;
use programs::raw_tracepoint_writable::RawTracepointWritableSkelBuilder;
use testkit::insn::{Asm, Jmp, Reg::*, Size};
use testkit::raw_load::RawProgram;
use testkit::{Case, CaseError, CaseResult, link, probe};

/// The errno the program makes the test run return.
const ERRNO: Errno = Errno::EXFULL;
/// What the test-run target returns.
const TARGET_RETVAL: u32 = 7;
const TRACEPOINT: &str = "bpf_test_finish";

/// The kernel has writable raw tracepoints and `bpf_test_finish`.
fn probe_writable() -> CaseResult {
    probe::prog_type(ProgramType::RawTracepointWritable)?;
    probe::tracepoint("bpf_test_run", "bpf_test_finish")
}

/// One BPF_PROG_TEST_RUN of the socket filter `prog` on a zeroed 64-byte frame: the syscall's
/// result (its errno when it failed) and the retval the kernel copied out.
fn test_run(prog: BorrowedFd<'_>) -> (Result<(), Errno>, u32) {
    let data = [0u8; 64];
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: data.as_ptr().cast(),
        data_size_in: data.len() as u32,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: the options and the data they point at outlive the call.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    let result = if ret < 0 {
        Err(Errno::from_raw(-ret))
    } else {
        Ok(())
    };
    (result, opts.retval)
}

#[test]
fn bpf_test_finish_result_rewritten_while_attached() {
    Case::run(ProgramType::RawTracepointWritable, |case| {
        probe_writable()?;
        let pid_tgid = ((std::process::id() as u64) << 32) | nix::unistd::gettid().as_raw() as u64;
        let mut object = MaybeUninit::uninit();
        let skel = case.open_load(
            RawTracepointWritableSkelBuilder::default(),
            &mut object,
            |open| {
                let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
                rodata.target_pid_tgid = pid_tgid;
                rodata.err_to_write = -(ERRNO as i32);
            },
        )?;
        let target = skel.progs.test_run_target.as_fd();
        let program = skel.progs.set_test_run_result.as_fd();
        let writes = || skel.maps.bss_data.as_deref().expect(".bss").writes;

        let before = test_run(target);
        let link = attach_raw(program)?;
        let attached = test_run(target);
        let other_thread = std::thread::scope(|s| s.spawn(|| test_run(target)).join())
            .map_err(|_| CaseError::Error(anyhow::anyhow!("the other thread panicked")))?;
        let writes_attached = writes();
        link::release(link);
        // Released: the program is no longer attached.
        let after = test_run(target);
        case.detail(
            "runs",
            format!("before {before:?}, attached {attached:?}, other thread {other_thread:?}, after {after:?}"),
        );

        assert_eq!(
            before,
            (Ok(()), TARGET_RETVAL),
            "the test run before the attach"
        );
        assert_eq!(
            attached,
            (Err(ERRNO), TARGET_RETVAL),
            "the test run while the program is attached"
        );
        assert_eq!(
            other_thread,
            (Ok(()), TARGET_RETVAL),
            "another thread's test run while the program is attached"
        );
        assert_eq!(
            after,
            (Ok(()), TARGET_RETVAL),
            "the test run after the detach"
        );
        assert_eq!((writes_attached, writes()), (1, 1), "the program's writes");
        Ok(())
    });
}

/// Attaches the program `fd` to the raw tracepoint [`TRACEPOINT`]: the link, or the errno.
fn attach_raw(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let name = CString::new(TRACEPOINT).expect("no NUL");
    // SAFETY: a NUL-terminated name and a loaded program's fd; a negative return is -errno.
    let ret = unsafe { libbpf_sys::bpf_raw_tracepoint_open(name.as_ptr(), fd.as_raw_fd()) };
    if ret < 0 {
        Err(Errno::from_raw(-ret))
    } else {
        // SAFETY: a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(ret) })
    }
}

/// `r6 = args[0]` (the buffer), then `access`, then `return 0`.
fn buffer_program(name: &str, access: Asm) -> RawProgram {
    let insns = Asm::new()
        .ldx(Size::DW, R6, R1, 0)
        .append(&access)
        .mov64_imm(R0, 0)
        .exit()
        .to_bpf();
    RawProgram::new(name, ProgramType::RawTracepointWritable, insns)
}

#[test]
fn tracepoint_buffer_bounds_checked() {
    Case::run(ProgramType::RawTracepointWritable, |case| {
        probe_writable()?;
        // Inside the buffer: a 4-byte read at 0 (harmless to other tests' runs).
        let inside = case.load_raw(&buffer_program(
            "read_inside",
            Asm::new().ldx(Size::W, R0, R6, 0),
        ));
        // Past it: a 4-byte write at 4, behind a test no run passes (the result is never
        // i32::MAX), so that a kernel which wrongly attached it would not write there.
        let past = case.load_raw(&buffer_program(
            "write_past",
            Asm::new()
                .ldx(Size::W, R0, R6, 0)
                .jmp_imm(Jmp::Jne, R0, i32::MAX, 1)
                .st_imm(Size::W, R6, 4, 0),
        ));
        // Before it: a 4-byte write at -4.
        let before = case.load_raw(&buffer_program(
            "write_before",
            Asm::new().st_imm(Size::W, R6, -4, 0),
        ));

        let inside_fd = inside.fd.as_ref().ok_or_else(|| {
            CaseError::Fail(anyhow::anyhow!(
                "the verifier refused a 4-byte read at offset 0: {:?}",
                inside.outcome.message
            ))
        })?;
        let past_fd = past.fd.as_ref().ok_or_else(|| {
            CaseError::Fail(anyhow::anyhow!(
                "the verifier refused a 4-byte write at offset 4 (the attach is what checks the \
                 size): {:?}",
                past.outcome.message
            ))
        })?;
        let inside_link = attach_raw(inside_fd.as_fd());
        let past_link = attach_raw(past_fd.as_fd());
        case.detail(
            "attach",
            format!(
                "read_inside {:?}, write_past {:?}",
                inside_link.as_ref().map(|_| ()),
                past_link.as_ref().map(|_| ())
            ),
        );
        inside_link.map_err(|e| {
            CaseError::Fail(anyhow::anyhow!("attaching a 4-byte read at offset 0: {e}"))
        })?;
        assert_eq!(
            past_link.map(drop),
            Err(Errno::EINVAL),
            "attaching a write past the tracepoint's writable size"
        );

        assert_eq!(
            (before.outcome.loaded, before.outcome.errno.as_deref()),
            (false, Some("EACCES")),
            "loading a write before the buffer"
        );
        let message = before.outcome.message.clone().unwrap_or_default();
        // "R6 invalid tracepoint buffer access: off=-4, size=4"; 7.3 says "R6 invalid negative
        // tracepoint buffer offset: off=-4, var_off=0".
        assert!(
            message.starts_with("R6 invalid ")
                && message.contains("tracepoint buffer")
                && message.contains("off=-4,"),
            "the verifier's key line: {message}"
        );
        Ok(())
    });
}
