//! Loading a run for `report` (and `baseline check`, `compare`): a run directory (`bpfconf matrix
//! --run-dir`: `<kernel>/*.json`, `timings.json`, logs), a results directory, or several shards
//! of one run made on different machines (e.g. one per kernel), merged.
//!
//! What cannot be loaded is an error naming the file (and line), never a smaller report: a path
//! without records, a record of another schema version, records of two suite versions, an
//! unparsable `timings.json`, and a cell (case × kernel) two shards both hold with different
//! records (the same record twice, e.g. one shard passed twice, is kept once). A single record
//! that cannot be read is data: an `error` cell, and the report says it is incomplete.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use bpfconf_record::{Placed, Record, Unreadable, read_placed};

use crate::matrix::Timing;
use crate::report::{Matrix, kernel_order};

/// The records of a run, merged from its shards.
#[derive(Debug)]
pub struct LoadedRun {
    /// Every record, in an order of their content alone (kernel, case, test), so shards merge into
    /// exactly what the whole run gives.
    pub records: Vec<Placed>,
    /// Records that could not be read.
    pub unreadable: Vec<Unreadable>,
    /// Each column's timing, in column order (runs without `timings.json` have none).
    pub timings: Vec<Timing>,
    /// The suite's version of the records (`None`: only the runner's own records).
    pub suite: Option<String>,
}

impl LoadedRun {
    /// The matrix of the run.
    pub fn matrix(&self) -> Matrix {
        let records: Vec<Record> = self.records.iter().map(|p| p.record.clone()).collect();
        Matrix::from_records(&records, &self.unreadable)
    }
}

/// Loads and merges `paths` (see the module's doc for what is refused).
pub fn load(paths: &[PathBuf]) -> Result<LoadedRun> {
    ensure!(!paths.is_empty(), "no run directory given");
    // (kernel, case) → (shard, place) of the record kept.
    let mut cells: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut records: Vec<Placed> = Vec::new();
    let mut unreadable = Vec::new();
    let mut timings: BTreeMap<String, (Timing, PathBuf)> = BTreeMap::new();
    for (shard, path) in paths.iter().enumerate() {
        ensure!(
            path.is_dir(),
            "{}: not a run or results directory",
            path.display()
        );
        let (placed, bad) = read_placed(path)
            .with_context(|| format!("reading results in {}", path.display()))?;
        ensure!(
            !placed.is_empty() || !bad.is_empty(),
            "no result records in {}: run the suite first (a run directory holds <kernel>/*.json)",
            path.display()
        );
        let other: Vec<&Unreadable> = bad.iter().filter(|b| b.schema.is_some()).collect();
        if let Some(first) = other.first() {
            bail!(
                "{}: {}; report that run with the bpfconf it was made with, or run the suite \
                 again{}",
                first.place,
                first.error,
                more(other.len())
            );
        }
        for p in placed {
            let key = (p.record.kernel.clone(), p.record.case.clone());
            match cells.entry(key) {
                Entry::Vacant(v) => {
                    v.insert((shard, records.len()));
                    records.push(p);
                }
                Entry::Occupied(o) if o.get().0 == shard => records.push(p),
                Entry::Occupied(o) => {
                    let kept = &records[o.get().1];
                    ensure!(
                        same(&kept.record, &p.record),
                        "{} on {}: in {} and in {}, which differ: shards of one run must not \
                         overlap",
                        p.record.case,
                        p.record.kernel,
                        kept.place,
                        p.place
                    );
                }
            }
        }
        unreadable.extend(bad);
        let file = path.join("timings.json");
        if file.exists() {
            let text =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let list: Vec<Timing> = serde_json::from_str(&text)
                .with_context(|| format!("{}: not the timings of a run", file.display()))?;
            for t in list {
                if let Some((kept, at)) = timings.get(&t.kernel) {
                    ensure!(
                        *kept == t,
                        "{}: the timing of {} differs from the one in {}: shards of one run must \
                         not overlap",
                        file.display(),
                        t.kernel,
                        at.display()
                    );
                }
                timings.insert(t.kernel.clone(), (t, file.clone()));
            }
        }
    }
    let suite = one_suite(&records)?;
    records.sort_by(|a, b| {
        let key = |p: &Placed| {
            let r = &p.record;
            (kernel_order(&r.kernel), r.case.clone(), r.test.clone())
        };
        key(a).cmp(&key(b))
    });
    unreadable.sort_by(|a, b| (kernel_order(&a.kernel), &a.place).cmp(&(kernel_order(&b.kernel), &b.place)));
    let mut timings: Vec<Timing> = timings.into_values().map(|(t, _)| t).collect();
    timings.sort_by_key(|t| kernel_order(&t.kernel));
    Ok(LoadedRun {
        records,
        unreadable,
        timings,
        suite,
    })
}

/// The one suite version of the records the suite wrote (the runner's own carry none).
fn one_suite(records: &[Placed]) -> Result<Option<String>> {
    let mut versions: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for p in records.iter().filter(|p| !p.record.suite.is_empty()) {
        versions.entry(&p.record.suite).or_insert((0, &p.place)).0 += 1;
    }
    let mut found = versions.iter();
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some((v, _)), None) => Ok(Some((*v).to_owned())),
        (Some((a, (na, pa))), Some((b, (nb, pb)))) => bail!(
            "two suite versions in one run: {a} ({na} records, e.g. {pa}) and {b} ({nb} records, \
             e.g. {pb}){}; a report of both would describe neither: run the suite again into an \
             empty directory",
            more(versions.len() - 1)
        ),
    }
}

/// The same record, field for field.
fn same(a: &Record, b: &Record) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

fn more(n: usize) -> String {
    if n > 1 {
        format!(" (and {} more)", n - 1)
    } else {
        String::new()
    }
}

/// The columns the accepted matrix (read from `file`) has and `run` lacks, each as `<file>:<line>:
/// names kernel <id> (<n> accepted cells, each a regression now)`: a column that disappeared.
pub fn lost_columns(accepted: &Matrix, run: &Matrix, file: &Path) -> Vec<String> {
    let text = fs::read_to_string(file).unwrap_or_default();
    accepted
        .kernels
        .iter()
        .filter(|k| !run.kernels.contains(k))
        .map(|k| {
            let needle = format!("\"{k}\": {{");
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(&needle))
                .map_or(String::new(), |n| format!(":{}", n + 1));
            let cells = accepted
                .cases
                .values()
                .filter(|r| r.cells.contains_key(k))
                .count();
            format!(
                "{}{line}: names kernel {k} ({cells} accepted cells, each a regression now)",
                file.display()
            )
        })
        .collect()
}
