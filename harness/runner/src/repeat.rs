//! `bpfconf matrix --repeat N`: the same columns N times into one run directory (`run-1/` …
//! `run-N/`), and every cell whose outcome was not the same in all N runs, with each run's
//! reason. A cell that can change between two runs of one commit is a bug to fix first.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use bpfconf_record::Outcome;

use crate::compare::Run;
use crate::report::first_line;

/// A cell whose outcome differed between runs.
#[derive(Debug, PartialEq)]
pub struct Varied {
    /// Case id.
    pub case: String,
    /// Kernel id.
    pub kernel: String,
    /// Each run's outcome (`None`: no cell) and reason.
    pub runs: Vec<(Option<Outcome>, Option<String>)>,
}

/// The sub-directory of run `i` (1-based) of a repeated matrix.
pub fn run_dir(i: usize) -> String {
    format!("run-{i}")
}

/// Every cell of `runs` whose outcome is not the same in all of them.
pub fn varied(runs: &[Run]) -> Vec<Varied> {
    let cells: BTreeSet<(&String, &String)> = runs
        .iter()
        .flat_map(|r| {
            r.cells
                .iter()
                .flat_map(|(case, cells)| cells.keys().map(move |k| (case, k)))
        })
        .collect();
    cells
        .into_iter()
        .filter_map(|(case, kernel)| {
            let seen: Vec<(Option<Outcome>, Option<String>)> = runs
                .iter()
                .map(|r| {
                    let cell = r.cell(case, kernel);
                    (
                        cell.and_then(|c| c.outcome),
                        cell.and_then(|c| c.reason.clone()),
                    )
                })
                .collect();
            let first = seen[0].0;
            seen.iter().any(|(o, _)| *o != first).then(|| Varied {
                case: case.clone(),
                kernel: kernel.clone(),
                runs: seen,
            })
        })
        .collect()
}

/// `N runs × M cells: K varied`, then a table of the varied cells with each run's outcome and
/// the first line of its reason.
pub fn markdown(runs: &[Run], varied: &[Varied]) -> String {
    let cells: usize = runs
        .first()
        .map_or(0, |r| r.cells.values().map(|c| c.len()).sum());
    let mut out = format!(
        "## Repeated: {} runs × {cells} cells: {} varied\n\n",
        runs.len(),
        varied.len()
    );
    if varied.is_empty() {
        out.push_str("Every cell had the same outcome in every run.\n");
        return out;
    }
    out.push_str("| case | kernel |");
    for i in 1..=runs.len() {
        let _ = write!(out, " run {i} |");
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(runs.len()));
    out.push('\n');
    for v in varied {
        let _ = write!(out, "| `{}` | {} |", v.case, v.kernel);
        for (outcome, reason) in &v.runs {
            let outcome = outcome.map_or("—".to_owned(), |o| o.to_string());
            let reason = reason.as_deref().map(first_line).unwrap_or_default();
            let _ = write!(out, " {outcome} {} |", reason.replace('|', "\\|"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::run::Cell;

    fn run(cells: &[(&str, &str, Outcome, &str)]) -> Run {
        let mut r = Run::default();
        for (case, kernel, outcome, reason) in cells {
            r.cells.entry(case.to_string()).or_default().insert(
                kernel.to_string(),
                Cell {
                    outcome: Some(*outcome),
                    reason: (!reason.is_empty()).then(|| reason.to_string()),
                    programs: Default::default(),
                },
            );
        }
        r
    }

    #[test]
    fn only_cells_that_changed_are_listed_with_every_run() {
        use Outcome::*;
        let runs = [
            run(&[("a", "6.12", Pass, ""), ("b", "6.12", Pass, "")]),
            run(&[
                ("a", "6.12", Fail, "left (Err(EXFULL), 7)"),
                ("b", "6.12", Pass, ""),
            ]),
            run(&[("a", "6.12", Pass, ""), ("b", "6.12", Pass, "")]),
        ];
        let v = varied(&runs);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].case.as_str(), v[0].kernel.as_str()), ("a", "6.12"));
        assert_eq!(v[0].runs[1].0, Some(Fail));
        let md = markdown(&runs, &v);
        assert!(md.contains("3 runs × 2 cells: 1 varied"), "{md}");
        assert!(
            md.contains("| `a` | 6.12 | pass  | fail left (Err(EXFULL), 7) | pass  |"),
            "{md}"
        );
        let same = [
            run(&[("a", "6.12", Pass, "")]),
            run(&[("a", "6.12", Pass, "")]),
        ];
        assert!(varied(&same).is_empty());
    }
}
