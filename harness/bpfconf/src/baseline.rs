//! The accepted matrix (`tests/baseline.json`: kernel → case → outcome and, per program, the
//! verifier's statistics). CI checks every run against it and fails on a regression: a cell that
//! got worse, a case or a column that disappeared; statistics beyond the threshold are reported,
//! never fatal. `bpfconf baseline accept RUN` rewrites it, one cell a line, so a pull request's
//! diff of the file shows every change a human accepted. Each column keeps the kernel build it
//! was accepted on (`builds`): a run of another build of that kernel (another machine's host
//! kernel of the same release) is not compared there, and every report format says so. The
//! host's column keeps its release (`host-6.18`): a run on another host release has a column of
//! its own, and the accepted host column is then not compared. Schemas 1 (outcomes only) and 2
//! (no builds) still read. The file reads into cells of the run model (`crate::run`), without
//! records; [`Entry`] is only the JSON shape of one line.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use record::{KernelBuild, Outcome};
use serde::{Deserialize, Serialize};

use crate::run::{Cell, Program, Run, kernel_order};

const SCHEMA: u32 = 3;

/// The file: the build each column was accepted on and every accepted cell.
#[derive(Debug, Serialize, Deserialize)]
struct File {
    schema: u32,
    /// The build each column was accepted on (schema 3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    builds: BTreeMap<String, KernelBuild>,
    /// Kernel → case → its entry.
    kernels: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// One accepted cell as the file writes it: schema 2 on writes the object, schema 1 had the
/// bare outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    Full {
        outcome: Outcome,
        /// For a program of the kernel's own selftests: `holds` or `differs`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verdict: Option<String>,
        /// `<object>/<program>` → the verifier's statistics.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        programs: BTreeMap<String, Stats>,
    },
    Bare(Outcome),
}

/// A program's accepted verifier statistics ([`crate::run::METRICS`] names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Stats {
    insns: u64,
    states: u64,
    peak_states: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stack_depth: Option<u64>,
}

/// `tests/baseline.json`.
pub fn path() -> PathBuf {
    crate::paths::workspace_root().join("tests/baseline.json")
}

/// Reads the baseline at `path` (schema 1, 2 or 3) as a run named by its path: outcomes, the
/// statistics schema 2 on holds, the builds schema 3 holds, and where each column opens.
pub fn read(path: &Path) -> Result<Run> {
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "reading {}: accept a run first (bpfconf baseline accept RUN)",
            path.display()
        )
    })?;
    let file: File = serde_json::from_str(&text).with_context(|| {
        format!(
            "parsing {} (rewrite it: bpfconf baseline accept RUN)",
            path.display()
        )
    })?;
    ensure!(
        (1..=SCHEMA).contains(&file.schema),
        "{}: schema {} (this bpfconf reads 1 to {SCHEMA}); rewrite it: bpfconf baseline accept \
         RUN",
        path.display(),
        file.schema
    );
    let mut run = Run {
        label: path.display().to_string(),
        kernels: file.kernels.keys().cloned().collect(),
        builds: file.builds,
        ..Run::default()
    };
    run.kernels.sort_by_key(|k| kernel_order(k));
    for (kernel, entries) in file.kernels {
        let opens = format!("{}: {{", serde_json::to_string(&kernel)?);
        if let Some(n) = text
            .lines()
            .position(|l| l.trim_start().starts_with(&opens))
        {
            let place = format!("{}:{}", path.display(), n + 1);
            run.places.insert(kernel.clone(), place);
        }
        for (case, entry) in entries {
            let row = run.cases.entry(case).or_default();
            row.cells.insert(kernel.clone(), entry.cell());
        }
    }
    Ok(run)
}

/// Writes the cells of `run` to `path`, one cell a line, so that a diff shows one line per
/// changed cell: each outcome, and the verifier statistics of each program that has them
/// (sizes and run costs vary with the compiler and the machine).
pub fn write(run: &Run, path: &Path) -> Result<()> {
    let mut kernels: BTreeMap<&str, BTreeMap<&str, Entry>> = BTreeMap::new();
    for (case, kernel, cell) in run.cells() {
        kernels
            .entry(kernel)
            .or_default()
            .insert(case, Entry::of(cell));
    }
    let mut out = format!("{{\n  \"schema\": {SCHEMA},");
    if !run.builds.is_empty() {
        out += "\n  \"builds\": {";
        for (i, (kernel, build)) in run.builds.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let (kernel, build) = (
                serde_json::to_string(kernel)?,
                serde_json::to_string(build)?,
            );
            out += &format!("{sep}\n    {kernel}: {build}");
        }
        out += "\n  },";
    }
    out += "\n  \"kernels\": {";
    for (i, (kernel, cells)) in kernels.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        out += &format!("{sep}\n    {}: {{", serde_json::to_string(kernel)?);
        for (j, (case, entry)) in cells.iter().enumerate() {
            let sep = if j == 0 { "" } else { "," };
            let (case, entry) = (serde_json::to_string(case)?, serde_json::to_string(entry)?);
            out += &format!("{sep}\n      {case}: {entry}");
        }
        out += "\n    }";
    }
    out += "\n  }\n}\n";
    fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Writes the build each column of `run` ran beside its snapshots
/// (`<snapshots>/<kernel>/build.json`), which binds them to it.
pub fn bind_snapshots(run: &Run, snapshots: &Path) -> Result<()> {
    for (kernel, build) in &run.builds {
        let dir = snapshots.join(kernel);
        fs::create_dir_all(&dir)?;
        let file = dir.join("build.json");
        fs::write(&file, serde_json::to_string_pretty(build)? + "\n")
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

impl Entry {
    /// What the file keeps of `cell`.
    fn of(cell: &Cell) -> Self {
        // The kernel's own selftests: the verdict is what is accepted, not their statistics.
        if cell.verdict.is_some() {
            return Entry::Full {
                outcome: cell.outcome,
                verdict: cell.verdict.clone(),
                programs: BTreeMap::new(),
            };
        }
        let programs = (cell.programs.iter())
            .filter_map(|(name, p)| {
                let m = |k| p.metrics.get(k).copied();
                let stats = Stats {
                    insns: m("insns")?,
                    states: m("states")?,
                    peak_states: m("peak_states")?,
                    stack_depth: m("stack_depth"),
                };
                Some((name.clone(), stats))
            })
            .collect();
        Entry::Full {
            outcome: cell.outcome,
            verdict: None,
            programs,
        }
    }

    /// The cell of the model: outcome, verdict and statistics, no record, reason or log.
    fn cell(self) -> Cell {
        let (outcome, verdict, programs) = match self {
            Entry::Full {
                outcome,
                verdict,
                programs,
            } => (outcome, verdict, programs),
            Entry::Bare(outcome) => (outcome, None, BTreeMap::new()),
        };
        let mut cell = Cell::new(outcome, None);
        cell.verdict = verdict;
        for (name, s) in programs {
            let mut metrics = BTreeMap::from([
                ("insns", s.insns),
                ("states", s.states),
                ("peak_states", s.peak_states),
            ]);
            if let Some(depth) = s.stack_depth {
                metrics.insert("stack_depth", depth);
            }
            let program = Program {
                metrics,
                ..Program::default()
            };
            cell.programs.insert(name, program);
        }
        cell
    }
}

/// When `run` was made on another host kernel than the accepted one, removes the accepted host
/// column (another kernel's outcomes are no regression of it) and says so. A run without a host
/// column keeps it: that column disappeared.
pub fn skip_other_host(accepted: &mut Run, run: &Run) -> Option<String> {
    let host = |r: &Run| r.kernels.iter().find(|k| k.starts_with("host")).cloned();
    let (old, new) = (host(accepted)?, host(run)?);
    if old == new {
        return None;
    }
    accepted.remove_kernel(&old);
    Some(format!(
        "The host column {new} is not compared: the baseline's host column is {old}."
    ))
}

/// For each column of `run` that ran none of the kernel's own selftests (`--selftests` is a
/// choice of the run, not a property of the kernel), removes the accepted selftests cells of that
/// column and says so: not running the corpus is no regression of it. A column the run lacks
/// altogether keeps them (that column disappeared).
pub fn skip_unrun_selftests(accepted: &mut Run, run: &Run) -> Option<String> {
    let corpus = |case: &str| case.starts_with(selftests::judge::BINARY_PREFIX);
    let ran = |kernel: &str| {
        (run.cases.iter()).any(|(case, row)| corpus(case) && row.cells.contains_key(kernel))
    };
    let skipped: Vec<&String> = (run.kernels.iter())
        .filter(|k| !ran(k))
        .filter(|k| {
            (accepted.cases.iter()).any(|(case, row)| corpus(case) && row.cells.contains_key(*k))
        })
        .collect();
    if skipped.is_empty() {
        return None;
    }
    for (case, row) in &mut accepted.cases {
        if corpus(case) {
            row.cells.retain(|k, _| !skipped.contains(&k));
        }
    }
    accepted.cases.retain(|_, row| !row.cells.is_empty());
    let list: Vec<&str> = skipped.iter().map(|k| k.as_str()).collect();
    Some(format!(
        "The kernel's own selftests did not run on {} (run with --selftests): their accepted \
         verdicts there are not compared.",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Kind, Options, compare};

    fn run(cells: &[(&str, &str, Outcome, u64)]) -> Run {
        let bare: Vec<_> = cells.iter().map(|(c, k, o, _)| (*c, *k, *o)).collect();
        let mut r = crate::run::testing::of_cells(&bare);
        for (case, kernel, _, insns) in cells {
            let program = Program {
                metrics: BTreeMap::from([("insns", *insns), ("states", 1), ("peak_states", 1)]),
                ..Default::default()
            };
            let cell = r
                .cases
                .get_mut(*case)
                .unwrap()
                .cells
                .get_mut(*kernel)
                .unwrap();
            cell.programs.insert("o/p".to_owned(), program);
        }
        r
    }

    /// A program of the kernel's own selftests keeps its verdict in the file: one that held and
    /// now differs is a regression, the reverse a fix; its statistics are not kept.
    #[test]
    fn selftests_verdicts_are_accepted_and_compared() {
        use Outcome::*;
        let case = "selftests_6_12::verifier_and/p";
        let with = |verdict: &str| {
            let mut r = run(&[(case, "6.1", Pass, 10)]);
            r.cases
                .get_mut(case)
                .unwrap()
                .cells
                .get_mut("6.1")
                .unwrap()
                .verdict = Some(verdict.to_owned());
            r
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        write(&with("holds"), &path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"{"outcome":"pass","verdict":"holds"}"#),
            "{text}"
        );
        let accepted = read(&path).unwrap();
        let kinds = |old: &Run, new: &Run| -> Vec<Kind> {
            (compare(old, new, &Options::default()).outcomes.iter())
                .map(|c| c.kind)
                .collect()
        };
        assert_eq!(kinds(&accepted, &with("differs")), [Kind::Regression]);
        assert_eq!(kinds(&with("differs"), &accepted), [Kind::Fix]);
        assert!(kinds(&accepted, &with("holds")).is_empty());
    }

    /// A run without `--selftests` is compared on its suite cases only; a run that ran the corpus
    /// on a column is held to it there.
    #[test]
    fn selftests_not_run_are_not_compared() {
        use Outcome::*;
        let corpus = "selftests_6_12::verifier_and/p";
        let baseline = || run(&[("a", "6.1", Pass, 1), (corpus, "6.1", Pass, 1)]);
        let mut accepted = baseline();
        let note = skip_unrun_selftests(&mut accepted, &run(&[("a", "6.1", Pass, 1)]));
        assert!(note.unwrap().contains("did not run on 6.1"));
        assert!(!accepted.cases.contains_key(corpus));
        assert!(accepted.cases.contains_key("a"));
        let mut accepted = baseline();
        let ran = run(&[("a", "6.1", Pass, 1), (corpus, "6.1", Fail, 1)]);
        assert_eq!(skip_unrun_selftests(&mut accepted, &ran), None);
        let c = compare(&accepted, &ran, &Options::default());
        assert_eq!(c.count(Kind::Regression), 1);
    }

    #[test]
    fn a_lost_column_and_a_worse_cell_are_regressions_stats_only_inform() {
        use Outcome::*;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        let accepted = run(&[
            ("a", "6.1", Pass, 10),
            ("a", "5.10", Pass, 10),
            ("b", "host-6.18", Pass, 100),
        ]);
        write(&accepted, &path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\n      \"b\": {\"outcome\":\"pass\",\"programs\":"),
            "{text}"
        );
        let new = run(&[
            ("a", "6.1", Unsupported, 10),
            ("b", "host-6.18", Pass, 200),
            ("c", "6.1", Pass, 1),
        ]);
        let c = compare(&read(&path).unwrap(), &new, &Options::default());
        let found: Vec<(&str, &str, Kind)> = c
            .outcomes
            .iter()
            .map(|c| (&*c.case, &*c.kernel, c.kind))
            .collect();
        assert_eq!(
            found,
            [("a", "6.1", Kind::Regression), ("c", "6.1", Kind::Added)]
        );
        assert_eq!(c.removed_columns, ["5.10"]);
        // The file's fourth line opens the first kernel's cells (after `{`, schema, `kernels`).
        let place = format!("{}:4", path.display());
        assert_eq!(c.removed_column_places["5.10"], place);
        assert_eq!(c.regressions, 2);
        let stats: Vec<(&str, u64, u64, bool)> = c
            .stats
            .iter()
            .map(|s| (&*s.case, s.old, s.new, s.flagged))
            .collect();
        assert_eq!(stats, [("b", 100, 200, true)]);
    }

    /// Another host kernel's column is not compared with the accepted host's; no host column
    /// at all is a lost column.
    #[test]
    fn another_host_is_not_compared_a_missing_host_is_lost() {
        use Outcome::*;
        let accepted = || run(&[("a", "6.1", Pass, 1), ("a", "host-6.18", Pass, 1)]);
        let other = run(&[("a", "6.1", Pass, 1), ("a", "host-6.8", Unsupported, 1)]);
        let mut old = accepted();
        let note = skip_other_host(&mut old, &other).unwrap();
        assert!(
            note.contains("host-6.8") && note.contains("host-6.18"),
            "{note}"
        );
        let c = compare(&old, &other, &Options::default());
        assert_eq!((c.regressions, c.removed_columns.len()), (0, 0));

        let no_host = run(&[("a", "6.1", Pass, 1)]);
        let mut old = accepted();
        assert_eq!(skip_other_host(&mut old, &no_host), None);
        let c = compare(&old, &no_host, &Options::default());
        assert_eq!(c.removed_columns, ["host-6.18"]);
        assert_eq!(c.regressions, 1);
    }

    /// The committed file of schema 1 (outcomes only) still reads, without statistics.
    #[test]
    fn schema_1_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        fs::write(
            &path,
            r#"{"schema": 1, "kernels": {"6.1": {"xdp::a": "pass", "xdp::b": "unsupported"}}}"#,
        )
        .unwrap();
        let run = read(&path).unwrap();
        assert_eq!(run.kernels, ["6.1"]);
        assert_eq!(
            run.cell("xdp::b", "6.1").unwrap().outcome,
            Outcome::Unsupported
        );
        assert!(run.cell("xdp::a", "6.1").unwrap().programs.is_empty());
        fs::write(&path, r#"{"schema": 4, "kernels": {}}"#).unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(
            e.contains("schema 4") && e.contains("baseline accept"),
            "{e}"
        );
    }
}
