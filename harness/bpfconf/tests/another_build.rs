//! Another build of a kernel is judged by its behaviour and the floors, never by what was accepted
//! on the first build. `bpfconf suite` runs the suite on the host twice: as it is, and taken for
//! another build of itself (`BPFCONF_FAULT_KCONFIG`: the host's config with `CONFIG_NET_CLS_BPF`
//! unset, and a build id made from that config). Then:
//! - every cell of the second run has the first run's outcome, except the cells that need the
//!   unset option (`unsupported`, grouped under one line) and what `kernels/deviations.toml`
//!   declares the host's real build to lack on purpose: on another build that is a `fail`, grouped
//!   under one line per feature with the kernel's message;
//! - the report says once that the column is another build than its snapshots' (or, where none
//!   were accepted for this kernel, that they were written for review), and the baseline check
//!   compares none of its cells (exit 0, "not compared", once).
//!
//! The reference is the same machine's own run, so the test holds on any host. Needs root, the
//! host's config and the suite's manifest (`bpfconf tests`): ci/test runs it with `--ignored` after
//! the matrix.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use record::{Outcome, Record};
use testkit::Kernel;

/// The option the doctored config unsets: some cases of the host column need it.
const UNSET: &str = "CONFIG_NET_CLS_BPF";

/// `bpfconf <args>` from the workspace's root.
fn bpfconf(root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bpfconf"));
    cmd.current_dir(root).args(args).env("INSTA_UPDATE", "no");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

/// The suite on the host into `results` (with `env`), and its records by case.
fn suite(root: &Path, results: &Path, env: &[(&str, &Path)]) -> BTreeMap<String, Record> {
    let results_arg = results.display().to_string();
    let out = bpfconf(root, &["suite", "--results", &results_arg], env);
    let (records, bad) = record::read_dir(results).unwrap();
    assert!(bad.is_empty(), "unreadable records {bad:?}");
    assert!(
        records.len() > 400,
        "{} records in {}; the runner said:\n{}",
        records.len(),
        results.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    records.into_iter().map(|r| (r.case.clone(), r)).collect()
}

/// The lines of `text` that contain `needle`.
fn lines_with<'t>(text: &'t str, needle: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
#[ignore = "runs the whole suite on the host twice, as root: ci/test runs it with --ignored"]
fn another_build_is_judged_by_behaviour_and_floors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let host = Kernel::current();
    let options = (host.build_config().options.as_ref()).expect("the host's config");
    assert_eq!(
        options.get(UNSET).map(String::as_str),
        Some("y"),
        "{UNSET} on the host"
    );
    let real_build = (host.fingerprint.build_id.clone()).expect("the host's build id");

    let dir = tempfile::tempdir_in(root.join("target")).unwrap();
    let config = dir.path().join("doctored.config");
    let lines: String = (options.iter())
        .filter(|(k, _)| *k != UNSET)
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    fs::write(&config, lines).unwrap();

    // What the host's real build lacks on purpose.
    let deviations: toml::Table =
        toml::from_str(&fs::read_to_string(root.join("kernels/deviations.toml")).unwrap()).unwrap();
    let declared: Vec<String> = (deviations["deviation"].as_array().unwrap().iter())
        .filter(|d| d["build_id"].as_str() == Some(&real_build))
        .map(|d| d["feature"].as_str().unwrap().to_owned())
        .collect();

    let real = suite(root, &dir.path().join("real"), &[]);
    let other_results: PathBuf = dir.path().join("other");
    let other = suite(root, &other_results, &[("BPFCONF_FAULT_KCONFIG", &config)]);
    assert_eq!(
        real.keys().collect::<Vec<_>>(),
        other.keys().collect::<Vec<_>>(),
        "the cases of the two runs"
    );

    let mut unexpected = Vec::new();
    let mut unset_cells = 0;
    for (case, r) in &other {
        let build = r.build.as_ref().and_then(|b| b.build_id.as_ref());
        assert_ne!(build, Some(&real_build), "{case}: the real build id");
        let feature = r.cause.as_ref().map(|c| c.feature.as_str());
        let reason = r.reason.as_deref().unwrap_or_default();
        let was = real[case].outcome;
        match r.outcome {
            now if now == was => {}
            Outcome::Unsupported if feature == Some(&format!("kconfig.{UNSET}")) => {
                unset_cells += 1
            }
            Outcome::Fail if declared.iter().any(|d| reason.contains(d.as_str())) => {}
            Outcome::Fail if declared.iter().any(|d| feature == Some(d.as_str())) => {}
            now => unexpected.push(format!("{case}: {was} → {now}: {reason}")),
        }
    }
    assert!(
        unexpected.is_empty(),
        "cells that changed:\n{}",
        unexpected.join("\n")
    );
    assert!(unset_cells > 0, "no cell needed {UNSET}");

    let other_arg = other_results.display().to_string();
    let report = bpfconf(root, &["report", &other_arg], &[]);
    let md = String::from_utf8_lossy(&report.stdout);
    let accepted_snapshots = (root.join("tests/snapshots").join(&host.id))
        .join("build.json")
        .exists();
    let note = if accepted_snapshots {
        "another build than the accepted one"
    } else {
        "no snapshots accepted for this kernel"
    };
    let notes = lines_with(&md, note);
    assert_eq!(notes.len(), 1, "{md}");
    assert!(
        notes[0].contains(&format!("{} {}: ", host.id, host.release)),
        "{md}"
    );
    let grouped = lines_with(&md, &format!("unsupported on kconfig.{UNSET}: "));
    assert_eq!(grouped.len(), 1, "{md}");
    assert!(grouped[0].contains(&format!("{UNSET} is not set")), "{md}");
    for feature in &declared {
        let grouped = lines_with(&md, &format!("fail on {feature}: "));
        assert_eq!(grouped.len(), 1, "{feature}: {md}");
    }
    let failed = (other.values()).any(|r| matches!(r.outcome, Outcome::Fail | Outcome::Error));
    assert_eq!(report.status.code(), Some(i32::from(failed)), "{md}");

    // The baseline's column of this host alone (the other columns did not run here).
    let mut baseline: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("tests/baseline.json")).unwrap())
            .unwrap();
    for key in ["builds", "kernels"] {
        let map = baseline[key].as_object_mut().unwrap();
        map.retain(|kernel, _| *kernel == host.id);
    }
    if baseline["kernels"].as_object().unwrap().is_empty() {
        eprintln!("the baseline has no column {}: nothing to compare", host.id);
        return;
    }
    let baseline_file = dir.path().join("baseline.json");
    fs::write(&baseline_file, baseline.to_string()).unwrap();
    let file_arg = baseline_file.display().to_string();
    let check = bpfconf(
        root,
        &["baseline", "check", &other_arg, "--file", &file_arg],
        &[],
    );
    let compared = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{compared}");
    assert!(compared.contains("**0 regressions**"), "{compared}");
    let not_compared = lines_with(&compared, "another build than");
    assert_eq!(not_compared.len(), 1, "{compared}");
    assert!(not_compared[0].contains("not compared"), "{compared}");
}
