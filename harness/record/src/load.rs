//! What loading one object gave: verdict, errno, the verifier's key line, logs and statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the verifier reported about one program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierStats {
    /// Instructions processed, `processed N insns`.
    pub processed_insns: u64,
    /// `max_states_per_insn`.
    pub max_states_per_insn: u64,
    /// `total_states`.
    pub total_states: u64,
    /// `peak_states`.
    pub peak_states: u64,
    /// `stack depth` (one figure per subprogram, `+`-separated), when logged.
    pub stack_depth: Option<String>,
    /// Microseconds the verifier took; varies run to run, so snapshots redact it.
    pub verification_time_us: Option<u64>,
}

/// The kernel's sizes of a loaded program (`bpf_prog_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgSize {
    /// `xlated_prog_len`: bytes of the program after the verifier's rewrites (8 per instruction).
    pub xlated_bytes: u32,
    /// `jited_prog_len`: bytes of machine code (0 without a JIT).
    pub jited_bytes: u32,
    /// `verified_insns` (5.16+; `None` before).
    pub verified_insns: Option<u32>,
}

/// One program's verifier log and statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramLog {
    /// Parsed from the log's last lines; `None` when the kernel printed none.
    pub stats: Option<VerifierStats>,
    /// The whole log as the kernel wrote it.
    pub log: String,
    /// The loaded program's sizes; `None` when it did not load (or the record predates them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ProgSize>,
}

/// What one `BPF_PROG_TEST_RUN` of a program costs: the kernel's average over `repeat` runs
/// (`duration`), measured in `rounds` rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunCost {
    /// The median of the rounds' ns per run: what `compare` compares.
    pub ns_per_run_median: f64,
    /// The fastest round's ns per run.
    pub min: f64,
    /// The slowest round's ns per run.
    pub max: f64,
    /// Rounds measured.
    pub rounds: u32,
    /// Runs per round (the kernel's `repeat`).
    pub repeat: u32,
    /// Measured under emulation (QEMU TCG): the guest's clock follows a loaded host, so the
    /// figure is an order of magnitude, not comparable run to run.
    #[serde(default)]
    pub emulated: bool,
}

/// The result of loading one object (all its auto-loaded programs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadOutcome {
    /// The object's name (the skeleton's).
    pub object: String,
    /// Every program loaded.
    pub loaded: bool,
    /// The errno of the failed load, symbolic (`EINVAL`, `EACCES`, …).
    pub errno: Option<String>,
    /// The program the kernel refused, when a program load failed.
    pub failed_program: Option<String>,
    /// The key line: the verifier's last complaint, or libbpf's error when no program got that far.
    pub message: Option<String>,
    /// Per program, in the order libbpf loaded them.
    pub programs: BTreeMap<String, ProgramLog>,
}

impl LoadOutcome {
    /// The log of `program` (empty when it has none).
    pub fn log(&self, program: &str) -> &str {
        self.programs.get(program).map_or("", |p| p.log.as_str())
    }
}
