//! The accepted matrix (`tests/baseline.json`: kernel → case → outcome and, per program, the
//! verifier's statistics). CI checks every run against it and fails on a regression: a cell that
//! got worse, a case or a column that disappeared; statistics beyond the threshold are reported,
//! never fatal. `bpfconf baseline accept RUN` rewrites it, one cell a line, so a pull request's
//! diff of the file shows every change a human accepted. Each column keeps the kernel build it
//! was accepted on (`builds`): a run of another build of that kernel (another machine's host
//! kernel of the same release) is not compared there, and every report format says so. The
//! host's column keeps its release (`host-6.18`): a run on another host release has a column of
//! its own, and the accepted host column is then not compared. Schemas 1 (outcomes only) and 2
//! (no builds) still read.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use bpfconf_record::{KernelBuild, Outcome};
use serde::{Deserialize, Serialize};

use crate::compare::run::{self, Run};

const SCHEMA: u32 = 3;

/// The accepted outcome and statistics of every cell.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    schema: u32,
    /// The build each column was accepted on (schema 3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    builds: BTreeMap<String, KernelBuild>,
    kernels: BTreeMap<String, BTreeMap<String, Cell>>,
    /// The line of the file that opens each kernel's cells.
    #[serde(skip)]
    lines: BTreeMap<String, usize>,
}

/// One accepted cell: schema 2 writes the object, schema 1 had the bare outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Cell {
    Full {
        outcome: Outcome,
        /// `<object>/<program>` → the verifier's statistics.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        programs: BTreeMap<String, Stats>,
    },
    Bare(Outcome),
}

/// A program's accepted verifier statistics ([`run::METRICS`] names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Stats {
    insns: u64,
    states: u64,
    peak_states: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stack_depth: Option<u64>,
}

impl Baseline {
    /// `tests/baseline.json`.
    pub fn path() -> PathBuf {
        crate::workspace_root().join("tests/baseline.json")
    }

    /// The cells of `run`.
    pub fn of(run: &Run) -> Self {
        let mut kernels: BTreeMap<String, BTreeMap<String, Cell>> = BTreeMap::new();
        for (case, cells) in &run.cells {
            for (kernel, cell) in cells {
                let Some(outcome) = cell.outcome else {
                    continue;
                };
                let programs = cell
                    .programs
                    .iter()
                    .filter_map(|(name, p)| {
                        let m = |k| p.metrics.get(k).copied();
                        Some((
                            name.clone(),
                            Stats {
                                insns: m("insns")?,
                                states: m("states")?,
                                peak_states: m("peak_states")?,
                                stack_depth: m("stack_depth"),
                            },
                        ))
                    })
                    .collect();
                kernels
                    .entry(kernel.clone())
                    .or_default()
                    .insert(case.clone(), Cell::Full { outcome, programs });
            }
        }
        Baseline {
            schema: SCHEMA,
            builds: run.builds.clone(),
            kernels,
            lines: BTreeMap::new(),
        }
    }

    /// Writes the build each column was accepted on beside its snapshots
    /// (`tests/snapshots/<kernel>/build.json`), which binds them to it.
    pub fn bind_snapshots(&self, snapshots: &Path) -> Result<()> {
        for (kernel, build) in &self.builds {
            let dir = snapshots.join(kernel);
            fs::create_dir_all(&dir)?;
            let file = dir.join("build.json");
            fs::write(&file, serde_json::to_string_pretty(build)? + "\n")
                .with_context(|| format!("writing {}", file.display()))?;
        }
        Ok(())
    }

    /// Reads the baseline at `path` (schema 1, 2 or 3).
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).with_context(|| {
            format!(
                "reading {}: accept a run first (bpfconf baseline accept RUN)",
                path.display()
            )
        })?;
        let mut baseline: Baseline = serde_json::from_str(&text).with_context(|| {
            format!(
                "parsing {} (rewrite it: bpfconf baseline accept RUN)",
                path.display()
            )
        })?;
        ensure!(
            (1..=SCHEMA).contains(&baseline.schema),
            "{}: schema {} (this bpfconf reads 1 to {SCHEMA}); rewrite it: bpfconf baseline \
             accept RUN",
            path.display(),
            baseline.schema
        );
        for kernel in baseline.kernels.keys() {
            let opens = format!("{}: {{", serde_json::to_string(kernel)?);
            if let Some(n) = text
                .lines()
                .position(|l| l.trim_start().starts_with(&opens))
            {
                baseline.lines.insert(kernel.clone(), n + 1);
            }
        }
        Ok(baseline)
    }

    /// Writes the baseline to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        fs::write(path, self.to_json()?).with_context(|| format!("writing {}", path.display()))
    }

    /// The file's text: one cell a line, so that a diff shows one line per changed cell.
    fn to_json(&self) -> Result<String> {
        let mut out = format!("{{\n  \"schema\": {},", self.schema);
        if !self.builds.is_empty() {
            out += "\n  \"builds\": {";
            for (i, (kernel, build)) in self.builds.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let (kernel, build) = (
                    serde_json::to_string(kernel)?,
                    serde_json::to_string(build)?,
                );
                out += &format!("{sep}\n    {kernel}: {build}");
            }
            out += "\n  },";
        }
        out += "\n  \"kernels\": {";
        for (i, (kernel, cells)) in self.kernels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            out += &format!("{sep}\n    {}: {{", serde_json::to_string(kernel)?);
            for (j, (case, cell)) in cells.iter().enumerate() {
                let sep = if j == 0 { "" } else { "," };
                let (case, cell) = (serde_json::to_string(case)?, serde_json::to_string(cell)?);
                out += &format!("{sep}\n      {case}: {cell}");
            }
            out += "\n    }";
        }
        Ok(out + "\n  }\n}\n")
    }

    /// As a run to compare with, named by its file `path`: outcomes, and the statistics schema 2
    /// holds.
    pub fn run(&self, path: &Path) -> Run {
        let mut r = Run {
            label: path.display().to_string(),
            kernels: self.kernels.keys().cloned().collect(),
            places: (self.lines.iter())
                .map(|(k, n)| (k.clone(), format!("{}:{n}", path.display())))
                .collect(),
            cells: BTreeMap::new(),
            builds: self.builds.clone(),
            releases: BTreeMap::new(),
        };
        r.kernels.sort_by_key(|k| crate::report::kernel_order(k));
        for (kernel, cells) in &self.kernels {
            for (case, cell) in cells {
                let (outcome, programs) = match cell {
                    Cell::Full { outcome, programs } => (*outcome, programs.clone()),
                    Cell::Bare(outcome) => (*outcome, BTreeMap::new()),
                };
                let programs = programs
                    .into_iter()
                    .map(|(name, s)| {
                        let mut metrics = BTreeMap::from([
                            ("insns", s.insns),
                            ("states", s.states),
                            ("peak_states", s.peak_states),
                        ]);
                        if let Some(depth) = s.stack_depth {
                            metrics.insert("stack_depth", depth);
                        }
                        let program = run::Program {
                            metrics,
                            ..Default::default()
                        };
                        (name, program)
                    })
                    .collect();
                let cell = run::Cell {
                    outcome: Some(outcome),
                    reason: None,
                    programs,
                };
                r.cells
                    .entry(case.clone())
                    .or_default()
                    .insert(kernel.clone(), cell);
            }
        }
        r
    }
}

/// `run` with only the statistics the baseline keeps (sizes and run costs vary with the compiler
/// and the machine).
pub fn as_baseline_run(mut run: Run) -> Run {
    for cells in run.cells.values_mut() {
        for cell in cells.values_mut() {
            for p in cell.programs.values_mut() {
                p.metrics
                    .retain(|k, _| !matches!(*k, "prog_size" | "jit_size"));
                p.run_cost = None;
            }
        }
    }
    run
}

/// When `run` was made on another host kernel than the accepted one, removes the accepted host
/// column (another kernel's outcomes are no regression of it) and says so. A run without a host
/// column keeps it: that column disappeared.
pub fn skip_other_host(accepted: &mut Run, run: &Run) -> Option<String> {
    let host = |r: &Run| r.kernels.iter().find(|k| k.starts_with("host")).cloned();
    let (old, new) = (host(accepted)?, host(run)?);
    if old == new {
        return None;
    }
    accepted.remove_kernel(&old);
    Some(format!(
        "The host column {new} is not compared: the baseline's host column is {old}."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Kind, Options, compare};

    fn run(cells: &[(&str, &str, Outcome, u64)]) -> Run {
        let mut r = Run::default();
        for (case, kernel, outcome, insns) in cells {
            if !r.kernels.contains(&kernel.to_string()) {
                r.kernels.push(kernel.to_string());
            }
            let program = run::Program {
                metrics: BTreeMap::from([("insns", *insns), ("states", 1), ("peak_states", 1)]),
                ..Default::default()
            };
            let cell = run::Cell {
                outcome: Some(*outcome),
                reason: None,
                programs: BTreeMap::from([("o/p".to_owned(), program)]),
            };
            r.cells
                .entry(case.to_string())
                .or_default()
                .insert(kernel.to_string(), cell);
        }
        r
    }

    #[test]
    fn a_lost_column_and_a_worse_cell_are_regressions_stats_only_inform() {
        use Outcome::*;
        let accepted = Baseline::of(&run(&[
            ("a", "6.1", Pass, 10),
            ("a", "5.10", Pass, 10),
            ("b", "host-6.18", Pass, 100),
        ]));
        let text = accepted.to_json().unwrap();
        assert!(
            text.contains("\n      \"b\": {\"outcome\":\"pass\",\"programs\":"),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        fs::write(&path, &text).unwrap();
        let accepted = Baseline::read(&path).unwrap();
        let new = as_baseline_run(run(&[
            ("a", "6.1", Unsupported, 10),
            ("b", "host-6.18", Pass, 200),
            ("c", "6.1", Pass, 1),
        ]));
        let c = compare(&accepted.run(&path), &new, &Options::default());
        let found: Vec<(&str, &str, Kind)> = c
            .outcomes
            .iter()
            .map(|c| (&*c.case, &*c.kernel, c.kind))
            .collect();
        assert_eq!(
            found,
            [("a", "6.1", Kind::Regression), ("c", "6.1", Kind::Added)]
        );
        assert_eq!(c.removed_columns, ["5.10"]);
        // The file's fourth line opens the first kernel's cells (after `{`, schema, `kernels`).
        let place = format!("{}:4", path.display());
        assert_eq!(c.removed_column_places["5.10"], place);
        assert_eq!(c.regressions, 2);
        let stats: Vec<(&str, u64, u64, bool)> = c
            .stats
            .iter()
            .map(|s| (&*s.case, s.old, s.new, s.flagged))
            .collect();
        assert_eq!(stats, [("b", 100, 200, true)]);
    }

    /// Another host kernel's column is not compared with the accepted host's; no host column
    /// at all is a lost column.
    #[test]
    fn another_host_is_not_compared_a_missing_host_is_lost() {
        use Outcome::*;
        let accepted = || run(&[("a", "6.1", Pass, 1), ("a", "host-6.18", Pass, 1)]);
        let other = run(&[("a", "6.1", Pass, 1), ("a", "host-6.8", Unsupported, 1)]);
        let mut old = accepted();
        let note = skip_other_host(&mut old, &other).unwrap();
        assert!(
            note.contains("host-6.8") && note.contains("host-6.18"),
            "{note}"
        );
        let c = compare(&old, &other, &Options::default());
        assert_eq!((c.regressions, c.removed_columns.len()), (0, 0));

        let no_host = run(&[("a", "6.1", Pass, 1)]);
        let mut old = accepted();
        assert_eq!(skip_other_host(&mut old, &no_host), None);
        let c = compare(&old, &no_host, &Options::default());
        assert_eq!(c.removed_columns, ["host-6.18"]);
        assert_eq!(c.regressions, 1);
    }

    /// The committed file of schema 1 (outcomes only) still reads, without statistics.
    #[test]
    fn schema_1_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        fs::write(
            &path,
            r#"{"schema": 1, "kernels": {"6.1": {"xdp::a": "pass", "xdp::b": "unsupported"}}}"#,
        )
        .unwrap();
        let run = Baseline::read(&path).unwrap().run(&path);
        assert_eq!(run.kernels, ["6.1"]);
        assert_eq!(
            run.cell("xdp::b", "6.1").unwrap().outcome,
            Some(Outcome::Unsupported)
        );
        assert!(run.cell("xdp::a", "6.1").unwrap().programs.is_empty());
        fs::write(&path, r#"{"schema": 4, "kernels": {}}"#).unwrap();
        let e = format!("{:#}", Baseline::read(&path).unwrap_err());
        assert!(
            e.contains("schema 4") && e.contains("baseline accept"),
            "{e}"
        );
    }
}
