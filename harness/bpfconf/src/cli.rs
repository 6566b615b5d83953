//! The command line: every command, its flags and their help (clap). What each command does is
//! in `commands/`, one module per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Seconds a case may run before it is killed: the slowest (a verifier walk of a million
/// instructions on 6.12 under emulation) took 50–110 s with other VMs on the machine; a hang
/// costs this once.
const CASE_TIMEOUT: u64 = 300;

#[derive(Parser)]
#[command(
    name = "bpfconf",
    about = "BPF conformance suite: kernels, matrix runs, reports"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The report of a run: Markdown (per-kernel totals, the rows not all `pass` with reasons, the
    /// full table folded), one self-contained HTML page, JSON, JUnit XML. Several RUNs are shards
    /// of one run (e.g. one per kernel) and are merged. Exit 1 on any fail or error (a record that
    /// cannot be read is one, and the report says it is incomplete), 2 when the run cannot be
    /// loaded.
    Report(Report),
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
        compare: CompareArgs,
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
    Objects(Objects),
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
    Suite(Suite),
    /// Run the suite on the host and on every matrix kernel under vmtest, then print the matrix.
    Matrix(Matrix),
    /// The planted bugs (`#ifdef BPFCONF_MUTANT /* … */` in the samples): build the suite with
    /// them (`BPFCONF_MUTANTS=1`, into target/mutants), run it and the normal build on the host
    /// and print which cases caught each bug. Exit 1 if a bug was missed.
    Mutants(Mutants),
}

// The arguments of `bpfconf report`.
#[derive(Args)]
pub struct Report {
    /// Run or results directories (default: --results).
    pub runs: Vec<PathBuf>,
    /// The results directory (default: $BPFCONF_RESULTS or bpfconf-results in the target directory).
    #[arg(long)]
    pub results: Option<PathBuf>,
    #[command(flatten)]
    pub outputs: Outputs,
    /// Instead of the matrix: the N slowest cases of each kernel.
    #[arg(long, value_name = "N")]
    pub slowest: Option<usize>,
    /// Instead of the matrix: the verifier's view, each `verifier::` rule × kernel with the
    /// verdict and the key line of a refusal.
    #[arg(long)]
    pub verifier: bool,
    /// Instead of the matrix: the helper/kfunc table (each floor row × kernel, from the
    /// `helper_matrix::` case).
    #[arg(long)]
    pub helpers: bool,
    /// Instead of the matrix: RFC 9669 conformance, each group × kernel and engine (from the
    /// `rfc9669::` cases), the sub-cases that computed another value, and where the JIT and the
    /// interpreter of one build differ.
    #[arg(long)]
    pub isa: bool,
}

// Where the formats of a report or a comparison go.
#[derive(Args)]
pub struct Outputs {
    /// Write the Markdown here (`-`: stdout). Without it, the Markdown goes to stdout (for
    /// `report`: when no other format is asked for).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write one self-contained HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the JSON here (schema-versioned: every cell of a report with its loads, logs and
    /// measurements; everything a comparison found).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write JUnit XML here (a testsuite per kernel; for a comparison, a testcase per case of the
    /// newer run and a failure per regression).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

// What `compare` and `baseline check` take: the threshold and the formats of `report`.
#[derive(Args)]
pub struct CompareArgs {
    /// Flag a statistic whose relative change exceeds this many percent.
    #[arg(long, default_value_t = crate::compare::THRESHOLD_PCT)]
    pub threshold: f64,
    #[command(flatten)]
    pub outputs: Outputs,
}

#[derive(Subcommand)]
pub enum BaselineCommand {
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
        compare: CompareArgs,
    },
}

#[derive(Subcommand)]
pub enum KernelsCommand {
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

// The arguments of `bpfconf objects`.
#[derive(Args)]
pub struct Objects {
    /// The objects (`*.bpf.o`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Kernel ids (default: every VM kernel of kernels.toml).
    #[arg(long, value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// Skip the host kernel.
    #[arg(long)]
    pub no_host: bool,
    /// Exit 1 if a program is refused on a kernel at or past this release (e.g. 6.1).
    #[arg(long)]
    pub min_kernel: Option<String>,
    /// The run directory (default: a new one under bpfconf-runs/ in cargo's target directory).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

// The arguments of `bpfconf suite`.
#[derive(Args)]
pub struct Suite {
    /// The column's kernel id (default: derived from the running kernel).
    #[arg(long)]
    pub kernel: Option<String>,
    /// The results directory (default: $BPFCONF_RESULTS or target/bpfconf-results).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// libtest threads per binary.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// A test binary still running after this many seconds is killed.
    #[arg(long, default_value_t = 1200)]
    pub binary_timeout: u64,
    /// A case still running after this many seconds is killed with its binary (`error`, the
    /// other cases run again).
    #[arg(long, default_value_t = CASE_TIMEOUT)]
    pub case_timeout: u64,
    /// Extra environment for the test binaries (KEY=VALUE).
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Run only the tests whose names contain this (libtest's filter).
    pub filter: Option<String>,
    /// Run only this test binary (`suite`).
    #[arg(long)]
    pub binary: Option<String>,
    /// The manifest of test binaries (default: bpfconf-tests.json in cargo's target directory).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Also run the cases kernels.toml lists as known bugs of this kernel.
    #[arg(long)]
    pub run_known_bugs: bool,
    /// After the test binaries, run the kernel's own selftests of every corpus `bpfconf
    /// selftests build` listed.
    #[arg(long)]
    pub selftests: bool,
}

// The arguments of `bpfconf mutants`.
#[derive(Args)]
pub struct Mutants {
    /// Per-case timeout in seconds.
    #[arg(long, default_value_t = CASE_TIMEOUT)]
    pub case_timeout: u64,
    /// Per-test-binary timeout in seconds.
    #[arg(long, default_value_t = 1200)]
    pub binary_timeout: u64,
}

// The arguments of `bpfconf matrix`.
#[derive(Args)]
pub struct Matrix {
    /// Kernel ids (default: every VM kernel of kernels.toml); `host` alone: the host's column
    /// only (CI runs each column in a job of its own).
    #[arg(long, value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// VMs at once (default: one per core).
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Per-kernel timeout in seconds; QEMU is killed after it.
    #[arg(long, default_value_t = 1500)]
    pub timeout: u64,
    /// Per-test-binary timeout in seconds inside each column.
    #[arg(long, default_value_t = 1200)]
    pub binary_timeout: u64,
    /// Per-case timeout in seconds inside each column.
    #[arg(long, default_value_t = CASE_TIMEOUT)]
    pub case_timeout: u64,
    /// Skip the host kernel's column.
    #[arg(long)]
    pub no_host: bool,
    /// Add the records to this directory (e.g. the host's, from `cargo test`) instead of a new
    /// one under target/bpfconf-runs/.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Instead of the suite: run each known bug of the selected kernels alone in a VM of its
    /// own, `--repeat` times (3), and say in how many runs it reproduced.
    #[arg(long)]
    pub known_bugs: bool,
    /// Also run the kernel's own selftests in every column (the corpora of kernels.toml's
    /// `[[selftests]]` trees, built or found in the build cache first).
    #[arg(long)]
    pub selftests: bool,
    /// Run the columns N times into the run directory (`run-1/` … `run-N/`) and list every
    /// cell whose outcome differed between runs (exit 1 if one did); with `--known-bugs`, run
    /// each bug N times.
    #[arg(long, value_name = "N")]
    pub repeat: Option<usize>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

#[derive(Subcommand)]
pub enum SelftestsCommand {
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
