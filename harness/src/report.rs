//! The compatibility matrix (cases × kernels) from the records of a run directory, and the
//! regression report between two runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::outcome::Outcome;
use crate::record::Record;

/// One matrix cell: the outcome and its reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    /// How the case ended on this kernel.
    pub outcome: Outcome,
    /// Why, when it is not `pass`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One row: the case's program type and its cell per kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The program type the case exercises.
    pub prog_type: String,
    /// Cells by kernel id.
    pub cells: BTreeMap<String, Cell>,
}

/// Outcomes by case and kernel.
#[derive(Debug, Serialize)]
pub struct Matrix {
    /// Kernel ids, in column order.
    pub kernels: Vec<String>,
    /// Rows by case id.
    pub cases: BTreeMap<String, Row>,
}

impl Matrix {
    /// Builds the matrix; a case recorded twice on one kernel keeps its worst outcome.
    pub fn from_records(records: &[Record]) -> Self {
        let kernels: BTreeSet<String> = records.iter().map(|r| r.kernel.clone()).collect();
        let mut cases: BTreeMap<String, Row> = BTreeMap::new();
        for r in records {
            let row = cases.entry(r.case.clone()).or_insert_with(|| Row {
                prog_type: r.prog_type.clone(),
                cells: BTreeMap::new(),
            });
            let new = Cell {
                outcome: r.outcome,
                reason: r.reason.clone(),
            };
            let cell = row.cells.entry(r.kernel.clone()).or_insert(new.clone());
            if severity(new.outcome) > severity(cell.outcome) {
                *cell = new;
            }
        }
        let mut kernels: Vec<String> = kernels.into_iter().collect();
        kernels.sort_by_key(|id| kernel_order(id));
        Matrix { kernels, cases }
    }

    /// Count of each outcome over all cells.
    pub fn totals(&self) -> BTreeMap<Outcome, usize> {
        let mut totals = BTreeMap::new();
        for row in self.cases.values() {
            for cell in row.cells.values() {
                *totals.entry(cell.outcome).or_default() += 1;
            }
        }
        totals
    }

    /// Whether any cell is `fail` or `error`.
    pub fn has_failures(&self) -> bool {
        self.totals()
            .keys()
            .any(|o| matches!(o, Outcome::Fail | Outcome::Error))
    }

    /// A Markdown table, the totals, the cases whose outcome differs across kernels, then the
    /// reasons of every cell that is not `pass`.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "| case | type | {} |\n|---|---|{}\n",
            self.kernels.join(" | "),
            "---|".repeat(self.kernels.len())
        );
        let mut notes = String::new();
        let mut differ = String::new();
        for (case, row) in &self.cases {
            let cells: Vec<String> = self
                .kernels
                .iter()
                .map(|k| match row.cells.get(k) {
                    Some(cell) => {
                        if let (Outcome::Fail | Outcome::Error | Outcome::Unsupported, Some(r)) =
                            (cell.outcome, &cell.reason)
                        {
                            let _ = writeln!(
                                notes,
                                "- {case} on {k}: {}: {}",
                                cell.outcome,
                                first_line(r)
                            );
                        }
                        cell.outcome.to_string()
                    }
                    None => "—".into(),
                })
                .collect();
            let _ = writeln!(
                out,
                "| {case} | {} | {} |",
                row.prog_type,
                cells.join(" | ")
            );
            if cells.iter().collect::<BTreeSet<_>>().len() > 1 {
                let _ = writeln!(
                    differ,
                    "- {case}: {}",
                    self.kernels
                        .iter()
                        .zip(&cells)
                        .map(|(k, c)| format!("{k} {c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let totals: Vec<String> = self
            .totals()
            .iter()
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        let _ = writeln!(out, "\nTotal: {}", totals.join(", "));
        if !differ.is_empty() {
            let _ = write!(out, "\nDiffers across kernels:\n{differ}");
        }
        if !notes.is_empty() {
            let _ = write!(out, "\nReasons:\n{notes}");
        }
        out
    }
}

/// One cell that changed between two runs.
#[derive(Debug, Serialize)]
pub struct Change {
    /// Case id.
    pub case: String,
    /// Kernel id.
    pub kernel: String,
    /// The earlier outcome (`None`: the case did not exist or did not run).
    pub old: Option<Outcome>,
    /// The later outcome (`None`: the case is gone).
    pub new: Option<Outcome>,
    /// The later cell's reason, else the earlier one's.
    pub reason: Option<String>,
}

impl Change {
    /// Worse than before: a higher severity, or a case that no longer ran.
    pub fn is_regression(&self) -> bool {
        match (self.old, self.new) {
            (Some(old), Some(new)) => severity(new) > severity(old),
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Every cell whose outcome differs between `old` and `new`, over the kernels of either run.
pub fn compare(old: &Matrix, new: &Matrix) -> Vec<Change> {
    let cell = |m: &Matrix, case: &str, kernel: &str| {
        m.cases.get(case).and_then(|r| r.cells.get(kernel)).cloned()
    };
    let cases: BTreeSet<&String> = old.cases.keys().chain(new.cases.keys()).collect();
    let kernels: BTreeSet<&String> = old.kernels.iter().chain(&new.kernels).collect();
    let mut changes = Vec::new();
    for case in cases {
        for kernel in &kernels {
            // A kernel that only one run covered is not a change of its cases.
            if !(old.kernels.contains(kernel) && new.kernels.contains(kernel)) {
                continue;
            }
            let (a, b) = (cell(old, case, kernel), cell(new, case, kernel));
            if a.as_ref().map(|c| c.outcome) != b.as_ref().map(|c| c.outcome) {
                changes.push(Change {
                    case: case.clone(),
                    kernel: (*kernel).clone(),
                    old: a.as_ref().map(|c| c.outcome),
                    new: b.as_ref().map(|c| c.outcome),
                    reason: b.and_then(|c| c.reason).or(a.and_then(|c| c.reason)),
                });
            }
        }
    }
    changes
}

/// The regression report: regressions first, then the other changes.
pub fn changes_markdown(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "No outcome changed.\n".into();
    }
    let show = |o: Option<Outcome>| o.map_or("—".to_owned(), |o| o.to_string());
    let mut out = String::from(
        "| case | kernel | before | after | regression | reason |\n|---|---|---|---|---|---|\n",
    );
    let (worse, other): (Vec<&Change>, Vec<&Change>) =
        changes.iter().partition(|c| c.is_regression());
    for c in worse.iter().chain(&other) {
        let reason = c.reason.as_deref().map(first_line).unwrap_or("");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {reason} |",
            c.case,
            c.kernel,
            show(c.old),
            show(c.new),
            if c.is_regression() { "yes" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "\n{} changed, {} regressions",
        changes.len(),
        worse.len()
    );
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Column order: version ids numerically (5.10 before 6.1 before 6.12), then the rest (host-…).
pub(crate) fn kernel_order(id: &str) -> (bool, Vec<u64>, String) {
    let nums: Option<Vec<u64>> = id.split('.').map(|n| n.parse().ok()).collect();
    match nums {
        Some(v) => (false, v, String::new()),
        None => (true, Vec::new(), id.to_owned()),
    }
}

fn severity(o: Outcome) -> u8 {
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

    fn matrix(cells: &[(&str, &str, Outcome)]) -> Matrix {
        let mut m = Matrix {
            kernels: Vec::new(),
            cases: BTreeMap::new(),
        };
        for (case, kernel, outcome) in cells {
            if !m.kernels.contains(&kernel.to_string()) {
                m.kernels.push(kernel.to_string());
            }
            m.cases
                .entry(case.to_string())
                .or_insert_with(|| Row {
                    prog_type: "xdp".into(),
                    cells: BTreeMap::new(),
                })
                .cells
                .insert(
                    kernel.to_string(),
                    Cell {
                        outcome: *outcome,
                        reason: None,
                    },
                );
        }
        m
    }

    #[test]
    fn compare_finds_regressions_and_fixes() {
        use Outcome::*;
        let old = matrix(&[
            ("a", "6.1", Pass),
            ("b", "6.1", Fail),
            ("c", "6.1", Pass),
            ("d", "6.1", Pass),
        ]);
        let new = matrix(&[
            ("a", "6.1", Fail),
            ("b", "6.1", Pass),
            ("c", "6.1", Pass),
            ("e", "6.1", Pass),
        ]);
        let changes = compare(&old, &new);
        let summary: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| (c.case.as_str(), c.is_regression()))
            .collect();
        assert_eq!(
            summary,
            [("a", true), ("b", false), ("d", true), ("e", false)]
        );
    }

    #[test]
    fn kernels_sort_by_version_then_host() {
        let mut ids = vec!["host-6.18", "6.12", "5.10", "7.3", "6.1"];
        ids.sort_by_key(|id| kernel_order(id));
        assert_eq!(ids, ["5.10", "6.1", "6.12", "7.3", "host-6.18"]);
    }
}
