//! A comparison as JUnit XML, the gate as a CI test view sees it: one testsuite per kernel of run
//! B, one testcase per case of run B there (classname: the case's module, its program type). A
//! regression is a failure (type `regression`, message `A → B` and the reason); every other case
//! passes, whatever its outcome, since only regressions fail the comparison; its property
//! `outcome` is run B's, and its system-out says what changed (fix, new case, statistics, verdict
//! or key line, run cost). A case gone from a column is a failing testcase there (type
//! `removed`), and a column gone is a testsuite of its own with one failing testcase `column`
//! (classname `runner`, type `removed_column`): the failures are exactly the comparison's
//! regressions.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use bpfconf_record::Outcome;
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::{Change, Comparison, Kind};
use crate::report::first_line;

pub(super) fn render(c: &Comparison) -> Result<String> {
    let changes: BTreeMap<(&str, &str), &Change> = (c.outcomes.iter())
        .map(|o| ((o.case.as_str(), o.kernel.as_str()), o))
        .collect();
    let notes = notes(c);
    let mut junit = quick_junit::Report::new("bpfconf compare");
    if !c.notes.is_empty() {
        let mut suite = TestSuite::new("notes");
        for note in &c.notes {
            let mut test = testcase("runner::not_compared", TestCaseStatus::skipped());
            test.set_system_out(note.as_str());
            suite.add_test_case(test);
        }
        junit.add_test_suite(suite);
    }
    for (kernel, cases) in &c.tested {
        let mut suite = TestSuite::new(kernel.as_str());
        for (case, outcome) in cases {
            let key = (case.as_str(), kernel.as_str());
            let change = changes.get(&key).copied();
            let status = match change {
                Some(o) if o.is_regression() => failure(o),
                _ => TestCaseStatus::success(),
            };
            let mut test = testcase(case, status);
            test.add_property(Property::new("outcome", outcome.to_string()));
            let mut out = String::new();
            if let Some(o) = change.filter(|o| !o.is_regression()) {
                let _ = writeln!(out, "{}: {}", kind(o.kind), outcomes(o));
            }
            for note in notes.get(&key).into_iter().flatten() {
                let _ = writeln!(out, "{note}");
            }
            if !out.is_empty() {
                test.set_system_out(out);
            }
            suite.add_test_case(test);
        }
        let removed =
            (c.outcomes.iter()).filter(|o| o.kind == Kind::Removed && o.kernel == *kernel);
        for o in removed {
            suite.add_test_case(testcase(&o.case, failure(o)));
        }
        junit.add_test_suite(suite);
    }
    for k in &c.removed_columns {
        let place = c.removed_column_places.get(k).unwrap_or(&c.old);
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status.set_type("removed_column").set_message(format!(
            "column {k} removed: {place} has it, {} has no record of it",
            c.new
        ));
        let mut test = TestCase::new("column", status);
        test.set_classname("runner");
        let mut suite = TestSuite::new(k.as_str());
        suite.add_test_case(test);
        junit.add_test_suite(suite);
    }
    Ok(junit.to_string()?)
}

/// The testcase of `case`, its classname the case's module.
fn testcase(case: &str, status: TestCaseStatus) -> TestCase {
    let mut test = TestCase::new(case, status);
    test.set_classname(case.split("::").next().unwrap_or(case));
    test
}

/// The failure of a regression: `A → B` and the reason's first line; the whole reason.
fn failure(o: &Change) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    let reason = o.reason.as_deref().unwrap_or_default();
    let mut message = format!("{} on {}: {}", kind(o.kind), o.kernel, outcomes(o));
    if !reason.is_empty() {
        message = format!("{message}: {}", first_line(reason));
        status.set_description(reason);
    }
    let ty = match o.kind {
        Kind::Removed => "removed",
        _ => "regression",
    };
    status.set_type(ty).set_message(message);
    status
}

/// `pass → fail`; `—` where a side has no such case.
fn outcomes(o: &Change) -> String {
    let show = |o: Option<Outcome>| o.map_or("—".to_owned(), |o| o.to_string());
    format!("{} → {}", show(o.old), show(o.new))
}

fn kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Regression => "regression",
        Kind::Removed => "case removed",
        Kind::Fix => "fix",
        Kind::Added => "new case",
    }
}

/// What changed in each cell besides its outcome, a line each.
fn notes(c: &Comparison) -> BTreeMap<(&str, &str), Vec<String>> {
    let mut notes: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for s in &c.stats {
        let flag = if s.flagged { " ⚠" } else { "" };
        (notes.entry((&s.case, &s.kernel)).or_default()).push(format!(
            "{} {}: {} → {} {}{flag}",
            s.program,
            s.metric,
            s.old,
            s.new,
            s.diff()
        ));
    }
    for d in &c.log_diffs {
        let key = |k: &Option<String>| k.clone().unwrap_or("—".into());
        (notes.entry((&d.case, &d.kernel)).or_default()).push(format!(
            "{}: {} → {}, key line {} → {}",
            d.program,
            d.old_verdict,
            d.new_verdict,
            key(&d.old_key_line),
            key(&d.new_key_line)
        ));
    }
    for r in &c.run_cost {
        (notes.entry((&r.case, &r.kernel)).or_default()).push(format!(
            "{} run cost: {} → {} ns ({:+.2}%)",
            r.program, r.old_ns, r.new_ns, r.pct
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::super::tests::comparison;
    use super::*;

    #[test]
    fn every_case_of_b_a_testcase_each_regression_a_failure() {
        let attack = "</failure><testcase name=\"x\">&";
        let c = comparison(attack);
        let xml = render(&c).unwrap();
        let suites: Vec<&str> = xml.split("<testsuite ").skip(1).collect();
        // 6.1 (B's cases a, b, c, e plus the removed d), 7.3 (new), then the removed 5.10.
        assert_eq!(suites.len(), 3, "{xml}");
        assert!(
            suites[0].starts_with(r#"name="6.1" tests="5" skipped="0" errors="0" failures="2""#),
            "{xml}"
        );
        assert!(
            suites[1].starts_with(r#"name="7.3" tests="1" skipped="0" errors="0" failures="0""#)
        );
        assert!(
            suites[2].starts_with(r#"name="5.10" tests="1" skipped="0" errors="0" failures="1""#)
        );
        assert_eq!(xml.matches("<failure ").count(), c.regressions);
        assert!(
            xml.contains(
                r#"<failure message="regression on 6.1: pass → fail: &lt;/failure&gt;&lt;testcase name=&quot;x&quot;&gt;&amp;" type="regression">"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="case removed on 6.1: pass → —" type="removed"/>"#)
        );
        assert!(xml.contains(r#"<testcase name="column" classname="runner">"#));
        assert!(xml.contains(
            r#"<failure message="column 5.10 removed: A has it, B has no record of it" type="removed_column"/>"#
        ), "{xml}");
        assert!(!xml.contains(attack), "{xml}");
        // A fix passes and says so; the statistics ride along.
        assert!(xml.contains("fix: fail → pass"), "{xml}");
        assert!(
            xml.contains("o/p insns: 200 → 230 +30 (+15.00%) ⚠"),
            "{xml}"
        );
        assert!(
            xml.contains("o/p run cost: 100 → 200 ns (+100.00%)"),
            "{xml}"
        );
        assert!(
            xml.contains("o/p: loaded → refused (EACCES), key line — → R0 !read_ok &lt;b&gt;"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="outcome" value="fail"/>"#),
            "{xml}"
        );
    }
}
