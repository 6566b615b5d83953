//! Embeds the suite's version (`BPFCONF_SUITE`): `git:<commit>` of the checkout the harness is
//! built from, `unknown` outside one. Built in, not read at run time, so every record names the
//! code that made it even when the checkout moves on while a matrix runs.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest)
        .ancestors()
        .nth(2)
        .expect("harness/testkit/ is two levels down");
    let suite = head_commit(root).map_or_else(|| "unknown".to_owned(), |c| format!("git:{c}"));
    println!("cargo:rustc-env=BPFCONF_SUITE={suite}");
}

/// The commit `HEAD` of the checkout at `root` names (a worktree's `.git` file followed; refs
/// loose or packed), telling cargo to run this again when any of them moves.
fn head_commit(root: &Path) -> Option<String> {
    let mut git = root.join(".git");
    if git.is_file() {
        let pointer = fs::read_to_string(&git).ok()?;
        git = root.join(pointer.strip_prefix("gitdir:")?.trim());
    }
    let head = read_watched(&git.join("HEAD"))?;
    let Some(name) = head.trim().strip_prefix("ref: ") else {
        return Some(head.trim().to_owned());
    };
    // A worktree keeps its HEAD and the shared refs in the common directory.
    let common = fs::read_to_string(git.join("commondir"))
        .map_or_else(|_| git.clone(), |c| git.join(c.trim()));
    watch(&common.join("refs/heads"));
    [&git, &common]
        .iter()
        .find_map(|dir| read_watched(&dir.join(name)))
        .map(|c| c.trim().to_owned())
        .or_else(|| {
            let packed = read_watched(&common.join("packed-refs"))?;
            packed.lines().find_map(|l| {
                let (commit, r) = l.split_once(' ')?;
                (r == name).then(|| commit.to_owned())
            })
        })
}

fn read_watched(path: &PathBuf) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    watch(path);
    Some(text)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
