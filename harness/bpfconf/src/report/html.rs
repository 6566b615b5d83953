//! The HTML report: one self-contained page (inline CSS and JS, no external assets). The table is
//! rendered here, readable without scripts; each cell's details (reason, errno, the verifier's key
//! line, statistics, whole logs) travel as JSON in a `<script type="application/json">` and a
//! small script shows them when the cell is clicked, and filters rows by type, outcome and text.
//! maud escapes every interpolated string; the JSON escapes `<`, so no text ends the script.

use maud::{Markup, PreEscaped, html};
use serde::Serialize;

use record::Outcome;

use super::Report;
use super::json::JsonCell;
use super::page::page;
use crate::run::Row;
use crate::text::{first_line, plural};

const JS: &str = include_str!("report.js");

/// What the page's script shows for one cell.
#[derive(Serialize)]
struct Detail<'a> {
    case: &'a str,
    kernel: &'a str,
    release: Option<&'a str>,
    #[serde(flatten)]
    cell: JsonCell,
}

pub(super) fn render(report: &Report) -> String {
    let run = report.run;
    let problems = report.problems();
    let mut details = Vec::new();
    let title = report.title();
    let groups = report.by_type();
    let body = html! {
        h1 { (title) }
        p.meta {
            @if let Some(suite) = &run.suite { "suite " code { (suite) } " · " }
            "record schema " (record::SCHEMA)
        }
        @if !problems.is_empty() {
            div.banner role="alert" {
                strong { "Incomplete report: " }
                (problems.len()) " record(s) could not be read. Their cases are "
                code { "error" } " cells in " code { "runner::unreadable_record" }
                ", and other cells of those columns may be missing."
                ul { @for p in &problems { li { code { (p) } } } }
            }
        }
        @for note in &report.notes {
            p.note { (note) }
        }
        (totals(report))
        @let causes = report.causes();
        @if !causes.is_empty() {
            h2 { "Missing kernel features" }
            ul.causes {
                @for group in &causes {
                    li {
                        strong { (group.kernel) ": " (plural(group.cases.len(), "cell")) " " (group.outcome) }
                        " on " code { (group.feature) } ": " (group.said)
                        details { summary { "cases" } (group.cases.join(", ")) }
                    }
                }
            }
        }
        div.filters {
            label { "Program type " select #f-type {
                option value="" { "all" }
                @for (ty, _) in &groups { option { (ty) } }
            } }
            label { "Outcome " select #f-outcome {
                option value="" { "any" }
                option value="notpass" { "not all pass" }
                @for o in [Outcome::Pass, Outcome::Fail, Outcome::Unsupported, Outcome::Error] {
                    option { (o) }
                }
            } }
            label { "Text " input #f-text type="search" placeholder="case, reason, errno, key line"; }
            span #shown {}
        }
        table #matrix {
            thead { tr { th { "case" } @for k in &run.kernels { th.k { (k) } } } }
            @for (ty, rows) in &groups {
                tbody data-type=(ty) {
                    tr.group { th colspan=(run.kernels.len() + 1) {
                        (ty) " " span.n { "(" (plural(rows.len(), "case")) ")" }
                    } }
                    @for (case, row) in rows {
                        @let outcomes = row_outcomes(row);
                        tr.case data-o=(outcomes) data-text=(search_text(case, row)) {
                            th scope="row" { (case) }
                            @for k in &run.kernels {
                                @if let Some(c) = row.cells.get(k) {
                                    @let i = { details.push(Detail {
                                        case, kernel: k, release: report.release(k),
                                        cell: JsonCell::of(c),
                                    }); details.len() - 1 };
                                    td class={ "cell o-" (c.outcome) } data-i=(i) tabindex="0"
                                        title=(c.reason.as_deref().map(first_line).unwrap_or("")) {
                                        (c.outcome)
                                    }
                                } @else {
                                    td.cell.o-none title="no record" { "—" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(selftests) = report.selftests {
            (super::selftests::html(selftests))
        }
        dialog #detail {
            form method="dialog" { button { "close" } }
            h2 #d-title {}
            div #d-body {}
        }
    };
    let data = serde_json::to_string(&details)
        .expect("the details serialize")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let body = html! {
        (body)
        script #cells type="application/json" { (PreEscaped(data)) }
        script { (PreEscaped(JS)) }
    };
    page(&title, "", body)
}

/// Per-kernel totals and the run's.
fn totals(report: &Report) -> Markup {
    let outcomes = [
        Outcome::Pass,
        Outcome::Fail,
        Outcome::Unsupported,
        Outcome::Error,
    ];
    let run = report.run;
    let all = run.totals(None);
    html! {
        table.totals {
            thead { tr {
                th { "kernel" } th { "release" }
                @for o in outcomes { th class={ "o-" (o) } { (o) } }
                th { "boot s" } th { "total s" } th { "end" }
            } }
            tbody {
                @for k in &run.kernels {
                    @let t = run.totals(Some(k));
                    @let timing = run.timing(k);
                    tr {
                        th { (k) }
                        td { (report.release(k).unwrap_or("")) }
                        @for o in outcomes { td.num { (t.get(&o).copied().unwrap_or(0)) } }
                        td.num { @if let Some(b) = timing.and_then(|t| t.boot_s) { (format!("{b:.1}")) } }
                        td.num { @if let Some(t) = timing { (format!("{:.0}", t.total_s)) } }
                        td { @if let Some(t) = timing { (t.end) } }
                    }
                }
                tr.all {
                    th { "all" } td {}
                    @for o in outcomes { td.num { (all.get(&o).copied().unwrap_or(0)) } }
                    td {} td {} td {}
                }
            }
        }
    }
}

/// The row's outcomes, space-separated, for the outcome filter.
fn row_outcomes(row: &Row) -> String {
    let mut os: Vec<String> = row.cells.values().map(|c| c.outcome.to_string()).collect();
    os.sort();
    os.dedup();
    os.join(" ")
}

/// What the text filter searches: the case, its type, its cells' reasons, errnos and key lines.
fn search_text(case: &str, row: &Row) -> String {
    let mut text = format!("{case} {}", row.prog_type);
    for c in row.cells.values() {
        if let Some(r) = &c.reason {
            text.push(' ');
            text.push_str(first_line(r));
        }
        if let Some(record) = &c.record {
            for l in &record.loads {
                for s in [&l.errno, &l.message].into_iter().flatten() {
                    text.push(' ');
                    text.push_str(s);
                }
            }
        }
    }
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use record::Outcome;

    use super::*;
    use crate::run::load;
    use crate::run::testing::record;

    #[test]
    fn one_page_every_cell_and_nothing_unescaped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut hostile = record("6.1", "xdp::drops", Outcome::Fail);
        let attack = "</script><script>alert(1)</script><img src=x onerror=alert(2)>";
        hostile.reason = Some(attack.into());
        hostile.loads[0].programs.get_mut("prog").unwrap().log = attack.into();
        record::write(tmp.path(), &hostile).unwrap();
        record::write(tmp.path(), &record("5.10", "xdp::drops", Outcome::Pass)).unwrap();
        record::write(tmp.path(), &record("5.10", "lwt::seg6", Outcome::Pass)).unwrap();
        let run = load(&[tmp.path().to_owned()]).unwrap();
        let page = Report::new(&run).html();
        assert!(
            !page.contains("<script>alert") && !page.contains("<img"),
            "{page}"
        );
        assert_eq!(page.matches("<script").count(), 2, "the data and the code");
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
        // lwt::seg6 has no 6.1 record: an empty cell, still a cell.
        assert_eq!(page.matches(r#"<td class="cell"#).count(), 4);
        assert!(page.contains(r#"<tbody data-type="lwt">"#));
        assert!(page.contains(r#"<td class="cell o-fail" data-i="#));
        let data = page.split(r#"type="application/json">"#).nth(1).unwrap();
        let data = data.split("</script>").next().unwrap();
        let cells: serde_json::Value = serde_json::from_str(data).unwrap();
        let fail = &cells
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["outcome"] == "fail")
            .unwrap();
        assert_eq!(
            fail["reason"], attack,
            "the details hold the text as it was"
        );
        assert_eq!(
            fail["loads"][0]["message"],
            "R1 invalid mem access 'scalar'"
        );
    }
}
