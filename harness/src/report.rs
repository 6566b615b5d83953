//! The compatibility matrix: cases × kernels, from the records of a run directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::outcome::Outcome;
use crate::record::Record;

/// One matrix cell: the outcome and its reason.
pub type Cell = (Outcome, Option<String>);

/// One row: the case's program type and its cell per kernel.
pub type Row = (String, BTreeMap<String, Cell>);

/// Outcomes by case and kernel.
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
            let row = &mut cases
                .entry(r.case.clone())
                .or_insert_with(|| (r.prog_type.clone(), BTreeMap::new()))
                .1;
            let cell = row
                .entry(r.kernel.clone())
                .or_insert((r.outcome, r.reason.clone()));
            if severity(r.outcome) > severity(cell.0) {
                *cell = (r.outcome, r.reason.clone());
            }
        }
        Matrix {
            kernels: kernels.into_iter().collect(),
            cases,
        }
    }

    /// Count of each outcome over all cells.
    pub fn totals(&self) -> BTreeMap<Outcome, usize> {
        let mut totals = BTreeMap::new();
        for (_, row) in self.cases.values() {
            for (outcome, _) in row.values() {
                *totals.entry(*outcome).or_default() += 1;
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

    /// A Markdown table, then the reasons of every cell that is not `pass`.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "| case | type | {} |\n|---|---|{}\n",
            self.kernels.join(" | "),
            "---|".repeat(self.kernels.len())
        );
        let mut notes = String::new();
        for (case, (ty, row)) in &self.cases {
            let cells: Vec<String> = self
                .kernels
                .iter()
                .map(|k| match row.get(k) {
                    Some((o, reason)) => {
                        if let (Outcome::Fail | Outcome::Error | Outcome::Unsupported, Some(r)) =
                            (o, reason)
                        {
                            let _ = writeln!(
                                notes,
                                "- {case} on {k}: {o}: {}",
                                r.lines().next().unwrap_or("")
                            );
                        }
                        o.to_string()
                    }
                    None => "—".into(),
                })
                .collect();
            let _ = writeln!(out, "| {case} | {ty} | {} |", cells.join(" | "));
        }
        let totals: Vec<String> = self
            .totals()
            .iter()
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        let _ = writeln!(out, "\nTotal: {}", totals.join(", "));
        if !notes.is_empty() {
            let _ = write!(out, "\n{notes}");
        }
        out
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
