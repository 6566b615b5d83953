//! The tracing_multi links of Linux 7.2 (BPF_TRACE_FENTRY_MULTI, BPF_TRACE_FEXIT_MULTI,
//! BPF_TRACE_FSESSION_MULTI): one BPF_LINK_CREATE puts a tracing program, loaded without an
//! attach target, on many kernel functions named by their BTF ids, each with a cookie.
//!
//! libbpf 1.7 (libbpf-sys 1.7, libbpf-rs 0.27) knows neither the attach types nor the link: it
//! finds no section for `fentry.multi` (the program's type and expected attach type are set
//! here before load) and its `bpf_link_create` passes no ids for an attach type it does not know.
//! So [`link`] makes the bpf(2) call itself, with the kernel's `link_create.tracing_multi`
//! attributes (libbpf 1.8 has `bpf_program__attach_tracing_multi`).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::btf::types::Func;
use libbpf_rs::{AsRawLibbpf, Btf, OpenProgramMut, ProgramType, libbpf_sys};
use nix::errno::Errno;

use crate::outcome::{CaseError, CaseResult, OrError};

/// `enum bpf_attach_type` values of Linux 7.2 (`include/uapi/linux/bpf.h`).
pub const FENTRY_MULTI: u32 = 59;
pub const FEXIT_MULTI: u32 = 60;
pub const FSESSION_MULTI: u32 = 61;

/// The `link_create` part of `union bpf_attr` for a tracing_multi link.
#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    /// `link_create.tracing_multi`: pointers to `cnt` BTF ids and `cnt` cookies.
    ids: u64,
    cookies: u64,
    cnt: u32,
    _pad: u32,
}

/// Makes `prog` a tracing program of `attach_type`, before load.
pub fn prepare(prog: &mut OpenProgramMut<'_>, attach_type: u32) -> CaseResult {
    prog.set_prog_type(ProgramType::Tracing);
    // SAFETY: an open (not yet loaded) program; libbpf only records the value.
    let rc = unsafe {
        libbpf_sys::bpf_program__set_expected_attach_type(
            prog.as_libbpf_object().as_ptr(),
            attach_type,
        )
    };
    Errno::result(rc).or_error("setting the expected attach type")?;
    Ok(())
}

/// The BTF ids of the kernel functions `names` (vmlinux BTF).
pub fn func_ids(names: &[&str]) -> CaseResult<Vec<u32>> {
    let btf = Btf::from_vmlinux().or_error("reading the kernel's BTF")?;
    names
        .iter()
        .map(|name| {
            btf.type_by_name::<Func<'_>>(name)
                .map(|f| u32::from(f.type_id()))
                .ok_or_else(|| {
                    CaseError::Error(anyhow::anyhow!("no function {name} in the kernel's BTF"))
                })
        })
        .collect()
}

/// BPF_LINK_CREATE of a tracing_multi link of `prog` over the functions `ids`, function i with
/// `cookies[i]`.
pub fn link(
    prog: BorrowedFd<'_>,
    attach_type: u32,
    ids: &[u32],
    cookies: &[u64],
) -> Result<OwnedFd, Errno> {
    assert_eq!(ids.len(), cookies.len(), "one cookie per function");
    let attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: 0,
        attach_type,
        flags: 0,
        ids: ids.as_ptr() as u64,
        cookies: cookies.as_ptr() as u64,
        cnt: ids.len() as u32,
        _pad: 0,
    };
    // SAFETY: `attr` is the leading part of a union bpf_attr for BPF_LINK_CREATE, of the size
    // passed (the kernel zero-fills the rest); `ids` and `cookies` hold `cnt` entries and outlive
    // the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libbpf_sys::BPF_LINK_CREATE,
            &attr as *const LinkCreate,
            size_of::<LinkCreate>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this link fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
