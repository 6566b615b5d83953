//! kprobe and kretprobe (`programs/src/bpf/kprobe.bpf.c`) on the execve syscall's entry function,
//! resolved at run time for the architecture (`__x64_sys_execve`, or `sys_execve` on kernels without
//! syscall wrappers) from /proc/kallsyms. Every run of either program is one ring buffer event: the
//! entry's filename, the return's return value, each with the thread that ran it.
//!
//! The test execs an existing path, then a missing one, then a missing sentinel, one after
//! another, and reads every event up to the sentinel's return: the ring buffer keeps the order of
//! the runs, so by then every run for the first two execs has been read. Each of them must show
//! exactly one entry (its filename) and exactly one return for that thread before the thread
//! execs anything else: 0 for the existing file, -ENOENT for the missing one. A probe attached twice, or
//! firing twice, is two events.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use libbpf_rs::ProgramType;
use programs::kprobe::KprobeSkelBuilder;
use testkit::{Case, OrError, floors, ksyscall, observe, probe};

/// The event kinds of kprobe.bpf.c.
const ENTRY: u32 = 1;
const RETURN: u32 = 2;

/// One run of either program.
#[derive(Debug)]
enum Event {
    Entry { thread: u64, filename: String },
    Return { thread: u64, ret: i32 },
}

impl Event {
    fn parse(data: &[u8]) -> Option<Self> {
        let kind = u32::from_ne_bytes(data.get(0..4)?.try_into().ok()?);
        let ret = i32::from_ne_bytes(data.get(4..8)?.try_into().ok()?);
        let thread = u64::from_ne_bytes(data.get(8..16)?.try_into().ok()?);
        match kind {
            ENTRY => Some(Event::Entry {
                thread,
                filename: CStr::from_bytes_until_nul(data.get(16..)?)
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            }),
            RETURN => Some(Event::Return { thread, ret }),
            _ => None,
        }
    }
}

/// The runs for the exec of `filename`: its entries, and the returns of the thread of its first
/// entry that follow that entry up to the thread's next exec of another file.
fn runs_of(events: &[Event], filename: &str) -> (usize, Vec<i32>) {
    let entries: Vec<(usize, u64)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Entry {
                thread,
                filename: f,
            } if f == filename => Some((i, *thread)),
            _ => None,
        })
        .collect();
    let Some(&(first, thread)) = entries.first() else {
        return (0, Vec::new());
    };
    let returns = events[first + 1..]
        .iter()
        .take_while(|e| match e {
            Event::Entry {
                thread: t,
                filename: f,
            } => *t != thread || f == filename,
            Event::Return { .. } => true,
        })
        .filter_map(|e| match e {
            Event::Return { thread: t, ret } if *t == thread => Some(*ret),
            _ => None,
        })
        .collect();
    (entries.len(), returns)
}

/// Execs `path` and returns the errno of a failed exec.
fn exec(path: &Path) -> Option<i32> {
    match Command::new(path).status() {
        Ok(_) => None,
        Err(e) => e.raw_os_error(),
    }
}

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
        let [present, missing, sentinel] =
            ["present", "missing", "sentinel"].map(|name| dir.path().join(name));
        symlink("/bin/true", &present).or_error("linking /bin/true")?;
        assert!(Command::new(&present).status()?.success());
        assert_eq!(exec(&missing), Some(libc::ENOENT), "exec of a missing file");
        assert_eq!(exec(&sentinel), Some(libc::ENOENT), "exec of the sentinel");

        // Every execve on the machine is reported: read up to the sentinel's return.
        let sentinel_name = sentinel.to_string_lossy().into_owned();
        let mut events = Vec::new();
        let mut sentinel_thread = None;
        let complete = observe::ring_buffer(&skel.maps.events, Duration::from_secs(5), |data| {
            let Some(event) = Event::parse(data) else {
                return false;
            };
            let done = match &event {
                Event::Entry { thread, filename } if *filename == sentinel_name => {
                    sentinel_thread = Some(*thread);
                    false
                }
                Event::Return { thread, .. } => sentinel_thread == Some(*thread),
                _ => false,
            };
            events.push(event);
            done
        })?;
        assert!(
            complete,
            "the sentinel exec's return was not reported within 5 s ({} events read)",
            events.len()
        );
        let present = runs_of(&events, &present.to_string_lossy());
        let missing = runs_of(&events, &missing.to_string_lossy());
        case.detail("present_entries_returns", format!("{present:?}"));
        case.detail("missing_entries_returns", format!("{missing:?}"));
        case.detail("events_read", events.len());
        assert_eq!(
            present,
            (1, vec![0]),
            "(entries, returns) of the exec of an existing file"
        );
        assert_eq!(
            missing,
            (1, vec![-libc::ENOENT]),
            "(entries, returns) of the exec of a missing file"
        );
        Ok(())
    });
}
