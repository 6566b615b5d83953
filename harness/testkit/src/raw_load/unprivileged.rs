//! A raw load by an unprivileged user: a forked child drops to `nobody` and loads; what it got
//! comes back through shared memory and its result pipe (`testkit::child`).

use std::io;
use std::os::fd::AsFd;

use libbpf_rs::libbpf_sys;
use loader::prog;
use nix::errno::Errno;
use nix::unistd::{Uid, setresuid};

use super::{RawLoad, RawProgram, retry, text_of};
use crate::errno;
use crate::insn::{Insn, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};
use crate::outcome::{CaseError, CaseResult, OrError};

/// The uid of the unprivileged loads (`nobody`).
const NOBODY: Uid = Uid::from_raw(65534);
/// The most translated instructions an unprivileged load hands back.
const XLATED_MAX: usize = 64 * 1024;

/// What the unprivileged child did: plain data through its result pipe.
#[derive(Clone, Copy)]
struct ChildLoad {
    /// A step that failed (the harness's failure, not the kernel's verdict) and its errno.
    failed: Option<(&'static str, Errno)>,
    /// The load's errno; `None`: it loaded.
    refused: Option<Errno>,
    log_true_size: u32,
    /// The test run: return value or errno.
    ran: Option<Result<u32, Errno>>,
    /// How many translated instructions are in the shared buffer, or the errno.
    xlated: Result<usize, Errno>,
}

impl RawProgram {
    /// Loads the program as an unprivileged user: a forked child sets its real and effective
    /// uid to 65534 (nobody), which clears its effective capabilities, and loads; it keeps root
    /// as its saved uid only to test-run the accepted program and fetch its translated
    /// instructions afterwards. The log comes back through shared memory; `ENOSPC` forks again
    /// with a larger buffer. Whether `kernel.unprivileged_bpf_disabled` lets it is the caller's
    /// check. A child that cannot do its part is the harness's `error`.
    pub fn load_unprivileged(&self) -> CaseResult<RawLoad> {
        if !self.functions.is_empty() {
            return Err(CaseError::Error(anyhow::anyhow!(
                "{}: function names (BTF) are for privileged loads only",
                self.name
            )));
        }
        // The child closes every inherited fd: it reopens the instructions' maps by id.
        let maps = self
            .insns
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                Insn::from_bpf(i).is_ld_imm64()
                    && [PSEUDO_MAP_FD, PSEUDO_MAP_VALUE].contains(&i.src_reg())
            })
            .map(|(slot, i)| Ok((slot, map_id(i.imm).or_error("reading a map's id")?)))
            .collect::<CaseResult<Vec<(usize, u32)>>>()?;
        let (name, license) = self.c_strings();
        let mut size = self.log_size;
        let mut attempts = Vec::new();
        loop {
            let log = Shared::<u8>::new(size)?;
            let xlated = Shared::<libbpf_sys::bpf_insn>::new(XLATED_MAX)?;
            let mut insns = self.insns.clone();
            let got = crate::child::Child::default().run(|| {
                for &(slot, id) in &maps {
                    // SAFETY: a plain syscall wrapper.
                    let fd = unsafe { libbpf_sys::bpf_map_get_fd_by_id(id) };
                    if fd < 0 {
                        return ChildLoad::failed("reopening a map by id", Errno::from_raw(-fd));
                    }
                    insns[slot].imm = fd;
                }
                self.unprivileged_child(
                    self.request(&name, &license, &insns),
                    log.slice_mut(),
                    xlated.slice_mut(),
                )
            })?;
            if let Some((step, errno)) = got.failed {
                return Err(CaseError::Error(anyhow::anyhow!(
                    "the unprivileged child failed {step}: {}",
                    errno::name(errno as i32)
                )));
            }
            if let Some(larger) = retry(&mut attempts, size, got.refused, got.log_true_size) {
                size = larger;
                continue;
            }
            let errno = got.refused.map(|e| errno::name(e as i32));
            let loaded = got.refused.is_none();
            let mut load = self.outcome(text_of(log.slice()), errno, loaded, None, attempts);
            load.unprivileged = true;
            if loaded {
                load.ran = got.ran.map(|r| r.map_err(io::Error::from));
                load.xlated = Some(match got.xlated {
                    Ok(count) => Ok(xlated.slice()[..count].iter().map(Insn::from_bpf).collect()),
                    Err(e) => Err(io::Error::from(e)),
                });
            }
            return Ok(load);
        }
    }

    /// The child's part of [`RawProgram::load_unprivileged`]: plain syscalls on memory that was
    /// allocated before the fork (see `testkit::child`).
    fn unprivileged_child(
        &self,
        req: prog::Load<'_>,
        log: &mut [u8],
        xlated: &mut [libbpf_sys::bpf_insn],
    ) -> ChildLoad {
        // The saved uid stays 0 so that root can come back after the load.
        if let Err(e) = setresuid(NOBODY, NOBODY, Uid::from_raw(0)) {
            return ChildLoad::failed("setting its uids to nobody", e);
        }
        let loaded = prog::load(&req, log);
        let mut got = ChildLoad {
            failed: None,
            refused: loaded.fd.as_ref().err().copied(),
            log_true_size: loaded.log_true_size,
            ran: None,
            xlated: Ok(0),
        };
        let Ok(fd) = loaded.fd else {
            return got;
        };
        // An effective uid of 0 gives the permitted capabilities back; the others stay.
        let unchanged = Uid::from_raw(u32::MAX);
        if let Err(e) = setresuid(unchanged, Uid::from_raw(0), unchanged) {
            got.failed = Some(("taking root back after the load", e));
            return got;
        }
        got.ran = self.test_input.as_deref().map(|data| {
            let run = prog::TestRun {
                data_in: Some(data),
                repeat: 1,
                ..Default::default()
            };
            prog::test_run(fd.as_fd(), run).map(|r| r.retval)
        });
        got.xlated = prog::xlated_into(fd.as_fd(), xlated);
        got
    }
}

impl ChildLoad {
    fn failed(step: &'static str, errno: Errno) -> Self {
        ChildLoad {
            failed: Some((step, errno)),
            refused: None,
            log_true_size: 0,
            ran: None,
            xlated: Ok(0),
        }
    }
}

/// Anonymous shared memory holding `len` values of `T` (integers only: the mapping starts
/// zero-filled): what a forked child writes there, its parent reads.
struct Shared<T> {
    ptr: *mut T,
    len: usize,
}

impl<T: Copy> Shared<T> {
    fn new(len: usize) -> CaseResult<Self> {
        // SAFETY: a fresh anonymous mapping, unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * size_of::<T>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).or_error("mapping shared memory for a child");
        }
        Ok(Shared {
            ptr: ptr.cast(),
            len,
        })
    }

    fn slice(&self) -> &[T] {
        // SAFETY: the mapping is page-aligned, holds `len` zero-filled integers at creation, and
        // lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    #[allow(clippy::mut_from_ref)]
    fn slice_mut(&self) -> &mut [T] {
        // SAFETY: as above; the only writer is the forked child, in its own copy of this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in new.
        unsafe { libc::munmap(self.ptr.cast(), self.len * size_of::<T>()) };
    }
}

/// The id of the map behind `fd`.
fn map_id(fd: i32) -> io::Result<u32> {
    let mut info = libbpf_sys::bpf_map_info::default();
    let mut len = size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: info is a valid bpf_map_info of len bytes.
    let ret = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd, &mut info, &mut len) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(info.id)
}
