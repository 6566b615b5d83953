//! `bpfconf suite`: runs the suite's test binaries on the running kernel (the host's column, and
//! inside every VM) so that each case the column should hold leaves a record. A test that never
//! wrote one (its binary aborted, hung or crashed the kernel) becomes an `error` record naming the
//! binary, how it ended and the tail of its output; kernel log splats while a binary ran become
//! an `error` record of that binary. Progress goes to stdout as [`Event`] lines for the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use record::{Event, Outcome, Record};

use crate::kernels::{KernelSpec, Kind};
use crate::kmsg::Kmsg;
use crate::manifest::{Binary, Manifest};
use crate::watched;

/// What `bpfconf suite` runs.
pub struct Options {
    /// The column's kernel id.
    pub kernel: String,
    /// Its kernels.toml entry (known bugs, allowed splats, kept config), when it has one.
    pub spec: Option<KernelSpec>,
    /// The run directory.
    pub results: PathBuf,
    /// libtest threads per binary.
    pub threads: usize,
    /// A binary still running after this is killed.
    pub timeout: Duration,
    /// A case still running after this is killed with its binary (the other cases run again).
    pub case_timeout: Duration,
    /// Extra environment for the test binaries.
    pub env: Vec<(String, String)>,
    /// Only the tests whose names contain this (libtest's filter).
    pub filter: Option<String>,
    /// Only this binary.
    pub binary: Option<String>,
    /// Run the kernel's known bugs too (to see whether they still reproduce).
    pub run_known_bugs: bool,
    /// Run the listed corpora of the kernel's own selftests after the test binaries.
    pub selftests: bool,
}

/// Runs every binary of `manifest`; returns the exit status: 0 when every binary exited 0 and the
/// runner had nothing to add.
pub fn run(manifest: &Manifest, opts: &Options) -> Result<i32> {
    let release = record::kernel_release();
    Event::Started {
        kernel: opts.kernel.clone(),
        release: release.clone(),
    }
    .emit();
    if let Some(spec) = opts.spec.as_ref().filter(|s| !s.jit) {
        check_jit_off(&spec.id)?;
    }
    if opts.spec.as_ref().is_some_and(|s| s.kind != Kind::Host) {
        allow_unprivileged_bpf()?;
    }
    let env = environment(opts, &release)?;
    let allowed = allowed_splats(opts.spec.as_ref())?;
    let mut clean = true;
    let selected = manifest
        .binaries
        .iter()
        .filter(|b| opts.binary.as_ref().is_none_or(|n| *n == b.name));
    for bin in selected {
        Event::Binary {
            name: bin.name.clone(),
        }
        .emit();
        let mut kmsg = Kmsg::open_at_end()
            .map_err(|e| anyhow::anyhow!("cannot read the kernel log (/dev/kmsg): {e}"));
        let expected: Vec<String> = bin
            .tests
            .iter()
            .filter(|t| opts.filter.as_ref().is_none_or(|f| t.contains(f.as_str())))
            .cloned()
            .collect();
        let mut splats = Vec::new();
        let mut on_case_event = |running: &BTreeSet<String>| {
            if let Ok(kmsg) = kmsg.as_mut() {
                for splat in kmsg.splats(&allowed) {
                    let during: Vec<&str> = running.iter().map(String::as_str).collect();
                    splats.push(format!("{splat} (while {} ran)", during.join(", ")));
                }
            }
        };
        let ran = run_binary(bin, &expected, opts, &env, &mut on_case_event)?;
        on_case_event(&BTreeSet::new());
        if let Err(e) = &kmsg {
            splats.push(format!("{e:#}"));
        }
        if !splats.is_empty() {
            let reason = format!(
                "kernel log while {} ran: {}",
                bin.name,
                splats
                    .iter()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let mut r = Record::runner(
                &opts.kernel,
                &format!("{}::kernel_log", bin.name),
                Outcome::Error,
                Some(reason),
            );
            r.binary = bin.name.clone();
            r.kernel_release = release.clone();
            record::write(&opts.results, &r)?;
        }
        clean &= ran.clean && splats.is_empty();
        Event::BinaryEnded {
            name: bin.name.clone(),
            end: ran.ends.join("; "),
            missing: ran.missing,
        }
        .emit();
    }
    // The kernel's own selftests of every listed tree, after the test binaries.
    if opts.selftests {
        clean &= crate::corpora::run_in_column(
            &opts.kernel,
            &opts.results,
            opts.timeout,
            &env,
            &allowed,
        )?;
    }
    let exit = if clean { 0 } else { 1 };
    // Inside a VM the root is mounted with loose caching: write the records back before it stops.
    nix::unistd::sync();
    Event::Finished { exit }.emit();
    Ok(exit)
}

/// Where the kernel keeps whether users without capabilities may load programs.
pub const UNPRIVILEGED_BPF: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";

/// Inside a VM the suite owns the kernel: `kernel.unprivileged_bpf_disabled` 2 (off, as Debian
/// ships it, and changeable) becomes 0 so the unprivileged verifier rules run. 1 cannot be undone
/// without a reboot: it stays, and those rules say so (`unsupported`, checked when they run).
/// Never on the host.
pub fn allow_unprivileged_bpf() -> Result<()> {
    let value = fs::read_to_string(UNPRIVILEGED_BPF)
        .with_context(|| format!("reading {UNPRIVILEGED_BPF}"))?;
    if value.trim() == "2" {
        fs::write(UNPRIVILEGED_BPF, "0")
            .with_context(|| format!("writing 0 to {UNPRIVILEGED_BPF}"))?;
    }
    Ok(())
}

/// A `jit = false` column (kernels.toml) must run with the JIT off: its kernel command line sets
/// `net.core.bpf_jit_enable=0`; anything else would make it a copy of its JIT twin.
fn check_jit_off(id: &str) -> Result<()> {
    let path = "/proc/sys/net/core/bpf_jit_enable";
    let value = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    if value.trim() != "0" {
        anyhow::bail!(
            "kernel {id} is the interpreter column (jit = false) but {path} is {}",
            value.trim()
        );
    }
    Ok(())
}

/// How a binary's tests went over its runs.
struct Ran {
    /// How each run of the binary ended.
    ends: Vec<String>,
    /// Tests the runner recorded as `error` (crashed, hung or never reached).
    missing: usize,
    /// Every run exited 0 and every test wrote its own record.
    clean: bool,
}

/// Runs `expected` tests of `bin` until each has a record. A run that crashes or hangs loses only
/// its culprit: a case past `--case-timeout` is named by its start event; otherwise the rest runs
/// again one test at a time, where libtest names each test before it runs it ([`Announced`]), so
/// the test the binary died in — even before its case started (a static initializer, a helper
/// thread, an abort before `Case::run`) — gets the `error` record and the others run on, at the
/// usual parallelism, in a new process. A run that neither records nor names anything ends it:
/// the binary dies before any test (its remaining tests are `error`). `on_case_event` sees the
/// cases running whenever one starts or ends.
fn run_binary(
    bin: &Binary,
    expected: &[String],
    opts: &Options,
    env: &[(String, String)],
    on_case_event: &mut dyn FnMut(&BTreeSet<String>),
) -> Result<Ran> {
    let mut todo: Vec<String> = expected.to_vec();
    let mut threads = opts.threads;
    let mut ran = Ran {
        ends: Vec::new(),
        missing: 0,
        clean: true,
    };
    for attempt in 1.. {
        let mut cmd = Command::new(&bin.path);
        cmd.arg(format!("--test-threads={threads}"))
            .envs(env.iter().cloned());
        // The tests the column must hold, by name: a binary may have others (fixtures, tests of
        // the runner itself) that are not the column's.
        match (&opts.filter, attempt) {
            (Some(filter), 1) => {
                cmd.arg(filter);
            }
            _ => {
                cmd.arg("--exact").args(&todo);
            }
        }
        let mut running: BTreeMap<String, Instant> = BTreeMap::new();
        let mut announced = Announced::default();
        let mut tail = Tail::default();
        let ended = watched::run(cmd, opts.timeout, |line| {
            println!("{line}");
            tail.push(line);
            announced.line(line);
            match Event::parse(line) {
                Some(Event::CaseStarted { test }) => {
                    running.insert(test, Instant::now());
                }
                Some(Event::CaseEnded { test }) => {
                    on_case_event(&running.keys().cloned().collect());
                    running.remove(&test);
                }
                _ => return watched::Next::Go,
            }
            watched::Next::KillAt(running.values().min().map(|t| *t + opts.case_timeout))
        })?;
        let recorded = recorded_tests(&opts.results, &opts.kernel, &bin.name);
        let before = todo.len();
        todo.retain(|t| !recorded.contains(t));
        let progressed = todo.len() < before;
        // The case past its timeout: the one running longest.
        let overdue = (running.iter())
            .filter(|(t, _)| !recorded.contains(*t))
            .min_by_key(|(_, started)| **started)
            .map(|(t, _)| t.clone());
        let end = if ended.timed_out && overdue.is_some() {
            format!(
                "killed: a case ran longer than {} s",
                opts.case_timeout.as_secs()
            )
        } else if ended.timed_out {
            format!("killed after the {} s timeout", opts.timeout.as_secs())
        } else if let Some(sig) = ended.status.signal() {
            format!("killed by signal {}", signal_name(sig))
        } else {
            format!("exited with status {}", ended.status.code().unwrap_or(-1))
        };
        // libtest exits 101 when a test failed: the run itself went to its end.
        let completed = matches!(ended.status.code(), Some(0 | 101)) && !ended.timed_out;
        ran.clean &= ended.status.success();
        ran.ends.push(end.clone());
        if completed || todo.is_empty() {
            let why = format!(
                "no record: test binary {} {end} without reaching this test; its last output:\n{}",
                bin.name,
                tail.text()
            );
            let left: Vec<&str> = todo.iter().map(String::as_str).collect();
            ran.missing += record_missing(&opts.results, &opts.kernel, &bin.name, &left, &why)?;
            break;
        }
        let culprit = if ended.timed_out && overdue.is_some() {
            overdue
        } else if threads > 1 {
            // Another test may have killed it while these ran: one at a time tells.
            threads = 1;
            continue;
        } else {
            announced.running().filter(|t| todo.contains(t))
        };
        let Some(culprit) = culprit else {
            if progressed {
                continue;
            }
            let why = format!(
                "no record: test binary {} {end} before any test could be named; its last \
                 output:\n{}",
                bin.name,
                tail.text()
            );
            let left: Vec<&str> = todo.iter().map(String::as_str).collect();
            ran.missing += record_missing(&opts.results, &opts.kernel, &bin.name, &left, &why)?;
            break;
        };
        let why = format!(
            "no record: test binary {} {end} while this test ran; its last output:\n{}",
            bin.name,
            tail.text()
        );
        ran.missing += record_missing(&opts.results, &opts.kernel, &bin.name, &[&culprit], &why)?;
        todo.retain(|t| *t != culprit);
        threads = opts.threads;
        if todo.is_empty() {
            break;
        }
    }
    ran.clean &= ran.missing == 0;
    Ok(ran)
}

/// The test libtest is running, from its output with one test thread: it prints `test NAME ... `
/// (flushed, no newline) before it runs a test and the result (`ok`, `FAILED`, `ignored`) after
/// it, possibly on a later line when other output came in between.
#[derive(Debug, Default)]
struct Announced(Option<String>);

impl Announced {
    fn line(&mut self, line: &str) {
        let rest = match line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... "))
        {
            Some((name, rest)) => {
                self.0 = Some(name.trim().to_owned());
                rest
            }
            None => line,
        };
        if ["ok", "FAILED", "ignored"]
            .iter()
            .any(|result| rest.trim_start().starts_with(result))
        {
            self.0 = None;
        }
    }

    /// The test announced and not finished.
    fn running(&self) -> Option<String> {
        self.0.clone()
    }
}

/// The tests of `binary` that have a record of `kernel` in `results`.
fn recorded_tests(results: &Path, kernel: &str, binary: &str) -> BTreeSet<String> {
    fs::read_dir(results.join(kernel))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|text| serde_json::from_str::<Record>(&text).ok())
        .filter(|r| r.binary == binary)
        .map(|r| r.test)
        .collect()
}

/// Writes an `error` record, with `why`, for each of `tests` of `binary` that has no record of
/// `kernel` in `results`; returns how many it wrote.
pub fn record_missing(
    results: &Path,
    kernel: &str,
    binary: &str,
    tests: &[&str],
    why: &str,
) -> Result<usize> {
    let seen = recorded_tests(results, kernel, binary);
    let mut written = 0;
    for test in tests.iter().filter(|t| !seen.contains(**t)) {
        // libtest's name: module-qualified in the one test binary, and the case id's usual form.
        let mut r = Record::runner(kernel, test, Outcome::Error, Some(why.to_owned()));
        r.binary = binary.to_owned();
        r.test = (*test).to_owned();
        record::write(results, &r)?;
        written += 1;
    }
    Ok(written)
}

/// The test binaries' environment: the column's id and results, its known bugs, its kept config.
pub(crate) fn environment(opts: &Options, release: &str) -> Result<Vec<(String, String)>> {
    let root = crate::paths::workspace_root();
    let mut env = vec![
        ("BPFCONF_KERNEL".into(), opts.kernel.clone()),
        (
            record::RESULTS_ENV.into(),
            opts.results.display().to_string(),
        ),
        // A kernel without committed snapshots gets baselines written for review (.snap.new).
        (
            "INSTA_UPDATE".into(),
            std::env::var("INSTA_UPDATE").unwrap_or_else(|_| "new".into()),
        ),
        ("INSTA_WORKSPACE_ROOT".into(), root.display().to_string()),
        // Symbolising a backtrace reads the binary's debug info: slow over 9p under emulation.
        ("RUST_BACKTRACE".into(), "0".into()),
    ];
    if let Some(spec) = &opts.spec {
        let bugs: BTreeMap<String, String> = spec.known_bugs_for(release)?;
        if !bugs.is_empty() && !opts.run_known_bugs {
            env.push(("BPFCONF_KNOWN_BUGS".into(), serde_json::to_string(&bugs)?));
        }
        let config = crate::kernels::kernel_dir(&spec.id).join("config");
        if config.exists() {
            env.push(("BPFCONF_KCONFIG".into(), config.display().to_string()));
        }
    }
    env.extend(opts.env.iter().cloned());
    Ok(env)
}

fn allowed_splats(spec: Option<&KernelSpec>) -> Result<Vec<regex::Regex>> {
    spec.map_or(&[][..], |s| &s.allowed_splats)
        .iter()
        .map(|a| {
            regex::Regex::new(&a.pattern)
                .with_context(|| format!("allowed_splat pattern `{}`", a.pattern))
        })
        .collect()
}

/// The last lines of a binary's output.
#[derive(Default)]
struct Tail(std::collections::VecDeque<String>);

impl Tail {
    const LINES: usize = 15;

    fn push(&mut self, line: &str) {
        if self.0.len() == Self::LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }

    fn text(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig).map_or_else(|_| format!("{sig}"), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libtest's one-thread output names the running test, whatever comes between its name and
    /// its result; a finished test is no culprit.
    #[test]
    fn libtest_announces_the_running_test() {
        let mut a = Announced::default();
        for line in [
            "running 3 tests",
            "test xdp::drops ... ok",
            "test xdp::bounces ... bpfconf-event {\"event\":\"case_started\",\"test\":\"xdp::bounces\"}",
            "bpfconf-event {\"event\":\"case_ended\",\"test\":\"xdp::bounces\"}",
            "FAILED",
        ] {
            a.line(line);
        }
        assert_eq!(a.running(), None);
        a.line("test crash::aborts_before_case ... ");
        assert_eq!(a.running().as_deref(), Some("crash::aborts_before_case"));
        a.line("fatal runtime error: something, aborting");
        assert_eq!(a.running().as_deref(), Some("crash::aborts_before_case"));
    }

    #[test]
    fn missing_tests_get_error_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut ran = Record::runner("6.1", "xdp::drops", Outcome::Pass, None);
        (ran.binary, ran.test) = ("suite".into(), "xdp::drops".into());
        record::write(dir.path(), &ran).unwrap();
        let tests = ["xdp::drops", "xdp::bounces"];
        let n = record_missing(dir.path(), "6.1", "suite", &tests, "aborted").unwrap();
        assert_eq!(n, 1);
        let (records, _) = record::read_dir(dir.path()).unwrap();
        let gap = records.iter().find(|r| r.test == "xdp::bounces").unwrap();
        assert_eq!(
            (gap.outcome, gap.case.as_str()),
            (Outcome::Error, "xdp::bounces")
        );
    }
}
