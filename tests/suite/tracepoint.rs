//! A tracepoint program (`programs/src/bpf/tracepoint.bpf.c`) on `syscalls/sys_enter_execve`
//! reading its typed context: the test execs a file of its own and finds the filename the program
//! read from the context, with the exec'ing pid, in the ring buffer.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

use libbpf_rs::ProgramType;
use libbpf_rs::skel::{Skel, SkelBuilder};
use programs::tracepoint::TracepointSkelBuilder;
use testkit::{Case, OrError, observe, probe};

#[test]
fn execve_filename_from_context() {
    Case::run(ProgramType::Tracepoint, |case| {
        probe::tracepoint("syscalls", "sys_enter_execve")?;
        let mut object = MaybeUninit::uninit();
        let mut skel = case.load(TracepointSkelBuilder::default().open(&mut object)?)?;
        skel.attach()?;

        let dir = tempfile::tempdir().or_error("creating a temporary directory")?;
        let path = dir.path().join("traced");
        symlink("/bin/true", &path).or_error("linking /bin/true")?;
        let mut child = Command::new(&path).spawn()?;
        let pid = child.id();
        assert!(child.wait()?.success());

        let path = path.to_string_lossy().into_owned();
        let mut seen_pid = None;
        let found = observe::ring_buffer(&skel.maps.events, Duration::from_secs(5), |event| {
            let filename = CStr::from_bytes_until_nul(&event[8..]).map(|f| f.to_string_lossy());
            if filename.is_ok_and(|f| f == path) {
                seen_pid = Some(u32::from_ne_bytes(event[0..4].try_into().expect("4 bytes")));
            }
            seen_pid.is_some()
        })?;
        assert!(found, "no sys_enter_execve event for {path} within 5 s");
        assert_eq!(seen_pid, Some(pid), "the event names the exec'ing process");
        Ok(())
    });
}
