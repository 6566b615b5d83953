//! kprobe and kretprobe (`programs/src/bpf/kprobe.bpf.c`) on the execve syscall's entry function,
//! resolved at run time for the architecture (`__x64_sys_execve`, or `sys_execve` on kernels without
//! syscall wrappers) from /proc/kallsyms. The entry probe records the filename, the return probe the
//! return value; the test execs an existing path and a missing one and finds both in the ring
//! buffer: return 0 for the first, -ENOENT for the second.

use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

use libbpf_rs::ProgramType;
use programs::kprobe::KprobeSkelBuilder;
use testkit::{Case, OrError, floors, ksyscall, observe, probe};

#[test]
fn execve_entry_and_return() {
    Case::run(ProgramType::Kprobe, |case| {
        let execve = floors::judge("ksym.syscall_entry", ksyscall::resolve("execve"))?;
        case.detail("function", &execve.symbol);
        let mut object = MaybeUninit::uninit();
        let skel = case.open_load(KprobeSkelBuilder::default(), &mut object, |open| {
            let rodata = open.maps.rodata_data.as_deref_mut().expect(".rodata");
            rodata.syscall_wrapper = i32::from(execve.wrapped);
        })?;
        probe::kprobes()?;
        let _entry = skel
            .progs
            .execve_entry
            .attach_kprobe(false, &execve.symbol)?;
        let _exit = skel
            .progs
            .execve_return
            .attach_kprobe(true, &execve.symbol)?;

        let dir = tempfile::tempdir().or_error("creating a temporary directory")?;
        let present = dir.path().join("present");
        let missing = dir.path().join("missing");
        symlink("/bin/true", &present).or_error("linking /bin/true")?;
        assert!(Command::new(&present).status()?.success());
        let spawn_missing = Command::new(&missing)
            .status()
            .expect_err("exec of a missing file");
        assert_eq!(spawn_missing.raw_os_error(), Some(libc::ENOENT));

        // Every execve on the machine is reported; keep the two of ours, by filename.
        let wanted = [
            present.to_string_lossy().into_owned(),
            missing.to_string_lossy().into_owned(),
        ];
        let mut returns: HashMap<String, i32> = HashMap::new();
        let complete = observe::ring_buffer(&skel.maps.events, Duration::from_secs(5), |event| {
            let ret = i32::from_ne_bytes(event[4..8].try_into().expect("4 bytes"));
            let filename =
                CStr::from_bytes_until_nul(&event[8..]).map(|f| f.to_string_lossy().into_owned());
            if let Ok(filename) = filename
                && wanted.contains(&filename)
            {
                returns.insert(filename, ret);
            }
            returns.len() == wanted.len()
        })?;
        case.detail("returns", &returns);
        assert!(
            complete,
            "only {returns:?} of {wanted:?} reported within 5 s"
        );
        assert_eq!(returns[&wanted[0]], 0, "execve of an existing file");
        assert_eq!(
            returns[&wanted[1]],
            -libc::ENOENT,
            "execve of a missing file"
        );
        Ok(())
    });
}
