//! A crash loses only its culprit: `bpfconf suite` runs this test binary's [`fixture`], which
//! dies in one test where no case start names it (an abort before `Case::run`, in a static
//! initializer, in a helper thread), and every other test of the binary must keep its own
//! record and real outcome. On the host always; in a VM of kernel `$BPFCONF_CRASH_VM` (default
//! 6.1) when asked for with `--ignored` (ci/test does, once the kernels are fetched).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bpfconf_record::Outcome;

/// Each way the fixture dies, and the test it dies in.
const WAYS: [(&str, &str); 3] = [
    ("before_case", "fixture::aborts_before_its_case"),
    ("static", "fixture::aborts_in_a_static_initializer"),
    ("helper_thread", "fixture::aborts_in_a_helper_thread"),
];

/// A manifest of this binary's fixture tests, as `bpfconf tests` writes one for the suite.
fn manifest(dir: &Path) -> (PathBuf, Vec<String>) {
    let fixture = std::env::current_exe().unwrap();
    let out = Command::new(&fixture)
        .args(["--list", "--format", "terse"])
        .output()
        .unwrap();
    let tests: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter(|t| t.starts_with("fixture::"))
        .map(str::to_owned)
        .collect();
    assert_eq!(tests.len(), 8, "the fixture's tests: {tests:?}");
    let manifest = serde_json::json!({
        "binaries": [{"name": "crash_containment", "path": fixture, "tests": tests}]
    });
    let path = dir.join("manifest.json");
    fs::write(&path, manifest.to_string()).unwrap();
    (path, tests)
}

/// `bpfconf suite` over the fixture dying the `way` way, on the host or (`vm`) in a VM of that
/// kernel; checks that the culprit alone is `error` and every other test passed.
fn contained(way: &str, culprit: &str, vm: Option<&str>) {
    // Under the target directory: a VM sees it through its 9p root.
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir_in(&target).unwrap();
    let (manifest, tests) = manifest(dir.path());
    let results = dir.path().join("results");
    let kernel = vm.unwrap_or("crash-host");
    let bpfconf = env!("CARGO_BIN_EXE_bpfconf");
    let suite = [
        "suite".to_owned(),
        "--kernel".into(),
        kernel.into(),
        "--manifest".into(),
        manifest.display().to_string(),
        "--results".into(),
        results.display().to_string(),
        "--env".into(),
        format!("BPFCONF_CRASH_FIXTURE={way}"),
    ];
    let mut cmd = Command::new(bpfconf);
    match vm {
        Some(id) => cmd.args(["vm-exec", id, bpfconf]).args(&suite),
        None => cmd.args(&suite),
    };
    let out = cmd.output().unwrap();
    let output = String::from_utf8_lossy(&out.stdout);
    let (records, bad) = bpfconf_record::read_dir(&results).unwrap();
    assert!(bad.is_empty(), "{way}: unreadable records {bad:?}");
    let mut outcomes: Vec<(String, Outcome)> = records
        .iter()
        .map(|r| (r.test.clone(), r.outcome))
        .collect();
    outcomes.sort();
    let mut expected: Vec<(String, Outcome)> = tests
        .iter()
        .map(|t| {
            let outcome = if t == culprit {
                Outcome::Error
            } else {
                Outcome::Pass
            };
            (t.clone(), outcome)
        })
        .collect();
    expected.sort();
    assert_eq!(
        outcomes, expected,
        "{way}: the records; the runner said:\n{output}"
    );
    let blamed = records.iter().find(|r| r.test == culprit).unwrap();
    let reason = blamed.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("killed by signal SIGABRT while this test ran"),
        "{way}: {reason}"
    );
}

#[test]
fn a_crash_on_the_host_loses_only_its_culprit() {
    for (way, culprit) in WAYS {
        contained(way, culprit, None);
    }
}

#[test]
#[ignore = "boots a VM: ci/test runs it with --ignored once the kernels are fetched"]
fn a_crash_in_a_vm_loses_only_its_culprit() {
    let id = std::env::var("BPFCONF_CRASH_VM").unwrap_or_else(|_| "6.1".into());
    for (way, culprit) in WAYS {
        contained(way, culprit, Some(&id));
    }
}

/// The tests that die: `bpfconf suite` runs this same binary over them with
/// `BPFCONF_CRASH_FIXTURE=<way>`, and each way kills the whole binary where no case start names
/// the culprit. Without that variable (as cargo runs them) each returns at once: they are the
/// fixture, not checks, and write no record.
mod fixture {
    use std::sync::LazyLock;

    use harness::Case;
    /// How this run of the binary dies, if it does.
    fn crash(way: &str) -> bool {
        std::env::var("BPFCONF_CRASH_FIXTURE").is_ok_and(|w| w == way)
    }

    /// Whether `bpfconf suite` runs the binary (cargo does not set the variable).
    fn driven() -> bool {
        std::env::var_os("BPFCONF_CRASH_FIXTURE").is_some()
    }

    /// A value whose initialisation aborts in the `static` way.
    static CONFIG: LazyLock<u32> = LazyLock::new(|| {
        if crash("static") {
            std::process::abort();
        }
        7
    });

    fn passes() {
        if driven() {
            Case::run_named("-", |_| Ok(()));
        }
    }

    #[test]
    fn before_1() {
        passes();
    }

    #[test]
    fn before_2() {
        passes();
    }

    #[test]
    fn aborts_before_its_case() {
        if crash("before_case") {
            std::process::abort();
        }
        passes();
    }

    #[test]
    fn aborts_in_a_static_initializer() {
        if driven() {
            assert_eq!(*CONFIG, 7);
        }
        passes();
    }

    #[test]
    fn aborts_in_a_helper_thread() {
        if crash("helper_thread") {
            std::thread::spawn(|| std::process::abort())
                .join()
                .expect("aborted");
        }
        passes();
    }

    #[test]
    fn within_1() {
        passes();
    }

    #[test]
    fn within_2() {
        passes();
    }

    #[test]
    fn within_3() {
        passes();
    }
}
