//! CO-RE (`programs/src/bpf/co_re.bpf.c`): the program declares task_struct with four fields at
//! offsets no kernel has, and libbpf relocates each access to the running kernel's offsets from
//! its BTF. A thread the test names [`THREAD`] calls getpgid([`MARKER`]) [`CALLS`] times; the raw
//! tracepoint on sys_enter reports, for those calls, the caller's pid, tgid, comm and parent's
//! tgid as read through the relocated accesses: they must be the thread's tid, the process's pid,
//! the thread's name and the process's parent. The relocations libbpf applied (field, compiled
//! offset, kernel's offset) are snapshotted per kernel.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::Path;

use harness::observe::volatile;
use harness::{Case, CaseError, LogLevel, OrError, co_re, ksyscall, probe, runs};
use libbpf_rs::ProgramType;
use libbpf_rs::skel::{Skel, SkelBuilder};
use programs::co_re::CoReSkelBuilder;

/// getpgid's argument that the program reports on: above the kernel's PID_MAX_LIMIT
/// (4,194,304), so no process has it and nobody else asks for it.
const MARKER: u64 = 0x6270_6663;
const CALLS: u32 = 3;
/// The reporting thread's name (within the kernel's 15 characters).
const THREAD: &str = "co-re-reader";
/// The fields the program reads, each through a relocation.
const FIELDS: [&str; 4] = ["pid", "tgid", "real_parent", "comm"];

/// What the reporting thread knows about itself.
struct Own {
    tid: i32,
    pid: i32,
    ppid: i32,
    comm: String,
}

#[test]
fn task_fields_match_the_caller() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::path("object.kernel_btf", Path::new("/sys/kernel/btf/vmlinux"))?;
        let mut object = MaybeUninit::uninit();
        let mut open = CoReSkelBuilder::default().open(&mut object)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect(".rodata is mmapped before load");
        rodata.getpgid_id = libc::SYS_getpgid;
        rodata.marker = MARKER;
        let (loaded, outcome, messages) = case.try_load_with_messages(open, LogLevel::Stats);
        let mut skel = loaded.map_err(|e| {
            CaseError::Fail(anyhow::anyhow!(
                "the kernel refused {}: {} ({e:#})",
                outcome.object,
                outcome.message.clone().unwrap_or_default()
            ))
        })?;
        let relocations = co_re::relocations(&messages);
        case.detail("relocations", &relocations);
        let name = format!("{}__relocations", case.id().replace("::", "__"));
        case.snapshot(&name, &relocations);
        for field in FIELDS {
            let access = format!("struct task_struct.{field}:");
            assert!(
                relocations.iter().any(|r| r.contains(&access)),
                "no relocation of task_struct.{field} among {relocations:?}"
            );
        }
        skel.attach()?;

        let reader = std::thread::Builder::new()
            .name(THREAD.to_owned())
            .spawn(|| -> std::io::Result<Own> {
                let own = Own {
                    tid: nix::unistd::gettid().as_raw(),
                    pid: nix::unistd::getpid().as_raw(),
                    ppid: nix::unistd::getppid().as_raw(),
                    comm: std::fs::read_to_string("/proc/thread-self/comm")?
                        .trim_end()
                        .to_owned(),
                };
                for _ in 0..CALLS {
                    ksyscall::getpgid(MARKER as i64);
                }
                Ok(own)
            })
            .or_error("starting the reporting thread")?;
        let own = reader
            .join()
            .map_err(|_| CaseError::Fail(anyhow::anyhow!("the reporting thread panicked")))?
            .or_error("the reporting thread reading its comm")?;
        assert_eq!(own.comm, THREAD, "the thread's own name");

        let bss = skel.maps.bss_data.as_deref().expect("the object has .bss");
        let hits = volatile(&bss.hits);
        let comm = volatile(&bss.comm).map(|c| c as u8);
        let comm = CStr::from_bytes_until_nul(&comm)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(&comm).into_owned());
        let read = (
            volatile(&bss.pid),
            volatile(&bss.tgid),
            volatile(&bss.parent_tgid),
            comm,
        );
        case.detail("reports", hits);
        case.detail("read", &read);
        let skipped = runs::misses(skel.progs.read_task.as_fd())?;
        assert!(
            (1..=CALLS).contains(&hits) && u64::from(CALLS - hits) <= skipped,
            "{hits} of {CALLS} marked calls reported ({skipped} runs skipped by the kernel)"
        );
        assert_eq!(
            read,
            (own.tid, own.pid, own.ppid, own.comm),
            "(pid, tgid, parent's tgid, comm) read through the relocated accesses"
        );
        Ok(())
    });
}
