//! The report of a run (its cells, cases × kernels): Markdown (a CI job summary), one
//! self-contained HTML page, JSON and JUnit XML; and the narrower views `report` offers instead
//! (the slowest cases, the verifier's rules, the helper/kfunc table).

pub mod helpers;
mod html;
pub mod isa;
mod json;
mod junit;
mod markdown;
pub mod page;
pub mod selftests;
pub mod views;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use record::{KernelBuild, Outcome};
use serde::{Deserialize, Serialize};

use crate::run::{Row, Run, UNREADABLE, kernel_order, severity};
use crate::text::plural;

pub use json::JsonReport;

/// The formats of a report (and of a comparison).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people and a CI job summary.
    Markdown,
    /// One self-contained page.
    Html,
    /// Schema-versioned JSON, pretty-printed.
    Json,
    /// For CI test views.
    Junit,
}

/// A run's report: the run and what the report adds to it.
pub struct Report<'a> {
    /// The run: the suite's cases (the kernel's own selftests apart, [`Report::with_selftests`]).
    pub run: &'a Run,
    /// The cells of the kernel's own selftests ([`Run::take_selftests`]), when the run has them:
    /// thousands of programs, shown per test file.
    pub selftests: Option<&'a Run>,
    /// One line per column that ran another build than the one its snapshots were accepted on.
    pub notes: Vec<String>,
}

/// The cells one missing feature cost on one kernel (the records' `cause`): reports name the
/// feature once, with what the kernel said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CauseGroup {
    /// The kernel id.
    pub kernel: String,
    /// The feature's id in kernels/floors.toml.
    pub feature: String,
    /// What the floors made of it there (`fail` past the floor, else `unsupported`).
    pub outcome: Outcome,
    /// What the kernel said (in the first case).
    pub said: String,
    /// The cases, by id.
    pub cases: Vec<String>,
}

impl CauseGroup {
    /// `host-6.18: 15 cells fail on helper.bpf_xdp_adjust_meta: <what the kernel said>`.
    pub fn line(&self) -> String {
        format!(
            "{}: {} {} on {}: {}",
            self.kernel,
            plural(self.cases.len(), "cell"),
            self.outcome,
            self.feature,
            self.said
        )
    }
}

impl<'a> Report<'a> {
    /// The report of `run`, its columns' builds checked against the accepted ones
    /// (`tests/snapshots/<kernel>/build.json`).
    pub fn new(run: &'a Run) -> Self {
        let snapshots = crate::paths::workspace_root().join("tests/snapshots");
        Report {
            run,
            selftests: None,
            notes: build_notes(run, &snapshots),
        }
    }

    /// The report with the kernel's own selftests' cells (taken out of the run).
    pub fn with_selftests(mut self, selftests: &'a Run) -> Self {
        self.selftests = (!selftests.cases.is_empty()).then_some(selftests);
        self
    }

    /// The cells grouped by the missing feature they were judged on, each group once per kernel:
    /// failures first, then the largest groups.
    pub fn causes(&self) -> Vec<CauseGroup> {
        let mut groups: BTreeMap<(String, String, Outcome), CauseGroup> = BTreeMap::new();
        for (case, kernel, cell) in self.run.cells() {
            let Some(r) = &cell.record else { continue };
            let Some(cause) = r.cause.as_ref() else {
                continue;
            };
            let key = (kernel.to_owned(), cause.feature.clone(), r.outcome);
            groups
                .entry(key)
                .or_insert_with(|| CauseGroup {
                    kernel: kernel.to_owned(),
                    feature: cause.feature.clone(),
                    outcome: r.outcome,
                    said: cause.said.clone(),
                    cases: Vec::new(),
                })
                .cases
                .push(case.to_owned());
        }
        let mut groups: Vec<CauseGroup> = groups.into_values().collect();
        groups.sort_by_key(|g| {
            (
                std::cmp::Reverse(severity(g.outcome)),
                std::cmp::Reverse(g.cases.len()),
                kernel_order(&g.kernel),
            )
        });
        groups
    }

    /// Why this report is not the whole run: each record that could not be read (`<place>:
    /// <error>`). Empty when it is complete.
    pub fn problems(&self) -> Vec<String> {
        let Some(row) = self.run.cases.get(UNREADABLE) else {
            return Vec::new();
        };
        row.cells
            .values()
            .flat_map(|c| c.reason.as_deref().unwrap_or_default().lines())
            .map(str::to_owned)
            .collect()
    }

    /// `uname -r` of column `kernel`.
    pub fn release(&self, kernel: &str) -> Option<&str> {
        self.run.releases.get(kernel).map(String::as_str)
    }

    /// The rows grouped by program type (types in name order, the runner's own rows last).
    pub fn by_type(&self) -> Vec<(&str, Vec<(&str, &Row)>)> {
        let mut groups: BTreeMap<(bool, &str), Vec<(&str, &Row)>> = BTreeMap::new();
        for (case, row) in &self.run.cases {
            let ty = row.prog_type.as_str();
            groups
                .entry((ty == "-", ty))
                .or_default()
                .push((case.as_str(), row));
        }
        groups
            .into_iter()
            .map(|((_, ty), rows)| (ty, rows))
            .collect()
    }

    /// `BPF conformance: N cases × M kernels`.
    pub fn title(&self) -> String {
        format!(
            "BPF conformance: {} × {}",
            plural(self.run.cases.len(), "case"),
            plural(self.run.kernels.len(), "kernel")
        )
    }

    /// `total: N passed, N failed, N skipped` over all cells (`fail` and `error` count as failed,
    /// `unsupported` as skipped): the closing line CI reads.
    pub fn closing_line(&self) -> String {
        let mut t = self.run.totals(None);
        for (o, n) in self.selftests.map(|s| s.totals(None)).unwrap_or_default() {
            *t.entry(o).or_default() += n;
        }
        let n = |o| t.get(&o).copied().unwrap_or(0);
        format!(
            "total: {} passed, {} failed, {} skipped",
            n(Outcome::Pass),
            n(Outcome::Fail) + n(Outcome::Error),
            n(Outcome::Unsupported)
        )
    }

    /// The report in `format`.
    pub fn render(&self, format: Format) -> anyhow::Result<String> {
        Ok(match format {
            Format::Markdown => self.markdown(),
            Format::Html => self.html(),
            Format::Json => serde_json::to_string_pretty(&self.json())? + "\n",
            Format::Junit => self.junit()?,
        })
    }

    /// Markdown for a CI job summary.
    pub fn markdown(&self) -> String {
        markdown::render(self)
    }

    /// One self-contained HTML page.
    pub fn html(&self) -> String {
        html::render(self)
    }

    /// The JSON report ([`JsonReport`]).
    pub fn json(&self) -> JsonReport {
        json::of(self)
    }

    /// JUnit XML, one testsuite per kernel.
    pub fn junit(&self) -> anyhow::Result<String> {
        junit::render(self)
    }
}

/// For each column that ran another build than the one in `<snapshots>/<kernel>/build.json`:
/// `host-6.18 6.18.44-fc-v1300: another build than the accepted one (…): snapshots and baseline
/// not enforced`; for a kernel without accepted snapshots (one of the user's own), that they were
/// written for review.
fn build_notes(run: &Run, snapshots: &Path) -> Vec<String> {
    let mut notes: Vec<_> = (run.builds.iter())
        .filter_map(|(kernel, build)| {
            let release = run.releases.get(kernel).map_or("", String::as_str);
            let note = match fs::read_to_string(snapshots.join(kernel).join("build.json")) {
                Err(_) => format!(
                    "{kernel} {release}: no snapshots accepted for this kernel: written for \
                     review (tests/snapshots/{kernel}/*.snap.new), not enforced"
                ),
                Ok(text) => {
                    let accepted: KernelBuild = serde_json::from_str(&text).ok()?;
                    let difference = build.difference(&accepted)?;
                    format!(
                        "{kernel} {release}: another build than the accepted one ({difference}): \
                         snapshots and baseline not enforced"
                    )
                }
            };
            Some((kernel_order(kernel), note))
        })
        .collect();
    notes.sort();
    notes.into_iter().map(|(_, note)| note).collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use record::Outcome;

    use super::*;
    use crate::run::testing::{record, whole_run};
    use crate::run::{Timing, load};

    /// Every format of the report of `paths`.
    fn rendered(paths: &[PathBuf]) -> [String; 4] {
        let run = load(paths).unwrap();
        let report = Report::new(&run);
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
        assert_eq!(run.kernels, ["5.10", "6.1", "host-6.18"]);
        let bounces = run.cell("xdp::bounces", "6.1").unwrap();
        assert_eq!(bounces.outcome, Outcome::Error);
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
        assert!(run.has_failures(), "exit status 1");
        let problems = report.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with(&format!("{}: not a result record", file.display())));
        let unreadable = run.cell("runner::unreadable_record", "6.1").unwrap();
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
        let run = load(std::slice::from_ref(&shard)).unwrap();
        let place = shard.join("7.3.jsonl:2").display().to_string();
        assert!(
            Report::new(&run).problems()[0].starts_with(&format!("{place}: not a result record"))
        );
        assert!(run.has_failures());
    }

    /// A column that ran another build than its accepted one says so, once.
    #[test]
    fn another_build_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = record("6.1", "xdp::drops", Outcome::Pass);
        r.build = Some(KernelBuild {
            build_id: Some("1a2b3c4d5e6f7a8b".into()),
            config_sha256: None,
            version: "Linux version 6.1".into(),
        });
        let run = crate::run::testing::of_records(&[r.clone()], &[]);
        let accepted = KernelBuild {
            build_id: Some("fa36776b59bf0000".into()),
            ..r.build.clone().unwrap()
        };
        fs::create_dir_all(tmp.path().join("6.1")).unwrap();
        let file = tmp.path().join("6.1/build.json");
        fs::write(&file, serde_json::to_string(&accepted).unwrap()).unwrap();
        let notes = build_notes(&run, tmp.path());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("6.1 6.1.0-amd64: another build than the accepted one ("));
        fs::write(&file, serde_json::to_string(&r.build).unwrap()).unwrap();
        assert!(build_notes(&run, tmp.path()).is_empty());
        fs::remove_file(&file).unwrap();
        assert_eq!(
            build_notes(&run, tmp.path()),
            [
                "6.1 6.1.0-amd64: no snapshots accepted for this kernel: written for review \
              (tests/snapshots/6.1/*.snap.new), not enforced"
            ]
        );
    }
}
