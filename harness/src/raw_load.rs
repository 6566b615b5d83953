//! Loading raw instruction lists ([`crate::insn::Asm`], or a loaded object's instructions) with
//! `bpf_prog_load` and a log buffer of the harness's own, at a chosen log level.
//!
//! The kernel answers `ENOSPC` when the verifier's log does not fit the buffer (whatever the
//! verdict); the loader then grows the buffer and tries again, and counts the retries. The result is
//! the same [`LoadOutcome`] that skeleton loads produce, plus the program's fd.
//!
//! [`Case::load_raw`] records the outcome in the case's record and snapshots the **whole** log per
//! kernel: these logs do not depend on the compiler, so only what changes run to run (the
//! verification time, map ids) is redacted. [`Case::load_raw_unprivileged`] does the same for a
//! load by an unprivileged user (a forked child without capabilities), and
//! [`Case::snapshot_xlated`] snapshots what the kernel made of an accepted program (its
//! translated instructions).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, c_char};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::LazyLock;

use libbpf_rs::libbpf_sys;
use libbpf_rs::{ProgramAttachType, ProgramType};
use regex::Regex;
use serde::Serialize;

use crate::case::{Case, prog_type_name};
use crate::insn::{Insn, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};
use crate::load::{LoadOutcome, LogLevel, ProgramLog, VerifierStats, key_line, parse_stats};
use crate::outcome::{CaseError, CaseResult, OrError};
use crate::{child, errno};

/// The largest log buffer the kernel accepts (`UINT_MAX >> 2`).
pub const MAX_LOG_SIZE: usize = (u32::MAX >> 2) as usize;
/// The smallest log buffer older kernels accept.
pub const MIN_LOG_SIZE: usize = 128;

/// A program to load from raw instructions.
#[derive(Clone, Debug)]
pub struct RawProgram {
    name: String,
    prog_type: ProgramType,
    insns: Vec<libbpf_sys::bpf_insn>,
    license: String,
    attach: Option<ProgramAttachType>,
    level: LogLevel,
    log_size: usize,
    log_in_snapshot: bool,
    test_input: Option<Vec<u8>>,
    functions: Vec<(u32, String)>,
}

impl RawProgram {
    /// A program named `name` (the kernel is given its first 15 letters, digits, `_` and `.`) of
    /// type `prog_type`; license "GPL", log level [`LogLevel::Verbose`], a 64 KiB log buffer to start.
    pub fn new(
        name: &str,
        prog_type: ProgramType,
        insns: impl Into<Vec<libbpf_sys::bpf_insn>>,
    ) -> Self {
        RawProgram {
            name: name.to_owned(),
            prog_type,
            insns: insns.into(),
            license: "GPL".to_owned(),
            attach: None,
            level: LogLevel::Verbose,
            log_size: 64 * 1024,
            log_in_snapshot: true,
            test_input: None,
            functions: Vec::new(),
        }
    }

    /// Names the program's functions for the kernel (BTF `func_info`: first slot and name, the
    /// main function at slot 0 first): a program whose callback is an `ld_func` needs it.
    /// Privileged loads only.
    pub fn functions(mut self, functions: &[(u32, &str)]) -> Self {
        self.functions = functions
            .iter()
            .map(|&(slot, name)| (slot, name.to_owned()))
            .collect();
        self
    }

    /// The attach type the program is verified for (`expected_attach_type`): some types check
    /// their context and return value against it.
    pub fn expected_attach_type(mut self, attach: ProgramAttachType) -> Self {
        self.attach = Some(attach);
        self
    }

    /// Runs the accepted program once with `BPF_PROG_TEST_RUN` on `data` as part of the load
    /// ([`RawLoad::ran`]): an unprivileged load's program lives only in its child.
    pub fn test_input(mut self, data: &[u8]) -> Self {
        self.test_input = Some(data.to_owned());
        self
    }

    /// The license string the kernel checks GPL-only helpers against.
    pub fn license(mut self, license: &str) -> Self {
        self.license = license.to_owned();
        self
    }

    /// The verifier log level.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.level = level;
        self
    }

    /// The first log buffer's size in bytes (at least [`MIN_LOG_SIZE`]); grown on `ENOSPC`.
    pub fn log_size(mut self, bytes: usize) -> Self {
        self.log_size = bytes.clamp(MIN_LOG_SIZE, MAX_LOG_SIZE);
        self
    }

    /// Whether [`Case::load_raw`] snapshots the whole log (the default) or only the verifier's
    /// statistics: instructions a compiler produced (a loaded object's) give logs that change with
    /// the compiler, like any C sample's.
    pub fn log_in_snapshot(mut self, whole_log: bool) -> Self {
        self.log_in_snapshot = whole_log;
        self
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads the program; on `ENOSPC` grows the log buffer (to the size the kernel reports it
    /// needed, 6.4+, or double) and retries until the log fits. An accepted program is test-run
    /// when [`RawProgram::test_input`] was given, and its translated instructions are fetched.
    pub fn load(&self) -> RawLoad {
        let (name, license) = self.c_strings();
        let btf = (!self.functions.is_empty()).then(|| {
            FuncBtf::load(&self.functions).unwrap_or_else(|e| {
                panic!("loading the BTF that names {}'s functions: {e}", self.name)
            })
        });
        let mut size = self.log_size;
        let mut attempts = Vec::new();
        loop {
            let mut buf = vec![0u8; size];
            let (ret, true_size) =
                self.prog_load((&name, &license), btf.as_ref(), &self.insns, &mut buf);
            let errno = (ret < 0).then(|| errno::name(ret));
            attempts.push(Attempt {
                log_size: size,
                errno: errno.clone(),
            });
            if errno.as_deref() == Some("ENOSPC") && size < MAX_LOG_SIZE {
                size = grown(size, true_size);
                continue;
            }
            // SAFETY: a non-negative return is a new fd that nothing else owns.
            let fd = (ret >= 0).then(|| unsafe { OwnedFd::from_raw_fd(ret) });
            let mut load = self.outcome(text_of(&buf), errno, ret >= 0, fd, attempts);
            if let Some(fd) = &load.fd {
                load.ran = self
                    .test_input
                    .as_deref()
                    .map(|data| test_run(fd.as_fd(), data));
                load.xlated = Some(xlated(fd.as_fd()));
            }
            return load;
        }
    }

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
            let log = Shared::new(size)?;
            let xlated = Shared::new(XLATED_MAX * size_of::<libbpf_sys::bpf_insn>())?;
            let mut insns = self.insns.clone();
            let got = child::Child::default().run(|| {
                self.unprivileged_child(
                    (&name, &license),
                    &mut insns,
                    &maps,
                    log.bytes_mut(),
                    xlated.bytes_mut(),
                )
            })?;
            if let Some((step, errno)) = got.failed {
                return Err(CaseError::Error(anyhow::anyhow!(
                    "the unprivileged child failed {step}: {}",
                    errno::name(errno)
                )));
            }
            let errno = (got.ret < 0).then(|| errno::name(got.ret));
            attempts.push(Attempt {
                log_size: size,
                errno: errno.clone(),
            });
            if errno.as_deref() == Some("ENOSPC") && size < MAX_LOG_SIZE {
                size = grown(size, got.log_true_size);
                continue;
            }
            let mut load = self.outcome(text_of(log.bytes()), errno, got.ret >= 0, None, attempts);
            load.unprivileged = true;
            if got.ret >= 0 {
                load.ran = got.ran.map(|r| r.map_err(io::Error::from_raw_os_error));
                load.xlated = Some(match got.xlated {
                    Ok(count) => Ok(xlated.bytes()[..count * size_of::<libbpf_sys::bpf_insn>()]
                        .chunks_exact(size_of::<libbpf_sys::bpf_insn>())
                        .map(insn_of_bytes)
                        .collect()),
                    Err(e) => Err(io::Error::from_raw_os_error(e)),
                });
            }
            return Ok(load);
        }
    }

    /// The program's name as the kernel takes it, and its license.
    fn c_strings(&self) -> (CString, CString) {
        (
            CString::new(kernel_name(&self.name)).unwrap_or_default(),
            CString::new(self.license.as_str()).unwrap_or_default(),
        )
    }

    /// One `bpf_prog_load` of `insns` with `log` as the log buffer: the fd or `-errno`, and the
    /// log size the kernel needed (6.4+; 0 before).
    fn prog_load(
        &self,
        (name, license): (&CStr, &CStr),
        btf: Option<&FuncBtf>,
        insns: &[libbpf_sys::bpf_insn],
        log: &mut [u8],
    ) -> (i32, u32) {
        let mut opts = libbpf_sys::bpf_prog_load_opts {
            sz: size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
            prog_btf_fd: btf.map_or(0, |b| b.fd.as_raw_fd() as u32),
            func_info: btf.map_or(std::ptr::null(), |b| b.func_info.as_ptr().cast()),
            func_info_cnt: btf.map_or(0, |b| b.func_info.len() as u32),
            func_info_rec_size: btf.map_or(0, |_| size_of::<libbpf_sys::bpf_func_info>() as u32),
            expected_attach_type: self.attach.clone().map_or(0, |a| a as u32),
            log_level: self.level as u32,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr().cast::<c_char>(),
            ..Default::default()
        };
        // SAFETY: every pointer outlives the call; insns holds insn_cnt instructions.
        let ret = unsafe {
            libbpf_sys::bpf_prog_load(
                self.prog_type as u32,
                name.as_ptr(),
                license.as_ptr(),
                insns.as_ptr(),
                insns.len() as _,
                &mut opts,
            )
        };
        (ret, opts.log_true_size)
    }

    /// The child's part of [`RawProgram::load_unprivileged`]: plain syscalls on memory that was
    /// allocated before the fork (see `harness::child`).
    fn unprivileged_child(
        &self,
        names: (&CStr, &CStr),
        insns: &mut [libbpf_sys::bpf_insn],
        maps: &[(usize, u32)],
        log: &mut [u8],
        xlated_buf: &mut [u8],
    ) -> ChildLoad {
        let mut got = ChildLoad {
            failed: None,
            ret: 0,
            log_true_size: 0,
            ran: None,
            xlated: Ok(0),
        };
        for &(slot, id) in maps {
            // SAFETY: a plain syscall wrapper.
            let fd = unsafe { libbpf_sys::bpf_map_get_fd_by_id(id) };
            if fd < 0 {
                got.failed = Some(("reopening a map by id", fd));
                return got;
            }
            insns[slot].imm = fd;
        }
        // SAFETY: plain syscalls; the saved uid stays 0 so that root can come back after the load.
        if unsafe { libc::setresuid(NOBODY, NOBODY, 0) } != 0 {
            got.failed = Some(("setting its uids to nobody", -errno()));
            return got;
        }
        let (ret, true_size) = self.prog_load(names, None, insns, log);
        got.ret = ret;
        got.log_true_size = true_size;
        if ret < 0 {
            return got;
        }
        // SAFETY: as above; an effective uid of 0 gives the permitted capabilities back.
        if unsafe { libc::setresuid(u32::MAX, 0, u32::MAX) } != 0 {
            got.failed = Some(("taking root back after the load", -errno()));
            return got;
        }
        // SAFETY: ret is the program fd this child owns.
        let fd = unsafe { BorrowedFd::borrow_raw(ret) };
        got.ran = self
            .test_input
            .as_deref()
            .map(|data| test_run(fd, data).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)));
        got.xlated = xlated_into(fd, xlated_buf);
        got
    }

    fn outcome(
        &self,
        log: String,
        errno: Option<String>,
        loaded: bool,
        fd: Option<OwnedFd>,
        attempts: Vec<Attempt>,
    ) -> RawLoad {
        let message = (!loaded).then(|| {
            key_line(&log).unwrap_or_else(|| {
                format!(
                    "refused with {} and an empty verifier log (the kernel stopped before the verifier \
                     ran: an attribute or instruction it does not know)",
                    errno.as_deref().unwrap_or("an error")
                )
            })
        });
        let outcome = LoadOutcome {
            object: self.name.clone(),
            loaded,
            errno,
            failed_program: (!loaded).then(|| self.name.clone()),
            message,
            programs: BTreeMap::from([(
                self.name.clone(),
                ProgramLog {
                    stats: parse_stats(&log),
                    log,
                    size: fd
                        .as_ref()
                        .and_then(|fd| crate::load::prog_size(fd.as_fd())),
                },
            )]),
        };
        RawLoad {
            log_in_snapshot: self.log_in_snapshot,
            prog_type: prog_type_name(self.prog_type),
            attach: self.attach.clone().map(|a| attach_type_name(a as u32)),
            unprivileged: false,
            license: self.license.clone(),
            log_level: self.level as u32,
            log_retries: attempts.len() as u32 - 1,
            attempts,
            outcome,
            fd,
            ran: None,
            xlated: None,
        }
    }
}

/// A BTF object that names a program's functions, and the `func_info` records that point at it.
struct FuncBtf {
    fd: OwnedFd,
    func_info: Vec<libbpf_sys::bpf_func_info>,
}

impl FuncBtf {
    /// Type 1 is `int`, type 2 `int (void)`, type 3 + i function i (static linkage).
    fn load(functions: &[(u32, String)]) -> io::Result<Self> {
        const KIND_INT: u32 = 1;
        const KIND_FUNC: u32 = 12;
        const KIND_FUNC_PROTO: u32 = 13;
        let mut strings = b"\0int\0".to_vec();
        let mut types: Vec<u32> = vec![
            1,
            KIND_INT << 24,
            4,
            (1 << 24) | 32, // signed, 32 bits
            0,
            KIND_FUNC_PROTO << 24,
            1,
        ];
        for (_, name) in functions {
            types.extend([strings.len() as u32, KIND_FUNC << 24, 2]);
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        let types: Vec<u8> = types.iter().flat_map(|t| t.to_ne_bytes()).collect();
        let mut blob = Vec::new();
        blob.extend(0xeb9f_u16.to_ne_bytes());
        blob.extend([1u8, 0]); // version, flags
        for field in [
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend(field.to_ne_bytes()); // hdr_len, type_off, type_len, str_off, str_len
        }
        blob.extend(types);
        blob.extend(strings);
        // SAFETY: blob is a complete BTF object of blob.len() bytes.
        let fd = unsafe {
            libbpf_sys::bpf_btf_load(blob.as_ptr().cast(), blob.len() as _, std::ptr::null_mut())
        };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        Ok(FuncBtf {
            // SAFETY: a new fd that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            func_info: functions
                .iter()
                .enumerate()
                .map(|(i, &(slot, _))| libbpf_sys::bpf_func_info {
                    insn_off: slot,
                    type_id: 3 + i as u32,
                })
                .collect(),
        })
    }
}

/// The uid of the unprivileged loads (`nobody`).
const NOBODY: u32 = 65534;
/// The most translated instructions an unprivileged load hands back.
const XLATED_MAX: usize = 64 * 1024;

/// What the unprivileged child did: plain data through its result pipe.
#[derive(Clone, Copy)]
struct ChildLoad {
    /// A step that failed (the harness's failure, not the kernel's verdict) and its `-errno`.
    failed: Option<(&'static str, i32)>,
    /// `bpf_prog_load`'s return: the fd, or `-errno`.
    ret: i32,
    log_true_size: u32,
    /// The test run: return value or errno.
    ran: Option<Result<u32, i32>>,
    /// How many translated instructions are in the shared buffer, or the errno.
    xlated: Result<usize, i32>,
}

/// Anonymous shared memory: what a forked child writes there, its parent reads.
struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> CaseResult<Self> {
        // SAFETY: a fresh anonymous mapping, unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
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

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is len bytes, zero-filled at creation, and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    #[allow(clippy::mut_from_ref)]
    fn bytes_mut(&self) -> &mut [u8] {
        // SAFETY: as above; the only writer is the forked child, in its own copy of this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in new.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The next log buffer size after `ENOSPC`: what the kernel said it needed, or double.
fn grown(size: usize, true_size: u32) -> usize {
    (size * 2).max(true_size as usize + 1).min(MAX_LOG_SIZE)
}

/// The NUL-terminated text in a log buffer.
fn text_of(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())])
        .into_owned()
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

/// The kernel's name of an attach type (`cgroup_inet_ingress`, …).
fn attach_type_name(attach: u32) -> String {
    // SAFETY: libbpf returns a static string or NULL for an unknown type.
    let ptr = unsafe { libbpf_sys::libbpf_bpf_attach_type_str(attach) };
    if ptr.is_null() {
        return attach.to_string();
    }
    // SAFETY: non-NULL pointers from libbpf point at NUL-terminated static strings.
    unsafe { std::ffi::CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The name the kernel accepts: up to 15 characters out of letters, digits, `_` and `.`.
fn kernel_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(15)
        .collect()
}

/// One `bpf_prog_load` call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The log buffer's size.
    pub log_size: usize,
    /// The call's errno, symbolic; `None` when it loaded.
    pub errno: Option<String>,
}

/// What a raw load produced.
#[derive(Debug)]
pub struct RawLoad {
    /// Whether the snapshot holds the whole log ([`RawProgram::log_in_snapshot`]).
    pub log_in_snapshot: bool,
    /// The kernel's name of the program type (`socket_filter`, …).
    pub prog_type: String,
    /// The kernel's name of the expected attach type, when one was given.
    pub attach: Option<String>,
    /// Whether an unprivileged user loaded it ([`RawProgram::load_unprivileged`]).
    pub unprivileged: bool,
    /// The license string.
    pub license: String,
    /// The `log_level` bits asked for.
    pub log_level: u32,
    /// How many times the harness grew the log buffer and retried after `ENOSPC`.
    pub log_retries: u32,
    /// Every call, in order.
    pub attempts: Vec<Attempt>,
    /// Verdict, errno, key line and the whole log.
    pub outcome: LoadOutcome,
    /// The loaded program, when the kernel accepted it (and a privileged load holds it).
    pub fd: Option<OwnedFd>,
    /// The test run of the accepted program on [`RawProgram::test_input`]: its return value.
    pub ran: Option<io::Result<u32>>,
    /// The accepted program's translated instructions (`xlated_prog_insns`).
    pub xlated: Option<io::Result<Vec<Insn>>>,
}

impl RawLoad {
    /// The verifier log of the last attempt.
    pub fn log(&self) -> &str {
        self.outcome.log(&self.outcome.object)
    }

    /// The loaded program's fd; a `fail` when the kernel refused it (or it was loaded by an
    /// unprivileged child, which kept it).
    pub fn fd(&self) -> crate::CaseResult<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd).ok_or_else(|| {
            crate::CaseError::Fail(anyhow::anyhow!(
                "the kernel refused {}: {} ({})",
                self.outcome.object,
                self.outcome.message.clone().unwrap_or_default(),
                self.outcome.errno.clone().unwrap_or_default()
            ))
        })
    }
}

/// The snapshot of a raw load: the verdict and the whole log, redacted (or the statistics only).
#[derive(Serialize)]
struct RawSnapshot<'a> {
    program: &'a str,
    prog_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_attach_type: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unprivileged: bool,
    license: &'a str,
    /// `1+stats` (`log_level` 5), `2+stats` (6) or `stats` (4).
    log_level: String,
    loaded: bool,
    errno: Option<&'a str>,
    message: Option<&'a str>,
    attempts: Vec<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<&'a VerifierStats>,
    /// One entry per line, so a difference shows as the lines that changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Vec<String>>,
}

/// `log_level` bits as the kernel documents them: `1+stats`, `2+stats`, `stats`.
fn level_name(bits: u32) -> String {
    let mut parts = Vec::new();
    if bits & 1 != 0 {
        parts.push("1");
    }
    if bits & 2 != 0 {
        parts.push("2");
    }
    if bits & 4 != 0 {
        parts.push("stats");
    }
    parts.join("+")
}

/// The log with what changes from run to run replaced: the verification time, map ids, and kernel
/// addresses (a map's address is printed for `ld_imm64` of a map fd when the loader may see
/// pointers).
pub fn redact_log(log: &str) -> String {
    static TIME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"verification time \d+ usec").expect("valid regex"));
    static MAP_ID: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"map\[id:\d+\]").expect("valid regex"));
    static ADDRESS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"0xffff[0-9a-f]{12}\b").expect("valid regex"));
    let log = TIME.replace_all(log, "verification time [usec] usec");
    let log = MAP_ID.replace_all(&log, "map[id:[id]]");
    ADDRESS.replace_all(&log, "[addr]").into_owned()
}

impl Case {
    /// Loads a raw program, records the outcome in the case's record and snapshots its verdict and
    /// whole (redacted) log for the running kernel. A refusal is returned, not failed: the case
    /// asserts what it expects.
    pub fn load_raw(&mut self, program: &RawProgram) -> RawLoad {
        self.record_raw(program.load())
    }

    /// [`Case::load_raw`] by an unprivileged user ([`RawProgram::load_unprivileged`]).
    pub fn load_raw_unprivileged(&mut self, program: &RawProgram) -> CaseResult<RawLoad> {
        Ok(self.record_raw(program.load_unprivileged()?))
    }

    fn record_raw(&mut self, load: RawLoad) -> RawLoad {
        // Some messages lack their newline, so the log's timing line is glued to them.
        let message = load.outcome.message.as_deref().map(redact_log);
        let view = RawSnapshot {
            program: &load.outcome.object,
            prog_type: &load.prog_type,
            expected_attach_type: load.attach.as_deref(),
            unprivileged: load.unprivileged,
            license: &load.license,
            log_level: level_name(load.log_level),
            loaded: load.outcome.loaded,
            errno: load.outcome.errno.as_deref(),
            message: message.as_deref(),
            attempts: load.attempts.iter().map(|a| a.errno.as_deref()).collect(),
            stats: (!load.log_in_snapshot)
                .then(|| load.outcome.programs.values().next())
                .flatten()
                .and_then(|p| p.stats.as_ref()),
            log: load
                .log_in_snapshot
                .then(|| redact_log(load.log()).lines().map(str::to_owned).collect()),
        };
        let name = self.snapshot_name(&load.outcome.object);
        self.snapshot(&name, &view);
        self.detail(
            &format!("{}.log_retries", load.outcome.object),
            load.log_retries,
        );
        self.push_load(load.outcome.clone());
        load
    }

    /// Snapshots what the kernel made of an accepted raw program, its translated instructions
    /// (rendered by [`render_xlated`]), as `<file>__<case>__xlated` for the running kernel; a
    /// `fail` when the kernel would not hand them over.
    pub fn snapshot_xlated(&mut self, load: &RawLoad) -> CaseResult {
        let insns = match &load.xlated {
            Some(Ok(insns)) => insns,
            Some(Err(e)) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "BPF_OBJ_GET_INFO_BY_FD gave no translated instructions of {}: {e}",
                    load.outcome.object
                )));
            }
            None => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "the kernel refused {}: it has no translated instructions",
                    load.outcome.object
                )));
            }
        };
        #[derive(Serialize)]
        struct Xlated<'a> {
            program: &'a str,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            unprivileged: bool,
            insns: Vec<String>,
        }
        let view = Xlated {
            program: &load.outcome.object,
            unprivileged: load.unprivileged,
            insns: render_xlated(insns),
        };
        let name = format!("{}__xlated", self.id().replace("::", "__"));
        self.snapshot(&name, &view);
        Ok(())
    }
}

/// The translated instructions of the program behind `fd` (`BPF_OBJ_GET_INFO_BY_FD` with
/// `xlated_prog_insns`): what the verifier made of it, before the JIT.
pub fn xlated(fd: BorrowedFd<'_>) -> io::Result<Vec<Insn>> {
    let count = prog_info(fd)?.xlated_prog_len as usize / size_of::<libbpf_sys::bpf_insn>();
    let mut buf = vec![0u8; count * size_of::<libbpf_sys::bpf_insn>()];
    let got = xlated_into(fd, &mut buf).map_err(io::Error::from_raw_os_error)?;
    Ok(buf[..got * size_of::<libbpf_sys::bpf_insn>()]
        .chunks_exact(size_of::<libbpf_sys::bpf_insn>())
        .map(insn_of_bytes)
        .collect())
}

/// Fetches up to `buf.len()` bytes of translated instructions into `buf`: their count, or the
/// errno (`E2BIG` when they do not fit). Plain syscalls only: the unprivileged child calls it.
fn xlated_into(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, i32> {
    let mut info = libbpf_sys::bpf_prog_info {
        xlated_prog_len: buf.len() as u32,
        xlated_prog_insns: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a valid bpf_prog_info of len bytes; the kernel writes at most
    // xlated_prog_len bytes to xlated_prog_insns, which buf holds.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return Err(-ret);
    }
    if info.xlated_prog_len as usize > buf.len() {
        return Err(libc::E2BIG);
    }
    Ok(info.xlated_prog_len as usize / size_of::<libbpf_sys::bpf_insn>())
}

/// One instruction from its 8 bytes (native endianness, as the kernel writes it).
fn insn_of_bytes(bytes: &[u8]) -> Insn {
    let regs = bytes[1];
    let (dst, src) = if cfg!(target_endian = "little") {
        (regs & 0xf, regs >> 4)
    } else {
        (regs >> 4, regs & 0xf)
    };
    Insn::new(
        bytes[0],
        dst,
        src,
        i16::from_ne_bytes([bytes[2], bytes[3]]),
        i32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    )
}

/// Translated instructions as lines `<slot>: code=<opcode> dst=r<n> src=<n> off=<off> imm=<imm>`,
/// with what changes from run to run or build to build replaced: a map's id (`[map id]`, the
/// kernel puts it where the map's address is), kernel addresses (`[addr]`), and a helper call's
/// immediate (its distance from `__bpf_call_base`) by the name `/proc/kallsyms` gives it
/// (`[helper]` when it cannot be read).
pub fn render_xlated(insns: &[Insn]) -> Vec<String> {
    let mut lines = Vec::with_capacity(insns.len());
    let mut i = 0;
    while i < insns.len() {
        let insn = insns[i];
        let line = |imm: String| {
            format!(
                "{i:>3}: code={:02x} dst=r{} src={} off={} imm={imm}",
                insn.code, insn.dst, insn.src, insn.off
            )
        };
        if insn.is_ld_imm64() && i + 1 < insns.len() {
            let high = insns[i + 1].imm;
            let value = (high as u32 as u64) << 32 | insn.imm as u32 as u64;
            let (imm, next) = if [PSEUDO_MAP_FD, PSEUDO_MAP_VALUE].contains(&insn.src) {
                ("[map id]".to_owned(), high.to_string())
            } else if value >> 48 == 0xffff {
                ("[addr]".to_owned(), "[addr]".to_owned())
            } else {
                (insn.imm.to_string(), high.to_string())
            };
            lines.push(line(imm));
            lines.push(format!(
                "{:>3}: code=00 dst=r0 src=0 off=0 imm={next}",
                i + 1
            ));
            i += 2;
            continue;
        }
        let imm = if insn.is_helper_call() {
            helper_name(insn.imm).unwrap_or_else(|| "[helper]".to_owned())
        } else {
            insn.imm.to_string()
        };
        lines.push(line(imm));
        i += 1;
    }
    lines
}

/// The kernel function a translated helper call jumps to: `__bpf_call_base + imm`, by
/// `/proc/kallsyms` (read once).
fn helper_name(imm: i32) -> Option<String> {
    static BY_OFFSET: LazyLock<HashMap<i64, String>> = LazyLock::new(|| {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let functions: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let address = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                (address != 0 && matches!(kind, "t" | "T")).then_some((address, name))
            })
            .collect();
        let Some(&(base, _)) = functions.iter().find(|(_, n)| *n == "__bpf_call_base") else {
            return HashMap::new();
        };
        let mut by_offset = HashMap::new();
        for (address, name) in functions {
            by_offset
                .entry(address as i64 - base as i64)
                .or_insert_with(|| name.to_owned());
        }
        by_offset
    });
    // 0: the kernel hid the address (bpf_dump_raw_ok), or it really is the base.
    (imm != 0)
        .then(|| BY_OFFSET.get(&(imm as i64)).cloned())
        .flatten()
}

/// Where the first match of the regex `pattern` in `log` ends: for expectations of a log written as
/// regexes (the test crate has no regex engine of its own).
pub fn regex_end(pattern: &str, log: &str) -> Result<Option<usize>, regex::Error> {
    Ok(Regex::new(pattern)?.find(log).map(|m| m.end()))
}

/// The kernel's `bpf_prog_info` of the program behind `fd` (counts of func and line info records,
/// BTF id, GPL compatibility, …; no arrays are fetched).
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<libbpf_sys::bpf_prog_info> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a valid bpf_prog_info of len bytes.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(info)
}

/// Runs the program behind `fd` once with `BPF_PROG_TEST_RUN` on `data` (a packet for the
/// networking types) and returns its return value.
pub fn test_run(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<u32> {
    // SAFETY: a zeroed bpf_test_run_opts is valid; data outlives the call.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts.data_in = data.as_ptr().cast();
    opts.data_size_in = data.len() as u32;
    opts.repeat = 1;
    // SAFETY: fd is a live program fd and opts is initialised.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd.as_raw_fd(), &mut opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret));
    }
    Ok(opts.retval)
}

#[cfg(test)]
mod tests {
    use super::redact_log;

    #[test]
    fn redaction_keeps_everything_but_times_and_ids() {
        let log = "0: (18) r1 = map[id:42]\n3: (18) r1 = 0xffff888136b18e00 ; R1=map_ptr\n\
                   verification time 31 usec\nstack depth 8\n";
        assert_eq!(
            redact_log(log),
            "0: (18) r1 = map[id:[id]]\n3: (18) r1 = [addr] ; R1=map_ptr\n\
             verification time [usec] usec\nstack depth 8\n"
        );
    }
}
