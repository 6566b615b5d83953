//! Where things are: the repository, cargo's target directory, the results and run directories.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

pub use record::workspace_root;

/// cargo's target directory: `$CARGO_TARGET_DIR`, else what `cargo metadata` says (a
/// `build.target-dir` of a cargo config included), else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
            return workspace_root().join(dir);
        }
        cargo_metadata::MetadataCommand::new()
            .current_dir(workspace_root())
            .no_deps()
            .exec()
            .map(|m| m.target_directory.into_std_path_buf())
            .unwrap_or_else(|_| workspace_root().join("target"))
    })
    .clone()
}

/// `$BPFCONF_RESULTS`, or `bpfconf-results` in cargo's target directory (where plain `cargo test`
/// writes).
pub fn results_dir() -> PathBuf {
    record::results_dir(target_dir)
}

/// A fresh run directory under `bpfconf-runs/` in cargo's target directory.
pub fn new_run_dir() -> Result<PathBuf> {
    let stamp = duct::cmd!("date", "+%Y%m%d-%H%M%S")
        .read()
        .context("running date")?;
    let dir = target_dir().join("bpfconf-runs").join(stamp.trim());
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    Ok(dir)
}
