//! The result record format that the harness (inside each kernel) writes and the `bpfconf`
//! runner reads: one JSON file per case in `<results>/<kernel-id>/`, written under a temporary
//! name and renamed, so a record is whole or absent on any filesystem (9p in the VMs has no
//! working file locks) however many processes and threads write at once.

mod build;
mod event;
mod kernel_id;
mod load;
mod outcome;
mod place;

use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use build::KernelBuild;
pub use event::Event;
pub use kernel_id::{derive_id, kernel_id, kernel_release};
pub use load::{LoadOutcome, ProgSize, ProgramLog, RunCost, VerifierStats};
pub use outcome::Outcome;
pub use place::{RESULTS_ENV, results_dir, workspace_root};

/// The record format's version; bump it when a field changes meaning. A reader refuses records of
/// another version rather than guess what their fields mean.
pub const SCHEMA: u32 = 3;

/// What one case produced on one kernel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Stable id, `<test file>::<case>`, e.g. `xdp::drop_udp_port`.
    pub case: String,
    /// The test binary's name (`xdp`), empty for records the runner makes about a whole column.
    #[serde(default)]
    pub binary: String,
    /// libtest's name of the test that ran the case (what `--list` prints).
    #[serde(default)]
    pub test: String,
    /// The kernel's name for the program type, as bpftool prints it.
    pub prog_type: String,
    /// The kernel id ([`kernel_id`]).
    pub kernel: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// Which build of the kernel ran the case; `None` in the runner's own records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<KernelBuild>,
    /// pass / fail / unsupported / error.
    pub outcome: Outcome,
    /// Why, for anything but `pass`.
    pub reason: Option<String>,
    /// The kernel feature the outcome was judged on (`unsupported`, or a `fail` past its floor):
    /// what a report groups the cells one missing feature cost under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// Every object the case loaded, with its verifier logs.
    pub loads: Vec<LoadOutcome>,
    /// What the case measured (counts, errnos, limits), by name.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Wall time of the case.
    pub duration_ms: u64,
    /// The BPF compiler's version line.
    pub clang: String,
    /// The `-mcpu` the samples were built for.
    pub mcpu: String,
    /// What one `BPF_PROG_TEST_RUN` of each program the case test-ran costs, by program name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub run_cost: std::collections::BTreeMap<String, RunCost>,
    /// The suite's version that ran the case (`git:<commit>` of the checkout it ran from), so
    /// a report can refuse a directory that mixes two versions; empty in the runner's own records.
    pub suite: String,
}

impl Record {
    /// A record the runner writes itself (a missing case, a kernel splat, a VM that did not boot).
    pub fn runner(kernel: &str, case: &str, outcome: Outcome, reason: Option<String>) -> Self {
        Record {
            schema: SCHEMA,
            case: case.into(),
            binary: String::new(),
            test: String::new(),
            prog_type: "-".into(),
            kernel: kernel.into(),
            kernel_release: String::new(),
            build: None,
            outcome,
            reason,
            cause: None,
            loads: Vec::new(),
            details: Default::default(),
            duration_ms: 0,
            clang: String::new(),
            mcpu: String::new(),
            run_cost: Default::default(),
            suite: String::new(),
        }
    }
}

/// A missing kernel feature and what the kernel said about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The feature's id in kernels/floors.toml (`helper.bpf_xdp_adjust_meta`).
    pub feature: String,
    /// What the kernel said: its message, an errno, the probe that showed it.
    pub said: String,
}

/// The case id of libtest's test `test`: its top module (the program type's) and the test
/// function, nested modules left out (`verifier::regs::uninit_register_read` →
/// `verifier::uninit_register_read`), and an rstest case's `::case_<n>_<description>` turned into
/// `_<description>` (`xdp::test_run::case_4_drops_udp` → `xdp::test_run_drops_udp`). The runner
/// names the cases of tests that wrote no record by it; [`Record`]s carry the same id.
pub fn case_id(test: &str) -> String {
    let parts: Vec<&str> = test.split("::").collect();
    let (function, case) = match parts.as_slice() {
        [.., function, last] if last.starts_with("case_") => (*function, Some(*last)),
        [.., last] => (*last, None),
        [] => return String::new(),
    };
    let mut id = match parts.first() {
        Some(top) if parts.len() > 1 && *top != function => format!("{top}::{function}"),
        _ => function.to_owned(),
    };
    if let Some(case) = case {
        let described = case["case_".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        if let Some(description) = described.strip_prefix('_') {
            id = format!("{id}_{description}");
        }
    }
    id
}

/// Writes `record` to `<dir>/<kernel>/<case>.json` (a rerun of the case replaces it).
pub fn write(dir: &Path, record: &Record) -> io::Result<()> {
    let (tmp, path) = stage(dir, record)?;
    // On the host before the rename: a VM that crashes later keeps the records made before.
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes many records as [`write`] does, with one sync of the filesystem for all of them
/// instead of one per record (a corpus writes thousands: a sync each cost 10 ms on the host).
pub fn write_all(dir: &Path, records: &[Record]) -> io::Result<()> {
    let staged = records
        .iter()
        .map(|r| stage(dir, r))
        .collect::<io::Result<Vec<_>>>()?;
    if let Some((tmp, _)) = staged.first() {
        nix::unistd::syncfs(tmp.as_file()).map_err(io::Error::from)?;
    }
    for (tmp, path) in staged {
        tmp.persist(path).map_err(|e| e.error)?;
    }
    Ok(())
}

/// `record` written whole under a temporary name in its column, and the name it will have.
fn stage(dir: &Path, record: &Record) -> io::Result<(tempfile::NamedTempFile, PathBuf)> {
    let column = dir.join(&record.kernel);
    fs::create_dir_all(&column)?;
    let name = record.case.replace("::", "__").replace('/', "_");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&column)?;
    // One write: serde_json writes a file token by token, each a round trip over a VM's 9p root.
    tmp.write_all(&serde_json::to_vec(record)?)?;
    Ok((tmp, column.join(format!("{name}.json"))))
}

/// A record file or line that could not be read: reported as an `error` cell, never dropped.
#[derive(Clone, Debug)]
pub struct Unreadable {
    /// The kernel id the file belongs to (its directory or `<id>.jsonl` name).
    pub kernel: String,
    /// `<file>` or `<file>:<line>`.
    pub place: String,
    /// What is wrong with it.
    pub error: String,
    /// The record's schema when it is a whole record of another version than [`SCHEMA`].
    pub schema: Option<u32>,
}

/// A record and where it was read: `<file>` or `<file>:<line>`.
#[derive(Clone, Debug)]
pub struct Placed {
    /// `<file>` or `<file>:<line>`.
    pub place: String,
    /// The record.
    pub record: Record,
}

/// Every record of a run directory: `<kernel>/*.json` files (what cases write) and `<kernel>.jsonl`
/// files (one record a line: older runs, shards), with the places that could not be read.
pub fn read_dir(dir: &Path) -> io::Result<(Vec<Record>, Vec<Unreadable>)> {
    let (placed, bad) = read_placed(dir)?;
    Ok((placed.into_iter().map(|p| p.record).collect(), bad))
}

/// [`read_dir`], each record with its place.
pub fn read_placed(dir: &Path) -> io::Result<(Vec<Placed>, Vec<Unreadable>)> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut parse = |kernel: &str, place: String, text: &str| match parse(text) {
        Ok(record) => records.push(Placed { place, record }),
        Err((error, schema)) => bad.push(Unreadable {
            kernel: kernel.to_owned(),
            place,
            error,
            schema,
        }),
    };
    for path in entries {
        // A column's directory is its kernel id (`6.1`), a `.jsonl` file the id and the extension.
        let name = if path.is_dir() {
            path.file_name()
        } else {
            path.file_stem()
        };
        let stem = name.unwrap_or_default().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files: Vec<PathBuf> = fs::read_dir(&path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            for file in files {
                let text = fs::read_to_string(&file)?;
                parse(&stem, file.display().to_string(), &text);
            }
        } else if path.extension().is_some_and(|x| x == "jsonl") {
            for (n, line) in io::BufReader::new(fs::File::open(&path)?)
                .lines()
                .enumerate()
            {
                let line = line?;
                if !line.trim().is_empty() {
                    parse(&stem, format!("{}:{}", path.display(), n + 1), &line);
                }
            }
        }
    }
    Ok((records, bad))
}

/// One record, or what is wrong with it (and its schema when it is whole but of another version:
/// its fields cannot be read as this version's).
fn parse(text: &str) -> Result<Record, (String, Option<u32>)> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| (format!("not a result record: {e}"), None))?;
    match value.get("schema").and_then(|s| s.as_u64()) {
        Some(v) if v != u64::from(SCHEMA) => {
            let v = u32::try_from(v).unwrap_or(u32::MAX);
            let error = format!("a record of schema {v}, this bpfconf reads schema {SCHEMA}");
            Err((error, Some(v)))
        }
        _ => serde_json::from_value(value).map_err(|e| (format!("not a result record: {e}"), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_ids_follow_test_names() {
        assert_eq!(case_id("xdp::drops_one_flow"), "xdp::drops_one_flow");
        assert_eq!(
            case_id("xdp::test_run::case_04_drops_udp"),
            "xdp::test_run_drops_udp"
        );
        assert_eq!(case_id("isa::mcpu::case_1_v1"), "isa::mcpu_v1");
        assert_eq!(
            case_id("verifier::regs::uninit_register_read"),
            "verifier::uninit_register_read"
        );
        assert_eq!(case_id("xdp::bounces::case_2"), "xdp::bounces");
    }

    #[test]
    fn writes_replace_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Record::runner("6.1", "xdp::drops", Outcome::Fail, Some("first".into()));
        write(dir.path(), &r).unwrap();
        r.outcome = Outcome::Pass;
        write(dir.path(), &r).unwrap();
        fs::write(
            dir.path().join("5.10.jsonl"),
            format!("{}\n{{\"torn\n", serde_json::to_string(&r).unwrap()),
        )
        .unwrap();
        let (records, bad) = read_dir(dir.path()).unwrap();
        let outcomes: Vec<Outcome> = records.iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [Outcome::Pass, Outcome::Pass]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].kernel, "5.10");
        assert!(bad[0].place.ends_with("5.10.jsonl:2"), "{}", bad[0].place);
        assert_eq!(bad[0].schema, None);
        fs::write(dir.path().join("6.1/torn.json"), "{").unwrap();
        let (_, bad) = read_dir(dir.path()).unwrap();
        assert_eq!(bad[1].kernel, "6.1", "the column of {}", bad[1].place);
    }

    #[test]
    fn another_schema_is_named_not_misread() {
        let r = Record::runner("6.1", "xdp::drops", Outcome::Pass, None);
        let mut old = serde_json::to_value(&r).unwrap();
        old["schema"] = 2.into();
        old.as_object_mut().unwrap().remove("suite");
        let Err((error, schema)) = parse(&old.to_string()) else {
            panic!("a schema 2 record was read as this version's")
        };
        assert_eq!(schema, Some(2));
        assert_eq!(error, "a record of schema 2, this bpfconf reads schema 3");
        assert!(parse(&serde_json::to_string(&r).unwrap()).is_ok());
    }
}
