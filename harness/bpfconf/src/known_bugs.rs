//! `bpfconf matrix --known-bugs`: each known bug of kernels.toml run alone, in a VM of its own with
//! a short timeout, to say whether it still reproduces on the pinned build (a bug that no longer
//! does is a `known_bug` entry to remove).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use record::Outcome;

use crate::columns::watch;
use crate::kernels::{KernelSpec, fetch::fetch};
use crate::manifest::Manifest;
use crate::table::Table;
use crate::{run, vm};

/// The verdict on one known bug.
#[derive(Debug)]
pub struct Check {
    /// Kernel id.
    pub kernel: String,
    /// Case id.
    pub case: String,
    /// Whether the case still hangs, crashes or fails there.
    pub reproduces: bool,
    /// What was seen.
    pub evidence: String,
}

/// Runs every known bug of `kernels` that matches the cached build; VM logs and records go to `dir`.
pub fn check(kernels: &[KernelSpec], dir: &Path, timeout: Duration) -> Result<Vec<Check>> {
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
            let results = dir.join(format!("{}-bug{n}", k.id));
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
            let config = dir.join(format!("{}-bug{n}.toml", k.id));
            let command = |id: &str| vm::suite_command(id, Some(&args));
            fs::write(
                &config,
                vm::vmtest_toml(std::slice::from_ref(k), command, false, vm::cpus()),
            )?;
            let log = dir.join(format!("{}-bug{n}.log", k.id));
            eprintln!(
                "{}: running {case} alone (timeout {} s)",
                k.id,
                timeout.as_secs()
            );
            let column = watch::watch(vm::command(&config, &k.id)?, timeout, &log, |_| {})?;
            let outcome = run::load(std::slice::from_ref(&results))
                .ok()
                .and_then(|run| Some(run.cell(&case, &k.id)?.outcome));
            let (reproduces, evidence) = match (column.problem(timeout), outcome) {
                (None, Some(Outcome::Pass)) => (false, "passed".to_owned()),
                (_, Some(o)) if o != Outcome::Pass => (true, format!("outcome {o}")),
                (Some(p), _) => (true, p.lines().next().unwrap_or_default().to_owned()),
                (None, _) => (true, "no record".to_owned()),
            };
            checks.push(Check {
                kernel: k.id.clone(),
                case,
                reproduces,
                evidence: format!("{evidence} (log {})", log.display()),
            });
        }
    }
    Ok(checks)
}

/// The verdicts as a Markdown table.
pub fn markdown(checks: &[Check]) -> String {
    if checks.is_empty() {
        return "No known bug matches the selected kernels' builds.\n".into();
    }
    let mut table = Table::new(["kernel", "case", "still reproduces", "evidence"]);
    for c in checks {
        let yes = if c.reproduces { "yes" } else { "no" };
        table.row([c.kernel.as_str(), c.case.as_str(), yes, c.evidence.as_str()]);
    }
    table.to_string()
}
