//! The one runner every rule goes through: load as the rule says, check the expectation of the
//! running kernel's range, snapshot the whole log (and, for accepted rules, the translated
//! instructions), test-run accepted rules that expect a return value.

use testkit::floors::{self, Version};
use testkit::raw_load::{RawLoad, RawProgram};
use testkit::{Case, CaseError, CaseResult, Kernel, probe};

use super::rule::{Expect, Fixture, Rule, Verdict};
use super::spectre;

/// Where `kernel.unprivileged_bpf_disabled` lives: 0 lets users without capabilities load socket
/// filters and cgroup skb programs.
const UNPRIVILEGED_SYSCTL: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";

/// Runs rule `name` as case `verifier::<name>`.
pub fn run(name: &str, rule: &Rule) {
    Case::run(rule.prog, |case| {
        probe::prog_type(rule.prog)?;
        if rule.unprivileged {
            unprivileged_allowed()?;
        }
        let expect = expectation(rule)?;
        let fixture = Fixture::new()?;
        let asm = (rule.insns)(&fixture);
        let mut program = RawProgram::new(name, rule.prog, asm.to_bpf())
            .license(rule.license)
            .log_level(rule.level)
            .log_size(rule.log_size);
        if !rule.functions.is_empty() {
            program = program.functions(rule.functions);
        }
        if let Some(attach) = &rule.attach {
            program = program.expected_attach_type(attach.clone());
        }
        if expect.returns.is_some() {
            program = program.test_input(rule.input);
        }
        let load = if rule.unprivileged {
            case.load_raw_unprivileged(&program)?
        } else {
            case.load_raw(&program)
        };
        case.detail("insns", asm.len());
        case.detail("attempts", &load.attempts);
        needs(rule, &load)?;
        let wrong = mismatches(expect, &load);
        if !wrong.is_empty()
            && let Some(interpreter) =
                testkit::jit::refused(load.outcome.message.as_deref().unwrap_or_default())
        {
            return Err(interpreter);
        }
        if !wrong.is_empty() {
            return Err(CaseError::Fail(anyhow::anyhow!(
                "{}\nthe log:\n{}",
                wrong.join("\n"),
                load.log()
            )));
        }
        if load.outcome.loaded {
            case.snapshot_xlated(&load)?;
        }
        if let Some(returns) = expect.returns {
            let returned = test_run(rule, &load)?;
            case.detail("test_run_returned", returned);
            if returned != returns {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "the test run returned {returned}, not {returns}"
                )));
            }
        }
        Ok(())
    });
}

/// The rule's expectation for the running kernel.
fn expectation(rule: &Rule) -> CaseResult<&Expect> {
    let kernel = Kernel::current();
    let version = Version::of_kernel(&kernel.release, &kernel.build).ok_or_else(|| {
        CaseError::Error(anyhow::anyhow!(
            "the release of this kernel ({}) cannot be read, so the rule's kernel range cannot be chosen",
            kernel.release
        ))
    })?;
    let jit = testkit::jit::enabled();
    let mut spectre_v1 = None;
    for expect in rule.expect {
        if !expect.holds(version, jit) {
            continue;
        }
        if let Some(enforced) = expect.spectre_v1 {
            let actual = match spectre_v1 {
                Some(actual) => actual,
                None => *spectre_v1.insert(spectre::v1_enforced(version)?),
            };
            if actual != enforced {
                continue;
            }
        }
        return Ok(expect);
    }
    Err(CaseError::Error(anyhow::anyhow!(
        "the rule has no expectation for kernel {version}: add one"
    )))
}

/// `unsupported` (a platform limit, through the floors) unless this machine lets users without
/// capabilities load programs.
fn unprivileged_allowed() -> CaseResult {
    let id = "platform.unprivileged_bpf_disabled";
    let value = std::fs::read_to_string(UNPRIVILEGED_SYSCTL)
        .map_err(|e| CaseError::Error(anyhow::anyhow!("reading {UNPRIVILEGED_SYSCTL}: {e}")))?;
    let value = value.trim();
    if floors::has(id, value == "0") {
        return Ok(());
    }
    Err(floors::missing(
        id,
        format!("kernel.unprivileged_bpf_disabled is {value}"),
    ))
}

/// A refusal that shows a feature the rule needs is missing: the feature's floor decides.
fn needs(rule: &Rule, load: &RawLoad) -> CaseResult {
    let message = load.outcome.message.as_deref().unwrap_or_default();
    for need in rule.needs {
        let absent = !load.outcome.loaded && need.absent.find(message).is_some();
        if !floors::has(need.id, !absent) {
            return Err(floors::missing(
                need.id,
                format!("this kernel refused it: {message}"),
            ));
        }
    }
    Ok(())
}

/// How the load differs from `expect`, one line per difference.
fn mismatches(expect: &Expect, load: &RawLoad) -> Vec<String> {
    let outcome = &load.outcome;
    let log = load.log();
    let message = outcome.message.as_deref().unwrap_or_default();
    let mut wrong = Vec::new();
    match (expect.verdict, outcome.loaded) {
        (Verdict::Loads, false) => wrong.push(format!(
            "refused ({}): {message}, expected to load",
            outcome.errno.as_deref().unwrap_or_default()
        )),
        (Verdict::Refused(_), true) => wrong.push("the verifier accepted it".to_owned()),
        (Verdict::Refused(errno), false) if outcome.errno.as_deref() != Some(errno) => {
            wrong.push(format!("refused with {:?}, not {errno}", outcome.errno))
        }
        _ => {}
    }
    if let Some(key) = expect.key
        && key.find(message).is_none()
    {
        wrong.push(format!("the key line {message:?} lacks {key:?}"));
    }
    let mut at = 0;
    for pat in expect.log {
        match pat.find(&log[at..]) {
            Some(end) => at += end,
            None => wrong.push(format!("the log lacks {pat:?} (after byte {at})")),
        }
    }
    for pat in expect.not {
        if pat.find(log).is_some() {
            wrong.push(format!("the log has {pat:?}"));
        }
    }
    if let Some(errno) = expect.first_attempt {
        if load.attempts.first().and_then(|a| a.errno.as_deref()) != Some(errno) {
            wrong.push(format!(
                "the first load got {:?}, not {errno}",
                load.attempts[0].errno
            ));
        }
        if load.log_retries == 0 {
            wrong.push("the harness did not grow the log buffer and retry".to_owned());
        }
    }
    wrong
}

/// The accepted program's test-run return value; a type without a test run is judged by its
/// floor (`test_run.<type>`).
fn test_run(rule: &Rule, load: &RawLoad) -> CaseResult<u32> {
    const ENOTSUPP: i32 = 524;
    match &load.ran {
        Some(Ok(value)) => Ok(*value),
        Some(Err(e)) if [Some(ENOTSUPP), Some(libc::EOPNOTSUPP)].contains(&e.raw_os_error()) => {
            Err(floors::missing(
                &format!("test_run.{}", load.prog_type),
                format!("BPF_PROG_TEST_RUN answered {e}"),
            ))
        }
        Some(Err(e)) => Err(CaseError::Fail(anyhow::anyhow!(
            "BPF_PROG_TEST_RUN of a {:?} program failed: {e}",
            rule.prog
        ))),
        None => Err(CaseError::Fail(anyhow::anyhow!(
            "the program was not test-run"
        ))),
    }
}
