//! The kernel's own selftests in every report format: per tree, a row per test file and a column
//! per kernel with the counts of programs whose annotations hold, differ (this kernel's verifier
//! answers otherwise: on the tree's own kernels only where `kernels/selftests-divergences.toml`
//! says why, elsewhere the verifier's evolution), are unsupported here, or fail (the tree's own
//! expectation on its own kernel); then every program cell that is not `holds`, with its key line
//! or reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use maud::{Markup, html};
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use record::Outcome;
use serde::{Deserialize, Serialize};

use crate::run::{Cell, Run, selftest};
use crate::table::Table;
use crate::text::{first_line, plural};

/// How the programs of one test file went on one kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Every expectation held.
    pub holds: usize,
    /// This kernel differs from the annotation.
    pub differs: usize,
    /// What the suite cannot honour here (the test module's kfuncs, a load past its budget, …).
    pub unsupported: usize,
    /// The tree's expectation does not hold on its own kernel.
    pub fail: usize,
    /// The harness could not run it.
    pub error: usize,
}

impl Tally {
    fn add(&mut self, cell: &Cell) {
        match (cell.outcome, cell.verdict.as_deref()) {
            (Outcome::Fail, _) => self.fail += 1,
            (Outcome::Error, _) => self.error += 1,
            (Outcome::Unsupported, _) => self.unsupported += 1,
            (Outcome::Pass, Some("differs")) => self.differs += 1,
            (Outcome::Pass, _) => self.holds += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.holds += other.holds;
        self.differs += other.differs;
        self.unsupported += other.unsupported;
        self.fail += other.fail;
        self.error += other.error;
    }

    /// `holds / differs / unsupported / fail` (`+ N error` when the harness failed).
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} / {} / {} / {}",
            self.holds, self.differs, self.unsupported, self.fail
        );
        if self.error > 0 {
            let _ = write!(s, " + {} error", self.error);
        }
        s
    }
}

/// Tree → test file → kernel → tally.
pub type Tallies = BTreeMap<String, BTreeMap<String, BTreeMap<String, Tally>>>;

/// The tallies of every selftests cell of `run`.
pub fn tallies(run: &Run) -> Tallies {
    let mut out = Tallies::new();
    for (case, kernel, cell) in run.cells() {
        if let Some((tree, file)) = selftest(case) {
            out.entry(tree)
                .or_default()
                .entry(file.to_owned())
                .or_default()
                .entry(kernel.to_owned())
                .or_default()
                .add(cell);
        }
    }
    out
}

/// The tree's tally per kernel, all files together.
fn tree_totals(files: &BTreeMap<String, BTreeMap<String, Tally>>) -> BTreeMap<&str, Tally> {
    let mut totals: BTreeMap<&str, Tally> = BTreeMap::new();
    for kernels in files.values() {
        for (k, t) in kernels {
            totals.entry(k).or_default().merge(t);
        }
    }
    totals
}

/// What a program's cell says: `holds`, `differs: <what>`, or the outcome and its reason.
pub fn cell_text(cell: &Cell) -> String {
    let said = cell
        .record
        .as_ref()
        .and_then(|r| r.details.get("cell")?.as_str().map(str::to_owned));
    match (cell.outcome, said) {
        (Outcome::Pass, Some(said)) => said,
        (outcome, _) => format!(
            "{outcome}: {}",
            cell.reason.as_deref().map(first_line).unwrap_or_default()
        ),
    }
}

/// The Markdown section (empty when the run has no selftests cells); `cut` shortens a line.
pub fn markdown(run: &Run, cut: impl Fn(&str) -> String) -> String {
    let tallies = tallies(run);
    if tallies.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n## The kernel's own selftests\n\nEach cell: programs whose annotations hold / differ \
         on this kernel / are unsupported here / fail (the tree's own expectation on its own \
         kernel).\n",
    );
    for (tree, files) in &tallies {
        let totals = tree_totals(files);
        let kernels: Vec<&str> = run
            .kernels
            .iter()
            .map(String::as_str)
            .filter(|k| totals.contains_key(k))
            .collect();
        let mut table = Table::new(std::iter::once("test file").chain(kernels.iter().copied()));
        table.row(
            std::iter::once(format!("**all {}**", plural(files.len(), "file")))
                .chain(kernels.iter().map(|k| format!("**{}**", totals[k].text()))),
        );
        for (file, cells) in files {
            table.row(
                std::iter::once(file.clone()).chain(
                    kernels
                        .iter()
                        .map(|k| cells.get(*k).map_or(String::new(), Tally::text)),
                ),
            );
        }
        let _ = write!(
            out,
            "\n<details><summary>Linux {tree}'s selftests: {}</summary>\n\n{table}\n</details>\n",
            kernels
                .iter()
                .map(|k| format!("{k} {}", totals[k].text()))
                .collect::<Vec<_>>()
                .join(" · ")
        );
    }
    let failing: Vec<String> = run
        .cells()
        .filter(|(_, _, c)| matches!(c.outcome, Outcome::Fail | Outcome::Error))
        .map(|(case, k, c)| format!("- `{case}` on {k}: {}", cut(&cell_text(c))))
        .collect();
    if !failing.is_empty() {
        let _ = write!(
            out,
            "\nFailing on their own kernels, or not run:\n\n{}\n",
            failing.join("\n")
        );
    }
    out
}

/// The HTML section: the tallies, and per file the programs that do not hold everywhere, each
/// cell with its key line or reason.
pub fn html(run: &Run) -> Markup {
    let tallies = tallies(run);
    html! {
        @if !tallies.is_empty() {
            h2 #selftests { "The kernel's own selftests" }
            p.meta { "Each cell: programs whose annotations hold / differ on this kernel / are unsupported here / fail (the tree's own expectation on its own kernel). A file opens its programs that do not hold everywhere." }
            @for (tree, files) in &tallies {
                @let totals = tree_totals(files);
                @let kernels: Vec<&String> = run.kernels.iter().filter(|k| totals.contains_key(k.as_str())).collect();
                h3 { "Linux " (tree) }
                table.selftests {
                    thead { tr { th { "test file" } @for k in &kernels { th.k { (k) } } } }
                    tbody {
                        tr.group { th { "all " (plural(files.len(), "file")) } @for k in &kernels { td { (totals[k.as_str()].text()) } } }
                        @for (file, cells) in files {
                            tr {
                                th scope="row" {
                                    details {
                                        summary { (file) }
                                        (programs(run, tree, file, &kernels))
                                    }
                                }
                                @for k in &kernels { td { (cells.get(k.as_str()).map_or(String::new(), Tally::text)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The programs of `file` of `tree` that do not hold on every kernel, a row each.
fn programs(run: &Run, tree: &str, file: &str, kernels: &[&String]) -> Markup {
    let rows: Vec<(&String, &crate::run::Row)> = run
        .cases
        .iter()
        .filter(|(case, _)| selftest(case).is_some_and(|(t, f)| t == tree && f == file))
        .filter(|(_, row)| {
            row.cells
                .values()
                .any(|c| c.outcome != Outcome::Pass || c.verdict.as_deref() == Some("differs"))
        })
        .collect();
    html! {
        @if rows.is_empty() {
            p { "Every program holds on every kernel." }
        } @else {
            table {
                @for (case, row) in &rows {
                    tr {
                        td { code { (case.rsplit('/').next().unwrap_or(case)) } }
                        @for k in kernels {
                            td { (row.cells.get(k.as_str()).map_or(String::new(), cell_text)) }
                        }
                    }
                }
            }
        }
    }
}

/// The JSON section: the tallies, and every cell that does not hold, by case and kernel.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JsonSelftests {
    /// Tree → test file → kernel → tally.
    pub tallies: Tallies,
    /// Case → kernel → what the cell says, for every cell that is not `holds`.
    pub cells: BTreeMap<String, BTreeMap<String, String>>,
}

/// [`JsonSelftests`] of `run`.
pub fn json(run: &Run) -> JsonSelftests {
    let mut cells: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (case, kernel, cell) in run.cells() {
        if selftest(case).is_some() && cell.verdict.as_deref() != Some("holds") {
            cells
                .entry(case.to_owned())
                .or_default()
                .insert(kernel.to_owned(), cell_text(cell));
        }
    }
    JsonSelftests {
        tallies: tallies(run),
        cells,
    }
}

/// JUnit: a testsuite per tree and kernel, a testcase per test file: a failure naming the
/// programs that fail, an error for those not run, skipped when nothing ran, the tally as a
/// property.
pub fn junit(run: &Run) -> Vec<TestSuite> {
    let mut suites = Vec::new();
    for (tree, files) in tallies(run) {
        for kernel in &run.kernels {
            let mut suite = TestSuite::new(format!("selftests {tree} on {kernel}"));
            for (file, kernels) in &files {
                let Some(t) = kernels.get(kernel) else {
                    continue;
                };
                let failing = |want: Outcome| -> Vec<String> {
                    run.cases
                        .iter()
                        .filter(|(case, _)| {
                            selftest(case).is_some_and(|(tr, f)| tr == tree && f == *file)
                        })
                        .filter_map(|(case, row)| {
                            let cell = row.cells.get(kernel).filter(|c| c.outcome == want)?;
                            Some(format!("{case}: {}", cell_text(cell)))
                        })
                        .collect()
                };
                let status = if t.fail > 0 {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let lines = failing(Outcome::Fail);
                    s.set_message(format!("{} fail", t.fail))
                        .set_description(lines.join("\n"));
                    s
                } else if t.error > 0 {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    let lines = failing(Outcome::Error);
                    s.set_message(format!("{} not run", t.error))
                        .set_description(lines.join("\n"));
                    s
                } else if t.holds + t.differs == 0 {
                    TestCaseStatus::skipped()
                } else {
                    TestCaseStatus::success()
                };
                let mut test = TestCase::new(file.as_str(), status);
                test.set_classname(format!("selftests_{tree}"));
                test.add_property(Property::new("holds/differs/unsupported/fail", t.text()));
                suite.add_test_case(test);
            }
            if !suite.test_cases.is_empty() {
                suites.push(suite);
            }
        }
    }
    suites
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing::of_records;
    use record::Record;

    fn record(case: &str, kernel: &str, outcome: Outcome, cell: &str) -> Record {
        let mut r = Record::runner(kernel, case, outcome, None);
        (r.binary, r.test) = ("selftests_6_12".into(), case.into());
        if outcome != Outcome::Pass {
            r.reason = Some(cell.to_owned());
        } else {
            let verdict = cell.split(':').next().unwrap_or(cell);
            r.details.insert("verdict".into(), verdict.into());
            r.details.insert("cell".into(), cell.into());
        }
        r
    }

    /// Each file's cells tally by verdict and outcome; every format shows the tallies and the
    /// cells that do not hold.
    #[test]
    fn tallies_per_file_and_kernel_in_every_format() {
        use Outcome::*;
        let mut run = of_records(
            &[
                record("selftests_6_12::verifier_and/a", "6.12", Pass, "holds"),
                record(
                    "selftests_6_12::verifier_and/b",
                    "6.12",
                    Fail,
                    "R1 !read_ok",
                ),
                record(
                    "selftests_6_12::verifier_and/a",
                    "5.10",
                    Pass,
                    "differs: refused here: invalid insn",
                ),
                record(
                    "selftests_6_12::verifier_and/b",
                    "5.10",
                    Unsupported,
                    "bpf_testmod kfunc",
                ),
                record("xdp::drops", "6.12", Pass, ""),
            ],
            &[],
        );
        let selftests = run.take_selftests();
        assert!(run.cases.contains_key("xdp::drops") && run.cases.len() == 1);
        let t = &tallies(&selftests)["6.12"]["verifier_and"];
        assert_eq!(t["6.12"].text(), "1 / 0 / 0 / 1");
        assert_eq!(t["5.10"].text(), "0 / 1 / 1 / 0");
        let md = markdown(&selftests, str::to_owned);
        assert!(
            md.contains("| verifier_and | 0 / 1 / 1 / 0 | 1 / 0 / 0 / 1 |"),
            "{md}"
        );
        assert!(
            md.contains("`selftests_6_12::verifier_and/b` on 6.12: fail: R1 !read_ok"),
            "{md}"
        );
        let page = html(&selftests).into_string();
        assert!(
            page.contains("differs: refused here: invalid insn"),
            "{page}"
        );
        let j = json(&selftests);
        assert_eq!(j.cells["selftests_6_12::verifier_and/a"].len(), 1);
        let suites = junit(&selftests);
        let on_612 = suites
            .iter()
            .find(|s| s.name.as_str() == "selftests 6.12 on 6.12")
            .unwrap();
        assert!(matches!(
            on_612.test_cases[0].status,
            TestCaseStatus::NonSuccess { .. }
        ));
    }
}
