//! Result records (the format is `bpfconf_record`'s, shared with the runner) and where a case
//! writes its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// The suite's version for [`Record::suite`]: `git:<commit>` of the checkout the suite runs from
/// (the same on every machine that checked out that commit, so shards built apart still merge),
/// `unknown` without a git checkout. Read from `.git` in-process, once: under emulation a `git`
/// process per test binary would cost real time.
pub fn suite() -> &'static str {
    static SUITE: OnceLock<String> = OnceLock::new();
    SUITE.get_or_init(|| {
        head_commit(&crate::workspace_root())
            .map_or_else(|| "unknown".to_owned(), |c| format!("git:{c}"))
    })
}

/// The commit `HEAD` of the checkout at `root` names (a worktree's `.git` file followed; refs
/// loose or packed).
fn head_commit(root: &Path) -> Option<String> {
    let mut git = root.join(".git");
    if git.is_file() {
        let pointer = fs::read_to_string(&git).ok()?;
        git = root.join(pointer.strip_prefix("gitdir:")?.trim());
    }
    let head = fs::read_to_string(git.join("HEAD")).ok()?;
    let Some(name) = head.trim().strip_prefix("ref: ") else {
        return Some(head.trim().to_owned());
    };
    // A worktree keeps its HEAD and the shared refs in the common directory.
    let common = fs::read_to_string(git.join("commondir"))
        .map_or_else(|_| git.clone(), |c| git.join(c.trim()));
    [&git, &common]
        .iter()
        .find_map(|dir| fs::read_to_string(dir.join(name)).ok())
        .map(|c| c.trim().to_owned())
        .or_else(|| {
            let packed = fs::read_to_string(common.join("packed-refs")).ok()?;
            packed.lines().find_map(|l| {
                let (commit, r) = l.split_once(' ')?;
                (r == name).then(|| commit.to_owned())
            })
        })
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
