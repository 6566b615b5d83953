//! Another build of an accepted kernel is judged by its behaviour and the floors, never by what
//! was accepted on the first build. `bpfconf suite` runs the suite on the host taken for another
//! build of itself (`BPFCONF_FAULT_KCONFIG`: the host's config with `CONFIG_NET_CLS_BPF` unset,
//! and a build id made from that config). Then:
//! - every cell keeps its accepted outcome, except the cells that need the unset option
//!   (`unsupported`, grouped under one line) and what the accepted build declares it lacks on
//!   purpose (`kernels/deviations.toml`, bound to that build): on another build that is a `fail`,
//!   grouped under one line per feature with the kernel's message;
//! - the report says once that the column is another build, and the baseline check compares none
//!   of its cells (exit 0, "not compared", once).
//!
//! Needs root, the host's config, a host column in the baseline and the suite's manifest
//! (`bpfconf tests`): ci/test runs it with `--ignored` after the matrix.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use record::Outcome;
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

/// The lines of `text` that contain `needle`.
fn lines_with<'t>(text: &'t str, needle: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
#[ignore = "runs the whole suite on the host as root: ci/test runs it with --ignored"]
fn another_build_is_judged_by_behaviour_and_floors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let host = Kernel::current();
    let options = host
        .build_config()
        .options
        .as_ref()
        .expect("the host's config");
    assert_eq!(
        options.get(UNSET).map(String::as_str),
        Some("y"),
        "{UNSET} on the host"
    );
    let accepted_build = host
        .fingerprint
        .build_id
        .clone()
        .expect("the host's build id");

    let dir = tempfile::tempdir_in(root.join("target")).unwrap();
    let config = dir.path().join("doctored.config");
    let lines: String = (options.iter())
        .filter(|(k, _)| *k != UNSET)
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    fs::write(&config, lines).unwrap();

    // The baseline's host column alone (the other columns did not run here).
    let mut baseline: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("tests/baseline.json")).unwrap())
            .unwrap();
    for key in ["builds", "kernels"] {
        let map = baseline[key].as_object_mut().unwrap();
        map.retain(|kernel, _| *kernel == host.id);
        assert_eq!(map.len(), 1, "the baseline's {key} of {}", host.id);
    }
    let accepted: BTreeMap<String, String> = (baseline["kernels"][&host.id].as_object())
        .unwrap()
        .iter()
        .map(|(case, cell)| (case.clone(), cell["outcome"].as_str().unwrap().to_owned()))
        .collect();
    let baseline_file = dir.path().join("baseline.json");
    fs::write(&baseline_file, baseline.to_string()).unwrap();

    // What the accepted build lacks on purpose.
    let deviations: toml::Table =
        toml::from_str(&fs::read_to_string(root.join("kernels/deviations.toml")).unwrap()).unwrap();
    let declared: Vec<String> = (deviations["deviation"].as_array().unwrap().iter())
        .filter(|d| d["build_id"].as_str() == Some(&accepted_build))
        .map(|d| d["feature"].as_str().unwrap().to_owned())
        .collect();

    let results = dir.path().join("results");
    let results_arg = results.display().to_string();
    let suite = bpfconf(
        root,
        &["suite", "--results", &results_arg],
        &[("BPFCONF_FAULT_KCONFIG", &config)],
    );
    let said = String::from_utf8_lossy(&suite.stdout);
    let (records, bad) = record::read_dir(&results).unwrap();
    assert!(bad.is_empty(), "unreadable records {bad:?}");
    assert!(
        records.len() > 400,
        "{} records; the runner said:\n{said}",
        records.len()
    );

    let mut unexpected = Vec::new();
    let mut unset_cells = 0;
    for r in &records {
        assert_ne!(
            r.build.as_ref().and_then(|b| b.build_id.as_ref()),
            Some(&accepted_build),
            "{}: the record's build id is the accepted build's",
            r.case
        );
        let feature = r.cause.as_ref().map(|c| c.feature.as_str());
        let reason = r.reason.as_deref().unwrap_or_default();
        let outcome = r.outcome.to_string();
        let was = accepted.get(&r.case).map(String::as_str);
        match r.outcome {
            _ if was == Some(&outcome) => {}
            Outcome::Unsupported if feature == Some(&format!("kconfig.{UNSET}")) => {
                unset_cells += 1
            }
            Outcome::Fail if declared.iter().any(|d| reason.contains(d.as_str())) => {}
            Outcome::Fail if declared.iter().any(|d| feature == Some(d.as_str())) => {}
            _ => unexpected.push(format!("{}: {was:?} → {outcome}: {reason}", r.case)),
        }
    }
    assert!(
        unexpected.is_empty(),
        "cells that changed:\n{}",
        unexpected.join("\n")
    );
    assert!(unset_cells > 0, "no cell needed {UNSET}");

    let report = bpfconf(root, &["report", &results_arg], &[]);
    let md = String::from_utf8_lossy(&report.stdout);
    let another = lines_with(&md, "another build than the accepted one");
    assert_eq!(another.len(), 1, "{md}");
    assert!(
        another[0].contains(&format!("{} {}: ", host.id, host.release)),
        "{md}"
    );
    let grouped = lines_with(&md, &format!("unsupported on kconfig.{UNSET}: "));
    assert_eq!(grouped.len(), 1, "{md}");
    assert!(grouped[0].contains(&format!("{UNSET} is not set")), "{md}");
    for feature in &declared {
        let grouped = lines_with(&md, &format!("fail on {feature}: "));
        assert_eq!(grouped.len(), 1, "{feature}: {md}");
    }
    let failed = !declared.is_empty();
    assert_eq!(report.status.code(), Some(i32::from(failed)), "{md}");

    let file_arg = baseline_file.display().to_string();
    let check = bpfconf(
        root,
        &["baseline", "check", &results_arg, "--file", &file_arg],
        &[],
    );
    let compared = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{compared}");
    assert!(compared.contains("**0 regressions**"), "{compared}");
    let not_compared = lines_with(&compared, "another build than");
    assert_eq!(not_compared.len(), 1, "{compared}");
    assert!(not_compared[0].contains("not compared"), "{compared}");
}
