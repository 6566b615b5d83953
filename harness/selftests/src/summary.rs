//! Per test file × kernel counts of the corpus records of a run: holds / differs / unsupported /
//! fail (and harness errors), as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use record::{Outcome, Record};

/// How one cell counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Count {
    /// Every expectation held.
    Holds,
    /// This kernel differs from the expectation (not a failure off the tree's kernels, or a
    /// listed divergence on them).
    Differs,
    /// Not honoured here.
    Unsupported,
    /// The tree's expectation does not hold on its own kernel.
    Fail,
    /// The harness could not run it.
    Error,
}

/// How `r` counts.
pub fn count(r: &Record) -> Count {
    match r.outcome {
        Outcome::Fail => Count::Fail,
        Outcome::Unsupported => Count::Unsupported,
        Outcome::Error => Count::Error,
        Outcome::Pass if r.details.get("verdict").and_then(|v| v.as_str()) == Some("differs") => {
            Count::Differs
        }
        Outcome::Pass => Count::Holds,
    }
}

/// The tallies of one cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally([usize; 5]);

impl Tally {
    fn add(&mut self, c: Count) {
        self.0[c as usize] += 1;
    }

    fn text(&self) -> String {
        let [h, d, u, f, e] = self.0;
        let mut s = format!("{h} / {d} / {u} / {f}");
        if e > 0 {
            let _ = write!(s, " + {e} error");
        }
        s
    }
}

/// The Markdown summary of the corpus records among `records` (`selftests_*` binaries); `order`
/// sorts kernel ids.
pub fn markdown<K: Ord>(records: &[Record], order: impl Fn(&str) -> K) -> String {
    // tree → file → kernel → tally.
    let mut cells: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, Tally>>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.binary.starts_with("selftests_"))
    {
        let Some((_, rest)) = r.case.split_once("::") else {
            continue;
        };
        let file = rest.split('/').next().unwrap_or(rest);
        cells
            .entry(r.binary.as_str())
            .or_default()
            .entry(file)
            .or_default()
            .entry(r.kernel.as_str())
            .or_default()
            .add(count(r));
    }
    let mut out = String::new();
    for (tree, files) in &cells {
        let mut kernels: Vec<&str> = files.values().flat_map(|k| k.keys().copied()).collect();
        kernels.sort_by_key(|k| order(k));
        kernels.dedup();
        let mut totals: BTreeMap<&str, Tally> = BTreeMap::new();
        for per_kernel in files.values() {
            for (k, t) in per_kernel {
                let total = totals.entry(k).or_default();
                for i in 0..5 {
                    total.0[i] += t.0[i];
                }
            }
        }
        let header = format!(
            "| {tree}: holds / differs / unsupported / fail | {} |\n|---|{}\n",
            kernels.join(" | "),
            "---|".repeat(kernels.len())
        );
        out.push_str(&header);
        let row = |name: &str, per: &BTreeMap<&str, Tally>| {
            let cells: Vec<String> = kernels
                .iter()
                .map(|k| per.get(k).map(Tally::text).unwrap_or_default())
                .collect();
            format!("| {name} | {} |\n", cells.join(" | "))
        };
        out.push_str(&row("**all files**", &totals));
        for (file, per) in files {
            out.push_str(&row(file, per));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(case: &str, kernel: &str, outcome: Outcome, verdict: &str) -> Record {
        let mut r = Record::runner(kernel, case, outcome, None);
        r.binary = "selftests_6_12".into();
        r.details.insert("verdict".into(), verdict.into());
        r
    }

    #[test]
    fn counts_per_file_and_kernel() {
        let records = vec![
            rec(
                "selftests_6_12::verifier_and/a",
                "6.12",
                Outcome::Pass,
                "holds",
            ),
            rec(
                "selftests_6_12::verifier_and/b",
                "6.12",
                Outcome::Fail,
                "differs",
            ),
            rec(
                "selftests_6_12::verifier_and/a",
                "5.10",
                Outcome::Pass,
                "differs",
            ),
            rec(
                "selftests_6_12::verifier_or/a",
                "5.10",
                Outcome::Unsupported,
                "",
            ),
        ];
        let order = |k: &str| if k == "5.10" { 0 } else { 1 };
        let md = markdown(&records, order);
        assert!(
            md.contains("| selftests_6_12: holds / differs / unsupported / fail | 5.10 | 6.12 |"),
            "{md}"
        );
        assert!(
            md.contains("| **all files** | 0 / 1 / 1 / 0 | 1 / 0 / 0 / 1 |"),
            "{md}"
        );
        assert!(md.contains("| verifier_or | 0 / 0 / 1 / 0 |  |"), "{md}");
    }
}
