//! One mode (privileged or unprivileged) of one object's tests: each program loaded from the
//! prepared object or by libbpf in a fresh one, in a thread whose capabilities are dropped for the
//! unprivileged mode, and its verdict, log, xlated program and return value checked.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use caps::{CapSet, Capability};
use libbpf_rs::Object;
use libbpf_sys as sys;

use super::{ModeRun, ObjectTests, refusal};
use crate::kernel::Facts;
use crate::maps;
use crate::pattern;
use crate::prepared::{self, OpenOptions, Prepared, ProgLoad, Request};
use crate::spec::{Expect, Spec};

/// Capabilities an unprivileged load runs without (`drop_capabilities`).
const UNPRIV_DROPPED: [Capability; 4] = [
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_PERFMON,
    Capability::CAP_BPF,
];

/// One mode's tests of one object, run from one prepared object.
pub(super) struct Pass<'a> {
    pub(super) obj: &'a ObjectTests<'a>,
    pub(super) bytes: &'a [u8],
    pub(super) specs: &'a BTreeMap<&'a str, &'a Spec>,
    pub(super) types: &'a BTreeMap<String, String>,
    /// Its maps hold kernel-managed fields (locks, lists, trees, kptrs) that writing the
    /// initial bytes back does not reset.
    pub(super) special: bool,
    pub(super) companions: Vec<String>,
    pub(super) unprivileged: bool,
    pub(super) caps: u64,
    pub(super) facts: &'a Facts,
}

/// How a program is loaded.
enum Route {
    /// From the prepared object, with what libbpf would add at load time.
    Prepared(prepared::LoadTime),
    /// By libbpf in a fresh object, for this reason.
    Fresh(String),
    /// Not at all: the object failed to load as its first program showed (complaint, errno).
    Broken(String, Option<i32>),
}

impl Pass<'_> {
    /// Runs `names` in this thread (whose capabilities it changes).
    pub(super) fn run(&self, names: &[String]) -> Result<Vec<(ModeRun, Duration)>, String> {
        let full = caps::read(None, CapSet::Effective).map_err(|e| e.to_string())?;
        let mut baseline = full.clone();
        if self.obj.without_sys_admin {
            baseline.remove(&Capability::CAP_SYS_ADMIN);
        }
        let mut limited = baseline.clone();
        if self.unprivileged {
            for c in UNPRIV_DROPPED {
                limited.remove(&c);
            }
            limited.extend(
                caps::all()
                    .into_iter()
                    .filter(|c| self.caps & (1 << c.index()) != 0),
            );
        }
        let set = |to: &HashSet<Capability>| {
            caps::set(None, CapSet::Effective, to).map_err(|e| format!("setting capabilities: {e}"))
        };
        let opts = OpenOptions {
            name: self.obj.name.to_owned(),
            btf_custom_path: None,
            unprivileged: self.unprivileged,
        };
        let mut log = vec![0u8; self.obj.constants.log_buf_size as usize];
        set(&limited)?;
        let started = Instant::now();
        let prepared =
            Prepared::new(self.bytes, &opts, Some(&self.companions)).map_err(|e| format!("{e:#}"));
        let prepare_cost = started.elapsed() / names.len().max(1) as u32;
        let mut broken: Option<(String, Option<i32>)> = None;
        let mut dirty = false;
        let mut out = Vec::new();
        for name in names {
            let started = Instant::now();
            let spec = self.specs[name.as_str()];
            let expect = spec.expect(self.unprivileged);
            let req = Request {
                flags: spec.prog_flags(self.facts.test_flags),
                log_level: spec.log_level,
            };
            set(&limited)?;
            let route = match (&prepared, &spec.btf_path, &broken) {
                (_, Some(path), _) => Route::Fresh(format!("__btf_path {path}")),
                (Ok(p), None, _) => p.load_time(name).map_or_else(Route::Fresh, Route::Prepared),
                (Err(_), None, Some((e, errno))) => Route::Broken(e.clone(), *errno),
                (Err(e), None, None) => Route::Fresh(format!("the object did not load: {e}")),
            };
            let mut mode = ModeRun {
                unprivileged: self.unprivileged,
                expected_failure: expect.failure,
                ..Default::default()
            };
            let mut fresh: Option<Object> = None;
            let (_, over) = crate::budget::within(self.facts.budget, || match route {
                Route::Prepared(at) => {
                    let p = prepared.as_ref().expect("routed to the prepared object");
                    mode.load = p.load(name, req, at, &mut log);
                }
                Route::Fresh(why) => {
                    let mut opts = opts.clone();
                    opts.btf_custom_path = spec.btf_path.as_ref().map(|p| self.obj.dir.join(p));
                    let (object, load) =
                        prepared::fresh(self.bytes, &opts, name, &self.companions, req, &mut log);
                    if let Err(e) = &prepared
                        && load.libbpf.as_ref() == Some(e)
                    {
                        broken = Some((e.clone(), load.errno));
                    }
                    (fresh, mode.load, mode.fresh) = (object, load, Some(why));
                }
                Route::Broken(e, errno) => {
                    mode.load = ProgLoad {
                        errno,
                        libbpf: Some(e),
                        ..Default::default()
                    };
                    mode.fresh = Some("the object did not load, as for its first program".into());
                }
            });
            if over {
                mode.skipped = Some(format!(
                    "its load ran past the suite's budget of {} s per load (not judged)",
                    self.facts.budget.as_secs()
                ));
                out.push((mode, started.elapsed() + prepare_cost));
                continue;
            }
            // A call libbpf could not resolve (a weak kfunc it did not find): libbpf's own load
            // names it (its log fix-up), which a load from the prepared object cannot.
            if mode.fresh.is_none() && mode.load.fd.is_none() && poisoned(&mode.load.log) {
                let (object, load) =
                    prepared::fresh(self.bytes, &opts, name, &self.companions, req, &mut log);
                (fresh, mode.load) = (object, load);
                mode.fresh = Some("a call libbpf could not resolve".into());
            }
            let loaded = mode.load.fd.is_some() || fresh.is_some();
            mode.loaded = loaded;
            // The verdict first; the other checks only when it matched (`goto tobj_cleanup`).
            if loaded == expect.failure {
                mode.mismatches.push(if loaded {
                    "accepted here (expected: refused)".into()
                } else {
                    format!("refused here: {}", refusal(&mode.load))
                });
            } else if loaded {
                if let Err(m) = pattern::validate(&mode.load.log, &expect.msgs) {
                    mode.mismatches.push(format!("verifier log {m}"));
                }
                // test_loader.c restores the capabilities before reading the program back.
                set(&baseline)?;
                let target = match (&fresh, &prepared) {
                    (Some(o), _) => Target::Fresh(o),
                    (None, Ok(p)) => Target::Prepared(p, &mut dirty),
                    (None, Err(_)) => unreachable!("a program without an object did not load"),
                };
                self.checks(&mut mode, expect, spec, name, target, req, &mut log, &opts);
            } else if let Err(m) = pattern::validate(&mode.load.log, &expect.msgs) {
                mode.mismatches.push(format!("verifier log {m}"));
            }
            out.push((mode, started.elapsed() + prepare_cost));
        }
        set(&full)?;
        Ok(out)
    }

    /// The checks after a load that matched its expected success: xlated, test run, streams.
    #[allow(clippy::too_many_arguments)]
    fn checks(
        &self,
        mode: &mut ModeRun,
        expect: &Expect,
        spec: &Spec,
        name: &str,
        target: Target<'_>,
        req: Request,
        log: &mut [u8],
        opts: &OpenOptions,
    ) {
        let fd = match &target {
            Target::Fresh(o) => program_fd(o, name),
            Target::Prepared(..) => mode.load.fd.as_ref().map(AsFd::as_fd),
        };
        let Some(fd) = fd else {
            mode.mismatches.push("the loaded program has no fd".into());
            return;
        };
        mode.size = loader::load::prog_size(fd);
        if !expect.xlated.is_empty() {
            match xlated(fd) {
                Ok(insns) => {
                    let text = loader::disasm::text(&insns, self.obj.helpers);
                    if let Err(m) = pattern::validate(&text, &expect.xlated) {
                        mode.mismatches.push(format!("xlated program {m}"));
                    }
                }
                Err(e) => mode
                    .mismatches
                    .push(format!("xlated program unavailable: {e}")),
            }
        }
        let Some(want) = expect.retval.filter(|_| self.obj.test_runs) else {
            return;
        };
        // The run sees the maps a fresh object has: shared maps are put back first, and where
        // they cannot be, the program runs in a fresh object of its own.
        let mut own: Option<Object> = None;
        let (object, fd) = match target {
            Target::Fresh(o) => (o, fd),
            Target::Prepared(p, dirty) => {
                let object = p.loaded().expect("companions were loaded");
                let reset = match (*dirty, self.special) {
                    (false, _) => Ok(()),
                    (true, true) => Err("kernel-managed fields".to_owned()),
                    (true, false) => maps::reset(object, &p.initial),
                };
                *dirty = true;
                match reset {
                    Ok(()) => (object, fd),
                    Err(_) => {
                        own = prepared::fresh(self.bytes, opts, name, &self.companions, req, log).0;
                        match own.as_ref().and_then(|o| Some((o, program_fd(o, name)?))) {
                            Some(found) => found,
                            None => {
                                mode.mismatches
                                    .push("a fresh object for the test run did not load".into());
                                return;
                            }
                        }
                    }
                }
            }
        };
        if let Some(hook) = self.obj.hook
            && let Err(e) = maps::run_hook(object, hook)
        {
            mode.mismatches
                .push(format!("pre-execution hook {hook}: {e}"));
            return;
        }
        let syscall = self.types.get(name).is_some_and(|t| t == "syscall");
        match test_run(
            fd,
            syscall,
            spec.linear_size,
            self.obj.constants.test_data_len,
        ) {
            Ok(got) => {
                mode.retval = Some(got);
                if got != want && want != self.obj.constants.pointer_value {
                    mode.mismatches
                        .push(format!("retval {got}, expected {want}"));
                }
            }
            Err(e) => {
                mode.mismatches.push(format!("test run failed: {e}"));
                return;
            }
        }
        for (id, patterns, what) in [(2, &expect.stderr, "stderr"), (1, &expect.stdout, "stdout")] {
            if patterns.is_empty() {
                continue;
            }
            match stream(fd, id) {
                Ok(text) => {
                    if let Err(m) = pattern::validate(&text, patterns) {
                        mode.mismatches.push(format!("BPF {what} stream {m}"));
                    }
                }
                Err(e) => mode
                    .mismatches
                    .push(format!("BPF {what} stream unavailable: {e}")),
            }
        }
        drop(own);
    }
}

/// Where a loaded program lives.
enum Target<'a> {
    /// In a fresh object of its own.
    Fresh(&'a Object),
    /// Loaded from the prepared object, whose maps a previous test run may have written.
    Prepared(&'a Prepared, &'a mut bool),
}

/// The verifier refused a call libbpf poisoned (`invalid func unknown#2001000000`, …: an
/// unresolved map or kfunc).
fn poisoned(log: &str) -> bool {
    log.lines().any(|l| {
        l.strip_prefix("invalid func unknown#")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n >= 2_001_000_000)
    })
}

/// The fd of program `name` of a loaded object.
fn program_fd<'a>(object: &'a Object, name: &str) -> Option<BorrowedFd<'a>> {
    let raw = object
        .progs()
        .find(|p| p.name().to_string_lossy() == name)?
        .as_fd()
        .as_raw_fd();
    // SAFETY: the program's fd is owned by `object` and open as long as it lives.
    Some(unsafe { BorrowedFd::borrow_raw(raw) })
}

/// The xlated instructions of `fd`.
fn xlated(fd: BorrowedFd<'_>) -> Result<Vec<loader::insn::Insn>, String> {
    let insns = loader::prog::xlated(fd).map_err(|e| e.to_string())?;
    if insns.is_empty() {
        return Err("the kernel gave no xlated instructions".into());
    }
    Ok(insns)
}

/// `do_prog_test_run`: one run over `TEST_DATA_LEN` zero bytes (a syscall program gets no data).
fn test_run(
    fd: BorrowedFd<'_>,
    syscall: bool,
    linear: Option<i32>,
    data_len: u32,
) -> Result<i32, String> {
    let data_in = vec![0u8; data_len as usize];
    let mut data_out = vec![0u8; (data_len as usize) << 2];
    // `struct __sk_buff` (192 bytes) with only `data_end` (at 80) set.
    let mut ctx = [0u8; 192];
    let mut run = loader::prog::TestRun::default();
    if !syscall {
        run.data_in = Some(&data_in);
        run.data_out = Some(&mut data_out);
        run.repeat = 1;
        if let Some(linear) = linear.filter(|l| *l != 0) {
            ctx[80..84].copy_from_slice(&(linear as u32).to_ne_bytes());
            run.ctx_in = Some(&ctx);
        }
    }
    match loader::prog::test_run(fd, run) {
        Ok(ran) => Ok(ran.retval as i32),
        Err(e) => Err(loader::errno::name(e as i32)),
    }
}

/// BPF stream `id` (1 stdout, 2 stderr) of program `fd`.
fn stream(fd: BorrowedFd<'_>, id: u32) -> Result<String, String> {
    let mut buf = vec![0u8; 1 << 20];
    let mut opts = sys::bpf_prog_stream_read_opts {
        sz: size_of::<sys::bpf_prog_stream_read_opts>() as sys::size_t,
    };
    // SAFETY: `buf` is alive for the call and its length is passed.
    let n = unsafe {
        sys::bpf_prog_stream_read(
            fd.as_raw_fd(),
            id,
            buf.as_mut_ptr().cast(),
            (buf.len() - 1) as u32,
            &mut opts,
        )
    };
    if n <= 0 {
        return Err(format!("stream read returned {n}"));
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
