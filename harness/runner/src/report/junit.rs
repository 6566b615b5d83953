//! JUnit XML for CI test views: one testsuite per kernel, one testcase per case (classname: the
//! program type), `unsupported` as skipped with its reason, `fail` as failure, `error` as error.

use std::time::Duration;

use anyhow::Result;
use bpfconf_record::Outcome;
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::{Report, first_line};

pub(super) fn render(report: &Report) -> Result<String> {
    let m = &report.matrix;
    let mut junit = quick_junit::Report::new("bpfconf");
    for k in &m.kernels {
        let mut suite = TestSuite::new(k.as_str());
        if let Some(release) = report.release(k) {
            suite.add_property(Property::new("kernel_release", release));
        }
        if let Some(t) = report.timing(k) {
            suite.set_time(Duration::from_secs_f64(t.total_s));
        }
        for (case, row) in &m.cases {
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
            if let Some(r) = report.records.get(&(case.clone(), k.clone())) {
                test.set_time(Duration::from_millis(r.duration_ms));
            }
            suite.add_test_case(test);
        }
        junit.add_test_suite(suite);
    }
    Ok(junit.to_string()?)
}
