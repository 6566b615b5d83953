//! Map flags and the syscall side's freeze (`programs/src/bpf/map_flags.bpf.c`, one array per
//! flag; each case loads only the programs it needs, the others' autoload off):
//!
//! - `rdonly_prog`: a `BPF_F_RDONLY_PROG` map is written from user space and read by a program;
//!   a program that writes it is refused by the verifier ("write into map forbidden");
//! - `wronly_prog`: a `BPF_F_WRONLY_PROG` map is written by a program and read from user space;
//!   a program that reads it is refused ("read from map forbidden");
//! - `mmapable`: a `BPF_F_MMAPABLE` array mapped into the process: a store through the mapping is
//!   what the program reads next, the program's store is in the mapping, and so is a syscall
//!   update; an array without the flag cannot be mapped (`EINVAL`);
//! - `freeze`: `BPF_MAP_FREEZE` is refused (`EBUSY`) while a writable mapping exists; once frozen
//!   the syscall side can no longer write (update and delete `EPERM`, a writable mapping
//!   `EPERM`, a second freeze refused) while a program still writes, and user space reads what it
//!   wrote (through the syscall and a read-only mapping);
//! - `spin_lock`: a value holding a `bpf_spin_lock`: updates and lookups with `BPF_F_LOCK` copy the
//!   value under the lock and never carry the lock itself (the lock bytes user space passes are
//!   ignored and come back zero), `BPF_F_LOCK` on a map without a lock is `EINVAL`; an XDP
//!   program adding 1 and 2 to two fields under the lock, run many times on every online CPU at
//!   once (a thread pinned to each), leaves exactly the sums of all runs.

use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::{
    self, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG, BPF_MAP_TYPE_ARRAY, XDP_PASS,
};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, OpenObject, ProgramType};
use programs::map_flags::{MapFlagsSkelBuilder, OpenMapFlagsSkel};
use testkit::map_ops::{self, MapAttrs, OK, as_u64, outcome, u32b, u64b};
use testkit::{Case, CaseResult, LogLevel, cpus, floors, probe, test_run};

/// Opens the object with only `programs` to be loaded.
fn open_with<'obj>(
    object: &'obj mut MaybeUninit<OpenObject>,
    programs: &[&str],
) -> CaseResult<OpenMapFlagsSkel<'obj>> {
    let mut open = MapFlagsSkelBuilder::default().open(object)?;
    for mut prog in open.open_object_mut().progs_mut() {
        let load = programs.iter().any(|p| prog.name() == *p);
        prog.set_autoload(load);
    }
    Ok(open)
}

/// An array of one `u64` with `flags` can be created (the flag's probe).
fn probe_array_flag(id: &str, flags: u32) -> CaseResult {
    probe::map_created(
        id,
        MapAttrs {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 8,
            max_entries: 1,
            map_flags: flags,
            ..Default::default()
        },
    )
}

/// Loads `program` alone, which the verifier must refuse with a key line starting `refusal`.
fn refused(case: &mut Case, program: &str, refusal: &str) -> CaseResult {
    let mut object = MaybeUninit::uninit();
    let (loaded, outcome) = case.try_load(open_with(&mut object, &[program])?, LogLevel::Stats);
    let message = outcome.message.clone().unwrap_or_default();
    assert!(loaded.is_err(), "{program} was loaded");
    assert_eq!(outcome.failed_program.as_deref(), Some(program));
    assert!(
        message.starts_with(refusal),
        "{program} refused with: {message}"
    );
    assert_eq!(
        outcome.errno.as_deref(),
        Some("EACCES"),
        "{program}'s errno"
    );
    Ok(())
}

#[test]
fn rdonly_prog() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe_array_flag("map_flag.rdonly_prog", BPF_F_RDONLY_PROG)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(open_with(&mut object, &["read_ro"])?)?;
        skel.maps.ro.update(&u32b(0), &u64b(41), MapFlags::ANY)?;
        assert_eq!(test_run::raw_tp(&skel.progs.read_ro, &[0], None)?, 0);
        let seen = skel.maps.bss_data.as_deref().expect(".bss").seen;
        assert_eq!(seen, 41, "the program reads what user space wrote");
        refused(case, "write_ro", "write into map forbidden")
    });
}

#[test]
fn wronly_prog() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe_array_flag("map_flag.wronly_prog", BPF_F_WRONLY_PROG)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(open_with(&mut object, &["write_wo"])?)?;
        assert_eq!(test_run::raw_tp(&skel.progs.write_wo, &[77], None)?, 0);
        let stored = skel.maps.wo.lookup(&u32b(0), MapFlags::ANY)?;
        assert_eq!(
            stored.as_deref().map(as_u64),
            Some(77),
            "user space reads the program's"
        );
        refused(case, "read_wo", "read from map forbidden")
    });
}

#[test]
fn mmapable() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe_array_flag("map_flag.mmapable", BPF_F_MMAPABLE)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(open_with(&mut object, &["shared_read", "shared_write"])?)?;
        let shared = &skel.maps.shared;
        let seen = || skel.maps.bss_data.as_deref().expect(".bss").seen;
        let mapping = map_ops::must(map_ops::mmap(shared, true), "mmap")?;

        mapping.write(1, 0x1111);
        assert_eq!(test_run::raw_tp(&skel.progs.shared_read, &[1], None)?, 0);
        assert_eq!(
            seen(),
            0x1111,
            "the program reads a store through the mapping"
        );
        assert_eq!(
            test_run::raw_tp(&skel.progs.shared_write, &[2, 0x2222], None)?,
            0
        );
        assert_eq!(
            mapping.read(2),
            0x2222,
            "the mapping shows the program's store"
        );
        shared.update(&u32b(3), &u64b(0x3333), MapFlags::ANY)?;
        assert_eq!(
            mapping.read(3),
            0x3333,
            "the mapping shows a syscall update"
        );

        let plain = map_ops::mmap(&skel.maps.wo, false).map(drop);
        assert_eq!(
            plain,
            Err("EINVAL".to_owned()),
            "mapping an array without the flag"
        );
        Ok(())
    });
}

#[test]
fn freeze() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe_array_flag("map_flag.mmapable", BPF_F_MMAPABLE)?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(open_with(&mut object, &["shared_read", "shared_write"])?)?;
        let shared = &skel.maps.shared;
        let handle = MapHandle::try_from(shared)?;
        shared.update(&u32b(0), &u64b(1), MapFlags::ANY)?;

        let writable = map_ops::must(map_ops::mmap(shared, true), "mmap")?;
        let busy = outcome(&handle.freeze());
        if busy == "EINVAL" {
            return Err(floors::missing(
                "map_op.freeze",
                "BPF_MAP_FREEZE answered EINVAL",
            ));
        }
        assert_eq!(busy, "EBUSY", "freezing while a writable mapping exists");
        drop(writable);
        assert_eq!(
            outcome(&handle.freeze()),
            OK,
            "freezing once the mapping is gone"
        );

        let answers = [
            outcome(&shared.update(&u32b(0), &u64b(2), MapFlags::ANY)),
            outcome(&shared.delete(&u32b(0))),
            map_ops::mmap(shared, true)
                .map(|_| OK.to_owned())
                .unwrap_or_else(|e| e),
        ];
        assert_eq!(
            answers,
            ["EPERM", "EPERM", "EPERM"],
            "after the freeze: update, delete, a writable mapping"
        );
        // A second freeze is refused: EBUSY (already frozen) on older kernels, EPERM (no write
        // permission left) where the permission check comes first.
        let again = outcome(&handle.freeze());
        case.detail("second_freeze", &again);
        assert!(
            ["EBUSY", "EPERM"].contains(&again.as_str()),
            "a second freeze: {again}"
        );
        assert_eq!(shared.query_fdinfo()?.frozen, Some(true), "fdinfo's frozen");

        assert_eq!(
            test_run::raw_tp(&skel.progs.shared_write, &[0, 9], None)?,
            0
        );
        let stored = shared.lookup(&u32b(0), MapFlags::ANY)?;
        assert_eq!(
            stored.as_deref().map(as_u64),
            Some(9),
            "the program still writes"
        );
        let read_only = map_ops::must(map_ops::mmap(shared, false), "mmap")?;
        assert_eq!(read_only.read(0), 9, "a read-only mapping shows it");
        Ok(())
    });
}

/// `struct locked_value` of map_flags.bpf.c: lock (4 bytes), pad (4), a, b.
fn locked_value(lock: u32, a: u64, b: u64) -> Vec<u8> {
    let mut v = lock.to_ne_bytes().to_vec();
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&a.to_ne_bytes());
    v.extend_from_slice(&b.to_ne_bytes());
    v
}

/// Runs of the XDP program on each online CPU.
const LOCKED_RUNS: u32 = 2000;

#[test]
fn spin_lock() {
    Case::run(ProgramType::Xdp, |case| {
        probe::helper(
            ProgramType::Xdp,
            libbpf_sys::BPF_FUNC_spin_lock,
            "bpf_spin_lock",
        )?;
        probe::helper(
            ProgramType::Xdp,
            libbpf_sys::BPF_FUNC_spin_unlock,
            "bpf_spin_unlock",
        )?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(open_with(&mut object, &["locked_add"])?)?;
        let locked = &skel.maps.locked;
        let lookup = |flags| locked.lookup(&u32b(0), flags);

        let put = locked.update(
            &u32b(0),
            &locked_value(0xffff_ffff, 100, 200),
            MapFlags::LOCK,
        );
        if outcome(&put) == "EINVAL" {
            return Err(floors::missing(
                "map_flag.lock",
                "an update with BPF_F_LOCK: EINVAL",
            ));
        }
        put?;
        let value = lookup(MapFlags::LOCK)?;
        assert_eq!(
            value,
            Some(locked_value(0, 100, 200)),
            "the value stored with BPF_F_LOCK, looked up with it: the lock bytes are not copied"
        );

        let online = cpus::online()?;
        let frame = [0u8; 64];
        test_run::concurrently_on(
            &skel.progs.locked_add,
            &frame,
            LOCKED_RUNS,
            &online,
            XDP_PASS,
        )?;
        let runs = u64::from(LOCKED_RUNS) * online.len() as u64;
        case.detail("runs", [LOCKED_RUNS as u64, online.len() as u64]);
        let value = lookup(MapFlags::LOCK)?;
        assert_eq!(
            value,
            Some(locked_value(0, 100 + runs, 200 + 2 * runs)),
            "after {LOCKED_RUNS} runs on each of CPUs {online:?} at once: a + 1 and b + 2 each"
        );

        let shared = &skel.maps.shared;
        let no_lock = [
            outcome(&shared.update(&u32b(0), &u64b(1), MapFlags::LOCK)),
            outcome(&shared.lookup(&u32b(0), MapFlags::LOCK)),
        ];
        assert_eq!(
            no_lock,
            ["EINVAL", "EINVAL"],
            "BPF_F_LOCK on a map without a lock"
        );
        Ok(())
    });
}
