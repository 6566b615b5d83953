//! The result record format that the harness (inside each kernel) writes and the `bpfconf`
//! runner reads: one JSON file per case in `<results>/<kernel-id>/`, written under a temporary
//! name and renamed, so a record is whole or absent on any filesystem (9p in the VMs has no
//! working file locks) however many processes and threads write at once.

mod event;
mod kernel_id;
mod load;
mod outcome;

use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use event::Event;
pub use kernel_id::{derive_id, kernel_id, kernel_release};
pub use load::{LoadOutcome, ProgSize, ProgramLog, RunCost, VerifierStats};
pub use outcome::Outcome;

/// The record format's version; bump it when a field changes meaning.
pub const SCHEMA: u32 = 2;

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
    /// pass / fail / unsupported / error.
    pub outcome: Outcome,
    /// Why, for anything but `pass`.
    pub reason: Option<String>,
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
            outcome,
            reason,
            loads: Vec::new(),
            details: Default::default(),
            duration_ms: 0,
            clang: String::new(),
            mcpu: String::new(),
            run_cost: Default::default(),
        }
    }
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
    let column = dir.join(&record.kernel);
    fs::create_dir_all(&column)?;
    let name = record.case.replace("::", "__").replace('/', "_");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&column)?;
    serde_json::to_writer(&mut tmp, record)?;
    // On the host before the rename: a VM that crashes later keeps the records made before.
    tmp.as_file().sync_all()?;
    tmp.persist(column.join(format!("{name}.json")))
        .map_err(|e| e.error)?;
    Ok(())
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
}

/// Every record of a run directory: `<kernel>/*.json` files (what cases write) and `<kernel>.jsonl`
/// files (one record a line: older runs, shards), with the places that could not be read.
pub fn read_dir(dir: &Path) -> io::Result<(Vec<Record>, Vec<Unreadable>)> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut parse = |kernel: &str, place: String, text: &str| match serde_json::from_str(text) {
        Ok(r) => records.push(r),
        Err(e) => bad.push(Unreadable {
            kernel: kernel.to_owned(),
            place,
            error: format!("not a result record: {e}"),
        }),
    };
    for path in entries {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
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
    }
}
