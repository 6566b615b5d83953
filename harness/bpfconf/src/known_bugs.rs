//! `bpfconf matrix --known-bugs [--repeat N]`: each known bug of kernels.toml run alone, N times
//! (3 by default), each time in a VM of its own with a short timeout, to say in how many of the N
//! runs it reproduces on the pinned build, with each run's reason (a bug that never does is a
//! `known_bug` entry to remove; one that does only sometimes is a race to find, in the kernel or
//! in the test).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use record::Outcome;

use crate::columns::watch;
use crate::kernels::{KernelSpec, fetch::fetch};
use crate::manifest::Manifest;
use crate::table::Table;
use crate::vm;

/// The verdict on one known bug.
#[derive(Debug)]
pub struct Check {
    /// Kernel id.
    pub kernel: String,
    /// Case id.
    pub case: String,
    /// What each run saw: whether the case hung, crashed or failed there, and how.
    pub runs: Vec<Run>,
}

/// One run of a known bug.
#[derive(Debug)]
pub struct Run {
    /// The case hung, crashed or failed.
    pub reproduced: bool,
    /// What was seen: the record's outcome and reason, or how the VM ended.
    pub evidence: String,
}

impl Check {
    /// The runs in which the bug reproduced.
    pub fn reproduced(&self) -> usize {
        self.runs.iter().filter(|r| r.reproduced).count()
    }
}

/// Runs every known bug of `kernels` that matches the cached build `repeat` times; VM logs and
/// records go to `dir`.
pub fn check(
    kernels: &[KernelSpec],
    dir: &Path,
    timeout: Duration,
    repeat: usize,
) -> Result<Vec<Check>> {
    fs::create_dir_all(dir)?;
    let mut checks = Vec::new();
    let manifest = Manifest::load(&Manifest::path())?;
    for k in kernels {
        let release = fetch(k, &|_| {})?.release;
        for (n, (case, _)) in k.known_bugs_for(&release)?.into_iter().enumerate() {
            let (binary, test) = manifest
                .tests()
                .find(|(_, test)| record::case_id(test) == case)
                .with_context(|| format!("known bug `{case}`: no test of the suite runs it"))?;
            let mut runs = Vec::new();
            for r in 1..=repeat {
                let name = format!("{}-bug{n}-run{r}", k.id);
                eprintln!(
                    "{}: running {case} alone, run {r} of {repeat} (timeout {} s)",
                    k.id,
                    timeout.as_secs()
                );
                runs.push(run_once(k, &case, binary, test, dir, &name, timeout)?);
            }
            checks.push(Check {
                kernel: k.id.clone(),
                case,
                runs,
            });
        }
    }
    Ok(checks)
}

/// Runs test `test` of `binary` (case `case`) once in a VM of kernel `k`; its records, vmtest
/// config and log go to `dir` as `name/`, `name.toml` and `name.log`.
fn run_once(
    k: &KernelSpec,
    case: &str,
    binary: &str,
    test: &str,
    dir: &Path,
    name: &str,
    timeout: Duration,
) -> Result<Run> {
    let results = dir.join(name);
    let manifest = Manifest::path();
    let args = [
        "--kernel",
        &k.id,
        "--manifest",
        &manifest.display().to_string(),
        "--results",
        &results.display().to_string(),
        "--binary",
        binary,
        "--run-known-bugs",
        // Whether the bug reproduces, not whether a snapshot (never taken there) matches.
        "--env",
        "INSTA_FORCE_PASS=1",
        test,
    ]
    .map(str::to_owned);
    let config = dir.join(format!("{name}.toml"));
    let command = |id: &str| vm::suite_command(id, Some(&args));
    fs::write(
        &config,
        vm::vmtest_toml(std::slice::from_ref(k), command, false, vm::cpus()),
    )?;
    let log = dir.join(format!("{name}.log"));
    let ran = watch::watch(vm::command(&config, &k.id)?, timeout, &log, |_| {})?;
    let record = record::read_dir(&results)
        .ok()
        .and_then(|(records, _)| records.into_iter().find(|r| r.case == case));
    let (reproduced, evidence) = match (ran.problem(timeout), record) {
        (None, Some(r)) if r.outcome == Outcome::Pass => (false, "passed".to_owned()),
        (_, Some(r)) if r.outcome != Outcome::Pass => {
            let reason = r.reason.unwrap_or_default();
            let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            (true, format!("{}: {reason}", r.outcome))
        }
        (Some(p), _) => (true, p.lines().next().unwrap_or_default().to_owned()),
        (None, _) => (true, "no record".to_owned()),
    };
    Ok(Run {
        reproduced,
        evidence: format!(
            "{evidence} (records {}, log {})",
            results.display(),
            log.display()
        ),
    })
}

/// The verdicts as a Markdown table: per bug, in how many runs it reproduced, and each run.
pub fn markdown(checks: &[Check]) -> String {
    if checks.is_empty() {
        return "No known bug matches the selected kernels' builds.\n".into();
    }
    let mut table = Table::new(["kernel", "case", "reproduces", "runs"]);
    for c in checks {
        let runs: Vec<String> = (c.runs.iter().enumerate())
            .map(|(i, r)| format!("{}. {}", i + 1, r.evidence))
            .collect();
        table.row([
            c.kernel.clone(),
            c.case.clone(),
            format!("in {} of {} runs", c.reproduced(), c.runs.len()),
            runs.join("\n"),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_counts_the_runs_that_reproduced() {
        let run = |reproduced, evidence: &str| Run {
            reproduced,
            evidence: evidence.to_owned(),
        };
        let table = markdown(&[Check {
            kernel: "6.1".into(),
            case: "m::c".into(),
            runs: vec![
                run(true, "fail: a | b"),
                run(false, "passed"),
                run(true, "fail: c"),
            ],
        }]);
        assert!(
            table.contains(
                "| 6.1 | m::c | in 2 of 3 runs | 1. fail: a \\| b<br>2. passed<br>3. fail: c |"
            ),
            "{table}"
        );
    }
}
