//! A raw tracepoint (`programs/src/bpf/raw_tracepoint.bpf.c`) on `sys_enter` counting syscalls by id
//! for one thread, chosen through `.rodata` before load. The test thread makes N getpid() and M
//! getppid() calls; the map must hold exactly N and M under their syscall ids.

use std::mem::MaybeUninit;

use harness::Case;
use libbpf_rs::skel::{Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, ProgramType};
use programs::raw_tracepoint::RawTracepointSkelBuilder;

const GETPIDS: u64 = 1000;
const GETPPIDS: u64 = 300;

#[test]
fn counts_syscalls_by_id() {
    Case::run(
        "raw_tracepoint::counts_syscalls_by_id",
        ProgramType::RawTracepoint,
        |case| {
            let mut object = MaybeUninit::uninit();
            let mut open = RawTracepointSkelBuilder::default().open(&mut object)?;
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect(".rodata is mmapped before load");
            rodata.target_tid = nix::unistd::gettid().as_raw() as u32;
            let mut skel = case.load(open)?;
            skel.attach()?;

            for _ in 0..GETPIDS {
                // SAFETY: getpid takes no arguments and cannot fail.
                unsafe { libc::syscall(libc::SYS_getpid) };
            }
            for _ in 0..GETPPIDS {
                // SAFETY: as above.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }

            let count = |id: i64| -> libbpf_rs::Result<u64> {
                let value = skel
                    .maps
                    .counts
                    .lookup(&(id as u64).to_ne_bytes(), MapFlags::ANY)?;
                Ok(value.map_or(0, |v| {
                    u64::from_ne_bytes(v[..8].try_into().expect("8 bytes"))
                }))
            };
            let (getpids, getppids) = (count(libc::SYS_getpid)?, count(libc::SYS_getppid)?);
            case.detail("getpid", getpids);
            case.detail("getppid", getppids);
            assert_eq!(getpids, GETPIDS, "getpid calls counted");
            assert_eq!(getppids, GETPPIDS, "getppid calls counted");
            Ok(())
        },
    );
}
