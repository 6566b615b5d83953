//! `bpfconf compare OLD NEW` (and `baseline check`): what changed between two runs — outcomes
//! (regressions first), columns, and veristat's compare view of each program on each kernel
//! (verifier statistics, sizes), the verifier log where a verdict or key line changed, and run
//! costs beyond the noise band. Only regressions make it fail.

mod html;
mod junit;
mod markdown;
mod programs;

use std::collections::{BTreeMap, BTreeSet};

use record::Outcome;
use serde::{Deserialize, Serialize};

use crate::report::Format;
use crate::run::{Cell, Run, severity};
pub use programs::{CostChange, LogDiff, MetricDiff};

/// The JSON report's version ([`Comparison::schema`]); bump it when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// A statistic whose relative change exceeds this (percent) is flagged (`--threshold`).
pub const THRESHOLD_PCT: f64 = 5.0;

/// The noise band of run costs: a median moves by more than this percent AND by more than
/// [`COST_NOISE_NS`] before it counts as a change. Measured on the host (6.18, 2 shared cores)
/// by ten runs of the unchanged 83 test-run rows (3735 pairs of runs): the kernel reports whole
/// ns, so a 6 ns program moves by 17 % at one ns; the relative change of a row's median between
/// two runs had p50 4.7 %, p95 14.3 %, p99 18.8 %, max 50 %; the absolute one p95 3 ns, p99 5 ns,
/// max 6 ns; no pair left this band.
pub const COST_NOISE_PCT: f64 = 25.0;
/// See [`COST_NOISE_PCT`].
pub const COST_NOISE_NS: f64 = 5.0;

/// How to compare.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Options {
    /// [`THRESHOLD_PCT`].
    pub threshold_pct: f64,
    /// [`COST_NOISE_PCT`].
    pub cost_noise_pct: f64,
    /// [`COST_NOISE_NS`].
    pub cost_noise_ns: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threshold_pct: THRESHOLD_PCT,
            cost_noise_pct: COST_NOISE_PCT,
            cost_noise_ns: COST_NOISE_NS,
        }
    }
}

/// Everything that changed from run A (old) to run B (new): the JSON report, schema [`SCHEMA`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Run A (the earlier run, or the baseline).
    pub old: String,
    /// Run B.
    pub new: String,
    /// How the runs were compared.
    pub options: Options,
    /// Regressions: outcome regressions, removed cases and removed columns. Non-zero: exit 1.
    pub regressions: usize,
    /// Kernels only run A has: every cell of theirs is gone (a regression each column).
    pub removed_columns: Vec<String>,
    /// Where run A writes down each removed column (`file:line`), where it knows.
    pub removed_column_places: BTreeMap<String, String>,
    /// Kernels only run B has.
    pub added_columns: Vec<String>,
    /// Every cell whose outcome changed, over the kernels both runs have.
    pub outcomes: Vec<Change>,
    /// Programs on both sides whose statistics differ, one entry per changed statistic.
    pub stats: Vec<MetricDiff>,
    /// Programs on both sides whose verdict or verifier key line changed, with the log diff.
    pub log_diffs: Vec<LogDiff>,
    /// Run costs that moved beyond the noise band.
    pub run_cost: Vec<CostChange>,
    /// Programs whose statistics were compared (on both sides, with statistics).
    pub programs_compared: usize,
    /// Run costs compared (on both sides, measured natively).
    pub costs_compared: usize,
    /// Run costs not compared: measured under emulation on either side (QEMU TCG: two runs of
    /// the same rows on 6.1 differed by p50 12 %, p95 270 %).
    pub costs_emulated: usize,
    /// What was left out and why, one line each (a column that ran another build than run A's:
    /// its snapshots and accepted cells are not enforced). Every format shows them.
    pub notes: Vec<String>,
    /// Run B's cells, column by column (kernel, then case → outcome): the JUnit view has a
    /// testcase for each. Not in the JSON, which holds what changed.
    #[serde(skip)]
    pub tested: Vec<(String, BTreeMap<String, Outcome>)>,
}

/// What kind of outcome change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Worse than before (pass → fail/error/unsupported, unsupported → fail, …).
    Regression,
    /// The case is gone from this column (a regression).
    Removed,
    /// Better than before.
    Fix,
    /// A case run A did not have here.
    Added,
}

/// One cell whose outcome changed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    /// Case id.
    pub case: String,
    /// Kernel id.
    pub kernel: String,
    /// What kind of change.
    pub kind: Kind,
    /// Run A's outcome (`None`: no such case).
    pub old: Option<Outcome>,
    /// Run B's outcome (`None`: the case is gone).
    pub new: Option<Outcome>,
    /// Run B's reason, else run A's.
    pub reason: Option<String>,
}

impl Change {
    /// A regression: worse, or gone.
    pub fn is_regression(&self) -> bool {
        matches!(self.kind, Kind::Regression | Kind::Removed)
    }
}

/// The columns both runs have whose builds differ, each with its note: those are not compared
/// (another build's outcomes and statistics are not a change of the kernel run A ran).
pub fn other_builds(old: &Run, new: &Run) -> Vec<(String, String)> {
    new.kernels
        .iter()
        .filter(|k| old.kernels.contains(k))
        .filter_map(|k| {
            let difference = new.builds.get(k)?.difference(old.builds.get(k)?)?;
            let release = new
                .releases
                .get(k)
                .map_or(String::new(), |r| format!(" {r}"));
            Some((
                k.clone(),
                format!(
                    "{k}{release}: another build than {}'s ({difference}): its snapshots and \
                     cells are not compared",
                    old.label
                ),
            ))
        })
        .collect()
}

/// Compares run `old` (A) with run `new` (B); a column whose build differs is left out with a
/// note ([`other_builds`]).
pub fn compare(old: &Run, new: &Run, options: &Options) -> Comparison {
    let others = other_builds(old, new);
    let skipped = |k: &String| others.iter().any(|(o, _)| o == k);
    // The columns of `a` that `b` lacks.
    let only_in = |a: &Run, b: &Run| -> Vec<String> {
        let lacks = |k: &&String| !b.kernels.contains(k);
        a.kernels.iter().filter(lacks).cloned().collect()
    };
    let (removed_columns, added_columns) = (only_in(old, new), only_in(new, old));
    let kernels: Vec<&String> = old
        .kernels
        .iter()
        .filter(|k| new.kernels.contains(k) && !skipped(k))
        .collect();
    let cases: BTreeSet<&String> = old.cases.keys().chain(new.cases.keys()).collect();
    let mut outcomes = Vec::new();
    let mut programs = programs::Diffs::default();
    for case in cases {
        for kernel in &kernels {
            let (a, b) = (old.cell(case, kernel), new.cell(case, kernel));
            let (oa, ob) = (a.map(|c| c.outcome), b.map(|c| c.outcome));
            if let (Some(a), Some(b)) = (a, b) {
                programs.add(case, kernel, a, b, options);
            }
            // A program of the kernel's own selftests that held and now differs regressed.
            let verdicts = (
                a.and_then(|c| c.verdict.as_deref()),
                b.and_then(|c| c.verdict.as_deref()),
            );
            let kind = match (oa, ob) {
                (Some(x), Some(y)) if severity(y) > severity(x) => Kind::Regression,
                (Some(x), Some(y)) if severity(y) < severity(x) => Kind::Fix,
                (Some(_), Some(_)) => match verdicts {
                    (Some("holds"), Some("differs")) => Kind::Regression,
                    (Some("differs"), Some("holds")) => Kind::Fix,
                    _ => continue,
                },
                (Some(_), None) => Kind::Removed,
                (None, Some(_)) => Kind::Added,
                _ => continue,
            };
            let reason = |c: Option<&Cell>| {
                c.and_then(|c| {
                    c.reason.clone().or_else(|| {
                        let said = c.record.as_ref()?.details.get("cell")?.as_str()?;
                        (said != "holds").then(|| said.to_owned())
                    })
                })
            };
            outcomes.push(Change {
                case: case.clone(),
                kernel: (*kernel).clone(),
                kind,
                old: oa,
                new: ob,
                reason: reason(b).or(reason(a)),
            });
        }
    }
    outcomes.sort_by(|x, y| (x.kind, &x.case, &x.kernel).cmp(&(y.kind, &y.case, &y.kernel)));
    let regressions = outcomes.iter().filter(|c| c.is_regression()).count() + removed_columns.len();
    Comparison {
        schema: SCHEMA,
        old: old.label.clone(),
        new: new.label.clone(),
        options: options.clone(),
        regressions,
        removed_column_places: old
            .places
            .iter()
            .filter(|(k, _)| removed_columns.contains(k))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect(),
        removed_columns,
        added_columns,
        outcomes,
        stats: programs.stats,
        log_diffs: programs.logs,
        run_cost: programs.costs,
        programs_compared: programs.compared,
        costs_compared: programs.costs_compared,
        costs_emulated: programs.costs_emulated,
        notes: others.into_iter().map(|(_, note)| note).collect(),
        tested: new
            .kernels
            .iter()
            .map(|k| {
                let cases = (new.cases.iter())
                    .filter_map(|(case, row)| Some((case.clone(), row.cells.get(k)?.outcome)))
                    .collect();
                (k.clone(), cases)
            })
            .collect(),
    }
}

impl Comparison {
    /// The count of changed cells of kind `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.outcomes.iter().filter(|o| o.kind == kind).count()
    }
}

/// Renders `comparison` in `format`.
pub fn render(comparison: &Comparison, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Markdown => markdown::render(comparison),
        Format::Html => html::render(comparison),
        Format::Json => serde_json::to_string_pretty(comparison)? + "\n",
        Format::Junit => junit::render(comparison)?,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::run::testing::of_cells as run;
    use crate::run::{Program, Verdict};
    use record::RunCost;

    /// A comparison with every kind of change, `text` as the regression's reason: on 6.1, `a`
    /// pass → fail (refused now, insns +15 %, run cost doubled), `b` a fix, `c` insns +1 %, `d`
    /// removed, `e` new; column 5.10 removed, 7.3 added. Labels `A` and `B`.
    pub(crate) fn comparison(text: &str) -> Comparison {
        use Outcome::*;
        let program = |insns, refused: bool, ns| Program {
            verdict: Some(if refused {
                Verdict::Refused(Some("EACCES".into()))
            } else {
                Verdict::Loaded
            }),
            key_line: refused.then(|| "R0 !read_ok <b>".into()),
            metrics: BTreeMap::from([("insns", insns)]),
            log: Some(if refused {
                "0: r0 = 0\nR0 !read_ok <b>\nprocessed 3 insns\n".into()
            } else {
                "0: r0 = 0\nprocessed 2 insns\n".into()
            }),
            run_cost: Some(RunCost {
                ns_per_run_median: ns,
                min: ns,
                max: ns,
                rounds: 5,
                repeat: 1000,
                emulated: false,
            }),
        };
        let mut old = run(&[
            ("a", "6.1", Pass),
            ("b", "6.1", Fail),
            ("c", "6.1", Pass),
            ("d", "6.1", Pass),
            ("a", "5.10", Pass),
        ]);
        let mut new = run(&[
            ("a", "6.1", Fail),
            ("b", "6.1", Pass),
            ("c", "6.1", Pass),
            ("e", "6.1", Pass),
            ("a", "7.3", Pass),
        ]);
        let put = |r: &mut Run, case: &str, p: Program| {
            let cell = r.cases.get_mut(case).unwrap().cells.get_mut("6.1").unwrap();
            cell.programs.insert("o/p".into(), p);
        };
        put(&mut old, "a", program(200, false, 100.0));
        put(&mut new, "a", program(230, true, 200.0));
        put(&mut old, "c", program(100, false, 50.0));
        put(&mut new, "c", program(101, false, 51.0));
        new.cases
            .get_mut("a")
            .unwrap()
            .cells
            .get_mut("6.1")
            .unwrap()
            .reason = Some(text.into());
        (old.label, new.label) = ("A".into(), "B".into());
        compare(&old, &new, &Options::default())
    }

    #[test]
    fn regressions_fixes_and_columns() {
        use Outcome::*;
        let old = run(&[
            ("a", "6.1", Pass),
            ("b", "6.1", Fail),
            ("c", "6.1", Pass),
            ("d", "6.1", Pass),
            ("a", "5.10", Pass),
        ]);
        let new = run(&[
            ("a", "6.1", Unsupported),
            ("b", "6.1", Pass),
            ("c", "6.1", Pass),
            ("e", "6.1", Pass),
            ("a", "7.3", Fail),
        ]);
        let c = compare(&old, &new, &Options::default());
        let found: Vec<(&str, Kind)> = c.outcomes.iter().map(|c| (&*c.case, c.kind)).collect();
        use Kind::*;
        assert_eq!(
            found,
            [("a", Regression), ("d", Removed), ("b", Fix), ("e", Added)]
        );
        assert_eq!(c.removed_columns, ["5.10"]);
        assert_eq!(c.added_columns, ["7.3"]);
        assert_eq!(c.regressions, 3);
    }
}
