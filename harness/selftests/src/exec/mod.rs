//! Running one object's tests on the running kernel as `test_loader.c` runs them
//! (`run_subtest`): each test program loaded with its mode's auxiliary programs, privileged and/or
//! unprivileged (capabilities dropped), its verdict, log, xlated program and return value checked
//! against its annotations. Programs are loaded from one prepared object per mode
//! ([`crate::prepared`]); the unprivileged pass runs in a thread of its own whose capabilities are
//! dropped (capabilities are per thread), so the rest of the process never loses them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use libbpf_rs::ObjectBuilder;

use crate::kernel::Facts;
use crate::prepared::{self, ProgLoad};
use crate::spec::{ARCH, Constants, LoadMode, Spec};
use crate::tags;

mod pass;

use pass::Pass;

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
    /// Programs never loaded here, with the reason: they crash this kernel.
    pub crashing: BTreeMap<String, String>,
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
        if let Some(why) = obj.crashing.get(&run.name) {
            run.unsupported = Some(format!("known kernel bug, not loaded: {why}"));
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
            continue;
        }
        // A refusal that says the kernel lacks what the program uses (a kfunc its config leaves
        // out, the JIT), whatever the expectation was.
        run.unsupported = (run.modes.iter())
            .filter(|m| m.skipped.is_none() && !m.loaded)
            .find_map(|m| kernel_lacks(&refusal(&m.load), &m.load.messages, facts.jit));
    }
    Ok(runs)
}

/// What the kernel lacks, when its refusal (`refusal`, the verifier's `log`) says so: a kfunc or
/// an attach target absent from its BTF (libbpf could not resolve them), or the JIT where it is
/// off.
fn kernel_lacks(refusal: &str, log: &str, jit: bool) -> Option<String> {
    let kfunc = refusal
        .strip_prefix("extern (func ksym) '")
        .and_then(|r| r.split_once("': not found in kernel or module BTFs"))
        .or_else(|| {
            (refusal.strip_prefix("kfunc '")?).split_once("' is referenced but wasn't resolved")
        })
        .map(|(name, _)| name);
    if let Some(name) = kfunc {
        return Some(format!(
            "this kernel has no kfunc {name} (not in its BTF: its config leaves it out): {refusal}"
        ));
    }
    if refusal.ends_with("failed to prepare load attributes: -ESRCH") {
        return Some(format!(
            "the program's attach target is not in this kernel's BTF (its config leaves it \
             out): {refusal}"
        ));
    }
    const NEED_JIT: [&str; 3] = [
        "JIT is required",
        "are not allowed in non-JITed programs",
        "JIT doesn't support",
    ];
    let said = |line: &&str| NEED_JIT.iter().any(|n| line.contains(n));
    let line = std::iter::once(refusal).chain(log.lines()).find(said)?;
    (!jit).then(|| format!("needs the JIT, and net.core.bpf_jit_enable is 0 here: {line}"))
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
    let xlated = !spec.priv_.xlated.is_empty() || !spec.unpriv.xlated.is_empty();
    if xlated && !facts.jit {
        return Some(
            "its __xlated expectations are the program as the verifier rewrites it for the JIT \
             (inlined helpers, per-CPU addresses); the JIT is off here"
                .into(),
        );
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

#[cfg(test)]
mod tests {
    use super::kernel_lacks;

    #[test]
    fn refusals_that_say_what_the_kernel_lacks() {
        let says = |refusal: &str, log: &str, jit| kernel_lacks(refusal, log, jit).unwrap();
        let extern_ = "extern (func ksym) 'bpf_key_put': not found in kernel or module BTFs";
        assert!(says(extern_, "", true).contains("no kfunc bpf_key_put"));
        let unresolved = "kfunc 'bpf_lookup_system_key' is referenced but wasn't resolved";
        assert!(says(unresolved, "", true).contains("no kfunc bpf_lookup_system_key"));
        let target = "prog 'bool_retval_test1': failed to prepare load attributes: -ESRCH";
        assert!(says(target, "", true).contains("attach target"));
        let jit = "JIT is required for calling kernel function";
        assert!(says(jit, "", false).starts_with("needs the JIT"));
        assert_eq!(kernel_lacks(jit, "", true), None);
        let libbpf = "prog 'classifier_0': BPF program load failed: -EINVAL";
        let log = "0: (85) call pc+1\ntail_calls are not allowed in non-JITed programs with \
                   bpf-to-bpf calls\n";
        assert!(says(libbpf, log, false).ends_with("with bpf-to-bpf calls"));
        let refused = "R1 invalid mem access 'scalar'";
        assert_eq!(kernel_lacks(refused, refused, false), None);
    }
}
