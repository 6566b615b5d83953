//! A comparison as one self-contained page in the report's look (its skeleton and style sheet):
//! what fails the run first (regressions, removed cases and columns), then fixes, new cases and
//! columns, the statistics (A) (B) (DIFF) with flagged rows highlighted, the verifier log diffs
//! with their lines coloured, and the run costs beyond the noise band. maud escapes every
//! interpolated string.

use bpfconf_record::Outcome;
use maud::{Markup, html};

use super::{Change, Comparison, Kind, SCHEMA};
use crate::report::page::page;
use crate::report::plural;

/// The comparison's own rules, after the report's style sheet.
const CSS: &str = include_str!("compare.css");

pub(super) fn render(c: &Comparison) -> String {
    let title = format!(
        "BPF conformance compare: {}",
        plural(c.regressions, "regression")
    );
    let body = html! {
        h1 { (title) }
        p.meta {
            "A = " code { (c.old) } " · B = " code { (c.new) } " · comparison schema " (SCHEMA)
        }
        @if c.regressions > 0 {
            div.banner role="alert" {
                strong { (plural(c.regressions, "regression")) }
                " (exit 1): cells that got worse, cases or columns that disappeared."
            }
        }
        @for note in &c.notes {
            p.note { strong { "Not compared: " } (note) }
        }
        (totals(c))
        h2 #regressions { "Regressions" }
        @if c.regressions == 0 { p { "None." } }
        @if !c.removed_columns.is_empty() {
            ul.columns {
                @for k in &c.removed_columns {
                    li {
                        "column " strong { (k) } " removed: "
                        code { (c.removed_column_places.get(k).unwrap_or(&c.old)) }
                        " has it, " code { (c.new) } " has no record of it"
                    }
                }
            }
        }
        (outcomes(c, &[Kind::Regression, Kind::Removed]))
        @for (kind, id, heading) in [(Kind::Fix, "fixes", "Fixes"), (Kind::Added, "new", "New cases")] {
            @if c.count(kind) > 0 {
                h2 id=(id) { (heading) }
                (outcomes(c, &[kind]))
            }
        }
        @if !c.added_columns.is_empty() {
            h2 #columns { "Added columns" }
            ul.columns { @for k in &c.added_columns { li { "column " strong { (k) } " added" } } }
        }
        (stats(c))
        (log_diffs(c))
        (costs(c))
    };
    page(&title, CSS, body)
}

/// The counts of each kind of change; those that fail the run marked.
fn totals(c: &Comparison) -> Markup {
    let flagged = c.stats.iter().filter(|s| s.flagged).count();
    let rows = [
        ("regressions (cells worse)", c.count(Kind::Regression), true),
        ("removed cells", c.count(Kind::Removed), true),
        ("removed columns", c.removed_columns.len(), true),
        ("fixes", c.count(Kind::Fix), false),
        ("new cells", c.count(Kind::Added), false),
        ("added columns", c.added_columns.len(), false),
        ("statistics changed", c.stats.len(), false),
        ("statistics beyond the threshold", flagged, false),
        ("verdicts or key lines changed", c.log_diffs.len(), false),
        ("run costs beyond the noise band", c.run_cost.len(), false),
    ];
    html! {
        table.totals {
            tbody {
                @for (what, n, fails) in rows {
                    tr { th { (what) } td.num.bad[fails && n > 0] { (n) } }
                }
                tr { th { "programs compared" } td.num { (c.programs_compared) } }
                tr {
                    th { "run costs compared (under emulation, not compared)" }
                    td.num { (c.costs_compared) " (" (c.costs_emulated) ")" }
                }
            }
        }
    }
}

/// A table of the changed cells of the kinds `kinds`.
fn outcomes(c: &Comparison, kinds: &[Kind]) -> Markup {
    let rows: Vec<&Change> = c
        .outcomes
        .iter()
        .filter(|o| kinds.contains(&o.kind))
        .collect();
    let outcome = |o: Option<Outcome>| match o {
        Some(o) => html! { td class={ "cell o-" (o) } { (o) } },
        None => html! { td.cell.o-none { "—" } },
    };
    html! {
        @if !rows.is_empty() {
            table.changes {
                thead { tr { th { "case" } th { "kernel" } th { "change" } th { "A" } th { "B" } th { "reason" } } }
                tbody {
                    @for o in rows {
                        tr {
                            th scope="row" { code { (o.case) } }
                            td { (o.kernel) }
                            td { (kind(o.kind)) }
                            (outcome(o.old)) (outcome(o.new))
                            td { @if let Some(r) = &o.reason { pre { (r) } } }
                        }
                    }
                }
            }
        }
    }
}

fn kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Regression => "worse",
        Kind::Removed => "case removed",
        Kind::Fix => "better",
        Kind::Added => "new case",
    }
}

/// veristat's (A) (B) (DIFF), flagged rows first and highlighted.
fn stats(c: &Comparison) -> Markup {
    let mut rows: Vec<_> = c.stats.iter().collect();
    rows.sort_by_key(|s| !s.flagged);
    html! {
        @if !rows.is_empty() {
            h2 #stats { "Verifier statistics and sizes" }
            p {
                "Changed values only, flagged (⚠) beyond ±" (c.options.threshold_pct) "%; insns, "
                "states, peak_states: the verifier's; stack_depth: bytes; prog_size: xlated "
                "instructions; jit_size: bytes."
            }
            table.stats {
                thead { tr {
                    th { "case" } th { "program" } th { "kernel" } th { "statistic" }
                    th { "(A)" } th { "(B)" } th { "(DIFF)" } th { "flag" }
                } }
                tbody {
                    @for s in rows {
                        tr class=[s.flagged.then_some("flagged")] {
                            th scope="row" { code { (s.case) } }
                            td { code { (s.program) } }
                            td { (s.kernel) }
                            td { (s.metric) }
                            td.num { (s.old) } td.num { (s.new) } td.num { (s.diff()) }
                            td.flag { @if s.flagged { "⚠" } }
                        }
                    }
                }
            }
        }
    }
}

/// Each program whose verdict or key line changed: its log diff, `+`/`-` lines coloured.
fn log_diffs(c: &Comparison) -> Markup {
    let key = |k: &Option<String>| match k {
        Some(k) => html! { code { (k) } },
        None => html! { "—" },
    };
    html! {
        @if !c.log_diffs.is_empty() {
            h2 #logs { "Verifier logs that changed verdict or key line" }
            @for d in &c.log_diffs {
                details open {
                    summary {
                        code { (d.case) } " · " code { (d.program) } " · " (d.kernel) ": "
                        (d.old_verdict) " → " (d.new_verdict) ", "
                        (key(&d.old_key_line)) " → " (key(&d.new_key_line))
                    }
                    pre.diff {
                        @for line in d.diff.lines() {
                            @let class = match line.as_bytes().first() {
                                Some(b'@') => Some("hunk"),
                                Some(b'+') if !line.starts_with("+++") => Some("add"),
                                Some(b'-') if !line.starts_with("---") => Some("del"),
                                _ => None,
                            };
                            span class=[class] { (line) "\n" }
                        }
                    }
                }
            }
        }
    }
}

fn costs(c: &Comparison) -> Markup {
    html! {
        @if !c.run_cost.is_empty() {
            h2 #costs { "Run cost beyond the noise band" }
            p {
                "ns per " code { "BPF_PROG_TEST_RUN" } " run, the median of rounds of the kernel's "
                code { "repeat" } "; beyond the noise band: moved by more than ±"
                (c.options.cost_noise_pct) "% and more than " (c.options.cost_noise_ns) " ns. Costs "
                "compare only between runs on the same machine."
            }
            table.costs {
                thead { tr {
                    th { "case" } th { "program" } th { "kernel" }
                    th { "(A) ns" } th { "(B) ns" } th { "(DIFF)" }
                } }
                tbody {
                    @for r in &c.run_cost {
                        tr {
                            th scope="row" { code { (r.case) } }
                            td { code { (r.program) } }
                            td { (r.kernel) }
                            td.num { (r.old_ns) } td.num { (r.new_ns) }
                            td.num { (format!("{:+} ({:+.2}%)", r.new_ns - r.old_ns, r.pct)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::comparison;
    use super::*;

    #[test]
    fn regressions_first_and_nothing_unescaped() {
        let attack = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>";
        let c = comparison(attack);
        let page = render(&c);
        assert!(
            !page.contains(attack) && !page.contains("<script") && !page.contains("<img"),
            "{page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"en\"><head>"));
        assert!(page.contains("<title>BPF conformance compare: 3 regressions</title>"));
        // The report's look, then the comparison's own rules.
        assert!(page.contains(include_str!("../report/report.css")));
        let at = |needle: &str| {
            page.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {page}"))
        };
        assert!(at("id=\"regressions\"") < at("id=\"fixes\""));
        assert!(at("id=\"fixes\"") < at("id=\"new\""));
        assert!(at("id=\"new\"") < at("id=\"stats\""));
        assert!(at("id=\"stats\"") < at("id=\"logs\"") && at("id=\"logs\"") < at("id=\"costs\""));
        // One row per changed cell, the regression's outcomes coloured as in the report.
        for kind in ["worse", "case removed", "better", "new case"] {
            assert_eq!(
                page.matches(&format!("<td>{kind}</td>")).count(),
                1,
                "{kind}"
            );
        }
        assert!(
            page.contains(r#"<td class="cell o-pass">pass</td><td class="cell o-fail">fail</td>"#)
        );
        assert!(
            page.contains(r#"<td class="cell o-none">—</td>"#),
            "removed: no B"
        );
        assert_eq!(page.matches("<tr class=\"flagged\">").count(), 1);
        assert!(
            page.contains("<tr><th scope=\"row\"><code>c</code>"),
            "unflagged: {page}"
        );
        assert!(page.contains(r#"<td class="num">+30 (+15.00%)</td>"#));
        assert!(
            page.contains("<span class=\"add\">+R0 !read_ok &lt;b&gt;\n</span>"),
            "{page}"
        );
        assert!(
            page.contains("<span class=\"del\">-processed 2 insns\n</span>"),
            "{page}"
        );
        assert!(page.contains("<span class=\"hunk\">@@"), "{page}");
        assert!(page.contains("<td class=\"num bad\">1</td>"), "{page}");
    }
}
