//! Syscall programs (`programs/src/bpf/syscall.bpf.c`), run by BPF_PROG_TEST_RUN: the program
//! creates a hash map itself (bpf_sys_bpf BPF_MAP_CREATE), stores the key and value the test put
//! in its context, and returns the map's fd in the context. The fd must be open in the test
//! process and be that map: named `bpfconf_sys`, a hash of 8-byte keys and values with 4 entries;
//! the map, opened again by its id, holds the test's value under the test's key.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapInfo, MapType, ProgramType, libbpf_sys};
use programs::syscall::SyscallSkelBuilder;
use testkit::{Case, floors, probe, test_run};

/// The program's context (`struct args`).
#[repr(C)]
struct Args {
    key: u64,
    value: u64,
    map_fd: i32,
    pad: i32,
}

#[test]
fn creates_a_map_the_caller_holds() {
    Case::run(ProgramType::Syscall, |case| {
        probe::prog_type(ProgramType::Syscall)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(SyscallSkelBuilder::default().open(&mut object)?)?;
        let pid = u64::from(nix::unistd::getpid().as_raw().unsigned_abs());
        let mut args = Args {
            key: 0x6b65_7900_0000_0000 | pid,
            value: 0x7661_6c00_0000_0000 | pid,
            map_fd: -1,
            pad: 0,
        };
        let (key, value) = (args.key, args.value);

        if !floors::has("test_run.syscall", true) {
            return Err(floors::missing("test_run.syscall", "not run"));
        }
        // SAFETY: a zeroed bpf_test_run_opts is valid.
        let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
        // The kernel copies the context back into ctx_in: it must be writable memory.
        opts.ctx_in = (&raw mut args).cast();
        opts.ctx_size_in = size_of::<Args>() as u32;
        // SAFETY: a loaded program's fd; `args` outlives the call.
        let ret = unsafe {
            libbpf_sys::bpf_prog_test_run_opts(skel.progs.create_map.as_fd().as_raw_fd(), &mut opts)
        };
        if ret < 0 {
            return Err(test_run::error(
                "syscall",
                libbpf_rs::Error::from_raw_os_error(-ret),
            ));
        }
        let retval = opts.retval as i32;
        case.detail("retval", retval);
        case.detail("map_fd", args.map_fd);
        assert_eq!(
            retval, 0,
            "the program's result (a negative errno of bpf_sys_bpf)"
        );
        assert!(
            args.map_fd >= 0,
            "the map fd in the context: {}",
            args.map_fd
        );
        // SAFETY: the kernel installed this fd in our table for the program; nothing else
        // knows it.
        let created = unsafe { OwnedFd::from_raw_fd(args.map_fd) };
        let info = MapInfo::new(created.as_fd())?;
        case.detail("map_id", info.info.id);
        assert_eq!(info.name()?, "bpfconf_sys", "the map's name");
        assert_eq!(info.map_type(), MapType::Hash, "the map's type");
        assert_eq!(
            (
                info.info.key_size,
                info.info.value_size,
                info.info.max_entries
            ),
            (8, 8, 4),
            "the map's key size, value size and entries"
        );
        let by_id = MapHandle::from_map_id(info.info.id)?;
        let stored = by_id.lookup(&key.to_ne_bytes(), MapFlags::ANY)?;
        assert_eq!(
            stored,
            Some(value.to_ne_bytes().to_vec()),
            "the value under the test's key"
        );
        Ok(())
    });
}
