//! Loading a run: a run directory (`bpfconf matrix --run-dir`: `<kernel>/*.json`,
//! `timings.json`, logs), a results directory, or several shards of one run made on different
//! machines (e.g. one per kernel), merged.
//!
//! What cannot be loaded is an error naming the file (and line), never a smaller report: a path
//! without records, a record of another schema version, records of two suite versions, an
//! unparsable `timings.json`, and a cell (case × kernel) two shards both hold with different
//! records (the same record twice, e.g. one shard passed twice, is kept once). A single record
//! that cannot be read is data: an `error` cell, and the report says it is incomplete.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use record::{Placed, Record, Unreadable, read_placed};

use super::{Run, Timing, kernel_order};
use crate::text::plural;

/// Loads and merges `paths` into one run, its cells made (see the module's doc for what is
/// refused).
pub fn load(paths: &[PathBuf]) -> Result<Run> {
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
        let (placed, bad) =
            read_placed(path).with_context(|| format!("reading results in {}", path.display()))?;
        ensure!(
            !placed.is_empty() || !bad.is_empty(),
            "no result records in {}: run the suite first (a run directory holds <kernel>/*.json)",
            path.display()
        );
        let other: Vec<&Unreadable> = bad.iter().filter(|b| b.schema.is_some()).collect();
        if let Some(first) = other.first() {
            bail!(
                "{}: {}; report that run with the bpfconf it was made with, or run the suite \
                 again into an empty directory{}",
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
    unreadable.sort_by(|a, b| {
        (kernel_order(&a.kernel), &a.place).cmp(&(kernel_order(&b.kernel), &b.place))
    });
    let mut timings: Vec<Timing> = timings.into_values().map(|(t, _)| t).collect();
    timings.sort_by_key(|t| kernel_order(&t.kernel));
    let label: Vec<String> = paths.iter().map(|d| d.display().to_string()).collect();
    let mut run = Run {
        label: label.join(" "),
        records,
        unreadable,
        timings,
        suite,
        ..Run::default()
    };
    run.fill_cells();
    Ok(run)
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
            "two suite versions in one run: {a} ({}, e.g. {pa}) and {b} ({}, e.g. {pb}){}; a \
             report of both would describe neither: run the suite again into an empty directory",
            plural(*na, "record"),
            plural(*nb, "record"),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use record::{Outcome, write};

    use super::*;
    use crate::run::testing::{record, whole_run};

    fn error(paths: &[PathBuf]) -> String {
        format!("{:#}", load(paths).unwrap_err())
    }

    #[test]
    fn overlapping_shards_that_differ_are_refused_naming_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write(&a, &record("6.1", "xdp::drops", Outcome::Pass)).unwrap();
        write(&b, &record("6.1", "xdp::drops", Outcome::Fail)).unwrap();
        let e = error(&[a.clone(), b.clone()]);
        let file = |d: &Path| d.join("6.1/xdp__drops.json").display().to_string();
        assert!(e.starts_with("xdp::drops on 6.1: in "), "{e}");
        assert!(e.contains(&file(&a)) && e.contains(&file(&b)), "{e}");
    }

    #[test]
    fn another_schema_is_refused_naming_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &record("6.1", "xdp::drops", Outcome::Pass)).unwrap();
        let mut old = serde_json::to_value(record("5.10", "xdp::drops", Outcome::Pass)).unwrap();
        old["schema"] = 2.into();
        let good = serde_json::to_string(&record("5.10", "xdp::passes", Outcome::Pass)).unwrap();
        fs::write(tmp.path().join("5.10.jsonl"), format!("{good}\n{old}\n")).unwrap();
        let e = error(&[tmp.path().to_owned()]);
        let place = tmp.path().join("5.10.jsonl:2").display().to_string();
        assert!(
            e.starts_with(&format!(
                "{place}: a record of schema 2, this bpfconf reads schema 3"
            )),
            "{e}"
        );
    }

    #[test]
    fn two_suite_versions_are_refused_naming_a_file_of_each() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &record("6.1", "xdp::drops", Outcome::Pass)).unwrap();
        let mut newer = record("6.1", "xdp::passes", Outcome::Pass);
        newer.suite = "git:4567cdef".into();
        write(tmp.path(), &newer).unwrap();
        // The runner's own records carry no version and mix with either.
        write(
            tmp.path(),
            &Record::runner("6.1", "runner::column", Outcome::Pass, None),
        )
        .unwrap();
        let e = error(&[tmp.path().to_owned()]);
        let file = |c: &str| {
            tmp.path()
                .join(format!("6.1/{c}.json"))
                .display()
                .to_string()
        };
        assert!(e.starts_with("two suite versions in one run: git:0123abcd (1 record, e.g. "));
        assert!(e.contains(&file("xdp__drops")), "{e}");
        assert!(e.contains(&format!(
            "git:4567cdef (1 record, e.g. {})",
            file("xdp__passes")
        )));
    }

    #[test]
    fn unloadable_runs_are_errors_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(
            error(std::slice::from_ref(&empty))
                .starts_with(&format!("no result records in {}", empty.display()))
        );
        let gone = tmp.path().join("gone");
        assert!(
            error(std::slice::from_ref(&gone))
                .starts_with(&format!("{}: not a run", gone.display()))
        );
        let run = tmp.path().join("run");
        whole_run(&run);
        fs::write(run.join("timings.json"), "[{\"kernel\": \"6.1\",").unwrap();
        let e = error(std::slice::from_ref(&run));
        let timings = run.join("timings.json").display().to_string();
        assert!(
            e.starts_with(&format!("{timings}: not the timings of a run: ")),
            "{e}"
        );
    }
}
