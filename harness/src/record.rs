//! Result records (the format is `bpfconf_record`'s, shared with the runner) and where a case
//! writes its own.

use std::path::PathBuf;

pub use bpfconf_record::{Record, SCHEMA, Unreadable, read_dir, write};

/// `$BPFCONF_RESULTS`, or `target/bpfconf-results` in the workspace.
pub fn results_dir() -> PathBuf {
    std::env::var_os("BPFCONF_RESULTS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/bpfconf-results"))
}
