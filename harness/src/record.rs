//! Result records: one JSON line per case in `$BPFCONF_RESULTS/<kernel-id>.jsonl`.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::load::LoadOutcome;
use crate::outcome::Outcome;

/// The record format's version; bump it when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// What one case produced on one kernel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Stable id, `<test file>::<case>`, e.g. `xdp::drop_udp_port`.
    pub case: String,
    /// The kernel's name for the program type, as bpftool prints it.
    pub prog_type: String,
    /// The kernel id ([`crate::Kernel::id`]).
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
}

/// `$BPFCONF_RESULTS`, or `target/bpfconf-results` in the workspace.
pub fn results_dir() -> PathBuf {
    std::env::var_os("BPFCONF_RESULTS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/bpfconf-results"))
}

/// Appends `record` to `<dir>/<kernel>.jsonl`, one locked write so parallel writers never interleave.
pub fn append(dir: &Path, record: &Record) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.jsonl", record.kernel)))?;
    file.lock()?;
    file.write_all(&line)
}

/// Every record in `dir`'s `*.jsonl` files (a run directory), in file then line order.
pub fn read_dir(dir: &Path) -> io::Result<Vec<Record>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    for path in files {
        for (n, line) in io::BufReader::new(fs::File::open(&path)?)
            .lines()
            .enumerate()
        {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: not a result record: {e}", path.display(), n + 1),
                )
            })?;
            records.push(record);
        }
    }
    Ok(records)
}
