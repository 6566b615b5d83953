//! A program from raw instructions and the calls on a loaded program's fd, as plain syscalls
//! (libbpf's `bpf_prog_load`, `bpf_obj_get_info_by_fd`, `bpf_prog_test_run_opts`) behind safe
//! signatures: [`load`] (`BPF_PROG_LOAD` with a log buffer of the caller's), [`info`], [`xlated`]
//! (what the verifier made of the program) and [`test_run`].
//!
//! None of them allocates, except [`xlated`]: a forked child of a threaded process may call them
//! (`testkit`'s unprivileged loads).

use std::ffi::{CStr, c_char};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use libbpf_rs::libbpf_sys as sys;
use nix::errno::Errno;

use crate::insn::Insn;

/// The BTF records that describe a program (`prog_btf_fd` and its func and line info).
#[derive(Clone, Copy, Debug)]
pub struct Btf<'a> {
    /// The BTF object the records point into.
    pub fd: BorrowedFd<'a>,
    /// One record per function (`insn_off`, `type_id`).
    pub func_info: &'a [sys::bpf_func_info],
    /// Source line records, when the caller has them (their record size is passed only then).
    pub line_info: Option<&'a [sys::bpf_line_info]>,
}

/// What one `BPF_PROG_LOAD` asks for: the attributes `bpf_prog_load_opts` carries.
#[derive(Clone, Copy, Debug)]
pub struct Load<'a> {
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// The program's name (libbpf checks once that the kernel takes names); `None`: no name.
    pub name: Option<&'a CStr>,
    /// The license GPL-only helpers are checked against.
    pub license: &'a CStr,
    /// The instructions.
    pub insns: &'a [sys::bpf_insn],
    /// `expected_attach_type`.
    pub expected_attach_type: u32,
    /// `prog_flags` (`BPF_F_SLEEPABLE`, the test flags, …).
    pub flags: u32,
    /// The BTF id of a tracing or LSM program's target.
    pub attach_btf_id: u32,
    /// `kern_version` (kprobes of old kernels).
    pub kern_version: u32,
    /// The program's BTF and its records.
    pub btf: Option<Btf<'a>>,
    /// Maps and BTF objects the instructions refer to by index (`fd_array`).
    pub fd_array: &'a [RawFd],
    /// The verifier's `log_level` bits.
    pub log_level: u32,
}

impl<'a> Load<'a> {
    /// A load of `insns` as `prog_type` under `license`, with nothing else set.
    pub fn new(prog_type: u32, license: &'a CStr, insns: &'a [sys::bpf_insn]) -> Self {
        Load {
            prog_type,
            name: None,
            license,
            insns,
            expected_attach_type: 0,
            flags: 0,
            attach_btf_id: 0,
            kern_version: 0,
            btf: None,
            fd_array: &[],
            log_level: 0,
        }
    }
}

/// What the kernel answered to a [`load`].
#[derive(Debug)]
pub struct Loaded {
    /// The program, or the load's errno.
    pub fd: Result<OwnedFd, Errno>,
    /// The log size the kernel needed (6.4+; 0 before).
    pub log_true_size: u32,
}

/// `BPF_PROG_LOAD` of `req` with `log` as the verifier's log buffer (none when empty). libbpf
/// retries a refusal at log level 1 when level 0 was asked for with a buffer, as it always does.
pub fn load(req: &Load<'_>, log: &mut [u8]) -> Loaded {
    let (func_info, func_info_cnt, func_info_rec_size) = match &req.btf {
        Some(btf) => (
            ptr_or_null(btf.func_info),
            btf.func_info.len() as u32,
            size_of::<sys::bpf_func_info>() as u32,
        ),
        None => (std::ptr::null(), 0, 0),
    };
    let (line_info, line_info_cnt, line_info_rec_size) = match req.btf.and_then(|b| b.line_info) {
        Some(lines) => (
            ptr_or_null(lines),
            lines.len() as u32,
            size_of::<sys::bpf_line_info>() as u32,
        ),
        None => (std::ptr::null(), 0, 0),
    };
    let mut opts = sys::bpf_prog_load_opts {
        sz: size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: req.expected_attach_type,
        prog_flags: req.flags,
        attach_btf_id: req.attach_btf_id,
        kern_version: req.kern_version,
        prog_btf_fd: req.btf.map_or(0, |b| b.fd.as_raw_fd() as u32),
        func_info: func_info.cast(),
        func_info_cnt,
        func_info_rec_size,
        line_info: line_info.cast(),
        line_info_cnt,
        line_info_rec_size,
        fd_array: ptr_or_null(req.fd_array),
        fd_array_cnt: req.fd_array.len() as u32,
        log_level: req.log_level,
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            std::ptr::null_mut()
        } else {
            log.as_mut_ptr().cast::<c_char>()
        },
        ..Default::default()
    };
    // SAFETY: every pointer in the call and in `opts` (name, license, instructions, BTF records,
    // fd array, log buffer) comes from a reference that outlives the call, with its length beside
    // it; the kernel writes at most `log_size` bytes into the log.
    let ret = unsafe {
        sys::bpf_prog_load(
            req.prog_type,
            req.name.map_or(std::ptr::null(), CStr::as_ptr),
            req.license.as_ptr(),
            req.insns.as_ptr(),
            req.insns.len() as _,
            &mut opts,
        )
    };
    Loaded {
        fd: if ret >= 0 {
            // SAFETY: a non-negative return is a new fd that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(ret) })
        } else {
            Err(Errno::from_raw(-ret))
        },
        log_true_size: opts.log_true_size,
    }
}

/// The kernel's `bpf_prog_info` of the program behind `fd` (ids, sizes, counts of func and line
/// info records, GPL compatibility, …; no arrays are fetched).
pub fn info(fd: BorrowedFd<'_>) -> io::Result<sys::bpf_prog_info> {
    let mut info = sys::bpf_prog_info::default();
    info_into(fd, &mut info).map_err(io::Error::from)?;
    Ok(info)
}

/// `BPF_OBJ_GET_INFO_BY_FD` into `info`, whose array pointers are null or point at buffers of
/// the lengths beside them (only this module sets them).
fn info_into(fd: BorrowedFd<'_>, info: &mut sys::bpf_prog_info) -> Result<(), Errno> {
    let mut len = size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes; the kernel fills it in and writes into
    // its arrays at most the lengths set beside them (see the callers).
    let ret =
        unsafe { sys::bpf_obj_get_info_by_fd(fd.as_raw_fd(), (&raw mut *info).cast(), &mut len) };
    if ret < 0 {
        return Err(Errno::from_raw(-ret));
    }
    Ok(())
}

/// The translated instructions of the program behind `fd` (`xlated_prog_insns`): what the
/// verifier made of it, before the JIT. Empty when the kernel hides them.
pub fn xlated(fd: BorrowedFd<'_>) -> io::Result<Vec<Insn>> {
    let count = info(fd)?.xlated_prog_len as usize / size_of::<sys::bpf_insn>();
    let mut buf = vec![sys::bpf_insn::default(); count];
    let got = xlated_into(fd, &mut buf)?;
    Ok(buf[..got].iter().map(Insn::from_bpf).collect())
}

/// Fetches up to `buf.len()` translated instructions of `fd` into `buf`: their count, or the
/// errno (`E2BIG` when they do not fit).
pub fn xlated_into(fd: BorrowedFd<'_>, buf: &mut [sys::bpf_insn]) -> Result<usize, Errno> {
    let bytes = size_of_val(buf);
    let mut info = sys::bpf_prog_info {
        xlated_prog_len: bytes as u32,
        xlated_prog_insns: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    // The kernel writes at most `xlated_prog_len` bytes, which `buf` holds.
    info_into(fd, &mut info)?;
    if info.xlated_prog_len as usize > bytes {
        return Err(Errno::E2BIG);
    }
    Ok(info.xlated_prog_len as usize / size_of::<sys::bpf_insn>())
}

/// What one `BPF_PROG_TEST_RUN` hands the program (`None`: the attribute is not passed).
#[derive(Debug, Default)]
pub struct TestRun<'a> {
    /// The packet (or other input data).
    pub data_in: Option<&'a [u8]>,
    /// Room for the packet the program leaves.
    pub data_out: Option<&'a mut [u8]>,
    /// The context.
    pub ctx_in: Option<&'a [u8]>,
    /// How many times to run (0 counts as 1 for the types that repeat; a `syscall` program takes
    /// only 0).
    pub repeat: u32,
    /// `BPF_F_TEST_RUN_ON_CPU`, …
    pub flags: u32,
    /// The CPU of `BPF_F_TEST_RUN_ON_CPU`.
    pub cpu: u32,
}

/// What a test run handed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ran {
    /// The program's return value.
    pub retval: u32,
    /// Average ns per run, as the kernel measured it.
    pub duration: u32,
    /// Bytes written into `data_out`.
    pub data_size_out: u32,
}

/// Runs the program behind `fd` with `BPF_PROG_TEST_RUN` as `run` asks.
pub fn test_run(fd: BorrowedFd<'_>, run: TestRun<'_>) -> Result<Ran, Errno> {
    let (data_out, data_size_out) = match run.data_out {
        Some(out) => (out.as_mut_ptr(), out.len() as u32),
        None => (std::ptr::null_mut(), 0),
    };
    let mut opts = sys::bpf_test_run_opts {
        sz: size_of::<sys::bpf_test_run_opts>() as _,
        data_in: run.data_in.map_or(std::ptr::null(), <[u8]>::as_ptr).cast(),
        data_size_in: run.data_in.map_or(0, |d| d.len() as u32),
        data_out: data_out.cast(),
        data_size_out,
        ctx_in: run.ctx_in.map_or(std::ptr::null(), <[u8]>::as_ptr).cast(),
        ctx_size_in: run.ctx_in.map_or(0, |c| c.len() as u32),
        repeat: run.repeat as i32,
        flags: run.flags,
        cpu: run.cpu,
        ..Default::default()
    };
    // SAFETY: every buffer in `opts` comes from a reference alive for the call, with its length
    // beside it; the kernel writes at most `data_size_out` bytes into `data_out`.
    let ret = unsafe { sys::bpf_prog_test_run_opts(fd.as_raw_fd(), &mut opts) };
    if ret < 0 {
        return Err(Errno::from_raw(-ret));
    }
    Ok(Ran {
        retval: opts.retval,
        duration: opts.duration,
        data_size_out: opts.data_size_out,
    })
}

/// The slice's pointer, or null for an empty one (as C callers pass "none").
fn ptr_or_null<T>(items: &[T]) -> *const T {
    if items.is_empty() {
        std::ptr::null()
    } else {
        items.as_ptr()
    }
}
