//! Running one object's tests on the running kernel as `test_loader.c` runs them
//! (`run_subtest`): each test program loaded with its mode's auxiliary programs, privileged and/or
//! unprivileged (capabilities dropped), its verdict, log, xlated program and return value checked
//! against its annotations. Programs are loaded from one prepared object per mode
//! ([`crate::prepared`]); the unprivileged pass runs in a thread of its own whose capabilities are
//! dropped (capabilities are per thread), so the rest of the process never loses them.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use caps::{CapSet, Capability};
use libbpf_rs::{Object, ObjectBuilder};
use libbpf_sys as sys;

use crate::kernel::Facts;
use crate::maps;
use crate::pattern;
use crate::prepared::{self, OpenOptions, Prepared, ProgLoad, Request};
use crate::spec::{ARCH, Constants, Expect, LoadMode, Spec};
use crate::tags;

/// Capabilities an unprivileged load runs without (`drop_capabilities`).
const UNPRIV_DROPPED: [Capability; 4] = [
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_PERFMON,
    Capability::CAP_BPF,
];

/// One object of a corpus and how its tree's prog_tests run it.
#[derive(Clone, Debug)]
pub struct ObjectTests<'a> {
    /// The object's name (its `progs/<name>.c`).
    pub name: &'a str,
    /// The compiled object.
    pub path: &'a Path,
    /// The tree's test loader runs it (`RUN_TESTS`): every program is a test, untagged ones
    /// expected to load. Otherwise only its annotated programs are tests.
    pub run_by_loader: bool,
    /// `prog_tests/verifier.c` runs it without `CAP_SYS_ADMIN` (`RUN()`, `run_tests_aux`).
    pub without_sys_admin: bool,
    /// Its pre-execution hook in `prog_tests/verifier.c`.
    pub hook: Option<&'a str>,
    /// What the selftests' test module (`bpf_testmod`) defines.
    pub testmod: &'a std::collections::BTreeSet<String>,
    /// Where the corpus's objects are (for `__btf_path`).
    pub dir: &'a Path,
    /// The tree's helper names by id.
    pub helpers: &'a [String],
    /// The tree's loader constants.
    pub constants: Constants,
    /// Whether `__retval` programs run (`BPF_PROG_TEST_RUN`): only on a kernel the tree belongs
    /// to. Elsewhere the verdict and the verifier's messages are what is set against the
    /// annotations, and a newer tree's program can run for minutes on a kernel with a bug fixed
    /// since (tail calls from subprograms before 6.10's tail call hierarchy fix stalled 5.10 and
    /// 6.1 for longer than their soft-lockup watchdog).
    pub test_runs: bool,
}

/// What one mode (privileged or unprivileged) of one program did.
#[derive(Debug, Default)]
pub struct ModeRun {
    /// The unprivileged mode.
    pub unprivileged: bool,
    /// Not run, and why (the tree's loader skips it too).
    pub skipped: Option<String>,
    /// The load (errno, log).
    pub load: ProgLoad,
    /// The program loaded.
    pub loaded: bool,
    /// The expectation it was held against: a refusal.
    pub expected_failure: bool,
    /// What did not match, in `test_loader.c`'s order (empty: every check held).
    pub mismatches: Vec<String>,
    /// The program's sizes when loaded.
    pub size: Option<record::ProgSize>,
    /// The test run's return value.
    pub retval: Option<i32>,
    /// Loaded by libbpf in a fresh object (not from the prepared one), and why.
    pub fresh: Option<String>,
}

/// What one test program did on this kernel.
#[derive(Debug, Default)]
pub struct ProgramRun {
    /// Its name.
    pub name: String,
    /// Its program type (bpftool's name).
    pub prog_type: String,
    /// `__description`.
    pub description: Option<String>,
    /// Why the suite could not honour it (nothing ran).
    pub unsupported: Option<String>,
    /// Why the harness could not run it.
    pub error: Option<String>,
    /// Its modes, privileged first.
    pub modes: Vec<ModeRun>,
    /// Wall time of all its modes.
    pub duration: Duration,
}

/// A program of the object and its spec.
struct Test {
    name: String,
    prog_type: String,
    spec: Result<Spec, String>,
    annotated: bool,
}

/// Runs every test of `obj`; `Err` when the object cannot even be opened.
pub fn run(obj: &ObjectTests<'_>, facts: &Facts) -> Result<Vec<ProgramRun>, String> {
    let bytes = prepared::read(obj.path).map_err(|e| format!("{e:#}"))?;
    let tests = parse(obj.name, &bytes, &obj.constants)?;
    let special = special_fields(obj.name, &bytes);
    let mut runs: Vec<ProgramRun> = tests
        .iter()
        .filter(|t| t.is_test(obj.run_by_loader))
        .map(|t| ProgramRun {
            name: t.name.clone(),
            prog_type: t.prog_type.clone(),
            description: t.spec.as_ref().ok().and_then(|s| s.description.clone()),
            ..Default::default()
        })
        .collect();
    let specs: BTreeMap<&str, &Spec> = tests
        .iter()
        .filter_map(|t| Some((t.name.as_str(), t.spec.as_ref().ok()?)))
        .collect();
    let types: BTreeMap<String, String> = tests
        .iter()
        .map(|t| (t.name.clone(), t.prog_type.clone()))
        .collect();
    // What keeps a program from running at all.
    let mut todo: Vec<(usize, bool, u64)> = Vec::new();
    for (i, run) in runs.iter_mut().enumerate() {
        let test = tests.iter().find(|t| t.name == run.name).expect("listed");
        let spec = match &test.spec {
            Ok(s) => s,
            Err(e) => {
                run.unsupported = Some(format!("an annotation the suite cannot honour: {e}"));
                continue;
            }
        };
        if run.prog_type.is_empty() || run.prog_type == "unspec" {
            run.unsupported = Some(format!(
                "{} does not know its section (a newer libbpf's), so it has no program type",
                prepared::libbpf_version()
            ));
            continue;
        }
        if let Some(why) = not_honoured(obj, spec, facts) {
            run.unsupported = Some(why);
            continue;
        }
        if spec.privileged {
            todo.push((i, false, 0));
        }
        if spec.unprivileged {
            match &facts.unpriv_skipped {
                Some(why) => run.modes.push(ModeRun {
                    unprivileged: true,
                    skipped: Some(format!("unprivileged tests are skipped here: {why}")),
                    ..Default::default()
                }),
                None => todo.push((i, true, spec.unpriv.caps)),
            }
        }
    }
    // One pass per mode and unprivileged capability set, each from its own prepared object.
    let mut passes: BTreeMap<(bool, u64), Vec<usize>> = BTreeMap::new();
    for (i, unpriv, caps) in todo {
        passes.entry((unpriv, caps)).or_default().push(i);
    }
    for ((unpriv, caps), members) in passes {
        let names: Vec<String> = members.iter().map(|&i| runs[i].name.clone()).collect();
        let companions: Vec<String> = specs
            .iter()
            .filter(|(_, s)| s.auxiliary && if unpriv { s.unprivileged } else { s.privileged })
            .map(|(n, _)| n.to_string())
            .collect();
        let pass = Pass {
            obj,
            bytes: &bytes,
            specs: &specs,
            types: &types,
            special,
            companions,
            unprivileged: unpriv,
            caps,
            facts,
        };
        let results = std::thread::scope(|s| {
            s.spawn(|| pass.run(&names))
                .join()
                .unwrap_or_else(|_| Err("the pass's thread panicked".into()))
        });
        match results {
            Ok(results) => {
                for (i, (mode, took)) in members.into_iter().zip(results) {
                    runs[i].duration += took;
                    runs[i].modes.push(mode);
                }
            }
            Err(e) => {
                for i in members {
                    runs[i].error = Some(e.clone());
                }
            }
        }
    }
    for run in &mut runs {
        run.modes.sort_by_key(|m| m.unprivileged);
        if run.unsupported.is_some() || run.error.is_some() {
            continue;
        }
        // A refusal that names what only the selftests' test module defines.
        let needs = run
            .modes
            .iter()
            .filter(|m| m.skipped.is_none() && !m.loaded)
            .find_map(|m| {
                let why = refusal(&m.load);
                let said = format!("{why}\n{}", m.load.messages);
                testmod_symbol(&said, obj.testmod).map(|sym| (sym, why))
            });
        if let Some((sym, why)) = needs {
            run.unsupported = Some(format!(
                "needs {sym} of the selftests' test module bpf_testmod, which the suite does not \
                 build ({why})"
            ));
        }
    }
    Ok(runs)
}

/// Whether the object's BTF has types whose map fields the kernel manages (`bpf_spin_lock`,
/// lists, trees, refcounts, timers, work items, kptrs): such maps are not put back by writing
/// their initial bytes.
fn special_fields(name: &str, bytes: &[u8]) -> bool {
    use libbpf_rs::btf::types::{Struct, TypeTag};
    const STRUCTS: &[&str] = &[
        "bpf_spin_lock",
        "bpf_res_spin_lock",
        "bpf_list_head",
        "bpf_rb_root",
        "bpf_refcount",
        "bpf_timer",
        "bpf_wq",
        "bpf_task_work",
    ];
    let Ok(Some(btf)) = libbpf_rs::btf::Btf::from_raw(name, bytes) else {
        return true;
    };
    let structs = btf
        .type_by_kind::<Struct<'_>>()
        .any(|t| t.name().is_some_and(|n| STRUCTS.iter().any(|s| n == *s)));
    structs
        || btf.type_by_kind::<TypeTag<'_>>().any(|t| {
            t.name()
                .is_some_and(|n| n.to_string_lossy().contains("kptr"))
        })
}

/// The first identifier in `text` that the test module defines.
fn testmod_symbol(text: &str, testmod: &std::collections::BTreeSet<String>) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| w.starts_with("bpf_testmod") || testmod.contains(*w))
        .map(str::to_owned)
}

impl Test {
    /// A test of its object: every program the tree's loader runs (for an object it does not
    /// run, every annotated one), auxiliary programs aside.
    fn is_test(&self, run_by_loader: bool) -> bool {
        (run_by_loader || self.annotated) && !self.spec.as_ref().is_ok_and(|s| s.auxiliary)
    }
}

/// The test programs of object `name` (its bytes), in the object's order.
pub fn tests(
    name: &str,
    bytes: &[u8],
    run_by_loader: bool,
    constants: &Constants,
) -> Result<Vec<String>, String> {
    Ok(parse(name, bytes, constants)?
        .into_iter()
        .filter(|t| t.is_test(run_by_loader))
        .map(|t| t.name)
        .collect())
}

/// The object's programs, their types and specs.
fn parse(obj_name: &str, bytes: &[u8], constants: &Constants) -> Result<Vec<Test>, String> {
    let open = ObjectBuilder::default()
        .open_memory(bytes)
        .map_err(|e| format!("libbpf cannot open it: {e}"))?;
    let btf = libbpf_rs::btf::Btf::from_raw(obj_name, bytes)
        .map_err(|e| format!("its BTF cannot be read: {e}"))?
        .ok_or("it has no BTF")?;
    let mut tags = tags::of_object(&btf);
    Ok(open
        .progs()
        .map(|p| {
            let name = p.name().to_string_lossy().into_owned();
            let prog_type = features::prog_type_str(p.prog_type() as u32).unwrap_or_default();
            let own = tags.remove(&name);
            let annotated = own.as_ref().is_some_and(|t| !t.is_empty());
            let spec = match own {
                Some(t) => Spec::parse(&t, &prog_type, constants),
                None if tags::has_func(&btf, &name) => Spec::parse(&[], &prog_type, constants),
                None => Err(format!("failed to find FUNC BTF type for '{name}'")),
            };
            Test {
                name,
                prog_type,
                spec,
                annotated,
            }
        })
        .collect())
}

/// Why the suite cannot run this program as its tree's loader would, if it cannot.
fn not_honoured(obj: &ObjectTests<'_>, spec: &Spec, facts: &Facts) -> Option<String> {
    if !spec.unknown.is_empty() {
        return Some(format!(
            "annotations the suite does not know: {}",
            spec.unknown.join(", ")
        ));
    }
    if !spec.arch.is_empty() && !spec.arch.iter().any(|a| a == ARCH) {
        return Some(format!(
            "runs only on {} (__arch_*), this is x86_64",
            spec.arch.join(", ")
        ));
    }
    match (spec.load_mode, facts.jit) {
        (Some(LoadMode::Jited), false) => {
            return Some("runs only with the JIT on (__load_if_JITed); it is off here".into());
        }
        (Some(LoadMode::NoJited), true) => {
            return Some("runs only with the JIT off (__load_if_no_JITed); it is on here".into());
        }
        _ => {}
    }
    if spec.btf_func_path.is_some() {
        return Some(
            "__btf_func_path (fixing up the BTF of naked subprograms before the load) is not \
             honoured by the suite"
                .into(),
        );
    }
    if let Some(path) = &spec.btf_path
        && !obj.dir.join(path).is_file()
    {
        return Some(format!("__btf_path {path} was not built"));
    }
    if !spec.priv_.jited.is_empty() || !spec.unpriv.jited.is_empty() {
        return Some(
            "__jited (x86-64 JIT disassembly) is not honoured by the suite, as the tree's \
             loader skips it when built without LLVM"
                .into(),
        );
    }
    None
}

/// One mode's tests of one object, run from one prepared object.
struct Pass<'a> {
    obj: &'a ObjectTests<'a>,
    bytes: &'a [u8],
    specs: &'a BTreeMap<&'a str, &'a Spec>,
    types: &'a BTreeMap<String, String>,
    /// Its maps hold kernel-managed fields (locks, lists, trees, kptrs) that writing the
    /// initial bytes back does not reset.
    special: bool,
    companions: Vec<String>,
    unprivileged: bool,
    caps: u64,
    facts: &'a Facts,
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
    fn run(&self, names: &[String]) -> Result<Vec<(ModeRun, Duration)>, String> {
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
                Ok(bytes) => {
                    let text = crate::disasm::xlated_text(&bytes, self.obj.helpers);
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

/// The refusal's key line: the verifier's complaint, else libbpf's, else the errno.
pub fn refusal(load: &ProgLoad) -> String {
    loader::load::key_line(&load.log)
        .or_else(|| load.libbpf.clone())
        .unwrap_or_else(|| {
            load.errno
                .map(loader::errno::name)
                .unwrap_or_else(|| "no log".into())
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

/// `bpf_prog_info` of `fd`, after `fill` pointed its arrays at buffers.
fn info(
    fd: BorrowedFd<'_>,
    fill: impl FnOnce(&mut sys::bpf_prog_info),
) -> Result<sys::bpf_prog_info, String> {
    let mut info = sys::bpf_prog_info::default();
    fill(&mut info);
    let mut len = size_of_val(&info) as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes whose array pointers, if any, point at
    // buffers of the lengths set beside them, alive for the call.
    let ret =
        unsafe { sys::bpf_obj_get_info_by_fd(fd.as_raw_fd(), (&raw mut info).cast(), &mut len) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(info)
}

/// The xlated instructions of `fd`.
fn xlated(fd: BorrowedFd<'_>) -> Result<Vec<u8>, String> {
    let len = info(fd, |_| {})?.xlated_prog_len;
    let mut buf = vec![0u8; len as usize];
    info(fd, |i| {
        i.xlated_prog_len = len;
        i.xlated_prog_insns = buf.as_mut_ptr() as u64;
    })?;
    if len == 0 {
        return Err("the kernel gave no xlated instructions".into());
    }
    Ok(buf)
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
    let mut opts = sys::bpf_test_run_opts {
        sz: size_of::<sys::bpf_test_run_opts>() as sys::size_t,
        ..Default::default()
    };
    if !syscall {
        opts.data_in = data_in.as_ptr().cast();
        opts.data_size_in = data_len;
        opts.data_out = data_out.as_mut_ptr().cast();
        opts.data_size_out = data_out.len() as u32;
        opts.repeat = 1;
        if let Some(linear) = linear.filter(|l| *l != 0) {
            ctx[80..84].copy_from_slice(&(linear as u32).to_ne_bytes());
            opts.ctx_in = ctx.as_ptr().cast();
            opts.ctx_size_in = ctx.len() as u32;
        }
    }
    // SAFETY: every buffer in `opts` is alive for the call and sized as declared.
    let ret = unsafe { sys::bpf_prog_test_run_opts(fd.as_raw_fd(), &mut opts) };
    if ret != 0 {
        let e = std::io::Error::last_os_error();
        return Err(e.raw_os_error().map_or(e.to_string(), loader::errno::name));
    }
    Ok(opts.retval as i32)
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
