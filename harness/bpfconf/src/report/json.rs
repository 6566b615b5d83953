//! The JSON report: every cell with its reason, loads (errno, the verifier's key line, statistics,
//! whole logs) and measurements, under a schema version of its own.

use std::collections::BTreeMap;

use record::{LoadOutcome, Outcome, RunCost};
use serde::{Deserialize, Serialize};

use super::{CauseGroup, Report};
use crate::run::{Cell, Timing};

/// The JSON report's version; bump it when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// `bpfconf report --json`: the whole matrix.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonReport {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The schema of the records it was made of (`record::SCHEMA`).
    pub record_schema: u32,
    /// The suite's version that made the records (`git:<commit>`).
    pub suite: Option<String>,
    /// False when records could not be read: `problems` says which, the matrix lacks them.
    pub complete: bool,
    /// Each record that could not be read: `<file>[:<line>]: <error>`.
    pub problems: Vec<String>,
    /// Count of each outcome over all cells.
    pub totals: BTreeMap<Outcome, usize>,
    /// One line per column that ran another build than its snapshots' (not enforced there).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The cells grouped by the missing feature they were judged on.
    #[serde(default)]
    pub causes: Vec<CauseGroup>,
    /// The columns, in order.
    pub kernels: Vec<JsonKernel>,
    /// The rows, by case id.
    pub cases: BTreeMap<String, JsonCase>,
    /// The kernel's own selftests: per tree, file and kernel the tallies, and every program cell
    /// that does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selftests: Option<super::selftests::JsonSelftests>,
}

/// One column.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonKernel {
    /// Kernel id (`6.1`, `host-6.18`).
    pub id: String,
    /// `uname -r`, when a case recorded it.
    pub release: Option<String>,
    /// Count of each outcome in the column.
    pub totals: BTreeMap<Outcome, usize>,
    /// Boot and run time of the column, when the run recorded them.
    pub timing: Option<Timing>,
}

/// One row.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonCase {
    /// The kernel's name of the program type (`-` for the runner's own rows).
    pub prog_type: String,
    /// Cells by kernel id.
    pub cells: BTreeMap<String, JsonCell>,
}

/// One cell: the outcome and what its record says.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonCell {
    /// How the case ended on this kernel.
    pub outcome: Outcome,
    /// Why, when it is not `pass`.
    pub reason: Option<String>,
    /// Wall time of the case.
    pub duration_ms: Option<u64>,
    /// Every object the case loaded: verdict, errno, key line, per-program statistics and logs.
    pub loads: Vec<LoadOutcome>,
    /// What the case measured, by name.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// What one `BPF_PROG_TEST_RUN` of each program the case test-ran costs, by program name.
    pub run_cost: BTreeMap<String, RunCost>,
}

pub(super) fn of(report: &Report) -> JsonReport {
    let run = report.run;
    let problems = report.problems();
    JsonReport {
        schema: SCHEMA,
        record_schema: record::SCHEMA,
        suite: run.suite.clone(),
        complete: problems.is_empty(),
        problems,
        totals: run.totals(None),
        notes: report.notes.clone(),
        causes: report.causes(),
        kernels: run
            .kernels
            .iter()
            .map(|k| JsonKernel {
                id: k.clone(),
                release: report.release(k).map(str::to_owned),
                totals: run.totals(Some(k)),
                timing: run.timing(k).cloned(),
            })
            .collect(),
        cases: run
            .cases
            .iter()
            .map(|(case, row)| {
                let cells = (row.cells.iter())
                    .map(|(k, c)| (k.clone(), JsonCell::of(c)))
                    .collect();
                let row = JsonCase {
                    prog_type: row.prog_type.clone(),
                    cells,
                };
                (case.clone(), row)
            })
            .collect(),
        selftests: report.selftests.map(super::selftests::json),
    }
}

impl JsonCell {
    /// What the JSON report says of `cell`.
    pub fn of(cell: &Cell) -> Self {
        let record = cell.record.as_ref();
        JsonCell {
            outcome: cell.outcome,
            reason: cell.reason.clone(),
            duration_ms: record.map(|r| r.duration_ms),
            loads: record.map(|r| r.loads.clone()).unwrap_or_default(),
            details: record.map(|r| r.details.clone()).unwrap_or_default(),
            run_cost: record.map(|r| r.run_cost.clone()).unwrap_or_default(),
        }
    }
}
