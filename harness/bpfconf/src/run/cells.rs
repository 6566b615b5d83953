//! Records → cells. A case recorded twice on one kernel keeps its worst outcome. The runner's
//! record of a test that wrote none joins the row of the case that test runs elsewhere; a test
//! case missing from a column is an `error` cell there, and so is a record that cannot be read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use record::{Outcome, Record};

use super::{Cell, Program, Row, Run, UNREADABLE, kernel_order, severity};

impl Run {
    /// Makes the cells of `self.records` and `self.unreadable`, and the columns' builds and
    /// releases.
    pub(super) fn fill_cells(&mut self) {
        let records: Vec<&Record> = self.records.iter().map(|p| &p.record).collect();
        let ids = row_ids(&records);
        let mut kernels: BTreeSet<String> = records.iter().map(|r| r.kernel.clone()).collect();
        let mut cases: BTreeMap<String, Row> = BTreeMap::new();
        let mut expected = BTreeSet::new();
        for (r, (case, prog_type)) in records.iter().zip(&ids) {
            if !r.test.is_empty() {
                expected.insert(case.to_owned());
            }
            put(
                &mut cases,
                case,
                prog_type,
                &r.kernel,
                r.outcome,
                r.reason.clone(),
            );
        }
        for bad in &self.unreadable {
            kernels.insert(bad.kernel.clone());
            let reason = format!("{}: {}", bad.place, bad.error);
            put(
                &mut cases,
                UNREADABLE,
                "-",
                &bad.kernel,
                Outcome::Error,
                Some(reason),
            );
        }
        for case in &expected {
            for k in &kernels {
                if !cases[*case].cells.contains_key(k) {
                    let why = "no record in this column (the case did not run here)";
                    let ty = cases[*case].prog_type.clone();
                    put(&mut cases, case, &ty, k, Outcome::Error, Some(why.into()));
                }
            }
        }
        // Each cell's record: the first one of its outcome.
        for (r, (case, _)) in records.iter().zip(&ids) {
            let cell = cases
                .get_mut(*case)
                .and_then(|row| row.cells.get_mut(&r.kernel));
            if let Some(cell) = cell.filter(|c| c.record.is_none() && c.outcome == r.outcome) {
                cell.programs = programs(r);
                cell.verdict = super::selftest(case)
                    .and_then(|_| r.details.get("verdict")?.as_str().map(str::to_owned));
                cell.record = Some((*r).clone());
            }
        }
        for r in &records {
            if let Some(build) = &r.build {
                self.builds
                    .entry(r.kernel.clone())
                    .or_insert_with(|| build.clone());
            }
            if !r.kernel_release.is_empty() {
                (self.releases.entry(r.kernel.clone())).or_insert_with(|| r.kernel_release.clone());
            }
        }
        self.kernels = kernels.into_iter().collect();
        self.kernels.sort_by_key(|id| kernel_order(id));
        self.cases = cases;
    }
}

/// Adds a cell, keeping the worse outcome when the cell exists (and joining the reasons of two
/// unreadable records).
fn put(
    cases: &mut BTreeMap<String, Row>,
    case: &str,
    prog_type: &str,
    kernel: &str,
    outcome: Outcome,
    reason: Option<String>,
) {
    let row = cases.entry(case.to_owned()).or_insert_with(|| Row {
        prog_type: prog_type.to_owned(),
        cells: BTreeMap::new(),
    });
    let new = Cell::new(outcome, reason);
    match row.cells.get_mut(kernel) {
        None => {
            row.cells.insert(kernel.to_owned(), new);
        }
        Some(cell) if case == UNREADABLE => {
            let more = new.reason.unwrap_or_default();
            let joined = format!("{}\n{more}", cell.reason.take().unwrap_or_default());
            cell.reason = Some(joined);
        }
        Some(cell) if severity(new.outcome) > severity(cell.outcome) => *cell = new,
        Some(_) => {}
    }
}

/// Each record's row: the case id and program type. The runner's record of a test that wrote
/// none joins the row of the case that test runs elsewhere.
fn row_ids<'a>(records: &[&'a Record]) -> Vec<(&'a str, &'a str)> {
    // (binary, test) → (case id, program type), from the records the cases wrote themselves.
    let names: HashMap<(&str, &str), (&str, &str)> = records
        .iter()
        .filter(|r| !r.test.is_empty() && r.prog_type != "-")
        .map(|r| ((&*r.binary, &*r.test), (&*r.case, &*r.prog_type)))
        .collect();
    records
        .iter()
        .map(|r| {
            names
                .get(&(&*r.binary, &*r.test))
                .copied()
                .unwrap_or((&r.case, &r.prog_type))
        })
        .collect()
}

/// The programs of record `r`, by `<object>/<program>`, with their run costs.
fn programs(r: &Record) -> BTreeMap<String, Program> {
    let mut programs = BTreeMap::new();
    for load in &r.loads {
        for (name, log) in &load.programs {
            programs.insert(
                format!("{}/{name}", load.object),
                Program::of(load, name, log),
            );
        }
    }
    for (name, cost) in &r.run_cost {
        // The program test-ran is one the case loaded: find it by its name.
        let key = (programs.keys())
            .find(|k: &&String| k.rsplit('/').next() == Some(name))
            .cloned()
            .unwrap_or_else(|| format!("?/{name}"));
        programs
            .entry(key)
            .or_insert_with(Program::default)
            .run_cost = Some(cost.clone());
    }
    programs
}

#[cfg(test)]
mod tests {
    use record::Unreadable;

    use super::*;

    fn record(case: &str, test: &str, kernel: &str, outcome: Outcome) -> Record {
        let mut r = Record::runner(kernel, case, outcome, None);
        (r.binary, r.test) = ("xdp".into(), test.into());
        if outcome == Outcome::Pass {
            r.prog_type = "xdp".into();
        }
        r
    }

    #[test]
    fn gaps_and_unreadable_records_are_errors() {
        use Outcome::*;
        let records = [
            record("xdp::drops", "drops", "6.1", Pass),
            record("xdp::bounces", "bounces", "6.1", Pass),
            // 5.10's binary aborted in `drops`: the runner's record joins the case's row.
            record("xdp::drops", "drops", "5.10", Pass),
            record("xdp::bounces_test", "bounces", "5.10", Error),
        ];
        let bad = [Unreadable {
            kernel: "7.3".into(),
            place: "7.3.jsonl:3".into(),
            error: "not a result record".into(),
            schema: None,
        }];
        let run = crate::run::testing::of_records(&records, &bad);
        let cell = |case: &str, k: &str| run.cell(case, k).map(|c| c.outcome);
        assert_eq!(cell("xdp::bounces", "5.10"), Some(Error));
        assert_eq!(
            cell("xdp::drops", "7.3"),
            Some(Error),
            "missing from a column"
        );
        assert_eq!(cell("runner::unreadable_record", "7.3"), Some(Error));
        assert_eq!(cell("runner::unreadable_record", "6.1"), None);
        assert!(!run.cases.contains_key("xdp::bounces_test"));
        let bounces = run.cell("xdp::bounces", "5.10").unwrap();
        assert_eq!(
            bounces.record.as_ref().map(|r| r.case.as_str()),
            Some("xdp::bounces_test")
        );
        assert!(run.cell("xdp::drops", "7.3").unwrap().record.is_none());
        let t = run.totals(None);
        assert_eq!((t[&Pass], t[&Error]), (3, 4));
    }
}
