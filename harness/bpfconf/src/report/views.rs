//! What `report --verifier` and `report --slowest N` print instead of the report: views of the
//! run's records.

use std::collections::BTreeMap;

use record::{Outcome, Record};

use crate::run::{Run, kernel_order};
use crate::table::Table;

/// The verifier's view: each `verifier::` rule × kernel, the verdict (`loads`, or the errno and
/// the key line of the refusal; the outcome when the rule did not pass).
pub fn verifier(run: &Run) -> String {
    records_table(run, "rule", |r| {
        let rule = r.case.strip_prefix("verifier::")?;
        let verdict = match r.loads.first() {
            _ if r.outcome != Outcome::Pass => r.outcome.to_string(),
            Some(l) if l.loaded => "loads".to_owned(),
            Some(l) => format!(
                "{}: {}",
                l.errno.as_deref().unwrap_or("?"),
                l.message.as_deref().unwrap_or_default()
            ),
            None => "-".to_owned(),
        };
        Some((rule, verdict))
    })
}

/// A table of one row per name `cell` gives a record and a column per kernel of the run's
/// records, the cell of the last record of that name and kernel in it.
pub fn records_table<'a>(
    run: &'a Run,
    first: &str,
    cell: impl Fn(&'a Record) -> Option<(&'a str, String)>,
) -> String {
    let records = || run.records.iter().map(|p| &p.record);
    let mut kernels: Vec<&str> = records().map(|r| r.kernel.as_str()).collect();
    kernels.sort_by_key(|k| kernel_order(k));
    kernels.dedup();
    let mut rows: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for r in records() {
        if let Some((name, text)) = cell(r) {
            rows.entry(name).or_default().insert(&r.kernel, text);
        }
    }
    let mut table = Table::new(std::iter::once(first).chain(kernels.iter().copied()));
    for (name, cells) in rows {
        let cells = (kernels.iter()).map(|k| cells.get(k).map_or("", String::as_str));
        table.row(std::iter::once(name).chain(cells));
    }
    table.to_string()
}

/// The `n` slowest cases of each kernel (by the records' `duration_ms`), as a Markdown table per
/// kernel, slowest first.
pub fn slowest(run: &Run, n: usize) -> String {
    let mut by_kernel: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in run
        .records
        .iter()
        .map(|p| &p.record)
        .filter(|r| r.duration_ms > 0)
    {
        by_kernel.entry(&r.kernel).or_default().push(r);
    }
    let mut kernels: Vec<_> = by_kernel.into_iter().collect();
    kernels.sort_by_key(|(k, _)| kernel_order(k));
    let mut out = String::new();
    for (kernel, mut rs) in kernels {
        let total: u64 = rs.iter().map(|r| r.duration_ms).sum();
        rs.sort_by_key(|r| std::cmp::Reverse(r.duration_ms));
        let mut table = Table::new(["case", "s"]);
        for r in rs.iter().take(n) {
            table.row([
                r.case.clone(),
                format!("{:.2}", r.duration_ms as f64 / 1000.0),
            ]);
        }
        out += &format!(
            "\n{kernel}: {} cases, {:.1} s in all\n\n{table}",
            rs.len(),
            total as f64 / 1000.0
        );
    }
    out
}
