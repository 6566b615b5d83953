//! The Markdown report, shaped for a GitHub job summary (at most 1 MiB): per-kernel totals, the
//! rows that are not all `pass` with their reasons, then the full table folded in `<details>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use record::{Outcome, RunCost};

use super::Report;
use crate::run::Row;
use crate::table::{self, Table};
use crate::text::{first_line, plural};

/// GitHub's limit on one step's job summary.
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// A reason's line is cut after this many characters.
const REASON_CHARS: usize = 300;

const OUTCOMES: [Outcome; 4] = [
    Outcome::Pass,
    Outcome::Fail,
    Outcome::Unsupported,
    Outcome::Error,
];

/// The report; the full table is left out (and said so) when it would pass [`SUMMARY_LIMIT`], then
/// the reasons past what fits.
pub fn render(report: &Report) -> String {
    let run = report.run;
    let mut head = format!("## {}\n\n", report.title());
    let problems = report.problems();
    if !problems.is_empty() {
        let _ = writeln!(
            head,
            "> [!CAUTION]\n> **Incomplete report**: {} record(s) could not be read; their cases \
             are `error` cells in `runner::unreadable_record`, and other cells of those columns \
             may be missing.\n>",
            problems.len()
        );
        for p in problems.iter().take(20) {
            let _ = writeln!(head, "> - {}", text(p));
        }
        head.push('\n');
    }
    for note in &report.notes {
        let _ = writeln!(head, "> [!NOTE]\n> {}\n", text(note));
    }
    head.push_str(&totals(report));
    let causes = report.causes();
    if !causes.is_empty() {
        head.push_str(
            "\n### Missing kernel features (one line each, with what the kernel said)\n\n",
        );
        for group in &causes {
            let _ = writeln!(head, "- {}", text(&cut(&group.line())));
        }
    }

    let not_pass: Vec<(&String, &Row)> = run
        .cases
        .iter()
        .filter(|(_, row)| row.cells.values().any(|c| c.outcome != Outcome::Pass))
        .collect();
    let mut reasons = String::new();
    let mut rows = cases_table(report);
    for (case, row) in &not_pass {
        rows.row(case_row(report, case, row));
        for k in &run.kernels {
            if let Some(cell) = row.cells.get(k).filter(|c| c.outcome != Outcome::Pass) {
                let why = cell.reason.as_deref().map(first_line).unwrap_or_default();
                let _ = writeln!(
                    reasons,
                    "- `{case}` on {k}: {}: {}",
                    cell.outcome,
                    text(&cut(why))
                );
            }
        }
    }
    let mut out = head;
    if not_pass.is_empty() {
        out.push_str("\nEvery case passed on every kernel.\n");
    } else {
        let _ = write!(
            out,
            "\n### Not passing everywhere: {} of {} cases\n\n{rows}\n",
            not_pass.len(),
            run.cases.len()
        );
    }
    let mut full = cases_table(report);
    for (case, row) in &run.cases {
        full.row(case_row(report, case, row));
    }
    let folded = format!(
        "\n<details><summary>All {} cases</summary>\n\n{full}\n</details>\n",
        run.cases.len()
    );
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!("\nReasons:\n\n{reasons}")
    };
    let folded = folded + &run_costs(report);
    let selftests = (report.selftests)
        .map(|run| super::selftests::markdown(run, |l| text(&cut(l))))
        .unwrap_or_default();
    let out = out + &selftests;
    let body = out + &reasons;
    if body.len() + folded.len() <= SUMMARY_LIMIT {
        return body + &folded;
    }
    let note = "\n_The full table and whatever follows this line are left out: the summary would \
                pass GitHub's 1 MiB limit. The HTML and JSON reports hold everything._\n";
    let room = SUMMARY_LIMIT - note.len();
    let mut kept = 0;
    for line in body.split_inclusive('\n') {
        if kept + line.len() > room {
            break;
        }
        kept += line.len();
    }
    body[..kept].to_owned() + note
}

/// Per-kernel totals and the run's.
fn totals(report: &Report) -> String {
    let run = report.run;
    let headers = [
        "kernel",
        "release",
        "pass",
        "fail",
        "unsupported",
        "error",
        "s",
    ];
    let mut table = Table::new(headers).right_from(2);
    for k in &run.kernels {
        let t = run.totals(Some(k));
        let n = |o| t.get(&o).copied().unwrap_or(0).to_string();
        let secs = run
            .timing(k)
            .map_or(String::new(), |t| format!("{:.0}", t.total_s));
        let release = report.release(k).unwrap_or("").to_owned();
        let counts = OUTCOMES.map(n);
        table.row([k.clone(), release].into_iter().chain(counts).chain([secs]));
    }
    let t = run.totals(None);
    let all = OUTCOMES.map(|o| format!("**{}**", t.get(&o).copied().unwrap_or(0)));
    table.row(
        ["all".to_owned(), String::new()]
            .into_iter()
            .chain(all)
            .chain([String::new()]),
    );
    table.to_string()
}

/// What one `BPF_PROG_TEST_RUN` of each test-ran program costs on each kernel, folded; empty when
/// nothing was measured.
fn run_costs(report: &Report) -> String {
    let mut rows: BTreeMap<(&str, &str), BTreeMap<&str, &RunCost>> = BTreeMap::new();
    for (case, kernel, cell) in report.run.cells() {
        let Some(r) = &cell.record else { continue };
        for (program, cost) in &r.run_cost {
            rows.entry((case, program))
                .or_default()
                .insert(kernel, cost);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let kernels = &report.run.kernels;
    let headers = ["case", "program"]
        .into_iter()
        .chain(kernels.iter().map(String::as_str));
    let mut table = Table::new(headers).right_from(2);
    for ((case, program), costs) in &rows {
        let cells = kernels.iter().map(|k| {
            costs.get(k.as_str()).map_or(String::new(), |c| {
                let approx = if c.emulated { "~" } else { "" };
                format!("{approx}{:.0}", c.ns_per_run_median)
            })
        });
        table.row(
            [format!("`{case}`"), program.to_string()]
                .into_iter()
                .chain(cells),
        );
    }
    format!(
        "\n<details><summary>Run cost of each test-ran program ({}): ns per run, the median of \
         the rounds (~: under emulation, an order of magnitude)</summary>\n\n{table}\n</details>\n",
        plural(rows.len(), "row"),
    )
}

/// The table of cases × kernels, without rows.
fn cases_table(report: &Report) -> Table {
    let kernels = report.run.kernels.iter().map(String::as_str);
    Table::new(["case", "type"].into_iter().chain(kernels))
}

/// The row of `case`: its type and each kernel's outcome.
fn case_row(report: &Report, case: &str, row: &Row) -> Vec<String> {
    let cells = report.run.kernels.iter().map(|k| {
        row.cells
            .get(k)
            .map_or("—".into(), |c| c.outcome.to_string())
    });
    [format!("`{case}`"), row.prog_type.clone()]
        .into_iter()
        .chain(cells)
        .collect()
}

/// `s` as Markdown text: no HTML (a summary renders it), no table breaks.
fn text(s: &str) -> String {
    table::escape(
        &s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(REASON_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use record::{Outcome, Record};

    use super::*;
    use crate::run::testing::{of_records, record};

    #[test]
    fn totals_first_then_what_did_not_pass_then_the_folded_table() {
        let records = [
            record("6.1", "xdp::drops", Outcome::Pass),
            record("6.1", "lwt::seg6", Outcome::Unsupported),
            record("5.10", "xdp::drops", Outcome::Pass),
            record("5.10", "lwt::seg6", Outcome::Fail),
        ];
        let mut reasoned = records[3].clone();
        reasoned.reason = Some("got <b>7</b> | wanted 8\nsecond line".into());
        let mut records = [&records[..3], &[reasoned]].concat();
        for r in &mut records {
            r.run_cost.clear();
        }
        let run = of_records(&records, &[]);
        let md = Report::new(&run).markdown();
        let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{md}"));
        assert!(
            at("| 5.10 | 5.10.0-amd64 | 1 | 1 | 0 | 0 |  |")
                < at("### Not passing everywhere: 1 of 2")
        );
        assert!(at("| `lwt::seg6` | lwt | fail | unsupported |") < at("<details>"));
        assert!(
            md.contains("- `lwt::seg6` on 5.10: fail: got &lt;b&gt;7&lt;/b&gt; \\| wanted 8\n")
        );
        assert!(at("<details>") < at("| `xdp::drops` | xdp | pass | pass |"));
        assert!(!md.contains("Incomplete"));
        assert!(!md.contains("Run cost"), "nothing measured: no table");
    }

    #[test]
    fn run_costs_fold_after_the_table() {
        let tmp = tempfile::tempdir().unwrap();
        let mut emulated = record("6.1", "xdp::drops", Outcome::Pass);
        emulated.run_cost.get_mut("prog").unwrap().emulated = true;
        record::write(tmp.path(), &emulated).unwrap();
        record::write(tmp.path(), &record("5.10", "xdp::drops", Outcome::Pass)).unwrap();
        let run = crate::run::load(&[tmp.path().to_owned()]).unwrap();
        let md = Report::new(&run).markdown();
        let table = md
            .split("<summary>Run cost of each test-ran program (1 row): ")
            .nth(1)
            .unwrap();
        assert!(table.contains("| case | program | 5.10 | 6.1 |\n|---|---|---:|---:|\n"));
        assert!(
            table.contains("| `xdp::drops` | prog | 10 | ~10 |\n"),
            "{table}"
        );
    }

    #[test]
    fn a_huge_run_still_fits_a_job_summary() {
        let records: Vec<Record> = (0..6000)
            .flat_map(|i| {
                ["5.10", "6.1", "6.12"].map(|k| {
                    let mut r = record(k, &format!("xdp::case_{i}"), Outcome::Fail);
                    r.reason = Some("x".repeat(1000));
                    r
                })
            })
            .collect();
        let run = of_records(&records, &[]);
        let md = Report::new(&run).markdown();
        assert!(md.len() <= SUMMARY_LIMIT, "{} bytes", md.len());
        assert!(md.starts_with("## BPF conformance: 6000 cases × 3 kernels"));
        assert!(md.ends_with("The HTML and JSON reports hold everything._\n"));
        assert!(!md.contains("<details>"));
    }
}
