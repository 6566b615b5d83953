//! `bpfconf report --helpers`: which helpers and kfuncs each kernel of a run has, from the
//! records of the `helper_matrix::` case (tests/suite/helper_matrix.rs), one column per kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use record::Record;
use serde_json::Value;

use crate::run::{Run, kernel_order};
use crate::table::Table;

/// Markdown: one row per `helper.*`/`kfunc.*` floor row, one column per kernel; a cell is `yes
/// (N)` (N program types may call it), `no`, or the verdict when the case judged it a `fail` or
/// `error`. Kernels without the case's record are left out.
pub fn markdown(run: &Run) -> String {
    let mut columns: Vec<&Record> = (run.records.iter())
        .map(|p| &p.record)
        .filter(|r| r.case.starts_with("helper_matrix::"))
        .collect();
    columns.sort_by_key(|r| kernel_order(&r.kernel));
    if columns.is_empty() {
        return "No helper_matrix:: records in this run.\n".to_owned();
    }
    let rows: BTreeMap<&str, &Value> = columns
        .iter()
        .flat_map(|r| r.details.get("matrix").and_then(Value::as_object))
        .flatten()
        .map(|(id, row)| (id.as_str(), row))
        .collect();
    let ids: BTreeSet<&str> = rows.keys().copied().collect();

    let headers = ["feature", "since"]
        .into_iter()
        .chain(columns.iter().map(|r| r.kernel.as_str()));
    let mut table = Table::new(headers);
    for id in ids {
        let since = rows[id]["since"].as_str().unwrap_or("?");
        let cells = columns.iter().map(|r| {
            let cell = r.details.get("matrix").and_then(|m| m.get(id));
            cell.map_or_else(|| "–".to_owned(), render)
        });
        table.row(
            [format!("`{id}`"), since.to_owned()]
                .into_iter()
                .chain(cells),
        );
    }
    let mut out = table.to_string();
    out.push('\n');
    for r in &columns {
        let method = r.details.get("kfunc_method").and_then(Value::as_str);
        let _ = writeln!(
            out,
            "- {} ({}): {}{}; kfuncs: {}",
            r.kernel,
            r.kernel_release,
            r.outcome,
            r.reason
                .as_deref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default(),
            method.unwrap_or("?"),
        );
    }
    out
}

fn render(row: &Value) -> String {
    match row["verdict"].as_str() {
        Some("present") => format!("yes ({})", row["program_types"]),
        Some("missing") => "no".to_owned(),
        Some("not probed") => "not probed (no JIT)".to_owned(),
        Some(other) => format!("**{other}**"),
        None => "?".to_owned(),
    }
}
