//! Result records (the format is `bpfconf_record`'s, shared with the runner) and where a case
//! writes its own.

use std::path::PathBuf;

pub use bpfconf_record::{Record, SCHEMA, Unreadable, read_dir, write};

/// `$BPFCONF_RESULTS`, or `bpfconf-results` in cargo's target directory: the test binary runs
/// from `<target>/<profile>/deps/`.
pub fn results_dir() -> PathBuf {
    std::env::var_os("BPFCONF_RESULTS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap_or_default();
            match exe.parent() {
                Some(deps) if deps.ends_with("deps") => {
                    deps.ancestors().nth(2).map(|t| t.join("bpfconf-results"))
                }
                _ => None,
            }
            .unwrap_or_else(|| crate::workspace_root().join("target/bpfconf-results"))
        })
}
