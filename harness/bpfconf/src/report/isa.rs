//! `bpfconf report --isa`: RFC 9669 conformance per kernel and execution engine, from the
//! `rfc9669::` cases (tests/suite/rfc9669/): for each conformance group, whether every sub-case
//! of every instruction held there, how many computed another value, or how many the kernel lacks
//! (instructions below their floors); then each failing sub-case with its operands, the RFC's
//! value and the kernel's; then, for two columns of one kernel build with different engines (the
//! JIT and the interpreter), every sub-case whose observed values differ between them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use record::{Outcome, Record};
use serde_json::{Value, json};

use crate::run::{Run, kernel_order};
use crate::table::Table;

/// The groups of RFC 9669 §2.4 in its order; other group names (`encoding`, the refusals; and
/// what newer kernels add) follow.
const GROUPS: [&str; 7] = [
    "base32", "base64", "atomic32", "atomic64", "divmul32", "divmul64", "packet",
];

/// What one group's sub-cases gave on one column.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Tally {
    subcases: u64,
    failed: u64,
    /// Sub-cases of instructions the kernel lacks (`unsupported` below their floor).
    lacking: u64,
    /// Sub-cases whose case ended in `error` or `fail` before they were judged.
    unjudged: u64,
}

impl Tally {
    fn cell(&self) -> String {
        match *self {
            Tally { subcases: 0, .. } => "–".to_owned(),
            Tally {
                failed: 0,
                lacking: 0,
                unjudged: 0,
                subcases,
            } => format!("holds ({subcases})"),
            Tally {
                failed,
                lacking,
                unjudged,
                subcases,
            } => {
                let mut parts = Vec::new();
                if failed > 0 {
                    parts.push(format!("{failed} wrong"));
                }
                if lacking > 0 {
                    parts.push(format!("{lacking} lacking"));
                }
                if unjudged > 0 {
                    parts.push(format!("{unjudged} not run"));
                }
                format!("{} of {subcases}", parts.join(", "))
            }
        }
    }
}

/// The `details.rfc9669` of a record, when it is an RFC 9669 case.
fn summary(r: &Record) -> Option<&Value> {
    r.case
        .starts_with("rfc9669::")
        .then(|| r.details.get("rfc9669"))
        .flatten()
}

/// `6.12 (jit)`: a column and its engine.
fn column(r: &Record) -> String {
    let engine = summary(r).and_then(|s| s["engine"].as_str()).unwrap_or("?");
    format!("{} ({engine})", r.kernel)
}

/// The view as Markdown.
pub fn markdown(run: &Run) -> String {
    let records: Vec<&Record> = (run.records.iter())
        .map(|p| &p.record)
        .filter(|r| summary(r).is_some())
        .collect();
    if records.is_empty() {
        return "No rfc9669:: records in this run.\n".to_owned();
    }
    let mut kernels: Vec<&str> = records.iter().map(|r| r.kernel.as_str()).collect();
    kernels.sort_by_key(|k| kernel_order(k));
    kernels.dedup();
    let columns: BTreeMap<&str, String> = kernels
        .iter()
        .map(|k| {
            let r = records.iter().find(|r| r.kernel == *k).expect("a record");
            (*k, column(r))
        })
        .collect();

    let mut tallies: BTreeMap<(String, &str), Tally> = BTreeMap::new();
    let mut failures = Table::new(["column", "case", "sub-case", "operands", "RFC", "kernel"]);
    let mut failed = 0;
    for r in &records {
        let s = summary(r).expect("filtered");
        // Instruction cases count each group apart; a refusal case is one group (`encoding`).
        let groups = s["groups"].as_object().cloned().unwrap_or_else(|| {
            let one = json!({"subcases": s["subcases"], "failed": s["failed"]});
            s["group"]
                .as_str()
                .map(|g| serde_json::Map::from_iter([(g.to_owned(), one)]))
                .unwrap_or_default()
        });
        for (group, g) in &groups {
            let t = tallies.entry((group.clone(), &r.kernel)).or_default();
            let n = g["subcases"].as_u64().unwrap_or(0);
            t.subcases += n;
            match r.outcome {
                Outcome::Unsupported => t.lacking += n,
                _ if s["results"].is_array() => {
                    t.failed += g["failed"].as_u64().unwrap_or(0);
                }
                _ => t.unjudged += n,
            }
        }
        for result in s["results"].as_array().into_iter().flatten() {
            if result["ok"].as_bool() == Some(false) {
                failed += 1;
                failures.row([
                    columns[r.kernel.as_str()].clone(),
                    r.case.clone(),
                    text(&result["name"]),
                    text(&result["operands"]),
                    text(&result["expected"]),
                    text(&result["observed"]),
                ]);
            }
        }
    }

    let mut groups: Vec<&str> = GROUPS.to_vec();
    for (group, _) in tallies.keys() {
        if !groups.contains(&group.as_str()) {
            groups.push(group);
        }
    }
    let mut table = Table::new(
        std::iter::once("group".to_owned()).chain(kernels.iter().map(|k| columns[k].clone())),
    );
    for group in &groups {
        let cells = kernels.iter().map(|k| {
            tallies
                .get(&(group.to_string(), *k))
                .copied()
                .unwrap_or_default()
                .cell()
        });
        table.row(std::iter::once(group.to_string()).chain(cells));
    }
    let mut out = format!(
        "## RFC 9669 conformance by group\n\n\"holds (N)\": all N sub-cases computed the RFC's \
         value; \"wrong\": the kernel computed another; \"lacking\": instructions below their \
         floor; `encoding`: what the verifier must refuse.\n\n{table}"
    );
    let _ = write!(out, "\n### Sub-cases that computed another value\n\n");
    if failed == 0 {
        out.push_str("None.\n");
    } else {
        let _ = write!(out, "{failures}");
    }
    out += &engines(&records, &columns);
    out
}

/// For each pair of columns of one kernel build (the same GNU build id) and different engines,
/// the sub-cases whose observed values differ.
fn engines(records: &[&Record], columns: &BTreeMap<&str, String>) -> String {
    let build = |r: &Record| r.build.as_ref().and_then(|b| b.build_id.clone());
    let engine = |r: &Record| summary(r).and_then(|s| s["engine"].as_str().map(str::to_owned));
    let mut by_build: BTreeMap<String, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
    for r in records {
        if let (Some(b), Some(e)) = (build(r), engine(r)) {
            let kernels = by_build.entry(b).or_default().entry(e).or_default();
            if !kernels.contains(&r.kernel.as_str()) {
                kernels.push(&r.kernel);
            }
        }
    }
    let mut out = String::new();
    for engines in by_build.values().filter(|e| e.len() > 1) {
        let mut picks: Vec<&str> = engines
            .values()
            .filter_map(|k| k.first().copied())
            .collect();
        picks.sort_by_key(|k| kernel_order(k));
        let (a, b) = (picks[0], picks[1]);
        let observed = |kernel: &str| -> BTreeMap<(String, String), String> {
            records
                .iter()
                .filter(|r| r.kernel == kernel)
                .flat_map(|r| {
                    let results = summary(r)
                        .and_then(|s| s["results"].as_array().cloned())
                        .unwrap_or_default();
                    results.into_iter().map(|x| {
                        let key = (r.case.clone(), text(&x["name"]));
                        (key, text(&x["observed"]))
                    })
                })
                .collect()
        };
        let (oa, ob) = (observed(a), observed(b));
        let mut table = Table::new(["case", "sub-case", &columns[a], &columns[b]]);
        let mut differ = 0;
        for (key, va) in &oa {
            if let Some(vb) = ob.get(key).filter(|vb| *vb != va) {
                table.row([key.0.clone(), key.1.clone(), va.clone(), vb.clone()]);
                differ += 1;
            }
        }
        let _ = write!(
            out,
            "\n### {} and {}: one build, two engines\n\n",
            columns[a], columns[b]
        );
        if differ == 0 {
            let _ = writeln!(
                out,
                "Every sub-case both ran computed the same values ({} compared).",
                oa.keys().filter(|k| ob.contains_key(*k)).count()
            );
        } else {
            let _ = write!(out, "{differ} sub-cases differ:\n\n{table}");
        }
    }
    out
}

/// A JSON value as one line: strings bare, objects as `k=v` pairs.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing::of_records;
    use record::KernelBuild;

    fn record(kernel: &str, engine: &str, outcome: Outcome, observed: &str) -> Record {
        let mut r = Record::runner(kernel, "rfc9669::divmul_sdiv", outcome, None);
        r.build = Some(KernelBuild {
            build_id: Some("b1".into()),
            ..Default::default()
        });
        let ok = observed == "0x0";
        let mut summary = json!({
            "engine": engine,
            "groups": {"divmul64": {"subcases": 2, "failed": u64::from(!ok)}},
        });
        if outcome != Outcome::Unsupported {
            summary["results"] = json!([
                {"name": "1 s/ 0", "operands": {"dst": "0x1", "src": "0x0"}, "expected": {"dst_after": "0x0"}, "observed": {"dst_after": observed}, "ok": ok},
                {"name": "4 s/ 2", "operands": {"dst": "0x4", "src": "0x2"}, "expected": {"dst_after": "0x2"}, "observed": {"dst_after": "0x2"}, "ok": true},
            ]);
        }
        r.details.insert("rfc9669".into(), summary);
        r
    }

    /// A group holds, fails with the failing sub-case listed, or is lacking below its floor;
    /// the JIT and interpreter columns of one build are compared value by value.
    #[test]
    fn groups_per_column_failures_and_engines() {
        let run = of_records(
            &[
                record("src-6.12", "jit", Outcome::Pass, "0x0"),
                record("src-6.12-interp", "interpreter", Outcome::Fail, "0x1"),
                record("5.10", "jit", Outcome::Unsupported, ""),
            ],
            &[],
        );
        let md = markdown(&run);
        assert!(
            md.contains("| divmul64 | 2 lacking of 2 | holds (2) | 1 wrong of 2 |"),
            "{md}"
        );
        assert!(
            md.contains("| src-6.12-interp (interpreter) | rfc9669::divmul_sdiv | 1 s/ 0 | dst=0x1 src=0x0 | dst_after=0x0 | dst_after=0x1 |"),
            "{md}"
        );
        assert!(md.contains("1 sub-cases differ"), "{md}");
        assert!(
            md.contains("| rfc9669::divmul_sdiv | 1 s/ 0 | dst_after=0x0 | dst_after=0x1 |"),
            "{md}"
        );
    }
}
