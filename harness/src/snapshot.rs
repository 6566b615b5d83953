//! insta snapshots keyed by kernel: `tests/snapshots/<kernel-id>/<test file>__<case>.snap`, bound
//! to the kernel build they were accepted on (`build.json` beside them, a [`KernelBuild`]).
//!
//! A kernel whose directory holds `.snap` files and whose `build.json` names the running build is
//! enforced: a difference fails the case — at its end, and only when the case otherwise passed, so
//! a feature the floors call missing stays `unsupported` (floors first). On any other build, or a
//! kernel with no snapshots, they are written for review (`.snap.new`) and the case goes on, judged
//! by behaviour and floors alone.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use bpfconf_record::KernelBuild;
use serde::Serialize;

use crate::kernel::Kernel;
use crate::load::{LoadOutcome, VerifierStats};

/// The file beside a kernel's snapshots naming the build they were accepted on.
pub const BUILD_FILE: &str = "build.json";

/// `tests/snapshots/<kernel-id>` for the running kernel.
pub fn kernel_dir() -> PathBuf {
    crate::workspace_root()
        .join("tests/snapshots")
        .join(&Kernel::current().id)
}

/// Whether the running kernel's snapshots are enforced, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Snapshots accepted on this very build.
    Enforced,
    /// Written for review; the reason says why they are not enforced.
    ForReview(String),
}

/// The binding of the running kernel (decided once per process).
pub fn binding() -> &'static Binding {
    static BINDING: LazyLock<Binding> =
        LazyLock::new(|| bind(&kernel_dir(), &Kernel::current().fingerprint));
    &BINDING
}

/// The binding of the snapshots in `dir` for a kernel of build `running`.
fn bind(dir: &Path, running: &KernelBuild) -> Binding {
    let has_snapshots = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "snap"))
    });
    if !has_snapshots {
        return Binding::ForReview("no accepted snapshots for this kernel".into());
    }
    let file = dir.join(BUILD_FILE);
    let accepted: KernelBuild = match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(build) => build,
        Err(e) => {
            return Binding::ForReview(format!(
                "{} cannot be read ({e}): accept the build with `bpfconf baseline accept RUN`",
                file.display()
            ));
        }
    };
    match running.difference(&accepted) {
        None => Binding::Enforced,
        Some(difference) => Binding::ForReview(format!(
            "another build than the accepted one ({difference})"
        )),
    }
}

/// What comparing one snapshot gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// It matches the accepted snapshot.
    Same,
    /// Not enforced here: written for review (why).
    ForReview(String),
    /// It differs from the accepted snapshot of this build (what insta said).
    Differs(String),
}

/// Compares `value` as YAML snapshot `name` for the running kernel; never panics on a difference
/// (the case decides at its end, [`crate::Case::snapshot`]).
pub fn check_yaml<T: Serialize>(name: &str, value: &T) -> Checked {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(kernel_dir());
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_sort_maps(true);
    settings.add_redaction(".**.verification_time_us", "[usec]");
    let assert = || settings.bind(|| insta::assert_yaml_snapshot!(name, value));
    match (panic::catch_unwind(AssertUnwindSafe(assert)), binding()) {
        (Ok(()), _) => Checked::Same,
        (Err(_), Binding::ForReview(why)) => Checked::ForReview(why.clone()),
        (Err(_), Binding::Enforced) => Checked::Differs(format!(
            "snapshot {name} differs from the one accepted on this build \
             (tests/snapshots/{}/{name}.snap; the new one is beside it as .snap.new)",
            Kernel::current().id
        )),
    }
}

/// The part of a load outcome that is stable for one kernel and compiler: no logs of C programs
/// (they change with clang), only verdicts, key lines and statistics.
#[derive(Serialize)]
pub struct LoadSnapshot<'a> {
    object: &'a str,
    loaded: bool,
    errno: Option<&'a str>,
    failed_program: Option<&'a str>,
    message: Option<&'a str>,
    stats: BTreeMap<&'a str, Option<&'a VerifierStats>>,
    compiler: String,
}

impl<'a> LoadSnapshot<'a> {
    /// A C sample's load outcome (verdict, key line, verifier statistics, compiler).
    pub fn of(outcome: &'a LoadOutcome) -> Self {
        let clang_major = programs::CLANG_VERSION
            .split("version ")
            .nth(1)
            .and_then(|v| v.split('.').next())
            .unwrap_or("unknown");
        LoadSnapshot {
            object: &outcome.object,
            loaded: outcome.loaded,
            errno: outcome.errno.as_deref(),
            failed_program: outcome.failed_program.as_deref(),
            message: outcome.message.as_deref(),
            stats: outcome
                .programs
                .iter()
                .map(|(name, p)| (name.as_str(), p.stats.as_ref()))
                .collect(),
            compiler: format!("clang {clang_major} -mcpu={}", programs::MCPU),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(id: &str) -> KernelBuild {
        KernelBuild {
            build_id: Some(id.into()),
            config_sha256: Some("c0ffee".into()),
            version: "Linux version 6.18.44".into(),
        }
    }

    /// Snapshots bind to the build in `build.json`: the same build is enforced; a doctored build
    /// (another build id and config, as another machine's host kernel of the same release) and a
    /// directory without `build.json` or without snapshots are written for review.
    #[test]
    fn snapshots_bind_to_their_build() {
        let dir = tempfile::tempdir().unwrap();
        let accepted = build("fa36776b59bf96ad");
        assert_eq!(
            bind(dir.path(), &accepted),
            Binding::ForReview("no accepted snapshots for this kernel".into())
        );
        std::fs::write(dir.path().join("x__y.snap"), "---\n").unwrap();
        let Binding::ForReview(why) = bind(dir.path(), &accepted) else {
            panic!("enforced without build.json")
        };
        assert!(why.contains("build.json cannot be read"), "{why}");
        std::fs::write(
            dir.path().join(BUILD_FILE),
            serde_json::to_string(&accepted).unwrap(),
        )
        .unwrap();
        assert_eq!(bind(dir.path(), &accepted), Binding::Enforced);
        let doctored = KernelBuild {
            config_sha256: Some("another".into()),
            ..build("1a2b3c4d5e6f7788")
        };
        assert_eq!(
            bind(dir.path(), &doctored),
            Binding::ForReview(
                "another build than the accepted one (build id 1a2b3c4d5e6f (accepted: \
                 fa36776b59bf), another config (another vs c0ffee))"
                    .into()
            )
        );
    }
}
