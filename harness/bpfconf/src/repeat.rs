//! `bpfconf matrix --repeat N`: the same columns N times into one run directory (`run-1/` …
//! `run-N/`), and every cell whose outcome was not the same in all N runs, with each run's
//! reason. A cell that can change between two runs of one commit is a bug to fix first.

use std::collections::BTreeSet;

use record::Outcome;

use crate::run::Run;
use crate::table::Table;
use crate::text::first_line;

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
    let cells: BTreeSet<(&str, &str)> = runs
        .iter()
        .flat_map(|r| r.cells().map(|(case, kernel, _)| (case, kernel)))
        .collect();
    cells
        .into_iter()
        .filter_map(|(case, kernel)| {
            let seen: Vec<(Option<Outcome>, Option<String>)> = runs
                .iter()
                .map(|r| {
                    let cell = r.cell(case, kernel);
                    (cell.map(|c| c.outcome), cell.and_then(|c| c.reason.clone()))
                })
                .collect();
            let first = seen[0].0;
            seen.iter().any(|(o, _)| *o != first).then(|| Varied {
                case: case.to_owned(),
                kernel: kernel.to_owned(),
                runs: seen,
            })
        })
        .collect()
}

/// `N runs × M cells: K varied`, then a table of the varied cells with each run's outcome and
/// the first line of its reason.
pub fn markdown(runs: &[Run], varied: &[Varied]) -> String {
    let cells = runs.first().map_or(0, |r| r.cells().count());
    let mut out = format!(
        "## Repeated: {} runs × {cells} cells: {} varied\n\n",
        runs.len(),
        varied.len()
    );
    if varied.is_empty() {
        out.push_str("Every cell had the same outcome in every run.\n");
        return out;
    }
    let runs_n = (1..=runs.len()).map(|i| format!("run {i}"));
    let mut table = Table::new(
        ["case".to_owned(), "kernel".to_owned()]
            .into_iter()
            .chain(runs_n),
    );
    for v in varied {
        let seen = v.runs.iter().map(|(outcome, reason)| {
            let outcome = outcome.map_or("—".to_owned(), |o| o.to_string());
            let reason = reason.as_deref().map(first_line).unwrap_or_default();
            format!("{outcome} {reason}")
        });
        table.row(
            [format!("`{}`", v.case), v.kernel.clone()]
                .into_iter()
                .chain(seen),
        );
    }
    out + &table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Cell;

    fn run(cells: &[(&str, &str, Outcome, &str)]) -> Run {
        let mut r = Run::default();
        for (case, kernel, outcome, reason) in cells {
            let reason = (!reason.is_empty()).then(|| reason.to_string());
            let row = r.cases.entry(case.to_string()).or_default();
            row.cells
                .insert(kernel.to_string(), Cell::new(*outcome, reason));
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
