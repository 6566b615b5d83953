//! The regression report: every cell whose outcome changed between two runs, regressions first.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use bpfconf_record::Outcome;
use serde::Serialize;

use crate::report::{Matrix, first_line, severity};

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

/// Every cell whose outcome differs between `old` and `new`, over the old run's kernels (a
/// column the new run lacks loses every cell: each is a regression).
pub fn compare(old: &Matrix, new: &Matrix) -> Vec<Change> {
    let cell = |m: &Matrix, case: &str, kernel: &str| {
        m.cases.get(case).and_then(|r| r.cells.get(kernel)).cloned()
    };
    let cases: BTreeSet<&String> = old.cases.keys().chain(new.cases.keys()).collect();
    let kernels: BTreeSet<&String> = old.kernels.iter().chain(&new.kernels).collect();
    let mut changes = Vec::new();
    for case in cases {
        for kernel in &kernels {
            // A column only the new run has brings new cells, not changes of the old ones.
            if !old.kernels.contains(kernel) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::{Cell, Row};

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
}
