//! `bpfconf matrix`: the whole suite on the host kernel and on every kernel of the matrix under
//! vmtest — test binaries built once on the host, kernels fetched when missing, VMs run in parallel
//! with a timeout each, every case's record in one run directory.

use std::collections::VecDeque;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::kernels::{KernelSpec, fetch::fetch};
use crate::outcome::Outcome;
use crate::record::{self, Record};
use crate::vm::{self, VmEnd};

/// `target/bpfconf-tests.txt`: the suite's test binaries, one path per line.
pub fn tests_list_path() -> PathBuf {
    crate::workspace_root().join("target/bpfconf-tests.txt")
}

/// Builds every test binary of the workspace (`cargo test --no-run`) and writes their list.
pub fn build_tests() -> Result<Vec<PathBuf>> {
    let out = duct::cmd!(
        "cargo",
        "test",
        "--workspace",
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
    let list: String = bins.iter().map(|b| format!("{}\n", b.display())).collect();
    fs::write(tests_list_path(), list).context("writing target/bpfconf-tests.txt")?;
    Ok(bins)
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
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Timing of one kernel's column.
#[derive(Debug, Serialize)]
pub struct Timing {
    /// Kernel id.
    pub kernel: String,
    /// Boot, 9p root and guest agent: until the suite's first line (None on the host).
    pub boot_s: Option<f64>,
    /// The whole column.
    pub total_s: f64,
    /// How it ended (`ok`, `exit N`, `timeout`, `boot failure`).
    pub end: String,
}

/// Runs the matrix; returns the timings. Records land in `opts.run_dir`.
pub fn run(opts: &Options, bins: &[PathBuf]) -> Result<Vec<Timing>> {
    fs::create_dir_all(&opts.run_dir)?;
    let mut timings = Vec::new();
    let progress = Progress::new();

    // Fetch first (network and disk), one kernel at a time.
    let mut ready = Vec::new();
    for k in &opts.kernels {
        let bar = progress.bar(k.id.clone());
        let prepared = fetch(k, &|step| bar.set_message(step.to_owned()));
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
                write_vm_record(
                    &opts.run_dir,
                    &k.id,
                    Outcome::Error,
                    Some(format!("fetching the kernel failed: {e:#}")),
                    None,
                );
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
        let bar = progress.bar("host");
        let started = Instant::now();
        for (done, bin) in bins.iter().enumerate() {
            let name = bin.file_name().unwrap_or_default().to_string_lossy();
            bar.set_message(format!("{name} ({done} of {} binaries done)", bins.len()));
            let _ = duct::cmd!(bin, "--test-threads=2")
                .env("BPFCONF_RESULTS", &opts.run_dir)
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run();
        }
        let total = started.elapsed().as_secs_f64();
        progress.finish(&bar, format!("done in {total:.1} s"));
        timings.push(Timing {
            kernel: crate::Kernel::current().id.clone(),
            boot_s: None,
            total_s: total,
            end: "ok".into(),
        });
    }

    let config = opts.run_dir.join("vmtest.toml");
    fs::write(
        &config,
        vm::vmtest_toml(
            &ready,
            |id| vm::suite_command(id, Some(&opts.run_dir)),
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
                    let bar = progress.bar(k.id.clone());
                    bar.set_message("booting");
                    let timing = run_kernel(&k, &config, opts, &progress, &bar);
                    results.lock().expect("results lock").push(timing);
                }
            });
        }
    });
    timings.extend(results.into_inner().expect("results lock"));
    timings.sort_by_key(|t| crate::report::kernel_order(&t.kernel));
    fs::write(
        opts.run_dir.join("timings.json"),
        serde_json::to_string_pretty(&timings)?,
    )?;
    Ok(timings)
}

fn run_kernel(
    k: &KernelSpec,
    config: &Path,
    opts: &Options,
    progress: &Progress,
    bar: &ProgressBar,
) -> Timing {
    let log = opts.run_dir.join(format!("{}.log", k.id));
    let mut cases = 0;
    let result = vm::run(config, &k.id, opts.timeout, &log, |line| {
        if let Some(rest) = line.strip_prefix("=== timeout ") {
            write_record(
                &opts.run_dir,
                &k.id,
                &binary_case(rest),
                Outcome::Error,
                Some(format!(
                    "test binary killed: {rest}; its unfinished cases have no record (see {})",
                    log.display()
                )),
                None,
            );
        } else if line.starts_with("test ") && (line.ends_with(" ok") || line.ends_with("FAILED")) {
            cases += 1;
            bar.set_message(format!("tests: {cases} done"));
        } else if line.starts_with("=== ") {
            bar.set_message(format!("tests: {cases} done"));
        }
    });
    let (outcome, reason, end, boot, total) = match result {
        Err(e) => (
            Outcome::Error,
            Some(format!("{e:#}")),
            "error".to_owned(),
            None,
            0.0,
        ),
        Ok(run) => {
            let boot = run.boot.map(|d| d.as_secs_f64());
            let total = run.total.as_secs_f64();
            let tail = |what: &str| Some(run.describe(what));
            match run.end {
                VmEnd::TimedOut => (
                    Outcome::Error,
                    tail(&format!("timeout after {} s", opts.timeout.as_secs())),
                    "timeout".into(),
                    boot,
                    total,
                ),
                _ if run.panicked => (
                    Outcome::Error,
                    tail("kernel panic"),
                    "kernel panic".into(),
                    boot,
                    total,
                ),
                _ if boot.is_none() => (
                    Outcome::Error,
                    tail("boot failure: the suite never started"),
                    "boot failure".into(),
                    boot,
                    total,
                ),
                VmEnd::Exited(code) => (
                    Outcome::Pass,
                    None,
                    if code == 0 {
                        "ok".into()
                    } else {
                        format!("exit {code}")
                    },
                    boot,
                    total,
                ),
            }
        }
    };
    progress.finish(
        bar,
        format!(
            "{end}: {cases} cases, {total:.0} s (boot {:.1} s)",
            boot.unwrap_or(0.0)
        ),
    );
    write_vm_record(&opts.run_dir, &k.id, outcome, reason, boot);
    Timing {
        kernel: k.id.clone(),
        boot_s: boot,
        total_s: total,
        end,
    }
}

/// Spinners with each kernel's stage on a terminal; one line per finished stage otherwise (CI logs).
struct Progress {
    bars: MultiProgress,
    plain: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            bars: MultiProgress::new(),
            plain: !std::io::stderr().is_terminal(),
        }
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

/// `<file>::timeout` for the line `<dir>/<file>-<hash> after N s` of ci/vm-suite.
fn binary_case(line: &str) -> String {
    let path = line.split_whitespace().next().unwrap_or(line);
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.rsplit_once('-').map_or(file, |(stem, _)| stem);
    format!("{stem}::timeout")
}

/// The `vm::boot` record of a kernel: whether its VM booted and ran the suite.
fn write_vm_record(
    dir: &Path,
    kernel: &str,
    outcome: Outcome,
    reason: Option<String>,
    boot: Option<f64>,
) {
    write_record(dir, kernel, "vm::boot", outcome, reason, boot);
}

/// A record the matrix writes itself (not a test case's).
fn write_record(
    dir: &Path,
    kernel: &str,
    case: &str,
    outcome: Outcome,
    reason: Option<String>,
    boot: Option<f64>,
) {
    let mut details = serde_json::Map::new();
    if let Some(b) = boot {
        details.insert("boot_s".into(), serde_json::json!(b));
    }
    let record = Record {
        schema: record::SCHEMA,
        case: case.into(),
        prog_type: "-".into(),
        kernel: kernel.into(),
        kernel_release: String::new(),
        outcome,
        reason,
        loads: Vec::new(),
        details,
        duration_ms: 0,
        clang: programs::CLANG_VERSION.into(),
        mcpu: programs::MCPU.into(),
    };
    if let Err(e) = record::append(dir, &record) {
        eprintln!("bpfconf: cannot write the {case} record of {kernel}: {e}");
    }
}

/// A fresh run directory under `target/bpfconf-runs/`.
pub fn new_run_dir() -> Result<PathBuf> {
    let stamp = duct::cmd!("date", "+%Y%m%d-%H%M%S")
        .read()
        .context("running date")?;
    let dir = crate::workspace_root()
        .join("target/bpfconf-runs")
        .join(stamp.trim());
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
