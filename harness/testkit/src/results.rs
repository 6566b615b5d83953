//! Result records (the format is `record`'s, shared with the runner) and where a case
//! writes its own.

use std::path::PathBuf;

pub use record::{Record, SCHEMA, Unreadable, read_dir, write};

/// `$BPFCONF_RESULTS`, or `bpfconf-results` in cargo's target directory: the test binary runs
/// from `<target>/<profile>/deps/`.
pub fn results_dir() -> PathBuf {
    record::results_dir(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        match exe.parent() {
            Some(deps) if deps.ends_with("deps") => deps.ancestors().nth(2).map(PathBuf::from),
            _ => None,
        }
        .unwrap_or_else(|| crate::workspace_root().join("target"))
    })
}

/// The suite's version for [`Record::suite`]: `git:<commit>` of the checkout the harness was built
/// from (the same on every machine that built that commit, so shards built apart still merge),
/// `unknown` outside a git checkout (build.rs).
pub fn suite() -> &'static str {
    env!("BPFCONF_SUITE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_is_the_checkouts_head() {
        let head = duct::cmd!("git", "rev-parse", "HEAD")
            .dir(crate::workspace_root())
            .read()
            .unwrap();
        assert_eq!(suite(), format!("git:{}", head.trim()));
    }
}
