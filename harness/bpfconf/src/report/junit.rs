//! JUnit XML for CI test views: one testsuite per kernel, one testcase per case (classname: the
//! program type), `unsupported` as skipped with its reason, `fail` as failure, `error` as error.

use std::time::Duration;

use anyhow::Result;
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use record::Outcome;

use super::Report;
use crate::text::first_line;

pub(super) fn render(report: &Report) -> Result<String> {
    let run = report.run;
    let mut junit = quick_junit::Report::new("bpfconf");
    for k in &run.kernels {
        let mut suite = TestSuite::new(k.as_str());
        if let Some(release) = report.release(k) {
            suite.add_property(Property::new("kernel_release", release));
        }
        if let Some(t) = run.timing(k) {
            suite.set_time(Duration::from_secs_f64(t.total_s));
        }
        for note in report
            .notes
            .iter()
            .filter(|n| n.split(' ').next() == Some(k))
        {
            suite.add_property(Property::new("build", note.as_str()));
        }
        for group in report.causes().iter().filter(|g| g.kernel == *k) {
            suite.add_property(Property::new("missing_feature", group.line()));
        }
        for (case, row) in &run.cases {
            let Some(cell) = row.cells.get(k) else {
                continue;
            };
            let reason = cell.reason.as_deref().unwrap_or_default();
            let mut status = match cell.outcome {
                Outcome::Pass => TestCaseStatus::success(),
                Outcome::Unsupported => TestCaseStatus::skipped(),
                Outcome::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Outcome::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
            };
            if cell.outcome != Outcome::Pass {
                status
                    .set_message(first_line(reason))
                    .set_type(cell.outcome.to_string())
                    .set_description(reason);
            }
            let mut test = TestCase::new(case.as_str(), status);
            test.set_classname(row.prog_type.as_str());
            if let Some(r) = &cell.record {
                test.set_time(Duration::from_millis(r.duration_ms));
            }
            suite.add_test_case(test);
        }
        junit.add_test_suite(suite);
    }
    if let Some(selftests) = report.selftests {
        junit.add_test_suites(super::selftests::junit(selftests));
    }
    Ok(junit.to_string()?)
}

#[cfg(test)]
mod tests {
    use record::Outcome;

    use super::*;
    use crate::run::testing::{of_records, record};

    #[test]
    fn one_suite_per_kernel_and_outcomes_as_junit_knows_them() {
        let records = [
            record("6.1", "xdp::drops", Outcome::Pass),
            record("6.1", "lwt::seg6", Outcome::Unsupported),
            record("5.10", "xdp::drops", Outcome::Fail),
            record("5.10", "lwt::seg6", Outcome::Error),
        ];
        let run = of_records(&records, &[]);
        let xml = Report::new(&run).junit().unwrap();
        let suites: Vec<&str> = xml.split("<testsuite ").skip(1).collect();
        assert_eq!(suites.len(), 2);
        assert!(
            suites[0].starts_with(r#"name="5.10" tests="2" skipped="0" errors="1" failures="1""#)
        );
        assert!(
            suites[1].starts_with(r#"name="6.1" tests="2" skipped="1" errors="0" failures="0""#)
        );
        assert!(
            xml.contains(
                r#"<skipped message="lwt::seg6 is unsupported on 6.1" type="unsupported">"#
            )
        );
        assert!(xml.contains(r#"<failure message="xdp::drops is fail on 5.10" type="fail">"#));
        assert!(xml.contains(r#"<error message="lwt::seg6 is error on 5.10" type="error">"#));
        assert!(xml.contains(r#"<testcase name="xdp::drops" classname="xdp" time="0.050""#));
    }
}
