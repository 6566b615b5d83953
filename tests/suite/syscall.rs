//! Syscall programs (`programs/src/bpf/syscall.bpf.c`), run by BPF_PROG_TEST_RUN: the program
//! creates a hash map itself (bpf_sys_bpf BPF_MAP_CREATE), stores the key and value the test put
//! in its context, and returns the map's fd in the context. The fd must be open in the test
//! process and be that map: named `bpfconf_sys`, a hash of 8-byte keys and values with 4 entries;
//! the map, opened again by its id, holds the test's value under the test's key.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapInfo, MapType, ProgramInput, ProgramType};
use programs::syscall::SyscallSkelBuilder;
use testkit::{Case, probe, test_run};

/// The program's context (`struct args`): the key and value (u64 each), the map's fd (i32, -1
/// until the program sets it) and padding.
fn context(key: u64, value: u64) -> Vec<u8> {
    [
        key.to_ne_bytes().as_slice(),
        &value.to_ne_bytes(),
        &(-1i32).to_ne_bytes(),
        &0i32.to_ne_bytes(),
    ]
    .concat()
}

/// Where the program leaves the map's fd in [`context`].
const MAP_FD: std::ops::Range<usize> = 16..20;

#[test]
fn creates_a_map_the_caller_holds() {
    Case::run(ProgramType::Syscall, |case| {
        probe::prog_type(ProgramType::Syscall)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(SyscallSkelBuilder::default().open(&mut object)?)?;
        let pid = u64::from(nix::unistd::getpid().as_raw().unsigned_abs());
        let (key, value) = (0x6b65_7900_0000_0000 | pid, 0x7661_6c00_0000_0000 | pid);
        // The kernel copies the context back into the memory it came from.
        let mut args = context(key, value);
        let input = ProgramInput {
            context_in: Some(&mut args),
            ..Default::default()
        };
        let retval = test_run::run("syscall", &skel.progs.create_map, input)?.return_value as i32;
        let map_fd = i32::from_ne_bytes(args[MAP_FD].try_into().expect("4 bytes"));
        case.detail("retval", retval);
        case.detail("map_fd", map_fd);
        assert_eq!(
            retval, 0,
            "the program's result (a negative errno of bpf_sys_bpf)"
        );
        assert!(map_fd >= 0, "the map fd in the context: {}", map_fd);
        // SAFETY: the kernel installed this fd in our table for the program; nothing else
        // knows it.
        let created = unsafe { OwnedFd::from_raw_fd(map_fd) };
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
