//! `bpfconf`: the suite's runner and command line (most of this file is the CLI's definition) — kernels, the matrix run, reports and feature probes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
mod baseline;
mod bench;
mod column;
mod compare;
mod helper_matrix;
mod kernels;
mod kmsg;
mod known_bugs;
mod manifest;
mod matrix;
mod objects;
mod repeat;
mod report;
mod run_dirs;
mod selftests;
mod suite;
mod vm;
mod vm_exec;
mod watched;

use bpfconf_record as record;
use kernels::{Matrix as Kernels, apt::Apt, fetch::fetch};
use report::{Matrix, Report};
use suite::Manifest;

#[derive(Parser)]
#[command(
    name = "bpfconf",
    about = "BPF conformance suite: kernels, matrix runs, reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The report of a run: Markdown (per-kernel totals, the rows not all `pass` with reasons, the
    /// full table folded), one self-contained HTML page, JSON, JUnit XML. Several RUNs are shards
    /// of one run (e.g. one per kernel) and are merged. Exit 1 on any fail or error (a record that
    /// cannot be read is one, and the report says it is incomplete), 2 when the run cannot be
    /// loaded.
    Report {
        /// Run or results directories (default: --results).
        runs: Vec<PathBuf>,
        /// The results directory (default: $BPFCONF_RESULTS or bpfconf-results in the target directory).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Write the Markdown here (`-`: stdout; the default when no other output is asked for).
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Write the HTML page here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write the JSON report here (every cell with its loads, logs and measurements).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write JUnit XML here (one testsuite per kernel).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Instead of the matrix: the N slowest cases of each kernel.
        #[arg(long, value_name = "N")]
        slowest: Option<usize>,
        /// Instead of the matrix: the verifier's view, each `verifier::` rule × kernel with the
        /// verdict and the key line of a refusal.
        #[arg(long)]
        verifier: bool,
        /// Instead of the matrix: the helper/kfunc matrix (each floor row × kernel, from the
        /// `helper_matrix::` case).
        #[arg(long)]
        helpers: bool,
    },
    /// What changed from run OLD (A) to run NEW (B): outcomes, columns, each program's verifier
    /// statistics and sizes (A, B, DIFF), verifier log diffs where a verdict or key line changed,
    /// run costs beyond the noise band. Markdown on stdout, and HTML, JSON, JUnit XML as asked;
    /// exit 1 on a regression only (a cell that got worse, a case or a column that disappeared).
    Compare {
        /// The earlier run directory.
        old: PathBuf,
        /// The later run directory.
        new: PathBuf,
        #[command(flatten)]
        output: CompareOutput,
    },
    /// The accepted matrix, tests/baseline.json: accept a run, or check a run against it.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// Probe the running kernel: program types, map types, helpers per program type and kfuncs
    /// (needs root).
    Probe {
        /// Print JSON (with every helper's name) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The kernels of the matrix (kernels/kernels.toml).
    Kernels {
        #[command(subcommand)]
        command: KernelsCommand,
    },
    /// Benchmark: boot each kernel bare (to the initramfs's /init) and under vmtest (`true`).
    BenchBoot {
        /// Kernel ids (default: every VM kernel).
        ids: Vec<String>,
    },
    /// Plain vmtest with these arguments from the repository root (its vmtest.toml), with /dev/kvm
    /// hidden from it when KVM does not work here (vmtest would hang).
    Vmtest {
        /// vmtest's arguments, e.g. `-f 6.1`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Your own BPF objects across the matrix: every program of each object loaded alone on the
    /// host and in a VM of each kernel (verdict, errno, the verifier's key line and statistics,
    /// JIT size; whole logs in the run directory).
    Objects {
        /// The objects (`*.bpf.o`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Kernel ids (default: every VM kernel of kernels.toml).
        #[arg(long, value_delimiter = ',')]
        kernels: Vec<String>,
        /// Skip the host kernel.
        #[arg(long)]
        no_host: bool,
        /// Exit 1 if a program is refused on a kernel at or past this release (e.g. 6.1).
        #[arg(long)]
        min_kernel: Option<String>,
        /// The run directory (default: a new one under bpfconf-runs/ in cargo's target directory).
        #[arg(long)]
        run_dir: Option<PathBuf>,
    },
    /// Load every program of the objects on the running kernel (what each column of `bpfconf
    /// objects` runs).
    ObjectsLoad {
        /// The column's kernel id.
        #[arg(long)]
        kernel: String,
        /// The results directory.
        #[arg(long)]
        results: PathBuf,
        /// The objects.
        files: Vec<PathBuf>,
    },
    /// The kernel's own BPF selftests of each `[[selftests]]` tree of kernels.toml: build the
    /// corpora, run them on the running kernel, count the results of a run.
    Selftests {
        #[command(subcommand)]
        command: SelftestsCommand,
    },
    /// Run one test binary with libtest's arguments inside a VM of kernel ID (what cargo's runner
    /// ci/cargo-vm-runner calls when BPFCONF_VM is set).
    VmExec {
        /// The matrix kernel id.
        id: String,
        /// The test binary and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Build the test binaries and list them and their tests in target/bpfconf-tests.json (what
    /// every column runs).
    Tests,
    /// Run the suite's test binaries on the running kernel (what each column of the matrix runs,
    /// inside its VM): every test leaves a record, kernel splats become `error` records.
    Suite {
        /// The column's kernel id (default: derived from the running kernel).
        #[arg(long)]
        kernel: Option<String>,
        /// The results directory (default: $BPFCONF_RESULTS or target/bpfconf-results).
        #[arg(long)]
        results: Option<PathBuf>,
        /// libtest threads per binary.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// A test binary still running after this many seconds is killed.
        #[arg(long, default_value_t = 1200)]
        binary_timeout: u64,
        /// A case still running after this many seconds is killed with its binary (`error`, the
        /// other cases run again).
        #[arg(long, default_value_t = 120)]
        case_timeout: u64,
        /// Extra environment for the test binaries (KEY=VALUE).
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// Run only the tests whose names contain this (libtest's filter).
        filter: Option<String>,
        /// Run only this test binary (`suite`).
        #[arg(long)]
        binary: Option<String>,
        /// The manifest of test binaries (default: bpfconf-tests.json in cargo's target directory).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Also run the cases kernels.toml lists as known bugs of this kernel.
        #[arg(long)]
        run_known_bugs: bool,
    },
    /// Run the suite on the host and on every matrix kernel under vmtest, then print the matrix.
    Matrix {
        /// Kernel ids (default: every VM kernel of kernels.toml); `host` alone: the host's column
        /// only (CI runs each column in a job of its own).
        #[arg(long, value_delimiter = ',')]
        kernels: Vec<String>,
        /// VMs at once (default: one per core).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Per-kernel timeout in seconds; QEMU is killed after it.
        #[arg(long, default_value_t = 1500)]
        timeout: u64,
        /// Per-test-binary timeout in seconds inside each column.
        #[arg(long, default_value_t = 1200)]
        binary_timeout: u64,
        /// Per-case timeout in seconds inside each column.
        #[arg(long, default_value_t = 120)]
        case_timeout: u64,
        /// Skip the host kernel's column.
        #[arg(long)]
        no_host: bool,
        /// Add the records to this directory (e.g. the host's, from `cargo test`) instead of a new
        /// one under target/bpfconf-runs/.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Instead of the suite: run each known bug of the selected kernels alone in a VM of its
        /// own and say whether it still reproduces.
        #[arg(long)]
        known_bugs: bool,
        /// Run the columns N times into the run directory (`run-1/` … `run-N/`) and list every
        /// cell whose outcome differed between runs (exit 1 if one did).
        #[arg(long, value_name = "N", default_value_t = 1)]
        repeat: usize,
    },
}

#[derive(Subcommand)]
enum SelftestsCommand {
    /// Fetch each tree (hash-checked), build its corpus into the build cache (an unchanged one is
    /// never rebuilt) and list the corpora for the columns.
    Build {
        /// Tree ids (default: every tree).
        trees: Vec<String>,
    },
    /// Run the listed corpora (or one) on the running kernel: one record per program.
    Run {
        /// The column's kernel id (default: derived from the running kernel).
        #[arg(long)]
        kernel: Option<String>,
        /// The results directory (default: $BPFCONF_RESULTS or target/bpfconf-results).
        #[arg(long)]
        results: Option<PathBuf>,
        /// One corpus directory instead of the listed ones.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Seconds one load may take; a load past it is interrupted and its program recorded
        /// `unsupported` (a few of the kernel's tests walk a million instructions on purpose,
        /// minutes each under emulation).
        #[arg(long, default_value_t = 30)]
        load_budget: u64,
    },
    /// Per test file × kernel counts (holds / differs / unsupported / fail) of a run's corpus
    /// records, as Markdown.
    Summary {
        /// Run or results directories (shards of one run are merged).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Rewrite tests/baseline.json with the outcomes and verifier statistics of run directory RUN.
    Accept {
        run: PathBuf,
        /// The baseline file (default: tests/baseline.json).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Compare run directory RUN with tests/baseline.json (as `compare` does); exit 1 on a
    /// regression (a cell that got worse, a case or a column that disappeared).
    Check {
        /// The run directory, or the shards of one run (e.g. one per CI job), read as one.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The baseline file (default: tests/baseline.json).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        output: CompareOutput,
    },
}

/// What `compare` and `baseline check` print and write: the formats of `report`.
#[derive(clap::Args)]
struct CompareOutput {
    /// Flag a statistic whose relative change exceeds this many percent.
    #[arg(long, default_value_t = compare::THRESHOLD_PCT)]
    threshold: f64,
    /// Write the Markdown here instead of stdout (`-`: stdout, the default).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Write the comparison as one self-contained HTML page here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the comparison as JSON (schema-versioned) here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write JUnit XML here (a testsuite per kernel, a testcase per case of the newer run, a
    /// failure per regression).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

impl CompareOutput {
    /// Compares, prints or writes the Markdown, writes the other formats asked for; success
    /// unless something regressed.
    /// Compares `old` with `new` and writes every format asked for; `notes` (what the caller
    /// left out) go first among the comparison's own.
    fn emit(&self, old: &compare::Run, new: &compare::Run, notes: Vec<String>) -> Result<ExitCode> {
        let options = compare::Options {
            threshold_pct: self.threshold,
            ..Default::default()
        };
        let mut comparison = compare::compare(old, new, &options);
        comparison.notes.splice(0..0, notes);
        let stdout = PathBuf::from("-");
        let markdown = (self.markdown.as_ref()).unwrap_or(&stdout);
        for (to, format) in [
            (Some(markdown), compare::Format::Markdown),
            (self.html.as_ref(), compare::Format::Html),
            (self.json.as_ref(), compare::Format::Json),
            (self.junit.as_ref(), compare::Format::Junit),
        ] {
            if let Some(to) = to {
                output(to, &compare::render(&comparison, format)?)?;
            }
        }
        Ok(exit(comparison.regressions == 0))
    }
}

#[derive(Subcommand)]
enum KernelsCommand {
    /// Show each kernel: what is pinned and whether it is cached.
    List {
        /// Print the kernels as a CI job matrix instead: `{"include":[{"kernel":"6.1","kind":
        /// "debian","vm":true,"cache_key":"…"},…]}` (GitHub Actions' `fromJSON`).
        #[arg(long)]
        json: bool,
    },
    /// Download, verify and prepare kernels (all VM kernels when no id is given); builds the
    /// kind = "source" ones.
    Fetch { ids: Vec<String> },
    /// Build kind = "source" kernels (all of them when no id is given) into the build cache
    /// (/var/cache/bpfconf/source when writable); an unchanged kernel is not rebuilt.
    Build { ids: Vec<String> },
    /// Move every pin to the newest package the mirror serves, then sync vmtest.toml.
    Update,
    /// Regenerate vmtest.toml from kernels.toml.
    Sync,
}

fn main() -> ExitCode {
    // VMs run in process groups of their own: take them down with us.
    let _ = ctrlc::set_handler(|| {
        watched::kill_all();
        std::process::exit(130);
    });
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bpfconf: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Probe { json } => {
            let features = bpf_features::Features::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&features)?);
            } else {
                print!("{}", features.table());
            }
        }
        Command::Report {
            mut runs,
            results,
            markdown,
            html,
            json,
            junit,
            slowest,
            verifier,
            helpers,
        } => {
            if runs.is_empty() || results.is_some() {
                runs.push(results.unwrap_or_else(results_dir));
            }
            let run = run_dirs::load(&runs)?;
            if slowest.is_some() || verifier || helpers {
                let records: Vec<record::Record> =
                    run.records.into_iter().map(|p| p.record).collect();
                match slowest {
                    Some(n) => print!("{}", report::slowest(&records, n)),
                    None if helpers => print!("{}", helper_matrix::markdown(&records)),
                    None => print!("{}", report::verifier_view(&records)),
                }
                return Ok(ExitCode::SUCCESS);
            }
            for bad in &run.unreadable {
                eprintln!("bpfconf: {}: {}", bad.place, bad.error);
            }
            let report = Report::new(&run);
            let none = [&markdown, &html, &json, &junit]
                .iter()
                .all(|o| o.is_none());
            let stdout = PathBuf::from("-");
            if let Some(to) = markdown.as_ref().or(none.then_some(&stdout)) {
                output(to, &report.markdown())?;
            }
            if let Some(to) = &html {
                output(to, &report.html())?;
            }
            if let Some(to) = &json {
                output(to, &(serde_json::to_string_pretty(&report.json())? + "\n"))?;
            }
            if let Some(to) = &junit {
                output(to, &report.junit()?)?;
            }
            let problems = report.problems();
            if !problems.is_empty() {
                eprintln!(
                    "bpfconf: incomplete report: {} record(s) could not be read",
                    problems.len()
                );
            }
            eprintln!("{}", report.matrix.closing_line());
            return Ok(exit(!report.matrix.has_failures()));
        }
        Command::Compare { old, new, output } => {
            return output.emit(
                &compare::Run::read(&[old])?,
                &compare::Run::read(&[new])?,
                Vec::new(),
            );
        }
        Command::Kernels { command } => kernels_command(command)?,
        Command::Baseline { command } => match command {
            BaselineCommand::Accept { run, file } => {
                let file = file.unwrap_or_else(baseline::Baseline::path);
                let accepted = baseline::Baseline::of(&compare::Run::read(&[run])?);
                accepted.save(&file)?;
                let snapshots = workspace_root().join("tests/snapshots");
                accepted.bind_snapshots(&snapshots)?;
                println!(
                    "{} rewritten, and each column's build written to {}/<kernel>/build.json: \
                     commit them (with the snapshots accepted by `cargo insta accept`)",
                    file.display(),
                    snapshots.display()
                );
            }
            BaselineCommand::Check { runs, file, output } => {
                let file = file.unwrap_or_else(baseline::Baseline::path);
                let run = baseline::as_baseline_run(compare::Run::read(&runs)?);
                let mut accepted = baseline::Baseline::read(&file)?.run(&file);
                let note = baseline::skip_other_host(&mut accepted, &run);
                return output.emit(&accepted, &run, note.into_iter().collect());
            }
        },
        Command::BenchBoot { ids } => {
            let times = bench::boot_times(&Kernels::load()?.select(&ids)?)?;
            print!("{}", bench::markdown(&times));
        }
        Command::Objects {
            files,
            kernels,
            no_host,
            min_kernel,
            run_dir,
        } => return objects_command(files, &kernels, no_host, min_kernel, run_dir),
        Command::ObjectsLoad {
            kernel,
            results,
            files,
        } => objects::load_all(&files, &kernel, &results)?,
        Command::Selftests { command } => match command {
            SelftestsCommand::Build { trees } => {
                selftests::build_all(&Kernels::load()?, &trees)?;
                println!("listed in {}", selftests::list_path().display());
            }
            SelftestsCommand::Run {
                kernel,
                results,
                corpus,
                load_budget,
            } => {
                let kernel = kernel.unwrap_or_else(|| record::kernel_id(&record::kernel_release()));
                let results = results.unwrap_or_else(results_dir);
                let budget = Duration::from_secs(load_budget);
                selftests::run(&kernel, &results, corpus.as_deref(), budget)?;
            }
            SelftestsCommand::Summary { runs } => print!("{}", selftests::summary(&runs)?),
        },
        Command::VmExec { id, command } => {
            let code = vm_exec::run(&id, &command[0], &command[1..])?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        Command::Vmtest { args } => {
            let status = vm::plain(&args)?;
            return Ok(exit(status.success()));
        }
        Command::Tests => {
            let manifest = matrix::build_tests()?;
            println!(
                "{} test binaries, {} tests, listed in {}",
                manifest.binaries.len(),
                manifest.tests().count(),
                Manifest::path().display()
            );
        }
        Command::Suite {
            kernel,
            results,
            threads,
            binary_timeout,
            case_timeout,
            env,
            filter,
            binary,
            manifest,
            run_known_bugs,
        } => {
            let kernel = kernel.unwrap_or_else(|| record::kernel_id(&record::kernel_release()));
            let opts = suite::Options {
                spec: Kernels::load()?.spec(&kernel).cloned(),
                kernel,
                results: results.unwrap_or_else(results_dir),
                threads,
                timeout: Duration::from_secs(binary_timeout),
                case_timeout: Duration::from_secs(case_timeout),
                env,
                filter,
                binary,
                run_known_bugs,
            };
            let manifest = Manifest::load(&manifest.unwrap_or_else(Manifest::path))?;
            let exit = suite::run(&manifest, &opts)?;
            return Ok(ExitCode::from(exit as u8));
        }
        Command::Matrix {
            kernels,
            jobs,
            timeout,
            binary_timeout,
            case_timeout,
            no_host,
            run_dir,
            known_bugs,
            repeat,
        } => {
            let selected = if kernels == ["host"] {
                Vec::new()
            } else {
                Kernels::load()?.select(&kernels)?
            };
            if known_bugs {
                vm::check_tools()?;
                matrix::build_tests()?;
                let dir = match run_dir {
                    Some(dir) => dir,
                    None => matrix::new_run_dir()?,
                };
                let timeout = Duration::from_secs(binary_timeout.min(timeout));
                let checks = known_bugs::check(&selected, &dir, timeout)?;
                print!("{}", known_bugs::markdown(&checks));
                return Ok(ExitCode::SUCCESS);
            }
            if !selected.is_empty() {
                vm::check_tools()?;
            }
            eprintln!("building the test binaries");
            let manifest = matrix::build_tests()?;
            eprintln!("building the kernel selftests' corpora");
            selftests::build_all(&Kernels::load()?, &[])?;
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let run_dir = match run_dir {
                Some(dir) => dir,
                None => matrix::new_run_dir()?,
            };
            let mut opts = matrix::Options {
                kernels: selected,
                host: !no_host,
                jobs,
                timeout: Duration::from_secs(timeout),
                binary_timeout: Duration::from_secs(binary_timeout),
                case_timeout: Duration::from_secs(case_timeout),
                run_dir,
            };
            if repeat > 1 {
                let base = opts.run_dir.clone();
                let mut runs = Vec::new();
                let mut failures = false;
                for i in 1..=repeat {
                    opts.run_dir = base.join(repeat::run_dir(i));
                    eprintln!("run {i} of {repeat}: {}", opts.run_dir.display());
                    matrix::run(&opts, &manifest)?;
                    let run = compare::Run::read(std::slice::from_ref(&opts.run_dir))?;
                    failures |= run.cells.values().flat_map(|c| c.values()).any(|c| {
                        matches!(
                            c.outcome,
                            Some(record::Outcome::Fail | record::Outcome::Error)
                        )
                    });
                    runs.push(run);
                }
                let varied = repeat::varied(&runs);
                print!("{}", repeat::markdown(&runs, &varied));
                println!("results: {}", base.display());
                return Ok(exit(varied.is_empty() && !failures));
            }
            let timings = matrix::run(&opts, &manifest)?;
            let run = run_dirs::load(std::slice::from_ref(&opts.run_dir))?;
            for bad in &run.unreadable {
                eprintln!("bpfconf: {}: {}", bad.place, bad.error);
            }
            let report = Report::new(&run);
            print!("{}", report.markdown());
            println!("\n{}", matrix::timings_markdown(&timings));
            println!("results: {}", opts.run_dir.display());
            println!("{}", report.matrix.closing_line());
            return Ok(exit(!report.matrix.has_failures()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kernels_command(command: KernelsCommand) -> Result<()> {
    let mut matrix = Kernels::load()?;
    match command {
        KernelsCommand::List { json: false } => print!("{}", kernels::list(&matrix)),
        KernelsCommand::List { json: true } => println!("{}", kernels::ci_matrix(&matrix)?),
        KernelsCommand::Fetch { ids } => {
            for k in matrix.select(&ids)? {
                let ready = fetch(&k, &|step| eprintln!("{}: {step}", k.id))?;
                println!(
                    "{}: ready ({}), {}",
                    k.id,
                    ready.release,
                    ready.vmlinuz.display()
                );
            }
        }
        KernelsCommand::Build { ids } => {
            let selected: Vec<_> = if ids.is_empty() {
                matrix
                    .vm_kernels()
                    .filter(|k| k.kind == kernels::Kind::Source)
                    .cloned()
                    .collect()
            } else {
                matrix.select(&ids)?
            };
            for k in selected {
                if k.kind != kernels::Kind::Source {
                    anyhow::bail!(
                        "kernel {} is not kind = \"source\": use `kernels fetch`",
                        k.id
                    );
                }
                let start = std::time::Instant::now();
                let built = kernels::source::build(&k, &|step| eprintln!("{}: {step}", k.id))?;
                println!(
                    "{}: built {} ({}, {:.0} s)",
                    k.id,
                    built.release,
                    built.bzimage.display(),
                    start.elapsed().as_secs_f64()
                );
            }
        }
        KernelsCommand::Update => {
            let apt = Apt::new(&kernels::cache_dir())?;
            apt.update()?;
            for change in matrix.update_pins(&apt)? {
                println!("{change}");
            }
            matrix.save()?;
            sync()?;
        }
        KernelsCommand::Sync => sync()?,
    }
    Ok(())
}

fn sync() -> Result<()> {
    let path = vm::vmtest_toml_path();
    if vm::sync()? {
        println!("{} rewritten: commit it", path.display());
    } else {
        println!("{} is up to date", path.display());
    }
    Ok(())
}

/// The matrix of a run directory ([`run_dirs::load`]); records that cannot be read are `error`
/// cells, not dropped.
fn read_matrix(dir: &Path) -> Result<Matrix> {
    let run = run_dirs::load(&[dir.to_owned()])?;
    for bad in &run.unreadable {
        eprintln!("bpfconf: {}: {}", bad.place, bad.error);
    }
    Ok(run.matrix())
}

/// Writes a report to `to` (`-`: stdout), saying where and how big on stderr.
fn output(to: &Path, text: &str) -> Result<()> {
    if to == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    eprintln!("bpfconf: wrote {} ({} bytes)", to.display(), text.len());
    Ok(())
}

fn objects_command(
    files: Vec<PathBuf>,
    kernels: &[String],
    no_host: bool,
    min_kernel: Option<String>,
    run_dir: Option<PathBuf>,
) -> Result<ExitCode> {
    let mut good = Vec::new();
    let mut bad = 0;
    for file in files {
        match objects::check(&file).and_then(|_| Ok(fs::canonicalize(&file)?)) {
            Ok(path) => good.push(path),
            Err(e) => {
                eprintln!("bpfconf: {e:#}");
                bad += 1;
            }
        }
    }
    ensure!(!good.is_empty(), "no object to load");
    let opts = objects::Options {
        files: good,
        kernels: Kernels::load()?.select(kernels)?,
        host: !no_host,
        run_dir: match run_dir {
            Some(dir) => dir,
            None => matrix::new_run_dir()?,
        },
    };
    if !opts.kernels.is_empty() {
        vm::check_tools()?;
    }
    let columns = objects::run(&opts)?;
    let matrix = read_matrix(&opts.run_dir)?;
    let (records, _) = record::read_dir(&opts.run_dir)?;
    print!("{}", matrix.markdown());
    println!(
        "\nProcessed instructions:\n\n{}",
        objects::stats_markdown(&records)
    );
    println!("| kernel | s | problem |\n|---|---|---|");
    for (id, secs, problem) in &columns {
        let problem = problem
            .as_deref()
            .and_then(|p| p.lines().next())
            .unwrap_or("");
        println!("| {id} | {secs:.1} | {problem} |");
    }
    println!("results: {}", opts.run_dir.display());
    let mut ok = bad == 0 && columns.iter().all(|(_, _, p)| p.is_none());
    if let Some(min) = min_kernel {
        let refused = objects::refused_since(&records, &min);
        for r in &refused {
            println!("refused at or past {min}: {r}");
        }
        ok &= refused.is_empty();
    }
    Ok(exit(ok))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The repository root (tests/, kernels/, target/ hang off it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("harness/runner/ has a grandparent")
        .to_owned()
}

/// cargo's target directory: `$CARGO_TARGET_DIR`, else what `cargo metadata` says (a
/// `build.target-dir` of a cargo config included), else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
            return workspace_root().join(dir);
        }
        duct::cmd!("cargo", "metadata", "--no-deps", "--format-version", "1")
            .dir(workspace_root())
            .stderr_null()
            .read()
            .ok()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
            .and_then(|m| m["target_directory"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| workspace_root().join("target"))
    })
    .clone()
}

/// `$BPFCONF_RESULTS`, or `bpfconf-results` in cargo's target directory (where plain `cargo test`
/// writes).
fn results_dir() -> PathBuf {
    std::env::var_os("BPFCONF_RESULTS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bpfconf-results"))
}
