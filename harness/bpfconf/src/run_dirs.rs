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
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use record::{Placed, Record, Unreadable, read_placed};

use crate::matrix::Timing;
use crate::report::{Matrix, kernel_order, plural};

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
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use record::{LoadOutcome, Outcome, ProgSize, ProgramLog, RunCost, VerifierStats, write};

    use super::*;
    use crate::report::Report;

    /// A record as a case writes it: a load with statistics and a log, measurements, a reason.
    pub(crate) fn record(kernel: &str, case: &str, outcome: Outcome) -> Record {
        let reason = (outcome != Outcome::Pass).then(|| format!("{case} is {outcome} on {kernel}"));
        let mut r = Record::runner(kernel, case, outcome, reason);
        let ty = case.split("::").next().unwrap_or_default();
        (r.binary, r.test, r.prog_type) = ("suite".into(), case.into(), ty.into());
        r.kernel_release = format!("{kernel}.0-amd64");
        r.suite = "git:0123abcd".into();
        r.duration_ms = 40 + case.len() as u64;
        r.details.insert("retval".into(), 2.into());
        let loaded = outcome == Outcome::Pass;
        let log = "0: (b7) r0 = 2\n1: (95) exit\nprocessed 2 insns <&> (limit 1000000)".into();
        let stats = VerifierStats {
            processed_insns: 2,
            stack_depth: Some("0".into()),
            ..Default::default()
        };
        let programs = BTreeMap::from([(
            "prog".to_owned(),
            ProgramLog {
                stats: Some(stats),
                log,
                size: loaded.then_some(ProgSize {
                    xlated_bytes: 16,
                    jited_bytes: 23,
                    verified_insns: Some(2),
                }),
            },
        )]);
        if loaded {
            let cost = RunCost {
                ns_per_run_median: 10.0,
                min: 9.0,
                max: 12.0,
                rounds: 5,
                repeat: 1000,
                emulated: false,
            };
            r.run_cost.insert("prog".into(), cost);
        }
        r.loads.push(LoadOutcome {
            object: format!("{ty}_bpf"),
            loaded,
            errno: (!loaded).then(|| "EINVAL".into()),
            failed_program: (!loaded).then(|| "prog".into()),
            message: (!loaded).then(|| "R1 invalid mem access 'scalar'".into()),
            programs,
        });
        r
    }

    /// A run as `bpfconf matrix --run-dir` leaves it: three columns, a case that differs across
    /// them, a test that wrote no record on one kernel (the runner's record names it), the
    /// columns' records, timings and logs.
    pub(crate) fn whole_run(dir: &Path) {
        use Outcome::*;
        for (k, lwt) in [("5.10", Pass), ("6.1", Unsupported), ("host-6.18", Fail)] {
            for (case, outcome) in [
                ("xdp::drops", Pass),
                ("xdp::passes", Pass),
                ("lwt::seg6", lwt),
            ] {
                write(dir, &record(k, case, outcome)).unwrap();
            }
            write(dir, &Record::runner(k, "runner::column", Pass, None)).unwrap();
            fs::write(dir.join(format!("{k}.log")), "booted\n").unwrap();
        }
        write(dir, &record("5.10", "xdp::bounces", Pass)).unwrap();
        let mut missing = Record::runner("6.1", "xdp::bounces", Error, Some("no record".into()));
        (missing.binary, missing.test) = ("suite".into(), "xdp::bounces".into());
        write(dir, &missing).unwrap();
        let timings: Vec<Timing> = ["5.10", "6.1", "host-6.18"]
            .iter()
            .map(|k| Timing {
                kernel: (*k).into(),
                boot_s: Some(5.5),
                total_s: 80.0,
                end: "ok".into(),
            })
            .collect();
        fs::write(
            dir.join("timings.json"),
            serde_json::to_string_pretty(&timings).unwrap(),
        )
        .unwrap();
    }

    /// Every format of the report of `paths`.
    fn rendered(paths: &[PathBuf]) -> [String; 4] {
        let report = Report::new(&load(paths).unwrap());
        [
            report.markdown(),
            report.html(),
            serde_json::to_string_pretty(&report.json()).unwrap(),
            report.junit().unwrap(),
        ]
    }

    /// `dir` split into one shard per kernel (its records, log and timing), as separate machines
    /// would make them.
    fn shards(dir: &Path, into: &Path) -> Vec<PathBuf> {
        let timings: Vec<Timing> =
            serde_json::from_str(&fs::read_to_string(dir.join("timings.json")).unwrap()).unwrap();
        let mut paths = Vec::new();
        for t in &timings {
            let shard = into.join(format!("shard-{}", t.kernel));
            fs::create_dir_all(shard.join(&t.kernel)).unwrap();
            for f in fs::read_dir(dir.join(&t.kernel)).unwrap() {
                let f = f.unwrap().path();
                fs::copy(&f, shard.join(&t.kernel).join(f.file_name().unwrap())).unwrap();
            }
            let one = serde_json::to_string(&[t]).unwrap();
            fs::write(shard.join("timings.json"), one).unwrap();
            paths.push(shard);
        }
        paths
    }

    #[test]
    fn shards_merge_into_exactly_the_whole_runs_report() {
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("whole");
        whole_run(&whole);
        let mut parts = shards(&whole, tmp.path());
        let expected = rendered(&[whole]);
        assert_eq!(rendered(&parts), expected);
        parts.reverse();
        assert_eq!(rendered(&parts), expected, "in another order");
        // The same shard twice holds the same records: kept once.
        parts.push(parts[0].clone());
        assert_eq!(rendered(&parts), expected, "a shard given twice");
        let run = load(&parts).unwrap();
        assert_eq!(run.timings.len(), 3);
        assert_eq!(run.suite.as_deref(), Some("git:0123abcd"));
        let m = run.matrix();
        assert_eq!(m.kernels, ["5.10", "6.1", "host-6.18"]);
        assert_eq!(m.cases["xdp::bounces"].cells["6.1"].outcome, Outcome::Error);
    }

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
    fn a_truncated_record_is_an_error_cell_and_every_format_says_incomplete() {
        let tmp = tempfile::tempdir().unwrap();
        whole_run(tmp.path());
        let file = tmp.path().join("6.1/xdp__passes.json");
        let text = fs::read_to_string(&file).unwrap();
        fs::write(&file, &text[..text.len() / 2]).unwrap();
        let run = load(&[tmp.path().to_owned()]).unwrap();
        let report = Report::new(&run);
        assert!(report.matrix.has_failures(), "exit status 1");
        let problems = report.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with(&format!("{}: not a result record", file.display())));
        let unreadable = &report.matrix.cases["runner::unreadable_record"].cells["6.1"];
        assert_eq!(unreadable.outcome, Outcome::Error);
        assert!(
            report
                .markdown()
                .contains("**Incomplete report**: 1 record(s)")
        );
        assert!(
            report
                .html()
                .contains("<strong>Incomplete report: </strong>")
        );
        let json = report.json();
        assert!(!json.complete);
        assert_eq!(json.problems, problems);
        assert!(
            report
                .junit()
                .unwrap()
                .contains(r#"<testcase name="runner::unreadable_record""#)
        );
        // A shard of one record a line, cut short by an upload: its last line is named.
        let shard = tmp.path().join("shard");
        fs::create_dir(&shard).unwrap();
        let lines: Vec<String> = ["xdp::drops", "xdp::passes"]
            .map(|c| serde_json::to_string(&record("7.3", c, Outcome::Pass)).unwrap())
            .into();
        let cut = format!("{}\n{}", lines[0], &lines[1][..40]);
        fs::write(shard.join("7.3.jsonl"), cut).unwrap();
        let report = Report::new(&load(std::slice::from_ref(&shard)).unwrap());
        let place = shard.join("7.3.jsonl:2").display().to_string();
        assert!(report.problems()[0].starts_with(&format!("{place}: not a result record")));
        assert!(report.matrix.has_failures());
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
