//! The compatibility matrix (cases × kernels) from the records of a run, and the report made of
//! it: Markdown (a CI job summary), one self-contained HTML page, JSON and JUnit XML.

mod html;
mod json;
mod junit;
mod markdown;
pub(crate) mod page;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use std::fs;
use std::path::Path;

use bpfconf_record::Outcome;
use bpfconf_record::{KernelBuild, Record, Unreadable};

use crate::matrix::Timing;
use crate::run_dirs::LoadedRun;

pub use json::JsonReport;

/// The row of the records that could not be read.
const UNREADABLE: &str = "runner::unreadable_record";

/// A run's report: its matrix, the record behind each cell, the columns' releases and timings.
pub struct Report {
    /// The matrix.
    pub matrix: Matrix,
    /// The suite's version of the records.
    pub suite: Option<String>,
    /// The columns' timings, in column order.
    pub timings: Vec<Timing>,
    /// The record behind each cell, by case and kernel.
    pub records: BTreeMap<(String, String), Record>,
    /// One line per column that ran another build than the one its snapshots were accepted on.
    pub notes: Vec<String>,
}

/// The cells one missing feature cost on one kernel (the records' `cause`): reports name the
/// feature once, with what the kernel said.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct CauseGroup {
    /// The kernel id.
    pub kernel: String,
    /// The feature's id in kernels/floors.toml.
    pub feature: String,
    /// What the floors made of it there (`fail` past the floor, else `unsupported`).
    pub outcome: Outcome,
    /// What the kernel said (in the first case).
    pub said: String,
    /// The cases, by id.
    pub cases: Vec<String>,
}

impl CauseGroup {
    /// `host-6.18: 15 cells fail on helper.bpf_xdp_adjust_meta: <what the kernel said>`.
    pub fn line(&self) -> String {
        format!(
            "{}: {} {} on {}: {}",
            self.kernel,
            plural(self.cases.len(), "cell"),
            self.outcome,
            self.feature,
            self.said
        )
    }
}

impl Report {
    /// The report of a loaded run.
    pub fn new(run: &LoadedRun) -> Self {
        let matrix = run.matrix();
        let all: Vec<&Record> = run.records.iter().map(|p| &p.record).collect();
        let mut records: BTreeMap<(String, String), Record> = BTreeMap::new();
        for (r, (case, _)) in all.iter().zip(row_ids(&all)) {
            let outcome = matrix.cases[case].cells[&r.kernel].outcome;
            let key = (case.to_owned(), r.kernel.clone());
            if r.outcome == outcome && !records.contains_key(&key) {
                records.insert(key, (*r).clone());
            }
        }
        let notes = build_notes(&records, &crate::workspace_root().join("tests/snapshots"));
        Report {
            matrix,
            suite: run.suite.clone(),
            timings: run.timings.clone(),
            records,
            notes,
        }
    }

    /// The cells grouped by the missing feature they were judged on, each group once per kernel:
    /// failures first, then the largest groups.
    pub fn causes(&self) -> Vec<CauseGroup> {
        let mut groups: BTreeMap<(String, String, Outcome), CauseGroup> = BTreeMap::new();
        for ((case, kernel), r) in &self.records {
            let Some(cause) = r.cause.as_ref() else {
                continue;
            };
            let key = (kernel.clone(), cause.feature.clone(), r.outcome);
            groups
                .entry(key)
                .or_insert_with(|| CauseGroup {
                    kernel: kernel.clone(),
                    feature: cause.feature.clone(),
                    outcome: r.outcome,
                    said: cause.said.clone(),
                    cases: Vec::new(),
                })
                .cases
                .push(case.clone());
        }
        let mut groups: Vec<CauseGroup> = groups.into_values().collect();
        groups.sort_by_key(|g| {
            (
                std::cmp::Reverse(severity(g.outcome)),
                std::cmp::Reverse(g.cases.len()),
                kernel_order(&g.kernel),
            )
        });
        groups
    }

    /// The report of a matrix alone (no records, no timings).
    pub fn of_matrix(matrix: Matrix) -> Self {
        Report {
            matrix,
            suite: None,
            timings: Vec::new(),
            records: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Why this report is not the whole run: each record that could not be read (`<place>:
    /// <error>`). Empty when it is complete.
    pub fn problems(&self) -> Vec<String> {
        let Some(row) = self.matrix.cases.get(UNREADABLE) else {
            return Vec::new();
        };
        row.cells
            .values()
            .flat_map(|c| c.reason.as_deref().unwrap_or_default().lines())
            .map(str::to_owned)
            .collect()
    }

    /// `uname -r` of column `kernel`, from its records.
    pub fn release(&self, kernel: &str) -> Option<&str> {
        self.records
            .iter()
            .filter(|((_, k), r)| k == kernel && !r.kernel_release.is_empty())
            .map(|(_, r)| r.kernel_release.as_str())
            .next()
    }

    /// The timing of column `kernel`.
    pub fn timing(&self, kernel: &str) -> Option<&Timing> {
        self.timings.iter().find(|t| t.kernel == kernel)
    }

    /// Count of each outcome in column `kernel`.
    pub fn column_totals(&self, kernel: &str) -> BTreeMap<Outcome, usize> {
        let mut totals = BTreeMap::new();
        for row in self.matrix.cases.values() {
            if let Some(cell) = row.cells.get(kernel) {
                *totals.entry(cell.outcome).or_default() += 1;
            }
        }
        totals
    }

    /// The rows grouped by program type (types in name order, the runner's own rows last).
    pub fn by_type(&self) -> Vec<(&str, Vec<(&str, &Row)>)> {
        let mut groups: BTreeMap<(bool, &str), Vec<(&str, &Row)>> = BTreeMap::new();
        for (case, row) in &self.matrix.cases {
            let ty = row.prog_type.as_str();
            groups
                .entry((ty == "-", ty))
                .or_default()
                .push((case.as_str(), row));
        }
        groups
            .into_iter()
            .map(|((_, ty), rows)| (ty, rows))
            .collect()
    }

    /// `BPF conformance: N cases × M kernels`.
    pub fn title(&self) -> String {
        format!(
            "BPF conformance: {} × {}",
            plural(self.matrix.cases.len(), "case"),
            plural(self.matrix.kernels.len(), "kernel")
        )
    }

    /// Markdown for a CI job summary.
    pub fn markdown(&self) -> String {
        markdown::render(self)
    }

    /// One self-contained HTML page.
    pub fn html(&self) -> String {
        html::render(self)
    }

    /// The JSON report ([`JsonReport`]).
    pub fn json(&self) -> JsonReport {
        json::of(self)
    }

    /// JUnit XML, one testsuite per kernel.
    pub fn junit(&self) -> anyhow::Result<String> {
        junit::render(self)
    }
}

/// For each column whose records ran another build than the one in
/// `<snapshots>/<kernel>/build.json`: `host-6.18 6.18.44-fc-v1300: another build than the accepted
/// one (…): snapshots and baseline not enforced`.
fn build_notes(records: &BTreeMap<(String, String), Record>, snapshots: &Path) -> Vec<String> {
    let mut builds: BTreeMap<&str, &Record> = BTreeMap::new();
    for ((_, kernel), r) in records {
        if r.build.is_some() {
            builds.entry(kernel.as_str()).or_insert(r);
        }
    }
    let mut notes: Vec<_> = builds
        .into_iter()
        .filter_map(|(kernel, r)| {
            let file = snapshots.join(kernel).join("build.json");
            let accepted: KernelBuild =
                serde_json::from_str(&fs::read_to_string(file).ok()?).ok()?;
            let difference = r.build.as_ref()?.difference(&accepted)?;
            Some((
                kernel_order(kernel),
                format!(
                    "{kernel} {}: another build than the accepted one ({difference}): snapshots \
                     and baseline not enforced",
                    r.kernel_release
                ),
            ))
        })
        .collect();
    notes.sort();
    notes.into_iter().map(|(_, note)| note).collect()
}

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
#[derive(Clone, Debug, Serialize)]
pub struct Matrix {
    /// Kernel ids, in column order.
    pub kernels: Vec<String>,
    /// Rows by case id.
    pub cases: BTreeMap<String, Row>,
}

impl Matrix {
    /// Builds the matrix; a case recorded twice on one kernel keeps its worst outcome. The runner's
    /// record of a test that wrote none joins the row of the case that test runs elsewhere; a test
    /// case missing from a column is an `error` cell there, and so is a record that cannot be read.
    pub fn from_records(records: &[Record], unreadable: &[Unreadable]) -> Self {
        let all: Vec<&Record> = records.iter().collect();
        let ids = row_ids(&all);
        let mut kernels: BTreeSet<String> = records.iter().map(|r| r.kernel.clone()).collect();
        let mut m = Matrix {
            kernels: Vec::new(),
            cases: BTreeMap::new(),
        };
        let mut expected = BTreeSet::new();
        for (r, (case, prog_type)) in records.iter().zip(ids) {
            if !r.test.is_empty() {
                expected.insert(case.to_owned());
            }
            m.put(case, prog_type, &r.kernel, r.outcome, r.reason.clone());
        }
        for bad in unreadable {
            kernels.insert(bad.kernel.clone());
            let reason = format!("{}: {}", bad.place, bad.error);
            m.put(UNREADABLE, "-", &bad.kernel, Outcome::Error, Some(reason));
        }
        for case in &expected {
            for k in &kernels {
                if !m.cases[case].cells.contains_key(k) {
                    let why = "no record in this column (the case did not run here)";
                    let ty = m.cases[case].prog_type.clone();
                    m.put(case, &ty, k, Outcome::Error, Some(why.into()));
                }
            }
        }
        m.kernels = kernels.into_iter().collect();
        m.kernels.sort_by_key(|id| kernel_order(id));
        m
    }

    /// Adds a cell, keeping the worse outcome when the cell exists (and joining two reasons of
    /// unreadable records).
    fn put(
        &mut self,
        case: &str,
        prog_type: &str,
        kernel: &str,
        outcome: Outcome,
        reason: Option<String>,
    ) {
        let row = self.cases.entry(case.to_owned()).or_insert_with(|| Row {
            prog_type: prog_type.to_owned(),
            cells: BTreeMap::new(),
        });
        let new = Cell { outcome, reason };
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

    /// `total: N passed, N failed, N skipped` over all cells (`fail` and `error` count as failed,
    /// `unsupported` as skipped): the closing line CI reads.
    pub fn closing_line(&self) -> String {
        let t = self.totals();
        let n = |o| t.get(&o).copied().unwrap_or(0);
        format!(
            "total: {} passed, {} failed, {} skipped",
            n(Outcome::Pass),
            n(Outcome::Fail) + n(Outcome::Error),
            n(Outcome::Unsupported)
        )
    }

    /// Whether any cell is `fail` or `error`.
    pub fn has_failures(&self) -> bool {
        self.totals()
            .keys()
            .any(|o| matches!(o, Outcome::Fail | Outcome::Error))
    }

    /// The Markdown report of this matrix alone (what `matrix` and `objects` print).
    pub fn markdown(&self) -> String {
        Report::of_matrix(self.clone()).markdown()
    }
}

/// Each record's row: the case id and program type. The runner's record of a test that wrote none
/// joins the row of the case that test runs elsewhere.
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

/// The verifier's view: each `verifier::` rule × kernel, the verdict (`loads`, or the errno and the
/// key line of the refusal; the outcome when the rule did not pass).
pub fn verifier_view(records: &[Record]) -> String {
    let mut kernels: Vec<&str> = records.iter().map(|r| r.kernel.as_str()).collect();
    kernels.sort_by_key(|k| kernel_order(k));
    kernels.dedup();
    let mut rows: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.case.starts_with("verifier::")) {
        let verdict = match r.loads.first() {
            _ if r.outcome != Outcome::Pass => r.outcome.to_string(),
            Some(l) if l.loaded => "loads".to_owned(),
            Some(l) => format!(
                "{}: {}",
                l.errno.as_deref().unwrap_or("?"),
                l.message.as_deref().unwrap_or_default()
            ),
            None => "-".to_owned(),
        };
        rows.entry(&r.case)
            .or_default()
            .insert(&r.kernel, verdict.replace('|', "/"));
    }
    let mut out = format!(
        "| rule | {} |\n|---|{}\n",
        kernels.join(" | "),
        "---|".repeat(kernels.len())
    );
    for (case, cells) in rows {
        let cells: Vec<&str> = kernels
            .iter()
            .map(|k| cells.get(k).map_or("", String::as_str))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} |",
            &case["verifier::".len()..],
            cells.join(" | ")
        );
    }
    out
}

/// The `n` slowest cases of each kernel (by the records' `duration_ms`), as a Markdown table per
/// kernel, slowest first.
pub fn slowest(records: &[Record], n: usize) -> String {
    let mut by_kernel: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.duration_ms > 0) {
        by_kernel.entry(&r.kernel).or_default().push(r);
    }
    let mut kernels: Vec<_> = by_kernel.into_iter().collect();
    kernels.sort_by_key(|(k, _)| kernel_order(k));
    let mut out = String::new();
    for (kernel, mut rs) in kernels {
        let total: u64 = rs.iter().map(|r| r.duration_ms).sum();
        rs.sort_by_key(|r| std::cmp::Reverse(r.duration_ms));
        let _ = writeln!(
            out,
            "\n{kernel}: {} cases, {:.1} s in all\n\n| case | s |\n|---|---|",
            rs.len(),
            total as f64 / 1000.0
        );
        for r in rs.iter().take(n) {
            let _ = writeln!(out, "| {} | {:.2} |", r.case, r.duration_ms as f64 / 1000.0);
        }
    }
    out
}

/// `1 case`, `2 cases`.
pub(crate) fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub(crate) fn first_line(s: &str) -> &str {
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

pub(crate) fn severity(o: Outcome) -> u8 {
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
        let m = Matrix::from_records(&records, &bad);
        let cell = |case: &str, k: &str| m.cases[case].cells.get(k).map(|c| c.outcome);
        assert_eq!(cell("xdp::bounces", "5.10"), Some(Error));
        assert_eq!(
            cell("xdp::drops", "7.3"),
            Some(Error),
            "missing from a column"
        );
        assert_eq!(cell("runner::unreadable_record", "7.3"), Some(Error));
        assert_eq!(cell("runner::unreadable_record", "6.1"), None);
        assert!(!m.cases.contains_key("xdp::bounces_test"));
        assert_eq!(m.closing_line(), "total: 3 passed, 4 failed, 0 skipped");
    }

    #[test]
    fn kernels_sort_by_version_then_host() {
        let mut ids = vec!["host-6.18", "6.12", "5.10", "7.3", "6.1"];
        ids.sort_by_key(|id| kernel_order(id));
        assert_eq!(ids, ["5.10", "6.1", "6.12", "7.3", "host-6.18"]);
    }
}
