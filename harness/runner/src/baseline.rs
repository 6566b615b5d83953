//! The accepted matrix (`tests/baseline.json`: kernel → case → outcome). CI checks every run
//! against it and fails on a regression: a cell that got worse, a case or a column that
//! disappeared. `bpfconf baseline accept RUN` rewrites it, so a pull request's diff of the file
//! shows every outcome change a human accepted. The host's column is `host` whatever its release.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use bpfconf_record::Outcome;
use serde::{Deserialize, Serialize};

use crate::report::{Cell, Matrix, Row};

const SCHEMA: u32 = 1;

/// The accepted outcome of every cell.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    schema: u32,
    kernels: BTreeMap<String, BTreeMap<String, Outcome>>,
}

impl Baseline {
    /// `tests/baseline.json`.
    pub fn path() -> PathBuf {
        crate::workspace_root().join("tests/baseline.json")
    }

    /// The cells of `matrix`.
    pub fn of(matrix: &Matrix) -> Self {
        let mut kernels: BTreeMap<String, BTreeMap<String, Outcome>> = BTreeMap::new();
        for (case, row) in &matrix.cases {
            for (kernel, cell) in &row.cells {
                kernels
                    .entry(column(kernel))
                    .or_default()
                    .insert(case.clone(), cell.outcome);
            }
        }
        Baseline {
            schema: SCHEMA,
            kernels,
        }
    }

    /// Reads [`Baseline::path`].
    pub fn load() -> Result<Self> {
        let path = Self::path();
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}: accept a run first (bpfconf baseline accept RUN)",
                path.display()
            )
        })?;
        let baseline: Baseline =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        ensure!(
            baseline.schema == SCHEMA,
            "{}: schema {} (this bpfconf reads {SCHEMA})",
            path.display(),
            baseline.schema
        );
        Ok(baseline)
    }

    /// Writes [`Baseline::path`].
    pub fn save(&self) -> Result<()> {
        let path = Self::path();
        fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// As a matrix, to compare a run with.
    pub fn matrix(&self) -> Matrix {
        let mut cases: BTreeMap<String, Row> = BTreeMap::new();
        for (kernel, cells) in &self.kernels {
            for (case, outcome) in cells {
                let row = cases.entry(case.clone()).or_insert_with(|| Row {
                    prog_type: String::new(),
                    cells: BTreeMap::new(),
                });
                let cell = Cell {
                    outcome: *outcome,
                    reason: None,
                };
                row.cells.insert(kernel.clone(), cell);
            }
        }
        Matrix {
            kernels: self.kernels.keys().cloned().collect(),
            cases,
        }
    }
}

/// `matrix` with its host column named `host`, as the baseline names it.
pub fn with_host_column(mut matrix: Matrix) -> Matrix {
    for k in &mut matrix.kernels {
        *k = column(k);
    }
    for row in matrix.cases.values_mut() {
        row.cells = std::mem::take(&mut row.cells)
            .into_iter()
            .map(|(k, c)| (column(&k), c))
            .collect();
    }
    matrix
}

fn column(kernel: &str) -> String {
    if kernel.starts_with("host") {
        "host".into()
    } else {
        kernel.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare;

    fn matrix(cells: &[(&str, &str, Outcome)]) -> Matrix {
        let mut m = Baseline {
            schema: SCHEMA,
            kernels: BTreeMap::new(),
        };
        for (case, kernel, outcome) in cells {
            m.kernels
                .entry(kernel.to_string())
                .or_default()
                .insert(case.to_string(), *outcome);
        }
        m.matrix()
    }

    #[test]
    fn a_lost_column_and_a_worse_cell_are_regressions() {
        use Outcome::*;
        let accepted = matrix(&[("a", "6.1", Pass), ("a", "5.10", Pass), ("b", "host", Pass)]);
        let run = with_host_column(matrix(&[
            ("a", "6.1", Unsupported),
            ("b", "host-6.19", Pass),
            ("c", "6.1", Pass),
        ]));
        let changes = compare(&accepted, &run);
        let found: Vec<(&str, &str, bool)> = changes
            .iter()
            .map(|c| (c.case.as_str(), c.kernel.as_str(), c.is_regression()))
            .collect();
        assert_eq!(
            found,
            [("a", "5.10", true), ("a", "6.1", true), ("c", "6.1", false)]
        );
        assert_eq!(Baseline::of(&accepted).matrix().kernels, accepted.kernels);
    }
}
