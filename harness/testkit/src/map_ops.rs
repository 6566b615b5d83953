//! Map operations as the map modules (`tests/suite/map_*.rs`) observe them: a call's outcome as a
//! name (`"ok"`, or its errno: `"EEXIST"`), and the same for a helper's answer a program hands back
//! (the `map_op.h` programs run with `BPF_PROG_TEST_RUN`: [`program_op`]); what libbpf-rs does not
//! offer or hides: `BPF_MAP_CREATE` of any type number, `BPF_MAP_GET_NEXT_KEY` from any key, a
//! keyless delete, batch lookups that end with the kernel's errno (libbpf-rs's batch iterator
//! stops silently on one, so a kernel without batches would look like an empty map), a per-CPU
//! value read into a buffer of exactly the size the kernel writes, and a map's values mapped into
//! the process ([`mmap`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::{MapCore, libbpf_sys};

use crate::cpus;
use crate::errno::{self, ENOTSUPP};
use crate::outcome::{CaseError, CaseResult};

/// The name of a successful call.
pub const OK: &str = "ok";

/// `"ok"`, or the errno of a failed libbpf-rs call by name.
pub fn outcome<T>(result: &libbpf_rs::Result<T>) -> String {
    match result {
        Ok(_) => OK.to_owned(),
        Err(e) => errno::of_libbpf(e).map_or_else(|| format!("{e:#}"), name),
    }
}

/// A call that must succeed: its errno's name, when it did not, is the case's failure.
pub fn must<T>(result: Result<T, String>, what: &str) -> CaseResult<T> {
    result.map_err(|e| CaseError::Fail(anyhow::anyhow!("{what}: {e}")))
}

/// A libbpf-rs lookup's answer named like the syscall's: `"ok"` when found, `"ENOENT"` when not
/// (libbpf-rs hands that back as `None`), or the errno.
pub fn found<T>(result: &libbpf_rs::Result<Option<T>>) -> String {
    match result {
        Ok(Some(_)) => OK.to_owned(),
        Ok(None) => "ENOENT".to_owned(),
        Err(_) => outcome(result),
    }
}

/// A program's return value (a test run's `retval`) that hands back a helper's answer (`0` or
/// `-errno`), by name: `"ok"`, `"EEXIST"`, …
pub fn answer(retval: u32) -> String {
    match retval as i32 {
        0 => OK.to_owned(),
        code => name(code.abs()),
    }
}

/// An errno by name, the kernel-internal `ENOTSUPP` (524) among them.
pub fn name(code: i32) -> String {
    if code.abs() == ENOTSUPP {
        "ENOTSUPP".to_owned()
    } else {
        errno::name(code)
    }
}

/// The last OS error of a raw libbpf call by name.
fn last_errno() -> String {
    name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The attributes of a map [`create`] creates.
#[derive(Clone, Copy, Debug, Default)]
pub struct MapAttrs {
    /// `enum bpf_map_type`'s number (libbpf-rs's `MapType` has no variant for the newest).
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub map_extra: u64,
}

/// `BPF_MAP_CREATE` of `attrs`: the map's fd, or the errno's name.
pub fn create(attrs: MapAttrs) -> Result<OwnedFd, String> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: attrs.map_flags,
        map_extra: attrs.map_extra,
        ..Default::default()
    };
    // SAFETY: no name, and options of their own size.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            attrs.map_type,
            std::ptr::null(),
            attrs.key_size,
            attrs.value_size,
            attrs.max_entries,
            &opts,
        )
    };
    if fd < 0 {
        return Err(name(-fd));
    }
    // SAFETY: `fd` is the descriptor of the map just created, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_MAP_GET_NEXT_KEY` after `key` (`None`: the first key), or the errno's name.
pub fn next_key(map: &impl MapCore, key: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let mut next = vec![0u8; map.key_size() as usize];
    let key = key.map_or(std::ptr::null(), <[u8]>::as_ptr);
    // SAFETY: `key` is null or points at a key of the map's key size (the caller's), `next` has
    // room for one key; the map's fd is open while `map` is borrowed.
    let ret = unsafe {
        libbpf_sys::bpf_map_get_next_key(
            map.as_fd().as_raw_fd(),
            key.cast(),
            next.as_mut_ptr().cast(),
        )
    };
    if ret == 0 {
        Ok(next)
    } else {
        Err(last_errno())
    }
}

/// `BPF_MAP_GET_NEXT_KEY` from `absent`, a key the hash map does not hold, starts over at its
/// first key (the map holds at least one).
pub fn assert_next_after_absent_is_first(map: &impl MapCore, absent: u32) {
    let first = next_key(map, None);
    assert!(first.is_ok(), "a map with keys has a first key: {first:?}");
    assert_eq!(
        next_key(map, Some(&u32b(absent))),
        first,
        "next key after absent {absent}"
    );
}

/// `BPF_MAP_DELETE_ELEM` with no key, as a keyless map (queue, stack, bloom filter) takes it:
/// `"ok"` or the errno. (libbpf-rs hands the kernel a pointer even for an empty key, which the
/// kernel refuses with `EINVAL` before the map sees the call.)
pub fn delete_keyless(map: &impl MapCore) -> String {
    // SAFETY: a null key is what BPF_MAP_DELETE_ELEM takes for a map of key size 0; the map's fd
    // is open while `map` is borrowed.
    let ret = unsafe { libbpf_sys::bpf_map_delete_elem(map.as_fd().as_raw_fd(), std::ptr::null()) };
    if ret == 0 {
        OK.to_owned()
    } else {
        last_errno()
    }
}

/// A key and its value, as bytes.
pub type Element = (Vec<u8>, Vec<u8>);

/// The map's elements by `BPF_MAP_LOOKUP_BATCH` (`delete`: `BPF_MAP_LOOKUP_AND_DELETE_BATCH`),
/// `count` per call (doubled where a hash bucket does not fit: `ENOSPC`), each value `value_size`
/// bytes as the syscall side lays it out (a per-CPU map's: its slots); the pairs in the kernel's
/// order, or the first errno other than the `ENOENT` that ends the walk, by name.
pub fn lookup_batch(
    map: &impl MapCore,
    mut count: u32,
    value_size: usize,
    delete: bool,
) -> Result<Vec<Element>, String> {
    let key_size = map.key_size() as usize;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    // The batch position is opaque: a key for arrays, a bucket for hash maps.
    let token_size = key_size.max(8);
    let (mut in_batch, mut out_batch) = (vec![0u8; token_size], vec![0u8; token_size]);
    let mut first = true;
    let mut pairs = Vec::new();
    loop {
        let mut keys = vec![0u8; key_size * count as usize];
        let mut values = vec![0u8; value_size * count as usize];
        let mut n = count;
        let call = if delete {
            libbpf_sys::bpf_map_lookup_and_delete_batch
        } else {
            libbpf_sys::bpf_map_lookup_batch
        };
        // SAFETY: the buffers hold `count` keys and values of the sizes given, the batch tokens
        // `token_size` bytes (at least a key, at least the u32 of a hash map's bucket); the map's
        // fd is open while `map` is borrowed.
        let ret = unsafe {
            call(
                map.as_fd().as_raw_fd(),
                if first {
                    std::ptr::null_mut()
                } else {
                    in_batch.as_mut_ptr().cast()
                },
                out_batch.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut n,
                &opts,
            )
        };
        let errno = (ret != 0).then(|| std::io::Error::last_os_error().raw_os_error());
        let end = match errno {
            None => false,
            Some(Some(libc::ENOENT)) => true,
            // A hash bucket holds more elements than `count` (where the keys fall depends on the
            // map's random hash seed): the kernel copied nothing and asks for a larger buffer.
            Some(Some(libc::ENOSPC)) if n == 0 && count < 1 << 16 => {
                count *= 2;
                continue;
            }
            _ => return Err(last_errno()),
        };
        let n = n as usize;
        pairs.extend(
            keys.chunks(key_size)
                .zip(values.chunks(value_size))
                .take(n)
                .map(|(k, v)| (k.to_vec(), v.to_vec())),
        );
        if end {
            return Ok(pairs);
        }
        first = false;
        in_batch.copy_from_slice(&out_batch);
    }
}

/// A per-CPU map's value for `key` as the kernel writes it to user space: one slot of
/// [`cpus::slot_size`] bytes per possible CPU. The kernel is handed one slot more, filled with a
/// canary that must come back untouched (it wrote exactly the slots); `None` when the key is
/// absent.
pub fn percpu_value(map: &impl MapCore, key: &[u8]) -> CaseResult<Option<Vec<u8>>> {
    const CANARY: u8 = 0xa5;
    let slot = cpus::slot_size(map.value_size() as usize);
    let slots = cpus::possible()?.len();
    let mut buf = vec![CANARY; slot * (slots + 1)];
    // SAFETY: `key` is the caller's key of the map's key size; `buf` has room for every possible
    // CPU's slot and one more; the map's fd is open while `map` is borrowed.
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_fd().as_raw_fd(),
            key.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
        )
    };
    if ret != 0 {
        let errno = last_errno();
        return if errno == "ENOENT" {
            Ok(None)
        } else {
            Err(CaseError::Fail(anyhow::anyhow!(
                "looking up a per-CPU value: {errno}"
            )))
        };
    }
    let tail = buf.split_off(slot * slots);
    assert!(
        tail.iter().all(|&b| b == CANARY),
        "the kernel wrote past {slots} slots of {slot} bytes (one per possible CPU)"
    );
    Ok(Some(buf))
}

/// A `u32` as map bytes.
pub fn u32b(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

/// A `u64` as map bytes.
pub fn u64b(v: u64) -> [u8; 8] {
    v.to_ne_bytes()
}

/// Map bytes as a `u32` (the first four).
pub fn as_u32(bytes: &[u8]) -> u32 {
    u32::from_ne_bytes(bytes[..4].try_into().expect("four bytes"))
}

/// Map bytes as a `u64` (the first eight).
pub fn as_u64(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes[..8].try_into().expect("eight bytes"))
}

/// An operation of a `map_op.h` program (`programs/src/bpf/map_op.h`).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Update = 1,
    Delete = 2,
    Lookup = 3,
}

/// Runs the `map_op.h` program `prog` once for `op` on `key` (an update stores `value` with
/// `flags`) and names the helper's answer ([`answer`]); a lookup's value is in the program's
/// `looked_up`.
pub fn program_op(
    prog: &libbpf_rs::ProgramMut<'_>,
    op: Op,
    key: u32,
    value: u64,
    flags: u64,
) -> CaseResult<String> {
    program_op_on(prog, None, op, key, value, flags)
}

/// [`program_op`] on `cpu` (`None`: the calling thread's).
pub fn program_op_on(
    prog: &libbpf_rs::ProgramMut<'_>,
    cpu: Option<u32>,
    op: Op,
    key: u32,
    value: u64,
    flags: u64,
) -> CaseResult<String> {
    let retval = crate::test_run::raw_tp(prog, &[op as u64, key.into(), value, flags], cpu)?;
    Ok(answer(retval))
}

/// Every key of the map, in `BPF_MAP_GET_NEXT_KEY` order from the first; the walk must end with
/// `ENOENT`.
pub fn walk(map: &impl MapCore) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut at = next_key(map, None);
    while let Ok(key) = at {
        at = next_key(map, Some(&key));
        keys.push(key);
    }
    assert_eq!(at, Err("ENOENT".to_owned()), "the key walk's end");
    keys
}

/// A map's values mapped into the process (`mmap` of its fd, `MAP_SHARED`, one page), unmapped
/// when dropped.
pub struct Mapping {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl Mapping {
    /// The `index`-th `u64` of the mapping.
    pub fn read(&self, index: usize) -> u64 {
        assert!(
            (index + 1) * 8 <= self.len,
            "word {index} of a {}-byte mapping",
            self.len
        );
        // SAFETY: in bounds (checked) of a live mapping; volatile, as the kernel writes it too.
        unsafe { self.ptr.cast::<u64>().add(index).read_volatile() }
    }

    /// Stores `value` as the `index`-th `u64` of a writable mapping.
    pub fn write(&self, index: usize, value: u64) {
        assert!(
            (index + 1) * 8 <= self.len,
            "word {index} of a {}-byte mapping",
            self.len
        );
        // SAFETY: in bounds (checked) of a live mapping the caller made writable.
        unsafe { self.ptr.cast::<u64>().add(index).write_volatile(value) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made and owns; nothing refers to it past this point.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, self.len) };
    }
}

/// Maps the first page of `map`'s values, read-write or read-only; the errno's name when the
/// kernel refuses.
pub fn mmap(map: &impl MapCore, writable: bool) -> Result<Mapping, String> {
    use nix::sys::mman::{MapFlags, ProtFlags};
    let len = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    let prot = if writable {
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
    } else {
        ProtFlags::PROT_READ
    };
    let length = std::num::NonZeroUsize::new(len).expect("a page is not empty");
    // SAFETY: a new shared mapping of the map's fd at an address the kernel picks; it aliases no
    // Rust object and is only touched through `Mapping`.
    let ptr =
        unsafe { nix::sys::mman::mmap(None, length, prot, MapFlags::MAP_SHARED, map.as_fd(), 0) }
            .map_err(|e| name(e as i32))?;
    let mapping = Mapping { ptr, len };
    // A child another test forks meanwhile would inherit the mapping, and the map would count it
    // writable until that child exits (BPF_MAP_FREEZE answers EBUSY): children never get it. A
    // kernel built without madvise (CONFIG_ADVISE_SYSCALLS off: ENOSYS) keeps the default.
    // SAFETY: the whole of the mapping just made, which nothing else uses yet.
    match unsafe { nix::sys::mman::madvise(ptr, len, nix::sys::mman::MmapAdvise::MADV_DONTFORK) } {
        Ok(()) | Err(nix::errno::Errno::ENOSYS) => Ok(mapping),
        Err(e) => Err(name(e as i32)),
    }
}
