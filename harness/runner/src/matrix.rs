//! `bpfconf matrix`: the whole suite on the host kernel and on every kernel of the matrix under
//! vmtest — test binaries built once on the host, kernels fetched when missing, VMs run in parallel
//! with a timeout each, every case's record in one run directory, and an `error` record for every
//! case a column should hold and does not.

use std::collections::VecDeque;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::column::{self, ColumnRun};
use crate::kernels::{KernelSpec, fetch::fetch};
use crate::suite::{self, Manifest};
use crate::vm;
use bpfconf_record::Outcome;
use bpfconf_record::{self as record, Record};

/// Builds the suite's test binaries (`cargo test --tests --no-run` of the root package), lists
/// their tests and writes the manifest the columns run from ([`Manifest::path`]).
pub fn build_tests() -> Result<Manifest> {
    let out = duct::cmd!(
        "cargo",
        "test",
        "-p",
        "bpf-conformance",
        "--tests",
        "--no-run",
        "--message-format=json-render-diagnostics"
    )
    .dir(crate::workspace_root())
    .stdout_capture()
    .run()
    .context("building the test binaries (cargo test --no-run)")?;
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["profile"]["test"] == true
            && let Some(exe) = msg["executable"].as_str()
        {
            bins.push(PathBuf::from(exe));
        }
    }
    bins.sort();
    bins.dedup();
    let manifest = Manifest::list(&bins)?;
    manifest.save()?;
    Ok(manifest)
}

/// What to run.
pub struct Options {
    /// VM kernels to run (already selected from kernels.toml).
    pub kernels: Vec<KernelSpec>,
    /// Also run the suite on the host kernel.
    pub host: bool,
    /// VMs at once.
    pub jobs: usize,
    /// Per-kernel timeout.
    pub timeout: Duration,
    /// Per-test-binary timeout inside a column.
    pub binary_timeout: Duration,
    /// Per-case timeout inside a column.
    pub case_timeout: Duration,
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Timing of one kernel's column (`timings.json` of a run directory holds them all).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Kernel id.
    pub kernel: String,
    /// Boot, 9p root and guest agent: until the suite's first line (None on the host).
    pub boot_s: Option<f64>,
    /// The whole column.
    pub total_s: f64,
    /// How it ended (`ok`, `timeout`, `kernel panic`, …).
    pub end: String,
}

/// Runs the matrix; returns the timings. Records land in `opts.run_dir`.
pub fn run(opts: &Options, manifest: &Manifest) -> Result<Vec<Timing>> {
    fs::create_dir_all(&opts.run_dir)?;
    let mut timings = Vec::new();
    let progress = Progress::new();

    // Fetch first (network and disk), one kernel at a time.
    let mut ready = Vec::new();
    for k in &opts.kernels {
        let bar = progress.bar(k.id.clone());
        let prepared = fetch(k, &|step| progress.step(&bar, step.to_owned(), false));
        progress.finish(
            &bar,
            match &prepared {
                Ok(p) => format!("ready ({})", p.release),
                Err(e) => format!("fetch failed: {e:#}"),
            },
        );
        match prepared {
            Ok(_) => ready.push(k.clone()),
            Err(e) => {
                let why = format!("fetching the kernel failed: {e:#}");
                close_column(&opts.run_dir, &k.id, manifest, Some(why))?;
                timings.push(Timing {
                    kernel: k.id.clone(),
                    boot_s: None,
                    total_s: 0.0,
                    end: "fetch failed".into(),
                });
            }
        }
    }

    if opts.host {
        let id = bpfconf_record::kernel_id(&bpfconf_record::kernel_release());
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("suite")
            .args(suite_args(&id, opts, false))
            .current_dir(crate::workspace_root());
        timings.push(run_column(&id, cmd, None, opts, manifest, &progress)?);
    }

    let config = opts.run_dir.join("vmtest.toml");
    fs::write(
        &config,
        vm::vmtest_toml(
            &ready,
            |id| vm::suite_command(id, Some(&suite_args(id, opts, true))),
            false,
            vm::cpus(),
        ),
    )?;
    let queue = Mutex::new(ready.into_iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue lock").pop_front();
                    let Some(k) = next else { break };
                    let timing = vm::command(&config, &k.id).and_then(|cmd| {
                        run_column(&k.id, cmd, Some(&k), opts, manifest, &progress)
                    });
                    results.lock().expect("results lock").push((k.id, timing));
                }
            });
        }
    });
    for (id, timing) in results.into_inner().expect("results lock") {
        timings.push(match timing {
            Ok(t) => t,
            Err(e) => {
                close_column(&opts.run_dir, &id, manifest, Some(format!("{e:#}")))?;
                Timing {
                    kernel: id,
                    boot_s: None,
                    total_s: 0.0,
                    end: "error".into(),
                }
            }
        });
    }
    timings.sort_by_key(|t| crate::report::kernel_order(&t.kernel));
    fs::write(
        opts.run_dir.join("timings.json"),
        serde_json::to_string_pretty(&timings)?,
    )?;
    Ok(timings)
}

/// The arguments of `bpfconf suite` for column `id`; inside a VM the environment that selects
/// the cache, the matrix file, the test-only faults and insta's switches (`INSTA_FORCE_PASS`
/// records every snapshot difference as `.snap.new` and lets the behaviour checks decide) goes
/// along explicitly.
fn suite_args(id: &str, opts: &Options, vm: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--kernel".into(),
        id.into(),
        "--manifest".into(),
        Manifest::path().display().to_string(),
        "--results".into(),
        opts.run_dir.display().to_string(),
        "--binary-timeout".into(),
        opts.binary_timeout.as_secs().to_string(),
        "--case-timeout".into(),
        opts.case_timeout.as_secs().to_string(),
    ];
    if vm {
        for (k, v) in std::env::vars() {
            let forwarded = [
                "BPFCONF_CACHE",
                "BPFCONF_KERNELS",
                "INSTA_FORCE_PASS",
                "INSTA_UPDATE",
            ];
            if k.starts_with("BPFCONF_FAULT_") || forwarded.contains(&k.as_str()) {
                args.extend(["--env".into(), format!("{k}={v}")]);
            }
        }
    }
    args
}

/// Runs one column's runner, with progress; afterwards every test the column lacks gets an
/// `error` record, and `runner::column` says whether the runner reached its end cleanly.
fn run_column(
    id: &str,
    cmd: Command,
    spec: Option<&KernelSpec>,
    opts: &Options,
    manifest: &Manifest,
    progress: &Progress,
) -> Result<Timing> {
    let bar = progress.bar(id.to_owned());
    bar.set_message(if spec.is_some() {
        "booting"
    } else {
        "starting"
    });
    let total = manifest.tests().count();
    let log = opts.run_dir.join(format!("{id}.log"));
    let run = column::watch(cmd, opts.timeout, &log, |run: &ColumnRun| {
        let running = run.running.iter().next_back();
        let message = format!(
            "{} of {total} cases done{}",
            run.cases_done,
            running.map_or(String::new(), |t| format!(", running {t}"))
        );
        progress.step(&bar, message, true);
    })?;
    let problem = run.problem(opts.timeout);
    let end = match (&problem, run.finished) {
        (None, _) => "ok".to_owned(),
        (Some(_), Some(exit)) => format!("exit {exit}"),
        (Some(_), None) if run.timed_out => "timeout".into(),
        (Some(_), None) if run.panicked => "kernel panic".into(),
        (Some(_), None) if run.killed_wedged => "kernel stalled".into(),
        (Some(_), None) if run.boot.is_none() => "boot failure".into(),
        (Some(_), None) => "runner stopped".into(),
    };
    let boot = spec.and(run.boot).map(|d| d.as_secs_f64());
    let total = run.total.as_secs_f64();
    progress.finish(
        &bar,
        format!(
            "{end}: {} cases, {total:.0} s (boot {:.1} s); log {}",
            run.cases_done,
            boot.unwrap_or(0.0),
            log.display()
        ),
    );
    close_column(&opts.run_dir, id, manifest, problem)?;
    Ok(Timing {
        kernel: id.to_owned(),
        boot_s: boot,
        total_s: total,
        end,
    })
}

/// Ends column `id`: an `error` record for each test of the manifest without a record (the
/// column's `problem` is why), and the `runner::column` record.
fn close_column(dir: &Path, id: &str, manifest: &Manifest, problem: Option<String>) -> Result<()> {
    let why = problem.clone().unwrap_or_default();
    for bin in &manifest.binaries {
        let tests: Vec<&str> = bin.tests.iter().map(String::as_str).collect();
        suite::record_missing(dir, id, &bin.name, &tests, &format!("no record: {why}"))?;
    }
    for corpus in crate::selftests::listed()? {
        crate::selftests::record_missing(&corpus, dir, id, &format!("no record: {why}"))?;
    }
    let outcome = if problem.is_some() {
        Outcome::Error
    } else {
        Outcome::Pass
    };
    record::write(dir, &Record::runner(id, "runner::column", outcome, problem))?;
    Ok(())
}

/// Spinners with each kernel's stage on a terminal; lines otherwise (CI logs): every step of a
/// fetch or build, the cases done at most every [`PLAIN_EVERY`], and each finished stage, each
/// with the time the kernel's stage has taken.
struct Progress {
    bars: MultiProgress,
    plain: bool,
    /// When each bar last printed a throttled line (plain mode).
    printed: Mutex<std::collections::HashMap<String, Instant>>,
}

/// How often a column's case count is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(60);

impl Progress {
    fn new() -> Self {
        Progress {
            bars: MultiProgress::new(),
            plain: !std::io::stderr().is_terminal(),
            printed: Default::default(),
        }
    }

    /// Shows `message` on `bar`; without a terminal, prints it as a line (a `throttled` one at
    /// most every [`PLAIN_EVERY`] per bar).
    fn step(&self, bar: &ProgressBar, message: String, throttled: bool) {
        if self.plain {
            let mut printed = self.printed.lock().unwrap_or_else(|e| e.into_inner());
            let last = printed.get(&bar.prefix()).copied();
            if !throttled || last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                eprintln!(
                    "{}: {message} ({} s)",
                    bar.prefix(),
                    bar.elapsed().as_secs()
                );
                printed.insert(bar.prefix(), Instant::now());
            }
        }
        bar.set_message(message);
    }

    fn bar(&self, prefix: impl Into<String>) -> ProgressBar {
        let style = ProgressStyle::with_template("{prefix:>9} {spinner} {elapsed:>4} {msg}")
            .expect("valid template");
        let bar = self.bars.add(
            ProgressBar::new_spinner()
                .with_style(style)
                .with_prefix(prefix.into()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    fn finish(&self, bar: &ProgressBar, message: String) {
        if self.plain {
            eprintln!("{}: {message}", bar.prefix());
        }
        bar.finish_with_message(message);
    }
}

/// A fresh run directory under `target/bpfconf-runs/`.
pub fn new_run_dir() -> Result<PathBuf> {
    let stamp = duct::cmd!("date", "+%Y%m%d-%H%M%S")
        .read()
        .context("running date")?;
    let dir = crate::target_dir().join("bpfconf-runs").join(stamp.trim());
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    Ok(dir)
}

/// The timings as a Markdown table.
pub fn timings_markdown(timings: &[Timing]) -> String {
    let mut out =
        String::from("| kernel | boot s | tests s | total s | end |\n|---|---|---|---|---|\n");
    for t in timings {
        let boot = t.boot_s.map_or("—".into(), |b| format!("{b:.1}"));
        let tests = t.total_s - t.boot_s.unwrap_or(0.0);
        out.push_str(&format!(
            "| {} | {boot} | {tests:.1} | {:.1} | {} |\n",
            t.kernel, t.total_s, t.end
        ));
    }
    out
}
