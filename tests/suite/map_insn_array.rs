//! BPF_MAP_TYPE_INSN_ARRAY (6.19): a program's instruction offsets as the kernel rewrites them.
//! Each element names an instruction of the program it is bound to (`orig_off`); after the load
//! the kernel fills in where that instruction went in the verified program (`xlated_off`, or
//! `u32::MAX` for one the verifier removed) and in the JIT image (`jitted_off`). It is what the
//! jump tables of indirect jumps (gotox) are made of; clang 19 emits neither, so the program is
//! written as instructions (testkit::insn) and bound through the load's `fd_array`
//! (`fd_array_cnt`, 6.14), the only way a program takes a map it does not reference.
//!
//! `maps_original_offsets_to_the_verified_program`: a 5-instruction XDP program, `r0 = 1; goto +0;
//! r0 = XDP_PASS; goto +0; exit`, and an array of 5 naming each instruction. The verifier removes
//! the two no-op jumps: the elements read back `xlated_off` 0, removed, 1, removed, 2, the kept
//! ones at increasing JIT offsets (their values are the JIT's to choose, their order is not), and
//! a test run returns XDP_PASS. What the kernel refuses, each with
//! its errno: a map with flags (`EINVAL`), an element whose output fields are set (`EINVAL`),
//! `BPF_NOEXIST` (`EEXIST`), a delete (`EINVAL`), a load with the map not frozen (`EINVAL`), an
//! offset past the program (`EINVAL`), a second program on a bound map (`EBUSY`), and an update
//! once frozen (`EPERM`).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys;
use testkit::insn::{Asm, Reg};
use testkit::{Case, CaseError, CaseResult, probe, raw_load};

/// One element: `orig_off`, `xlated_off`, `jitted_off`, padding.
type Value = [u32; 4];
const REMOVED: u32 = u32::MAX;

/// An INSN_ARRAY map (libbpf-rs has no `MapType` for it): the raw calls, errors as errnos.
struct InsnArray(OwnedFd);

impl InsnArray {
    fn create(entries: u32, flags: u32) -> Result<Self, i32> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: flags,
            ..Default::default()
        };
        let name = CString::new("insn_array").expect("no NUL");
        // SAFETY: a NUL-terminated name and options of the size they say, read during the call.
        let fd = unsafe {
            libbpf_sys::bpf_map_create(
                libbpf_sys::BPF_MAP_TYPE_INSN_ARRAY,
                name.as_ptr(),
                4,
                size_of::<Value>() as u32,
                entries,
                &opts,
            )
        };
        // SAFETY: a non-negative return is a new descriptor that nothing else owns.
        (fd >= 0)
            .then(|| InsnArray(unsafe { OwnedFd::from_raw_fd(fd) }))
            .ok_or(-fd)
    }

    fn update(&self, index: u32, value: Value, flags: u64) -> Result<(), i32> {
        // SAFETY: key and value are live and of the map's sizes, read during the call.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.0.as_raw_fd(),
                (&index as *const u32).cast(),
                value.as_ptr().cast(),
                flags,
            )
        };
        if rc == 0 { Ok(()) } else { Err(-rc) }
    }

    fn lookup(&self, index: u32) -> Result<Value, i32> {
        let mut value: Value = [0; 4];
        // SAFETY: the key is read and the value (of the map's size) written during the call.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.0.as_raw_fd(),
                (&index as *const u32).cast(),
                value.as_mut_ptr().cast(),
            )
        };
        if rc == 0 { Ok(value) } else { Err(-rc) }
    }

    fn delete(&self, index: u32) -> Result<(), i32> {
        // SAFETY: the key is live and of the map's size, read during the call.
        let rc = unsafe {
            libbpf_sys::bpf_map_delete_elem(self.0.as_raw_fd(), (&index as *const u32).cast())
        };
        if rc == 0 { Ok(()) } else { Err(-rc) }
    }

    fn freeze(&self) -> Result<(), i32> {
        // SAFETY: a map descriptor this value owns.
        let rc = unsafe { libbpf_sys::bpf_map_freeze(self.0.as_raw_fd()) };
        if rc == 0 { Ok(()) } else { Err(-rc) }
    }
}

/// Loads `asm` as an XDP program with `maps` in its `fd_array` (all bound to it).
fn load(asm: &Asm, maps: &[&InsnArray]) -> Result<OwnedFd, i32> {
    let fds: Vec<i32> = maps.iter().map(|m| m.0.as_raw_fd()).collect();
    let insns = asm.to_bpf();
    let opts = libbpf_sys::bpf_prog_load_opts {
        sz: size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        fd_array: fds.as_ptr(),
        fd_array_cnt: fds.len() as u32,
        ..Default::default()
    };
    let (name, license) = (CString::new("insn_array").expect("no NUL"), c"GPL");
    // SAFETY: instructions, descriptors, name and license live across the call, which reads them.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &opts as *const _ as *mut _,
        )
    };
    // SAFETY: a non-negative return is a new descriptor that nothing else owns.
    (fd >= 0)
        .then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        .ok_or(-fd)
}

/// An array of `len` elements naming instructions 0..len, frozen when `frozen`.
fn naming_each(len: u32, frozen: bool) -> CaseResult<InsnArray> {
    let map = InsnArray::create(len, 0).map_err(errno("creating the map"))?;
    for i in 0..len {
        map.update(i, [i, 0, 0, 0], 0)
            .map_err(errno("naming an instruction"))?;
    }
    if frozen {
        map.freeze().map_err(errno("freezing"))?;
    }
    Ok(map)
}

fn errno(what: &'static str) -> impl Fn(i32) -> CaseError {
    move |e| CaseError::Fail(anyhow::anyhow!("{what}: {}", testkit::errno::name(e)))
}

#[test]
fn maps_original_offsets_to_the_verified_program() {
    Case::run(ProgramType::Xdp, |case| {
        probe::map_type_id(libbpf_sys::BPF_MAP_TYPE_INSN_ARRAY, "map_type.insn_array")?;
        let program = Asm::new()
            .mov64_imm(Reg::R0, 1)
            .ja(0)
            .mov64_imm(Reg::R0, libbpf_sys::XDP_PASS as i32)
            .ja(0)
            .exit();
        let len = program.len() as u32;

        assert_eq!(
            InsnArray::create(len, libbpf_sys::BPF_F_RDONLY).err(),
            Some(libc::EINVAL)
        );
        let map = naming_each(len, false)?;
        assert_eq!(
            map.update(0, [0, 1, 0, 0], 0),
            Err(libc::EINVAL),
            "xlated_off set"
        );
        assert_eq!(
            map.update(0, [0, 0, 0, 0], 1),
            Err(libc::EEXIST),
            "BPF_NOEXIST"
        );
        assert_eq!(map.delete(0), Err(libc::EINVAL), "delete");
        assert_eq!(
            load(&program, &[&map]).err(),
            Some(libc::EINVAL),
            "not frozen"
        );
        let past = naming_each(len, false)?;
        past.update(len - 1, [len, 0, 0, 0], 0)
            .map_err(errno("naming past the end"))?;
        past.freeze().map_err(errno("freezing"))?;
        assert_eq!(
            load(&program, &[&past]).err(),
            Some(libc::EINVAL),
            "offset past the end"
        );

        map.freeze().map_err(errno("freezing"))?;
        assert_eq!(
            map.update(0, [0, 0, 0, 0], 0),
            Err(libc::EPERM),
            "update once frozen"
        );
        let prog = load(&program, &[&map]).map_err(errno("loading the program"))?;
        let values: Vec<Value> = (0..len)
            .map(|i| map.lookup(i).map_err(errno("reading an element")))
            .collect::<CaseResult<_>>()?;
        case.detail("values", &values);
        let xlated: Vec<u32> = values.iter().map(|v| v[1]).collect();
        assert_eq!(xlated, [0, REMOVED, 1, REMOVED, 2], "xlated_off");
        assert!(
            values.iter().all(|v| v[0] < len),
            "orig_off kept: {values:?}"
        );
        let jitted: Vec<u32> = values
            .iter()
            .filter(|v| v[1] != REMOVED)
            .map(|v| v[2])
            .collect();
        assert!(
            jitted.windows(2).all(|w| w[0] < w[1]),
            "kept instructions at increasing JIT offsets: {jitted:?}"
        );
        let fd = prog.as_fd();
        assert_eq!(raw_load::test_run(fd, &[0u8; 64])?, libbpf_sys::XDP_PASS);
        assert_eq!(
            load(&program, &[&map]).err(),
            Some(libc::EBUSY),
            "a second program"
        );
        Ok(())
    });
}
