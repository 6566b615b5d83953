//! Where the repository and the records are, for the harness and the runner alike.

use std::path::{Path, PathBuf};

/// The environment variable that names the results directory.
pub const RESULTS_ENV: &str = "BPFCONF_RESULTS";

/// The repository root (tests/, kernels/, target/ hang off it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("harness/record/ is two levels down")
        .to_owned()
}

/// Where records are written and read: `$BPFCONF_RESULTS`, or `bpfconf-results` in cargo's target
/// directory, which `target` finds (the runner asks cargo; a test binary, which may run in a VM
/// without cargo, goes by its own path).
pub fn results_dir(target: impl FnOnce() -> PathBuf) -> PathBuf {
    std::env::var_os(RESULTS_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| target().join("bpfconf-results"))
}
