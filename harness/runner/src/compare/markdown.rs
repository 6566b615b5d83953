//! A comparison in Markdown: what fails the run first, then what only informs.

use std::fmt::Write as _;

use bpfconf_record::Outcome;

use super::{Change, Comparison, Kind};

/// Lines of one log diff shown; the JSON report has it whole.
const DIFF_LINES: usize = 80;

/// The comparison as Markdown.
pub fn render(c: &Comparison) -> String {
    let mut out = format!("## Compare: A = `{}`, B = `{}`\n\n", c.old, c.new);
    let flagged = c.stats.iter().filter(|s| s.flagged).count();
    let _ = writeln!(
        out,
        "**{} regressions**{} · {} fixes · {} new cells · {} removed cells · {} removed columns · \
         {} added columns · {} statistics changed ({} beyond ±{}%) over {} programs · {} verifier \
         verdicts or key lines changed · {} of {} run costs beyond the noise band ({} measured \
         under emulation, not compared)\n",
        c.regressions,
        if c.regressions > 0 { " (exit 1)" } else { "" },
        c.count(Kind::Fix),
        c.count(Kind::Added),
        c.count(Kind::Removed),
        c.removed_columns.len(),
        c.added_columns.len(),
        c.stats.len(),
        flagged,
        c.options.threshold_pct,
        c.programs_compared,
        c.log_diffs.len(),
        c.run_cost.len(),
        c.costs_compared,
        c.costs_emulated,
    );
    for note in &c.notes {
        let _ = writeln!(out, "- **not compared**: {note}");
    }
    for k in &c.removed_columns {
        let place = c.removed_column_places.get(k).unwrap_or(&c.old);
        let _ = writeln!(
            out,
            "- column **{k}** removed: `{place}` has it, `{}` has no record of it (regression)",
            c.new
        );
    }
    for k in &c.added_columns {
        let _ = writeln!(out, "- column **{k}** added");
    }
    if !c.removed_columns.is_empty() || !c.added_columns.is_empty() || !c.notes.is_empty() {
        out.push('\n');
    }
    outcome_tables(&mut out, &c.outcomes);
    stats_table(&mut out, c);
    log_diffs(&mut out, c);
    costs(&mut out, c);
    out
}

fn outcome_tables(out: &mut String, outcomes: &[Change]) {
    let show = |o: Option<Outcome>| o.map_or("—".to_owned(), |o| o.to_string());
    for (kind, title) in [
        (Kind::Regression, "Regressions"),
        (Kind::Removed, "Removed cases (regressions)"),
        (Kind::Fix, "Fixes"),
        (Kind::Added, "New cases"),
    ] {
        let rows: Vec<&Change> = outcomes.iter().filter(|c| c.kind == kind).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "### {title}\n\n| case | kernel | A | B | reason |\n|---|---|---|---|---|"
        );
        for c in rows {
            let reason = c.reason.as_deref().and_then(|r| r.lines().next());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                c.case,
                c.kernel,
                show(c.old),
                show(c.new),
                cell(reason.unwrap_or(""))
            );
        }
        out.push('\n');
    }
}

fn stats_table(out: &mut String, c: &Comparison) {
    if c.stats.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Verifier statistics and sizes\n\nChanged values only, flagged (⚠) beyond \
         ±{}%; insns, states, peak_states: the verifier's; stack_depth: bytes; prog_size: xlated \
         instructions; jit_size: bytes.\n\n\
         | case | program | kernel | statistic | A | B | DIFF | |\n|---|---|---|---|---|---|---|---|",
        c.options.threshold_pct
    );
    let mut rows: Vec<_> = c.stats.iter().collect();
    rows.sort_by_key(|s| !s.flagged);
    for s in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            s.case,
            s.program,
            s.kernel,
            s.metric,
            s.old,
            s.new,
            s.diff(),
            if s.flagged { "⚠" } else { "" }
        );
    }
    out.push('\n');
}

fn log_diffs(out: &mut String, c: &Comparison) {
    if c.log_diffs.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Verifier logs that changed verdict or key line\n");
    for d in &c.log_diffs {
        let key = |k: &Option<String>| k.as_deref().map_or("—".into(), |k| format!("`{k}`"));
        let _ = writeln!(
            out,
            "<details><summary>{} · {} · {}: {} → {}, {} → {}</summary>\n\n```diff",
            d.case,
            d.program,
            d.kernel,
            d.old_verdict,
            d.new_verdict,
            key(&d.old_key_line),
            key(&d.new_key_line)
        );
        let lines: Vec<&str> = d.diff.lines().collect();
        for l in lines.iter().take(DIFF_LINES) {
            let _ = writeln!(out, "{l}");
        }
        if lines.len() > DIFF_LINES {
            let _ = writeln!(
                out,
                "… {} more lines (the JSON report has them)",
                lines.len() - DIFF_LINES
            );
        }
        let _ = writeln!(out, "```\n</details>\n");
    }
}

fn costs(out: &mut String, c: &Comparison) {
    if c.run_cost.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Run cost beyond the noise band\n\nns per `BPF_PROG_TEST_RUN` run, the median of \
         rounds of the kernel's `repeat`; beyond the noise band: moved by more than ±{}% and \
         more than {} ns. Costs compare only between runs on the same machine.\n\n\
         | case | program | kernel | A ns | B ns | DIFF |\n|---|---|---|---|---|---|",
        c.options.cost_noise_pct, c.options.cost_noise_ns
    );
    for r in &c.run_cost {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:+} ({:+.2}%) |",
            r.case,
            r.program,
            r.kernel,
            r.old_ns,
            r.new_ns,
            r.new_ns - r.old_ns,
            r.pct
        );
    }
    out.push('\n');
}

/// `text` fit for a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
