//! The probe matrix (`harness::features`, printed by `bpfconf probe`): which program types, map
//! types and helpers per program type the running kernel offers, probed through libbpf.
//!
//! The case compares it with `bpftool feature probe kernel -j` on the same kernel and fails on any
//! disagreement about a program type both tools know. Map types and helpers are compared too and the
//! differences recorded, not failed: bookworm's bpftool (7.1, built on libbpf 1.1) skips a few
//! helpers unless asked for `full` probing, and does not know the verifier's newer wording
//! ("program of this type cannot use helper"), so on recent kernels it reports every helper as
//! available to every type. The whole matrix is snapshotted per kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use harness::features::Features;
use harness::{Case, CaseError, OrError};
use serde_json::{Value, json};

/// bpftool, on PATH or where Debian installs it.
fn bpftool() -> Result<PathBuf, CaseError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("bpftool"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CaseError::Error(anyhow::anyhow!(
                "bpftool is not installed (not on PATH, nor in /usr/sbin): run ci/setup, which \
                 installs the bpftool package"
            ))
        })
}

/// bpftool's `have_<name>_<suffix>` flags of one section, by `<name>`.
fn flags(section: &Value, suffix: &str) -> BTreeMap<String, bool> {
    section
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("have_")?.strip_suffix(suffix)?;
            Some((name.to_owned(), value.as_bool()?))
        })
        .collect()
}

/// Names both tools probed whose answers differ: `name: suite=… bpftool=…`.
fn disagreements(
    suite: &BTreeMap<String, Option<bool>>,
    bpftool: &BTreeMap<String, bool>,
) -> Vec<String> {
    suite
        .iter()
        .filter_map(|(name, ours)| {
            let theirs = bpftool.get(name)?;
            (*ours != Some(*theirs)).then(|| format!("{name}: suite={ours:?} bpftool={theirs}"))
        })
        .collect()
}

#[test]
fn program_types_agree_with_bpftool() {
    Case::run_named("all", |case| {
        let bpftool = bpftool()?;
        let output = duct::cmd!(&bpftool, "feature", "probe", "kernel", "-j")
            .stdout_capture()
            .stderr_capture()
            .run()
            .or_error("running bpftool feature probe kernel -j")?;
        let theirs: Value =
            serde_json::from_slice(&output.stdout).or_error("parsing bpftool's JSON")?;
        let version = duct::cmd!(&bpftool, "version")
            .read()
            // "<argv0> v7.1.0": keep the version, not where bpftool lives.
            .map(|v| {
                let first = v.lines().next().unwrap_or_default();
                format!("bpftool {}", first.rsplit(' ').next().unwrap_or_default())
            })
            .unwrap_or_default();
        let ours = Features::probe();

        let their_progs = flags(&theirs["program_types"], "_prog_type");
        let their_maps = flags(&theirs["map_types"], "_map_type");
        let prog_disagreements = disagreements(&ours.program_types, &their_progs);
        let map_disagreements = disagreements(&ours.map_types, &their_maps);
        let unknown_to_bpftool: Vec<&String> = ours
            .program_types
            .keys()
            .filter(|name| !their_progs.contains_key(*name))
            .collect();

        // Helpers: per program type both probed, the names only one side lists.
        let mut helper_differences = BTreeMap::new();
        for (ty, helpers) in &ours.helpers {
            let Some(list) = theirs["helpers"][format!("{ty}_available_helpers")].as_array() else {
                continue;
            };
            let theirs: BTreeSet<&str> = list.iter().filter_map(Value::as_str).collect();
            let ours: BTreeSet<&str> = helpers.iter().map(String::as_str).collect();
            let (only_suite, only_bpftool) = (
                ours.difference(&theirs).count(),
                theirs.difference(&ours).count(),
            );
            if only_suite + only_bpftool > 0 {
                helper_differences.insert(
                    ty.clone(),
                    json!({"only_suite": only_suite, "only_bpftool": only_bpftool}),
                );
            }
        }

        let agreeing = their_progs.len() - prog_disagreements.len();
        case.detail("bpftool", &version);
        case.detail("program_types_compared", their_progs.len());
        case.detail("program_type_disagreements", &prog_disagreements);
        case.detail("map_type_disagreements", &map_disagreements);
        case.detail("helper_differences", &helper_differences);
        case.detail("features", &ours);

        let matrix = json!({
            "program_types": ours.program_types,
            "map_types": ours.map_types,
            "helpers_per_program_type": ours
                .helpers
                .iter()
                .map(|(ty, h)| (ty.clone(), h.len()))
                .collect::<BTreeMap<_, _>>(),
            "bpftool": {
                "version": version,
                "program_types_agreeing": agreeing,
                "program_type_disagreements": prog_disagreements,
                "program_types_it_does_not_know": unknown_to_bpftool,
                "map_type_disagreements": map_disagreements,
                "helper_differences": helper_differences,
            },
        });
        case.snapshot(&case.snapshot_name("matrix"), &matrix);
        assert!(
            their_progs.len() > 20,
            "bpftool reported only {} program types",
            their_progs.len()
        );
        assert!(
            prog_disagreements.is_empty(),
            "the suite's probes and bpftool disagree on program types: {prog_disagreements:?}"
        );
        Ok(())
    });
}
