//! Running one case: privileges, timing, outcome, the result record, and the load snapshots.

use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{OpenObject, ProgramType};
use serde::Serialize;

use crate::kernel::{Kernel, prog_type_name};
use crate::load::{LoadOutcome, LogLevel, load_skel_with_messages};
use crate::outcome::{CaseError, CaseResult, Outcome};
use crate::results::{self, Record};
use crate::snapshot::{self, Checked};
use record::Event;

/// The state of one running case, handed to its body.
pub struct Case {
    id: String,
    loads: Vec<LoadOutcome>,
    details: serde_json::Map<String, serde_json::Value>,
    mcpu: String,
    run_cost: std::collections::BTreeMap<String, record::RunCost>,
    /// Snapshots that differ from the ones accepted on this build: judged at the end of the
    /// case, after its floors.
    snapshots_differ: Vec<String>,
}

impl Case {
    /// Runs the case of the calling test for a program of type `prog_type`, writes its record, and
    /// fails the test on `fail` or `error`. A panic in `body` (a failed `assert!`, a snapshot
    /// difference) is a `fail`. The case id is the test's (`record::case_id`): its module
    /// and function, `xdp::drops_one_flow`, and an rstest case's description after the function.
    pub fn run(prog_type: ProgramType, body: impl FnOnce(&mut Case) -> CaseResult) {
        Self::run_named(&prog_type_name(prog_type), body)
    }

    /// [`Case::run`] for cases that are not about one program type (`verifier`, `btf`, …).
    pub fn run_named(prog_type: &str, body: impl FnOnce(&mut Case) -> CaseResult) {
        crate::privilege::require();
        // libtest names each test's thread after the test.
        let test = std::thread::current().name().unwrap_or_default().to_owned();
        let id = record::case_id(&test);
        let mut case = Case {
            id: id.clone(),
            loads: Vec::new(),
            details: Default::default(),
            mcpu: programs::MCPU.to_owned(),
            run_cost: Default::default(),
            snapshots_differ: Vec::new(),
        };
        let started = Instant::now();
        Event::CaseStarted { test: test.clone() }.emit();
        faults::before_case(&id);
        let result = match known_bug(&id) {
            // Not run: it would hang or crash this kernel (kernels/kernels.toml says why).
            Some(bug) => Ok(Err(CaseError::unsupported(format!(
                "known kernel bug, not run: {bug}"
            )))),
            None => panic::catch_unwind(AssertUnwindSafe(|| body(&mut case))),
        };
        // Floors first: a snapshot difference fails only a case that otherwise passed; an
        // `unsupported` (a feature the floors call missing) or a failure keeps its reason.
        let result = match result {
            Ok(Ok(())) if !case.snapshots_differ.is_empty() => Ok(Err(CaseError::Fail(
                anyhow::anyhow!("{}", case.snapshots_differ.join("; ")),
            ))),
            other => other,
        };
        if !case.snapshots_differ.is_empty() {
            let differ = std::mem::take(&mut case.snapshots_differ);
            case.detail("snapshots_differ", differ);
        }
        let (outcome, reason, cause, panic) = match result {
            Ok(Ok(())) => (Outcome::Pass, None, None, None),
            Ok(Err(e)) => (e.outcome(), Some(e.reason()), e.cause(), None),
            Err(payload) => (
                Outcome::Fail,
                Some(panic_message(&*payload)),
                None,
                Some(payload),
            ),
        };
        let kernel = Kernel::current();
        let record = Record {
            schema: results::SCHEMA,
            case: case.id,
            binary: binary_name(),
            test: test.clone(),
            prog_type: prog_type.to_owned(),
            kernel: kernel.id.clone(),
            kernel_release: kernel.release.clone(),
            build: Some(kernel.fingerprint.clone()),
            outcome,
            reason: reason.clone(),
            cause,
            loads: case.loads,
            details: case.details,
            duration_ms: started.elapsed().as_millis() as u64,
            clang: programs::CLANG_VERSION.to_owned(),
            mcpu: case.mcpu,
            run_cost: case.run_cost,
            suite: results::suite().to_owned(),
        };
        let dir = results::results_dir();
        if let Err(e) = results::write(&dir, &record) {
            panic!(
                "{id}: cannot write its result record to {}: {e}",
                dir.display()
            );
        }
        Event::CaseEnded { test }.emit();
        if let Some(payload) = panic {
            panic::resume_unwind(payload);
        }
        match outcome {
            Outcome::Pass => {}
            Outcome::Unsupported => eprintln!(
                "{id}: unsupported on {}: {}",
                kernel.id,
                reason.unwrap_or_default()
            ),
            Outcome::Fail | Outcome::Error => {
                panic!(
                    "{id}: {outcome} on {}: {}",
                    kernel.id,
                    reason.unwrap_or_default()
                )
            }
        }
    }

    /// The case id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Loads a skeleton (verifier statistics captured), records and snapshots the outcome, and
    /// fails the case when the kernel refuses it — unless the refusal names a missing feature,
    /// which the floors judge ([`refusal`]).
    pub fn load<'obj, S: OpenSkel<'obj>>(&mut self, open: S) -> CaseResult<S::Output> {
        let (result, outcome) = self.try_load(open, LogLevel::Stats);
        result.map_err(|e| refusal(&outcome, &e))
    }

    /// Opens the skeleton of `builder` in `object`, lets `configure` set what must be set before
    /// load (its `.rodata`, `.bss`), and loads it as [`Case::load`] does.
    pub fn open_load<'obj, B: SkelBuilder<'obj>>(
        &mut self,
        builder: B,
        object: &'obj mut MaybeUninit<OpenObject>,
        configure: impl FnOnce(&mut B::Output),
    ) -> CaseResult<<B::Output as OpenSkel<'obj>>::Output> {
        let mut open = builder.open(object)?;
        configure(&mut open);
        self.load(open)
    }

    /// Loads a skeleton that may be refused, at `level`; the outcome is recorded and snapshotted
    /// and returned for the case to check.
    pub fn try_load<'obj, S: OpenSkel<'obj>>(
        &mut self,
        open: S,
        level: LogLevel,
    ) -> (libbpf_rs::Result<S::Output>, LoadOutcome) {
        let (result, outcome, _) = self.try_load_with_messages(open, level);
        (result, outcome)
    }

    /// [`Case::try_load`], also returning libbpf's messages during the load (debug level: CO-RE
    /// relocations among them).
    pub fn try_load_with_messages<'obj, S: OpenSkel<'obj>>(
        &mut self,
        open: S,
        level: LogLevel,
    ) -> (libbpf_rs::Result<S::Output>, LoadOutcome, String) {
        let (result, outcome, messages) = load_skel_with_messages(open, level);
        let name = self.snapshot_name(&outcome.object);
        self.snapshot(&name, &snapshot::LoadSnapshot::of(&outcome));
        self.loads.push(outcome.clone());
        (result, outcome, messages)
    }

    /// Compares `value` with snapshot `name` of this kernel build ([`snapshot`]): a difference
    /// fails the case at its end, if nothing else decided it; where snapshots are not enforced
    /// (another build, none accepted) it is written for review and the record says why.
    pub fn snapshot<T: Serialize>(&mut self, name: &str, value: &T) {
        match snapshot::check_yaml(name, value) {
            Checked::Same => {}
            Checked::ForReview(why) => {
                self.detail("snapshot", format!("written for review: {why}"))
            }
            Checked::Differs(what) => self.snapshots_differ.push(what),
        }
    }

    /// Records a measured value under `key` in the case's result record.
    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.details.insert(key.to_owned(), value);
    }

    /// Records what one test run of `program` costs ([`crate::test_run::measure`]).
    pub fn run_cost(&mut self, program: &str, cost: record::RunCost) {
        self.run_cost.insert(program.to_owned(), cost);
    }

    /// Records that the case's object was built for `mcpu` (a variant), not the suite's default.
    pub fn set_mcpu(&mut self, mcpu: &str) {
        self.mcpu = mcpu.to_owned();
    }

    /// Adds a load outcome to the case's record, for loaders outside this module
    /// ([`crate::raw_load`], loads snapshotted in a view of their own).
    pub fn push_load(&mut self, outcome: LoadOutcome) {
        self.loads.push(outcome);
    }

    /// Snapshot name for the next snapshot of this case: `<file>__<case>`, and for a second
    /// object `<file>__<case>__<object>`.
    pub fn snapshot_name(&self, object: &str) -> String {
        let base = self.id.replace("::", "__");
        if self.loads.is_empty() {
            base
        } else {
            format!("{base}__{object}")
        }
    }
}

/// What a refused load of `outcome` means: the floors' verdict when the key line names a missing
/// helper or kfunc (a feature they know), `unsupported` when only the interpreter refuses it
/// ([`crate::jit::refused`]), otherwise a `fail` quoting the kernel.
pub fn refusal(outcome: &LoadOutcome, error: &libbpf_rs::Error) -> CaseError {
    let message = outcome.message.clone().unwrap_or_default();
    if let Some(feature) = missing_feature(&message)
        && crate::floors::floor(&feature).is_some()
    {
        return crate::floors::missing(&feature, &message);
    }
    crate::jit::refused(&message).unwrap_or_else(|| {
        CaseError::Fail(anyhow::anyhow!(
            "the kernel refused {}: {message} ({error:#})",
            outcome.object,
        ))
    })
}

/// The feature id a refusal's key line names as missing: the verifier's `program of this type
/// cannot use helper bpf_x#N` / `unknown func bpf_x#N`, libbpf's `extern (func ksym) 'x': not
/// found in kernel or module BTFs`.
fn missing_feature(message: &str) -> Option<String> {
    static FORMS: std::sync::LazyLock<[(regex::Regex, &str); 3]> = std::sync::LazyLock::new(|| {
        [
            (r"cannot use helper (\w+)#\d+", "helper"),
            (r"unknown func (\w+)#\d+", "helper"),
            (
                r"extern \(func ksym\) '(\w+)': not found in kernel",
                "kfunc",
            ),
        ]
        .map(|(re, kind)| (regex::Regex::new(re).expect("valid regex"), kind))
    });
    FORMS
        .iter()
        .find_map(|(re, kind)| re.captures(message).map(|c| format!("{kind}.{}", &c[1])))
}

/// The known kernel bug that keeps case `id` from running here: `$BPFCONF_KNOWN_BUGS` (a JSON
/// object, case id → reason) is set by `bpfconf` for the kernel it runs the suite on.
fn known_bug(id: &str) -> Option<String> {
    let bugs = std::env::var("BPFCONF_KNOWN_BUGS").ok()?;
    let bugs: std::collections::HashMap<String, String> = serde_json::from_str(&bugs).ok()?;
    bugs.get(id).cloned()
}

/// The running test binary's name without cargo's hash (`xdp` for `deps/xdp-1f2e…`).
pub fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let file = exe.file_name().unwrap_or_default().to_string_lossy();
    file.rsplit_once('-')
        .map_or(&*file, |(stem, _)| stem)
        .to_owned()
}

/// Switches that break the harness on purpose, to show the runner catches what they cause; read
/// only here, and only from the environment.
mod faults {
    use std::io::Write;

    /// `BPFCONF_FAULT_ABORT=<case id>` aborts the test binary as that case starts,
    /// `BPFCONF_FAULT_HANG=<case id>` makes that case never end, and
    /// `BPFCONF_FAULT_SPLAT=<case id>` writes a `WARNING:` line to the kernel log as it starts.
    pub fn before_case(id: &str) {
        let named = |var: &str| std::env::var(var).is_ok_and(|v| v == id);
        if named("BPFCONF_FAULT_SPLAT") {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/kmsg")
                .and_then(|mut kmsg| kmsg.write_all(b"WARNING: bpfconf splat test\n"));
        }
        if named("BPFCONF_FAULT_ABORT") {
            std::process::abort();
        }
        while named("BPFCONF_FAULT_HANG") {
            std::thread::park();
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

#[cfg(test)]
mod tests {
    use super::missing_feature;

    #[test]
    fn refusals_name_their_missing_feature() {
        let cases = [
            (
                "program of this type cannot use helper bpf_xdp_adjust_meta#54",
                Some("helper.bpf_xdp_adjust_meta"),
            ),
            ("unknown func bpf_loop#181", Some("helper.bpf_loop")),
            (
                "extern (func ksym) 'bpf_dynptr_from_skb': not found in kernel or module BTFs",
                Some("kfunc.bpf_dynptr_from_skb"),
            ),
            ("R1 invalid mem access 'scalar'", None),
        ];
        for (message, feature) in cases {
            assert_eq!(missing_feature(message).as_deref(), feature, "{message}");
        }
    }
}
