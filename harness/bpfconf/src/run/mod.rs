//! The run model every output reads: the records of a run ([`load`] merges its directories or
//! shards) become cells, one per case × kernel (`cells.rs`), each with its outcome, reason, the
//! record behind it and its programs' verifier statistics, key lines, logs and run costs. The
//! baseline file reads into cells of the same model, without records.

mod cells;
mod load;
#[cfg(test)]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;

use record::{KernelBuild, LoadOutcome, Outcome, Placed, ProgramLog, Record, RunCost, Unreadable};
use serde::{Deserialize, Serialize};

pub use load::load;

/// The row of the records that could not be read.
pub const UNREADABLE: &str = "runner::unreadable_record";

/// One run: its records and the cells made of them.
#[derive(Debug, Default)]
pub struct Run {
    /// What the run is: its directories, or the baseline's file.
    pub label: String,
    /// Kernel ids, in column order ([`kernel_order`]).
    pub kernels: Vec<String>,
    /// The rows, by case id.
    pub cases: BTreeMap<String, Row>,
    /// Every record, in an order of their content alone (kernel, case, test), so shards merge
    /// into exactly what the whole run gives. Empty for the baseline.
    pub records: Vec<Placed>,
    /// Records that could not be read (each is an `error` cell of [`UNREADABLE`]).
    pub unreadable: Vec<Unreadable>,
    /// Each column's timing, in column order (runs without `timings.json` have none).
    pub timings: Vec<Timing>,
    /// The suite's version of the records (`None`: only the runner's own records).
    pub suite: Option<String>,
    /// The kernel build each column ran, where known.
    pub builds: BTreeMap<String, KernelBuild>,
    /// `uname -r` of each column, where known.
    pub releases: BTreeMap<String, String>,
    /// Where a column is written down (`file:line`), where known (the baseline).
    pub places: BTreeMap<String, String>,
}

/// One row: the case's program type and its cell per kernel.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The kernel's name of the program type (`-` for the runner's own rows).
    pub prog_type: String,
    /// Cells by kernel id.
    pub cells: BTreeMap<String, Cell>,
}

/// One case on one kernel.
#[derive(Clone, Debug)]
pub struct Cell {
    /// How the case ended there.
    pub outcome: Outcome,
    /// Why, for anything but `pass`.
    pub reason: Option<String>,
    /// The record behind the cell (none for a gap, an unreadable record, or the baseline).
    pub record: Option<Record>,
    /// Its programs, by `<object>/<program>`.
    pub programs: BTreeMap<String, Program>,
    /// For a program of the kernel's own selftests ([`selftest`]): whether this kernel's verifier
    /// agrees with the tree's annotation (`holds`) or not (`differs`).
    pub verdict: Option<String>,
}

impl Cell {
    /// A cell of `outcome` and `reason`, nothing more known.
    pub fn new(outcome: Outcome, reason: Option<String>) -> Self {
        Cell {
            outcome,
            reason,
            record: None,
            programs: BTreeMap::new(),
            verdict: None,
        }
    }
}

/// A program of the kernel's own selftests (`selftests_6_12::verifier_and/<program>`): its tree
/// (`6.12`) and test file (`verifier_and`).
pub fn selftest(case: &str) -> Option<(String, &str)> {
    let (binary, rest) = case.split_once("::")?;
    let tree = binary.strip_prefix(selftests::judge::BINARY_PREFIX)?;
    let (file, _) = rest.split_once('/')?;
    Some((tree.replace('_', "."), file))
}

/// Whether a program was loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The kernel took it.
    Loaded,
    /// The kernel refused it (with the errno).
    Refused(Option<String>),
    /// Not loaded: another program of its object was refused, or libbpf stopped first.
    NotLoaded,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Loaded => f.write_str("loaded"),
            Verdict::Refused(errno) => write!(f, "refused ({})", errno.as_deref().unwrap_or("?")),
            Verdict::NotLoaded => f.write_str("not loaded"),
        }
    }
}

/// What one program's load gave.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// Loaded or refused (`None` when the side does not know: the baseline).
    pub verdict: Option<Verdict>,
    /// The verifier's key line of a refusal.
    pub key_line: Option<String>,
    /// The numbers compared, by [`METRICS`] name.
    pub metrics: BTreeMap<&'static str, u64>,
    /// The verifier log (`None` when the side keeps no logs: the baseline).
    pub log: Option<String>,
    /// What one test run costs.
    pub run_cost: Option<RunCost>,
}

/// The statistics kept per program, veristat's names: processed instructions, total and peak
/// states, stack depth (summed over subprograms), program size (xlated instructions) and JIT
/// size (bytes).
pub const METRICS: [&str; 6] = [
    "insns",
    "states",
    "peak_states",
    "stack_depth",
    "prog_size",
    "jit_size",
];

impl Program {
    /// The program `name` of `load`, as loaded.
    pub fn of(load: &LoadOutcome, name: &str, log: &ProgramLog) -> Self {
        let refused = load.failed_program.as_deref() == Some(name);
        let verdict = if refused {
            Verdict::Refused(load.errno.clone())
        } else if load.loaded {
            Verdict::Loaded
        } else {
            Verdict::NotLoaded
        };
        let mut metrics = BTreeMap::new();
        if let Some(s) = &log.stats {
            metrics.insert("insns", s.processed_insns);
            metrics.insert("states", s.total_states);
            metrics.insert("peak_states", s.peak_states);
            if let Some(depth) = &s.stack_depth {
                let sum = depth.split('+').filter_map(|d| d.parse::<u64>().ok()).sum();
                metrics.insert("stack_depth", sum);
            }
        }
        if let Some(size) = &log.size {
            metrics.insert("prog_size", u64::from(size.xlated_bytes) / 8);
            metrics.insert("jit_size", u64::from(size.jited_bytes));
        }
        Program {
            verdict: Some(verdict),
            // Read again from the log: a record of an older harness may have kept a key line
            // with the kernel's timing glued on, and the verdict is about meaning only.
            key_line: refused
                .then(|| loader::load::key_line(&log.log).or_else(|| load.message.clone()))
                .flatten(),
            metrics,
            log: Some(log.log.clone()),
            run_cost: None,
        }
    }
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

impl Run {
    /// The cell of `case` on `kernel`.
    pub fn cell(&self, case: &str, kernel: &str) -> Option<&Cell> {
        self.cases.get(case)?.cells.get(kernel)
    }

    /// Every cell, as (case, kernel, cell).
    pub fn cells(&self) -> impl Iterator<Item = (&str, &str, &Cell)> {
        self.cases.iter().flat_map(|(case, row)| {
            (row.cells.iter()).map(move |(kernel, cell)| (case.as_str(), kernel.as_str(), cell))
        })
    }

    /// Count of each outcome in column `kernel`, or over all cells (`None`).
    pub fn totals(&self, kernel: Option<&str>) -> BTreeMap<Outcome, usize> {
        let mut totals = BTreeMap::new();
        for (_, k, cell) in self.cells() {
            if kernel.is_none_or(|want| want == k) {
                *totals.entry(cell.outcome).or_default() += 1;
            }
        }
        totals
    }

    /// Whether any cell is `fail` or `error`.
    pub fn has_failures(&self) -> bool {
        (self.cells()).any(|(_, _, c)| matches!(c.outcome, Outcome::Fail | Outcome::Error))
    }

    /// The timing of column `kernel`.
    pub fn timing(&self, kernel: &str) -> Option<&Timing> {
        self.timings.iter().find(|t| t.kernel == kernel)
    }

    /// Moves the cells of the kernel's own selftests ([`selftest`]) into a run of their own with
    /// the same columns; `self` keeps the suite's.
    pub fn take_selftests(&mut self) -> Run {
        let (selftests, suite) = std::mem::take(&mut self.cases)
            .into_iter()
            .partition(|(case, _)| selftest(case).is_some());
        self.cases = suite;
        Run {
            label: self.label.clone(),
            kernels: self.kernels.clone(),
            cases: selftests,
            builds: self.builds.clone(),
            releases: self.releases.clone(),
            ..Run::default()
        }
    }

    /// Drops the column of kernel `kernel`.
    pub fn remove_kernel(&mut self, kernel: &str) {
        self.kernels.retain(|k| k != kernel);
        self.places.remove(kernel);
        self.builds.remove(kernel);
        self.releases.remove(kernel);
        for row in self.cases.values_mut() {
            row.cells.remove(kernel);
        }
        self.cases.retain(|_, row| !row.cells.is_empty());
    }
}

/// Column order: version ids numerically (5.10 before 6.1 before 6.12), then the rest (host-…).
pub fn kernel_order(id: &str) -> (bool, Vec<u64>, String) {
    let nums: Option<Vec<u64>> = id.split('.').map(|n| n.parse().ok()).collect();
    match nums {
        Some(v) => (false, v, String::new()),
        None => (true, Vec::new(), id.to_owned()),
    }
}

/// How bad an outcome is: a cell that moves up this scale regressed.
pub fn severity(o: Outcome) -> u8 {
    match o {
        Outcome::Pass => 0,
        Outcome::Unsupported => 1,
        Outcome::Error => 2,
        Outcome::Fail => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_sort_by_version_then_host() {
        let mut ids = vec!["host-6.18", "6.12", "5.10", "7.3", "6.1"];
        ids.sort_by_key(|id| kernel_order(id));
        assert_eq!(ids, ["5.10", "6.1", "6.12", "7.3", "host-6.18"]);
    }

    /// A message without its newline gets the verifier's timing glued on: two runs of one
    /// commit differ there only, and their key lines must not.
    #[test]
    fn key_lines_are_read_without_timings() {
        let load = |usec: u32| {
            let message = format!("ptr off: -16verification time {usec} usec");
            let log = format!(
                "5: (7b) *(u64 *)(r2 +0) = r1\n{message}\nstack depth 16\nprocessed 6 insns \
                 (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
            );
            let program = ProgramLog {
                stats: None,
                log,
                size: None,
            };
            LoadOutcome {
                object: "o".into(),
                loaded: false,
                errno: Some("EACCES".into()),
                failed_program: Some("p".into()),
                message: Some(message),
                programs: BTreeMap::from([("p".to_owned(), program)]),
            }
        };
        let (a, b) = (load(1287), load(581));
        let (pa, pb) = (
            Program::of(&a, "p", &a.programs["p"]),
            Program::of(&b, "p", &b.programs["p"]),
        );
        assert_eq!(pa.key_line.as_deref(), Some("ptr off: -16"));
        assert_eq!(pa.key_line, pb.key_line);
    }
}
