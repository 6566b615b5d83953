//! One side of a comparison: the cells of a run directory (or of the baseline), each with what
//! its programs' loads gave.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::Result;
use bpfconf_record::{KernelBuild, LoadOutcome, Outcome, ProgramLog, Record, RunCost, Unreadable};
use serde::{Deserialize, Serialize};

use crate::report::Matrix;

/// The cells of one run, by (case, kernel).
#[derive(Debug, Default)]
pub struct Run {
    /// What the run is (its directory, `tests/baseline.json`).
    pub label: String,
    /// Kernel ids, in column order.
    pub kernels: Vec<String>,
    /// Where a column is written down (`file:line`), where the side knows.
    pub places: BTreeMap<String, String>,
    /// Cells by case id, then kernel id.
    pub cells: BTreeMap<String, BTreeMap<String, Cell>>,
    /// The kernel build each column ran, where the side knows it.
    pub builds: BTreeMap<String, KernelBuild>,
    /// `uname -r` of each column, where the side knows it.
    pub releases: BTreeMap<String, String>,
}

/// One case on one kernel.
#[derive(Debug, Default)]
pub struct Cell {
    /// How the case ended.
    pub outcome: Option<Outcome>,
    /// Why, for anything but `pass`.
    pub reason: Option<String>,
    /// Its programs, by `<object>/<program>`.
    pub programs: BTreeMap<String, Program>,
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
#[derive(Debug, Default)]
pub struct Program {
    /// Loaded or refused (`None` when the side does not know: the baseline).
    pub verdict: Option<Verdict>,
    /// The verifier's key line of a refusal.
    pub key_line: Option<String>,
    /// The numbers compared, by [`METRICS`] name.
    pub metrics: BTreeMap<&'static str, u64>,
    /// The verifier log (`None` when the side does not keep logs: the baseline).
    pub log: Option<String>,
    /// What one test run costs.
    pub run_cost: Option<RunCost>,
}

/// The statistics compared per program, veristat's names: processed instructions, total and
/// peak states, stack depth (summed over subprograms), program size (xlated instructions) and
/// JIT size (bytes).
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
                .then(|| bpf_loader::load::key_line(&log.log).or_else(|| load.message.clone()))
                .flatten(),
            metrics,
            log: Some(log.log.clone()),
            run_cost: None,
        }
    }
}

impl Run {
    /// The run in directories `dirs` (one run, or its shards): outcomes as the matrix has them (a
    /// record that cannot be read is an `error` cell, named on stderr), programs from the records.
    pub fn read(dirs: &[PathBuf]) -> Result<Self> {
        let run = crate::run_dirs::load(dirs)?;
        for bad in &run.unreadable {
            eprintln!("bpfconf: {}: {}", bad.place, bad.error);
        }
        let records: Vec<Record> = run.records.into_iter().map(|p| p.record).collect();
        let label: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Ok(Self::of_records(
            &label.join(" "),
            &records,
            &run.unreadable,
        ))
    }

    /// The run of `records`.
    pub fn of_records(label: &str, records: &[Record], unreadable: &[Unreadable]) -> Self {
        let matrix = Matrix::from_records(records, unreadable);
        let mut run = Run::of_matrix(label, &matrix);
        for r in records {
            if let Some(build) = &r.build {
                run.builds
                    .entry(r.kernel.clone())
                    .or_insert_with(|| build.clone());
            }
            if !r.kernel_release.is_empty() {
                run.releases
                    .entry(r.kernel.clone())
                    .or_insert_with(|| r.kernel_release.clone());
            }
            let Some(cell) = run
                .cells
                .get_mut(&r.case)
                .and_then(|c| c.get_mut(&r.kernel))
            else {
                continue;
            };
            for load in &r.loads {
                for (name, log) in &load.programs {
                    let program = Program::of(load, name, log);
                    cell.programs
                        .insert(format!("{}/{name}", load.object), program);
                }
            }
            for (name, cost) in &r.run_cost {
                // The program test-ran is one the case loaded: find it by its name.
                let key = cell
                    .programs
                    .keys()
                    .find(|k| k.rsplit('/').next() == Some(name))
                    .cloned()
                    .unwrap_or_else(|| format!("?/{name}"));
                cell.programs.entry(key).or_default().run_cost = Some(cost.clone());
            }
        }
        run
    }

    /// The outcomes of `matrix`, without programs.
    pub fn of_matrix(label: &str, matrix: &Matrix) -> Self {
        let mut cells: BTreeMap<String, BTreeMap<String, Cell>> = BTreeMap::new();
        for (case, row) in &matrix.cases {
            for (kernel, c) in &row.cells {
                let cell = Cell {
                    outcome: Some(c.outcome),
                    reason: c.reason.clone(),
                    programs: BTreeMap::new(),
                };
                cells
                    .entry(case.clone())
                    .or_default()
                    .insert(kernel.clone(), cell);
            }
        }
        Run {
            label: label.to_owned(),
            kernels: matrix.kernels.clone(),
            places: BTreeMap::new(),
            cells,
            builds: BTreeMap::new(),
            releases: BTreeMap::new(),
        }
    }

    /// The cell of `case` on `kernel`.
    pub fn cell(&self, case: &str, kernel: &str) -> Option<&Cell> {
        self.cells.get(case).and_then(|c| c.get(kernel))
    }

    /// Drops the column of kernel `kernel`.
    pub fn remove_kernel(&mut self, kernel: &str) {
        self.kernels.retain(|k| k != kernel);
        self.places.remove(kernel);
        self.builds.remove(kernel);
        self.releases.remove(kernel);
        for cells in self.cells.values_mut() {
            cells.remove(kernel);
        }
        self.cells.retain(|_, cells| !cells.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
