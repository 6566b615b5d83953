//! veristat's compare view of one cell's programs: statistics (A) (B) (DIFF), the verifier log
//! diff where a verdict or key line changed, and run costs beyond the noise band.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use similar::TextDiff;

use super::Options;
use crate::run::{Cell, METRICS, Verdict};

/// One statistic of one program that differs between the runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricDiff {
    /// Case id.
    pub case: String,
    /// Kernel id.
    pub kernel: String,
    /// `<object>/<program>`.
    pub program: String,
    /// One of [`METRICS`].
    pub metric: String,
    /// Run A's value.
    pub old: u64,
    /// Run B's value.
    pub new: u64,
    /// Relative change in percent (`None` from zero).
    pub pct: Option<f64>,
    /// Beyond the threshold (from zero: always).
    pub flagged: bool,
}

impl MetricDiff {
    /// `+N (+X.XX%)`, veristat's DIFF column.
    pub fn diff(&self) -> String {
        let n = self.new as i128 - self.old as i128;
        match self.pct {
            Some(p) => format!("{n:+} ({p:+.2}%)"),
            None => format!("{n:+} (new)"),
        }
    }
}

/// A program whose verdict or verifier key line changed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogDiff {
    /// Case id.
    pub case: String,
    /// Kernel id.
    pub kernel: String,
    /// `<object>/<program>`.
    pub program: String,
    /// Run A's verdict.
    pub old_verdict: Verdict,
    /// Run B's verdict.
    pub new_verdict: Verdict,
    /// Run A's key line.
    pub old_key_line: Option<String>,
    /// Run B's key line.
    pub new_key_line: Option<String>,
    /// Unified diff of the two logs (verification times redacted).
    pub diff: String,
}

/// A run cost that moved beyond the noise band.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CostChange {
    /// Case id.
    pub case: String,
    /// Kernel id.
    pub kernel: String,
    /// `<object>/<program>`.
    pub program: String,
    /// Run A's median ns per run.
    pub old_ns: f64,
    /// Run B's median ns per run.
    pub new_ns: f64,
    /// Relative change in percent.
    pub pct: f64,
}

/// What the cells' programs gave, collected over the comparison.
#[derive(Default)]
pub struct Diffs {
    pub stats: Vec<MetricDiff>,
    pub logs: Vec<LogDiff>,
    pub costs: Vec<CostChange>,
    pub compared: usize,
    pub costs_compared: usize,
    pub costs_emulated: usize,
}

impl Diffs {
    /// Compares the programs that both cells `a` and `b` of `case` on `kernel` have.
    pub fn add(&mut self, case: &str, kernel: &str, a: &Cell, b: &Cell, options: &Options) {
        for (name, pa) in &a.programs {
            let Some(pb) = b.programs.get(name) else {
                continue;
            };
            let (case_, kernel_, program) = (case.to_owned(), kernel.to_owned(), name.clone());
            if !pa.metrics.is_empty() && !pb.metrics.is_empty() {
                self.compared += 1;
            }
            for metric in METRICS {
                let (Some(old), Some(new)) = (pa.metrics.get(metric), pb.metrics.get(metric))
                else {
                    continue;
                };
                if old == new {
                    continue;
                }
                let pct = (*old > 0).then(|| (*new as f64 - *old as f64) / *old as f64 * 100.0);
                self.stats.push(MetricDiff {
                    case: case_.clone(),
                    kernel: kernel_.clone(),
                    program: program.clone(),
                    metric: metric.to_owned(),
                    old: *old,
                    new: *new,
                    pct,
                    flagged: pct.is_none_or(|p| p.abs() > options.threshold_pct),
                });
            }
            if let (Some(va), Some(vb), Some(la), Some(lb)) =
                (&pa.verdict, &pb.verdict, &pa.log, &pb.log)
                && (va != vb || pa.key_line != pb.key_line)
            {
                self.logs.push(LogDiff {
                    case: case_.clone(),
                    kernel: kernel_.clone(),
                    program: program.clone(),
                    old_verdict: va.clone(),
                    new_verdict: vb.clone(),
                    old_key_line: pa.key_line.clone(),
                    new_key_line: pb.key_line.clone(),
                    diff: log_diff(la, lb),
                });
            }
            if let (Some(ca), Some(cb)) = (&pa.run_cost, &pb.run_cost) {
                if ca.emulated || cb.emulated {
                    self.costs_emulated += 1;
                    continue;
                }
                self.costs_compared += 1;
                let (old, new) = (ca.ns_per_run_median, cb.ns_per_run_median);
                let pct = if old > 0.0 {
                    (new - old) / old * 100.0
                } else {
                    f64::INFINITY
                };
                if pct.abs() > options.cost_noise_pct && (new - old).abs() > options.cost_noise_ns {
                    self.costs.push(CostChange {
                        case: case_,
                        kernel: kernel_,
                        program,
                        old_ns: old,
                        new_ns: new,
                        pct,
                    });
                }
            }
        }
    }
}

/// The unified diff of two verifier logs, their verification times redacted (they differ on
/// every run).
fn log_diff(a: &str, b: &str) -> String {
    static TIME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"verification time \d+ usec").expect("valid regex"));
    let redact = |log: &str| {
        TIME.replace_all(log, "verification time [usec]")
            .into_owned()
    };
    let (a, b) = (redact(a), redact(b));
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("A", "B")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_diffs_ignore_verification_times() {
        let a = "0: r0 = 0\nverification time 10 usec\nprocessed 2 insns\n";
        let b = "0: r0 = 0\nverification time 99 usec\nR0 !read_ok\nprocessed 2 insns\n";
        let diff = log_diff(a, b);
        assert!(diff.contains("+R0 !read_ok"), "{diff}");
        assert!(!diff.contains("-verification"), "{diff}");
    }

    #[test]
    fn diff_column_is_veristat_s() {
        let d = |old, new| MetricDiff {
            case: String::new(),
            kernel: String::new(),
            program: String::new(),
            metric: "insns".into(),
            old,
            new,
            pct: (old > 0).then(|| (new as f64 - old as f64) / old as f64 * 100.0),
            flagged: false,
        };
        assert_eq!(d(200, 230).diff(), "+30 (+15.00%)");
        assert_eq!(d(8, 6).diff(), "-2 (-25.00%)");
        assert_eq!(d(0, 6).diff(), "+6 (new)");
    }
}
