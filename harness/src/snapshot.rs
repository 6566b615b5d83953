//! insta snapshots keyed by kernel: `tests/snapshots/<kernel-id>/<test file>__<case>.snap`.
//!
//! A kernel whose directory holds committed `.snap` files is enforced: a difference fails the case.
//! On a kernel with none, the snapshot is written for review (`.snap.new`) and the case goes on, so
//! a new kernel gets a baseline instead of a red run.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

use serde::Serialize;

use crate::kernel::Kernel;
use crate::load::{LoadOutcome, VerifierStats};

/// `tests/snapshots/<kernel-id>` for the running kernel.
pub fn kernel_dir() -> PathBuf {
    crate::workspace_root()
        .join("tests/snapshots")
        .join(&Kernel::current().id)
}

/// Whether the running kernel's snapshots are enforced (its directory holds `.snap` files).
pub fn enforced() -> bool {
    std::fs::read_dir(kernel_dir()).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "snap"))
    })
}

/// Asserts `value` as YAML snapshot `name` for the running kernel. Returns `false` when the kernel
/// is not enforced and the snapshot differed (a baseline was written for review).
pub fn assert_yaml<T: Serialize>(name: &str, value: &T) -> bool {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(kernel_dir());
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_sort_maps(true);
    settings.add_redaction(".**.verification_time_us", "[usec]");
    let assert = || settings.bind(|| insta::assert_yaml_snapshot!(name, value));
    if enforced() {
        assert();
        return true;
    }
    panic::catch_unwind(AssertUnwindSafe(assert)).is_ok()
}

/// The part of a load outcome that is stable for one kernel and compiler: no logs of C programs
/// (they change with clang), only verdicts, key lines and statistics.
#[derive(Serialize)]
struct LoadSnapshot<'a> {
    object: &'a str,
    loaded: bool,
    errno: Option<&'a str>,
    failed_program: Option<&'a str>,
    message: Option<&'a str>,
    stats: BTreeMap<&'a str, Option<&'a VerifierStats>>,
    compiler: String,
}

/// Snapshots a C sample's load outcome (verdict, key line, verifier statistics, compiler).
pub fn assert_load(name: &str, outcome: &LoadOutcome) -> bool {
    let clang_major = programs::CLANG_VERSION
        .split("version ")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .unwrap_or("unknown");
    let view = LoadSnapshot {
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
    };
    assert_yaml(name, &view)
}
