//! The columns of a run (what `bpfconf matrix` runs once the test binaries are built): the
//! suite on the host kernel and on each selected kernel under vmtest — kernels fetched when
//! missing, VMs run in parallel with a timeout each, every case's record in one run directory,
//! and an `error` record for every case a column should hold and does not.

mod progress;
pub mod watch;

use std::collections::VecDeque;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use record::{Outcome, Record};

use crate::kernels::{KernelSpec, fetch::fetch};
use crate::manifest::Manifest;
use crate::run::{Timing, kernel_order};
use crate::table::Table;
use crate::{suite, vm};
use progress::Progress;
use watch::ColumnRun;

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
    /// Each column also runs the kernel's own selftests (the listed corpora).
    pub selftests: bool,
    /// The manifest file the columns run (what `manifest` was read from or saved to).
    pub manifest: PathBuf,
    /// Extra environment for the test binaries of every column (`bpfconf suite --env`).
    pub env: Vec<(String, String)>,
}

/// Runs the columns; returns their timings. Records land in `opts.run_dir`.
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
                close_column(opts, &k.id, manifest, Some(why))?;
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
        let id = record::kernel_id(&record::kernel_release());
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("suite")
            .args(suite_args(&id, opts, false))
            .current_dir(crate::paths::workspace_root());
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
                close_column(opts, &id, manifest, Some(format!("{e:#}")))?;
                Timing {
                    kernel: id,
                    boot_s: None,
                    total_s: 0.0,
                    end: "error".into(),
                }
            }
        });
    }
    timings.sort_by_key(|t| kernel_order(&t.kernel));
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
        opts.manifest.display().to_string(),
        "--results".into(),
        opts.run_dir.display().to_string(),
        "--binary-timeout".into(),
        opts.binary_timeout.as_secs().to_string(),
        "--case-timeout".into(),
        opts.case_timeout.as_secs().to_string(),
    ];
    if opts.selftests {
        args.push("--selftests".into());
    }
    for (k, v) in &opts.env {
        args.extend(["--env".into(), format!("{k}={v}")]);
    }
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
    let run = watch::watch(cmd, opts.timeout, &log, |run: &ColumnRun| {
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
    close_column(opts, id, manifest, problem)?;
    Ok(Timing {
        kernel: id.to_owned(),
        boot_s: boot,
        total_s: total,
        end,
    })
}

/// Ends column `id`: an `error` record for each test of the manifest without a record (the
/// column's `problem` is why), and the `runner::column` record.
fn close_column(
    opts: &Options,
    id: &str,
    manifest: &Manifest,
    problem: Option<String>,
) -> Result<()> {
    let dir = opts.run_dir.as_path();
    let why = problem.clone().unwrap_or_default();
    for bin in &manifest.binaries {
        let tests: Vec<&str> = bin.tests.iter().map(String::as_str).collect();
        suite::record_missing(dir, id, &bin.name, &tests, &format!("no record: {why}"))?;
    }
    for corpus in crate::corpora::listed()?.iter().filter(|_| opts.selftests) {
        crate::corpora::record_missing(corpus, dir, id, &format!("no record: {why}"))?;
    }
    let outcome = if problem.is_some() {
        Outcome::Error
    } else {
        Outcome::Pass
    };
    record::write(dir, &Record::runner(id, "runner::column", outcome, problem))?;
    Ok(())
}

/// The timings as a Markdown table.
pub fn timings_markdown(timings: &[Timing]) -> String {
    let mut table = Table::new(["kernel", "boot s", "tests s", "total s", "end"]);
    for t in timings {
        let boot = t.boot_s.map_or("—".into(), |b| format!("{b:.1}"));
        let tests = t.total_s - t.boot_s.unwrap_or(0.0);
        table.row([
            t.kernel.clone(),
            boot,
            format!("{tests:.1}"),
            format!("{:.1}", t.total_s),
            t.end.clone(),
        ]);
    }
    table.to_string()
}
